"""PURE: (Manifest, Observation) -> Plan: every selected dataset's lifecycle, then each of its benchmarks, the
datasets that left the manifest as notes, and the fingerprint a saved plan is checked against."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from runner.errors import ParticipationError
from runner.model import (
    Action,
    BenchmarkSpec,
    Change,
    DatasetSpec,
    Manifest,
    Note,
    Observation,
    Plan,
    PrepareArgs,
    Ref,
    Step,
)
from runner.plan.benchmark import benchmark_steps
from runner.plan.dataset import dataset_steps
from runner.plan.targets import select


def plan(manifest: Manifest, obs: Observation, *, interactive: bool = False, targets: Sequence[str] = (),
         request_again: bool = False) -> Plan:
    """Return the ordered steps that take the server and the state dir to what the manifest asks.

    request_again (--request-again): a REJECTED association is requested anew instead of stopping the plan.
    """
    selected = select(manifest, targets)
    steps: list[Step] = []
    notes: list[Note] = []
    matched: set[int] = set()
    for spec in manifest.datasets:
        if spec.name not in selected:
            continue
        first = len(steps)
        ds_steps, ds_notes, ds = dataset_steps(spec, obs, interactive=interactive)
        if ds is not None:
            matched.add(ds.id)
        steps.extend(ds_steps)
        notes.extend(ds_notes)
        _one_entry_per_benchmark(spec, obs)
        for b in spec.benchmarks:
            if selected[spec.name] is not None and str(b.benchmark) not in selected[spec.name]:
                continue
            b_steps, b_notes = benchmark_steps(spec, b, obs, ds_steps, interactive=interactive,
                                               request_again=request_again)
            steps.extend(b_steps)
            notes.extend(b_notes)
        steps[first:] = _local_copy(steps[first:])
    if not targets:
        notes.extend(_unmanaged(obs, matched))
    steps = _runs_on(steps, manifest.runtime.runs_on)
    return Plan(steps=tuple(steps), notes=tuple(notes), fingerprint={**obs.fingerprint(), "manifest": digest(manifest)})


def _local_copy(steps: list[Step]) -> list[Step]:
    """A dataset's local copy is prepared again only when something runs on it: then the model runs and the
    compatibility test wait for it; otherwise the prepare step is "done" (the server holds the dataset)."""
    prepare = next((s for s in steps if s.action is Action.PREPARE and s.change is Change.TODO
                    and isinstance(s.args, PrepareArgs) and s.args.local_copy), None)
    if prepare is None:
        return steps
    users = [s for s in steps if s.change is not Change.DONE and s.action in (Action.ASSOCIATE, Action.RUN_MODEL)]
    if not users:
        done = replace(prepare, change=Change.DONE, reason="operational on the server (no prepared copy in the "
                       "state dir; none needed: no model runs here)", detail="",
                       args=PrepareArgs(dataset_id=prepare.args.dataset_id))
        return [done if s is prepare else s for s in steps]
    needs = {s.key for s in users}
    return [replace(s, after=(*s.after, prepare.key)) if s.key in needs else s for s in steps]


def _one_entry_per_benchmark(spec: DatasetSpec, obs: Observation) -> None:
    """The same benchmark named twice (by id and by name) under one dataset would plan every step twice."""
    seen: dict[int, BenchmarkSpec] = {}
    for b in spec.benchmarks:
        record = obs.refs.get(Ref("benchmark", b.benchmark).key)
        if record is None:
            continue
        if record.id in seen:
            first = seen[record.id]
            raise ParticipationError(
                f"dataset {spec.name} lists benchmark {record.name} ({record.id}) twice: as {first.benchmark!r}"
                f"{f' ({first.where})' if first.where else ''} and as {b.benchmark!r}",
                where=str(b.where) if b.where else None, hint="list each benchmark once per dataset")
        seen[record.id] = b


def digest(manifest: Manifest) -> str:
    """A fingerprint of what the manifest asks (a saved plan is refused once it changed)."""
    return hashlib.sha256(repr(manifest.server).encode() + repr(manifest.datasets).encode()).hexdigest()


def _unmanaged(obs: Observation, matched: set[int]) -> list[Note]:
    """Datasets this state dir prepared or registered that left the manifest: said, never deleted."""
    notes = []
    by_id = {d.id: d for d in obs.my_datasets}
    for ds_id in sorted(obs.local):
        if ds_id in matched or ds_id not in by_id:
            continue
        d = by_id[ds_id]
        notes.append(Note(f"dataset {d.name} (id {d.id}, {d.state}): no longer managed (it left the manifest; "
                          "nothing is deleted)", d.name))
    return notes


def _runs_on(steps: list[Step], where: str | None) -> list[Step]:
    """The steps that run container tasks say where they run, when not on this machine's engine (the executor)."""
    if where is None:
        return steps
    runs = (Action.PREPARE, Action.RUN_MODEL, Action.ASSOCIATE)
    return [replace(s, runs_on=where) if s.action in runs and s.change is Change.TODO else s for s in steps]
