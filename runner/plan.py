"""PURE: (Manifest, Observation) -> Plan of ordered Steps with reasons and the exact fields each step sends.

No I/O here: no HTTP, no Docker, no files. Dataset steps come in DESIGN 4's order (register, prepare, set
operational); benchmark participation (associate, await approval, run models, submit) comes from
runner/participation.py, as more steps of the same plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from runner import privacy
from runner.errors import DriftError, ReferenceNotFound, UsageError
from runner.model import (
    Action,
    Change,
    DatasetSpec,
    DesiredState,
    LocalDataset,
    Manifest,
    Note,
    Observation,
    Plan,
    Ref,
    RemoteBenchmark,
    RemoteContainer,
    RemoteDataset,
    Step,
)
from runner.participation import participation_steps

# The bodies apply sends, field by field (apply builds them from these lists; privacy.check_body guards them).
REGISTER_FIELDS = ("name", "description", "location", "input_data_hash", "generated_uid", "data_preparation_mlcube",
                   "split_seed", "submitted_as_prepared", "for_test", "generated_metadata", "user_metadata")
SET_OPERATIONAL_FIELDS = ("input_data_hash", "generated_uid", "generated_metadata", "state")
PREPARE_REPORT_FIELDS = ("report",)
# What register always sends with the same value (MedPerf's registration constants), shown as such in the plan.
REGISTER_CONSTANTS = {"split_seed": 0, "submitted_as_prepared": False, "for_test": False, "generated_metadata": {},
                      "user_metadata": {}}
PREPARE_TASKS = ("prepare", "sanity_check", "statistics")
CHECK_TASKS = ("sanity_check", "statistics")


def _sends(method: str, path: str, variant: str, fields: Sequence[str]) -> tuple[str, ...]:
    """The fields of `fields` the privacy allowlist lets this endpoint receive, in the body's order."""
    allowed = set(privacy.describe(method, path, variant))
    return tuple(f for f in fields if f in allowed)


def step_key(dataset: str, action: Action, benchmark: str | None = None, model: str | None = None) -> str:
    key = f"dataset/{dataset}/{action.value}"
    if benchmark is not None:
        key = f"dataset/{dataset}/benchmark/{benchmark}/{action.value}"
        if model is not None:
            key += f"/model/{model}"
    return key


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
        ds_steps, ds_notes, ds = _dataset_steps(spec, obs, interactive=interactive)
        if ds is not None:
            matched.add(ds.id)
        steps.extend(ds_steps)
        notes.extend(ds_notes)
        for b in spec.benchmarks:
            if selected[spec.name] is not None and str(b.benchmark) not in selected[spec.name]:
                continue
            b_steps, b_notes = participation_steps(spec, b, obs, ds_steps, interactive=interactive,
                                                   request_again=request_again)
            steps.extend(b_steps)
            notes.extend(b_notes)
    if not targets:
        notes.extend(_unmanaged(manifest, obs, matched))
    return Plan(steps=tuple(steps), notes=tuple(notes), fingerprint={**obs.fingerprint(), "manifest": digest(manifest)})


def digest(manifest: Manifest) -> str:
    """A fingerprint of what the manifest asks (a saved plan is refused once it changed)."""
    return hashlib.sha256(repr(manifest.server).encode() + repr(manifest.datasets).encode()).hexdigest()


def select(manifest: Manifest, targets: Sequence[str]) -> dict[str, set[str] | None]:
    """--target dataset/NAME[/benchmark/B] -> {dataset: its selected benchmarks, None = all}; unmatched = error."""
    if not targets:
        return {d.name: None for d in manifest.datasets}
    out: dict[str, set[str] | None] = {}
    for t in targets:
        parts = t.strip("/").split("/")
        if len(parts) not in (2, 4) or parts[0] != "dataset" or (len(parts) == 4 and parts[2] != "benchmark"):
            raise UsageError(f"--target {t!r}: expected dataset/NAME or dataset/NAME/benchmark/B")
        spec = manifest.dataset(parts[1])
        if spec is None:
            names = ", ".join(d.name for d in manifest.datasets)
            raise UsageError(f"--target {t!r} matches no dataset of the manifest", hint=f"datasets: {names}")
        bench = parts[3] if len(parts) == 4 else None
        if bench is not None and bench not in {str(b.benchmark) for b in spec.benchmarks}:
            raise UsageError(f"--target {t!r}: dataset {spec.name} lists no benchmark {bench}",
                             hint=f"its benchmarks: {', '.join(str(b.benchmark) for b in spec.benchmarks) or 'none'}")
        if bench is None or (spec.name in out and out[spec.name] is None):
            out[spec.name] = None  # the whole dataset
        else:
            out.setdefault(spec.name, set()).add(bench)
    return out


def resolve(ref: Ref, obs: Observation, *, where: object = None, dataset: str = "") -> RemoteBenchmark | RemoteContainer:
    """The server record a manifest reference names, or ReferenceNotFound."""
    if ref.key not in obs.refs:
        raise ReferenceNotFound(f"{ref} was not observed (internal error)", where=str(where) if where else None)
    record = obs.refs[ref.key]
    if record is None:
        by = "id" if isinstance(ref.value, int) else "name"
        raise ReferenceNotFound(
            f"dataset {dataset}: unknown {ref.kind} {ref.value!r} (no {ref.kind} with that {by} on {obs.server_url})",
            where=str(where) if where else None,
            hint=f"check the {ref.kind}'s {by} (the server's web page lists them)",
        )
    return record


def _identify(spec: DatasetSpec, obs: Observation, prep: int, raw_hash: str) -> tuple[RemoteDataset | None, list[Note]]:
    """My dataset with this name and data preparation container (DESIGN 4's identity)."""
    notes = []
    same_name = [d for d in obs.my_datasets if d.name == spec.name]
    mine = [d for d in same_name if d.data_preparation_mlcube == prep]
    for other in same_name:
        if other.data_preparation_mlcube != prep:
            notes.append(Note(f"dataset {other.id} is also named {spec.name} but prepared with container "
                              f"{other.data_preparation_mlcube}, not {prep}: it is not this one", spec.name))
    if not mine:
        return None, notes
    exact = [d for d in mine if d.input_data_hash == raw_hash]
    chosen = max(exact or mine, key=lambda d: d.id)
    if len(mine) > 1:
        notes.append(Note(f"{len(mine)} of my datasets are named {spec.name} with container {prep} "
                          f"(ids {', '.join(str(d.id) for d in mine)}): using {chosen.id}", spec.name))
    return chosen, notes


def _dataset_steps(spec: DatasetSpec, obs: Observation, *, interactive: bool
                   ) -> tuple[list[Step], list[Note], RemoteDataset | None]:
    record = resolve(spec.prepare_with, obs, where=spec.where, dataset=spec.name)
    prep = record.data_preparation_mlcube if isinstance(record, RemoteBenchmark) else record.id
    if prep is None:
        raise ReferenceNotFound(f"dataset {spec.name}: {spec.prepare_with} names no data preparation container",
                                where=str(spec.where) if spec.where else None)
    container = obs.containers.get(prep)
    cname = container.name if container else f"container {prep}"
    for b in spec.benchmarks:  # an unknown benchmark stops the plan before anything is done
        resolve(Ref("benchmark", b.benchmark), obs, where=b.where, dataset=spec.name)

    raw_hash = obs.raw_hashes[spec.name]
    ds, notes = _identify(spec, obs, prep, raw_hash)
    if ds is not None and ds.input_data_hash != raw_hash:
        raise DriftError(
            f"dataset {spec.name} (id {ds.id}): the raw data changed since it was registered: "
            f"the server has input_data_hash {ds.input_data_hash}, the raw folders now hash to {raw_hash}",
            where=str(spec.where) if spec.where else None,
            hint="restore the original data, or register the changed data as a new dataset under a new name",
        )
    local = obs.local.get(ds.id) if ds is not None else None
    unfinished = {e.get("step") for e in obs.unfinished}
    want = spec.state
    steps: list[Step] = []
    keys = {a: step_key(spec.name, a) for a in (Action.REGISTER, Action.PREPARE, Action.SET_OPERATIONAL)}

    # register
    if ds is not None:
        resumed = " (it had landed before an earlier run stopped)" if keys[Action.REGISTER] in unfinished else ""
        steps.append(Step(keys[Action.REGISTER], Action.REGISTER, spec.name, Change.DONE,
                          f"registered as dataset {ds.id}{resumed}", args={"dataset_id": ds.id}))
    else:
        _usable(container, spec)
        reason = "not on the server"
        if keys[Action.REGISTER] in unfinished:
            reason = "an earlier run stopped during register and the dataset is not on the server"
        steps.append(Step(keys[Action.REGISTER], Action.REGISTER, spec.name, Change.TODO, reason,
                          endpoint="POST /datasets/",
                          sends=_sends("POST", "datasets/", "register", REGISTER_FIELDS),
                          args={"data_preparation_mlcube": prep, "input_data_hash": raw_hash}))

    # prepare
    ready = local is not None and local.ready
    if want.rank >= DesiredState.PREPARED.rank:
        path = f"datasets/{ds.id if ds else 1}/"
        if ds is not None and ds.operational:
            steps.append(Step(keys[Action.PREPARE], Action.PREPARE, spec.name, Change.DONE,
                              "operational on the server" + ("" if ready else " (no prepared copy in the state dir)"),
                              args={"dataset_id": ds.id}))
        elif ready and local.has_statistics:  # .ready without statistics.yaml: re-checked below, never stuck
            steps.append(Step(keys[Action.PREPARE], Action.PREPARE, spec.name, Change.DONE,
                              "prepared (.ready in the state dir)", args={"dataset_id": ds.id}))
        else:
            _usable(container, spec)
            if (local is not None and local.started) or keys[Action.PREPARE] in unfinished:
                notes.append(Note(_prepare_reason(local, keys, unfinished), spec.name))
            steps.append(Step(
                keys[Action.PREPARE], Action.PREPARE, spec.name, Change.TODO, _prepare_reason(local, keys, unfinished),
                detail=f"{cname}: {', '.join(PREPARE_TASKS)}",
                sends=_sends("PUT", path, "preparation status", PREPARE_REPORT_FIELDS),
                args={"dataset_id": ds.id if ds else None, "container": prep, "tasks": list(PREPARE_TASKS)},
                after=(keys[Action.REGISTER],),
            ))

    # set operational
    if want.rank >= DesiredState.OPERATIONAL.rank:
        if ds is not None and ds.operational:
            steps.append(Step(keys[Action.SET_OPERATIONAL], Action.SET_OPERATIONAL, spec.name, Change.DONE,
                              "operational on the server", args={"dataset_id": ds.id}))
        else:
            steps.append(_set_operational(spec, ds, keys, interactive=interactive))

    # asking less than exists is satisfied
    reached = _reached(ds, local)
    if reached.rank > want.rank:
        notes.append(Note(f"the manifest asks state {want.value}; dataset {ds.id} is already {reached.value} "
                          f"(states only move forward): nothing to undo", spec.name))
    return steps, notes, ds


def _usable(container: RemoteContainer | None, spec: DatasetSpec) -> None:
    if container is not None and not container.is_valid:
        raise ReferenceNotFound(f"dataset {spec.name}: container {container.name} ({container.id}) is marked as "
                                f"INVALID on the server", where=str(spec.where) if spec.where else None,
                                hint="ask the benchmark owner which data preparation container to use")


def _prepare_reason(local: LocalDataset | None, keys: dict, unfinished: set) -> str:
    if local is not None and local.ready and not local.has_statistics:
        return "prepared, but statistics.yaml is missing: sanity_check and statistics run again"
    if keys[Action.PREPARE] in unfinished:
        return "an earlier run stopped during prepare (no .ready): prepare runs again"
    if local is not None and local.started:
        return "a previous prepare did not finish (no .ready): prepare runs again"
    return "not prepared yet"


def _set_operational(spec: DatasetSpec, ds: RemoteDataset | None, keys: dict, *, interactive: bool) -> Step:
    sends = _sends("PUT", f"datasets/{ds.id if ds else 1}/", "set operational", SET_OPERATIONAL_FIELDS)
    base = dict(key=keys[Action.SET_OPERATIONAL], action=Action.SET_OPERATIONAL, dataset=spec.name, sends=sends,
                endpoint=f"PUT /datasets/{ds.id if ds else '{id}'}/",
                args={"dataset_id": ds.id if ds else None}, after=(keys[Action.PREPARE],))
    given = spec.consent.statistics
    where = f" ({spec.where})" if spec.where else ""
    if given is True:
        return Step(change=Change.TODO, reason="prepared data not yet declared operational", **base)
    if given is False:
        return Step(change=Change.GATE, reason=f"consent.statistics is false for dataset {spec.name}{where}: its "
                    "statistics may not be sent, so it cannot become operational", **base)
    if interactive:
        return Step(change=Change.TODO, reason="needs consent to send the statistics: asked once before applying",
                    consent="statistics", **base)
    return Step(change=Change.GATE, reason=f"waits for consent to send the statistics: set consent.statistics: true "
                f"under dataset {spec.name}{where}", **base)


def _reached(ds: RemoteDataset | None, local: LocalDataset | None) -> DesiredState:
    if ds is None:
        return DesiredState.REGISTERED  # nothing exists; never more than what is asked
    if ds.operational:
        return DesiredState.OPERATIONAL
    if local is not None and local.ready:
        return DesiredState.PREPARED
    return DesiredState.REGISTERED


def _unmanaged(manifest: Manifest, obs: Observation, matched: set[int]) -> list[Note]:
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
