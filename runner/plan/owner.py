"""PURE: (OwnerManifest, OwnerObservation) -> Plan: the benchmark owner's decisions on the association requests of
their benchmarks, as MedPerf allows them (only a PENDING request is approved or rejected; an APPROVED one is
revoked by a new REJECTED row; nobody approves a request they made)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from runner.errors import DecisionRefused, ReferenceNotFound
from runner.model import (
    Action,
    ApprovalStatus,
    Change,
    DecideArgs,
    DecisionGoal,
    Note,
    OwnedBenchmarkSpec,
    OwnedDatasetSpec,
    OwnerManifest,
    OwnerObservation,
    Plan,
    RemoteAssociation,
    RemoteBenchmark,
    Step,
)
from runner.plan.common import sends

DECIDE_FIELDS = ("approval_status",)
REVOKE_FIELDS = ("dataset", "benchmark", "approval_status", "metadata")
REQUEST_AGAIN = "the data owner requests again (medperf-apply apply --request-again)"


def owner_plan(manifest: OwnerManifest, obs: OwnerObservation) -> Plan:
    """Return the decisions that take my benchmarks' association requests to what the manifest asks.

    A request the manifest cannot decide yet (none made, or the latest REJECTED and to be approved) is a gate; a
    decision MedPerf would refuse stops the plan with DecisionRefused naming every one of them."""
    steps: list[Step] = []
    notes: list[Note] = []
    refused: list[str] = []
    managed: dict[int, OwnedBenchmarkSpec] = {}
    for spec in manifest.benchmarks:
        bench = _benchmark(spec, obs, managed)
        requests = obs.requests_of(bench.id)
        decided: dict[int, OwnedDatasetSpec] = {}
        for d in spec.datasets:
            ds_id, name = _dataset(d, bench, requests, obs)
            if ds_id is not None:
                if ds_id in decided:
                    first = decided[ds_id]
                    raise DecisionRefused(f"benchmark {bench.name}: dataset {name} ({ds_id}) is listed twice: as "
                                          f"{first.dataset!r} ({first.where}) and as {d.dataset!r}",
                                          where=str(d.where) if d.where else None,
                                          hint="decide each dataset once per benchmark")
                decided[ds_id] = d
            step, note = _decision(d.association, bench, ds_id, name, requests.get(ds_id) if ds_id else None,
                                   obs, refused, where=d.where)
            steps.extend([step] if step else [])
            notes.extend([note] if note else [])
        for ds_id, a in sorted(requests.items()):
            if ds_id in decided or a.approval_status is not ApprovalStatus.PENDING:
                continue
            name = _name(obs, ds_id)
            if spec.default is DecisionGoal.PENDING or a.initiated_by == obs.me:
                notes.append(Note(f"benchmark {bench.name}: dataset {name} ({ds_id}) asks to join since "
                                  f"{a.created_at or '?'}: left pending (not in the manifest; default: pending)"
                                  if spec.default is DecisionGoal.PENDING else
                                  f"benchmark {bench.name}: dataset {name} ({ds_id}): left pending (a request you "
                                  "made yourself: its data owner approves it)", name))
                continue
            step, note = _decision(spec.default, bench, ds_id, name, a, obs, refused, where=spec.where,
                                   by_default=True)
            steps.extend([step] if step else [])
            notes.extend([note] if note else [])
    if refused:
        raise DecisionRefused("MedPerf would refuse " + ("this decision" if len(refused) == 1 else
                                                         f"{len(refused)} decisions") + ":\n  " + "\n  ".join(refused),
                              hint="change the manifest as each line says; nothing was sent")
    notes.extend(_unmanaged(obs, managed))
    return Plan(steps=tuple(steps), notes=tuple(notes), fingerprint={**obs.fingerprint(), "manifest": digest(manifest)})


def digest(manifest: OwnerManifest) -> str:
    """A fingerprint of what the manifest asks (a saved plan is refused once it changed)."""
    return hashlib.sha256(repr(manifest.server).encode() + repr(manifest.benchmarks).encode()).hexdigest()


def step_key(benchmark: str, dataset: str, action: Action) -> str:
    return f"benchmark/{benchmark}/dataset/{dataset}/{action.value}"


def _benchmark(spec: OwnedBenchmarkSpec, obs: OwnerObservation, managed: dict[int, OwnedBenchmarkSpec]
               ) -> RemoteBenchmark:
    bench = obs.benchmark(spec.benchmark)
    where = str(spec.where) if spec.where else None
    if bench is None:
        yours = ", ".join(f"{b.name} ({b.id})" for b in obs.benchmarks) or "none"
        raise ReferenceNotFound(f"benchmark {spec.benchmark!r} is not one of yours on {obs.server_url} (yours: "
                                f"{yours})", where=where, hint="give the id or exact name of a benchmark you own, "
                                "with its owner's token")
    if bench.id in managed:
        raise ReferenceNotFound(f"benchmark {bench.name} ({bench.id}) is listed twice: as "
                                f"{managed[bench.id].benchmark!r} and as {spec.benchmark!r}", where=where,
                                hint="list each benchmark once")
    managed[bench.id] = spec
    return bench


def _name(obs: OwnerObservation, ds_id: int) -> str:
    info = obs.datasets.get(ds_id)
    return info.name if info is not None and info.name else str(ds_id)


def _dataset(d: OwnedDatasetSpec, bench: RemoteBenchmark, requests: Mapping[int, RemoteAssociation],
             obs: OwnerObservation) -> tuple[int | None, str]:
    """The dataset an entry names (id None when the server has none by that name) and how to call it.

    By name: among the datasets that asked to join this benchmark first (names are not unique across owners)."""
    if isinstance(d.dataset, int):
        return d.dataset, _name(obs, d.dataset)
    named = sorted(i for i, info in obs.datasets.items() if info.name == d.dataset)
    asked = [i for i in named if i in requests]
    if len(asked) > 1:
        raise DecisionRefused(f"benchmark {bench.name}: {len(asked)} datasets named {d.dataset!r} asked to join "
                              f"(ids {', '.join(map(str, asked))})", where=str(d.where) if d.where else None,
                              hint="give the dataset's id (`medperf-apply association list` shows it)")
    if asked:
        return asked[0], d.dataset
    return (named[0] if len(named) == 1 else None), d.dataset


def _metrics(a: RemoteAssociation) -> str:
    if not a.test_result:
        return ""
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(a.test_result.items()))
    return f"compatibility test: {shown}"


def _decision(goal: DecisionGoal, bench: RemoteBenchmark, ds_id: int | None, name: str, a: RemoteAssociation | None,
              obs: OwnerObservation, refused: list[str], *, where=None, by_default: bool = False
              ) -> tuple[Step | None, Note | None]:
    """One dataset's step (or note) for the goal, against the latest request of the pair."""
    what = f"dataset {name}" + (f" ({ds_id})" if ds_id is not None and name != str(ds_id) else "")
    if ds_id is not None and ds_id not in obs.datasets and a is None:
        ds_id = None  # an id the server does not have (yet): nothing to decide on
    at = f" ({where})" if where else ""
    if goal is DecisionGoal.PENDING:
        if a is not None and a.approval_status is not ApprovalStatus.PENDING:
            return None, Note(f"benchmark {bench.name}: {what} is {a.approval_status} already: MedPerf never sets a "
                              "decision back to pending (asks pending: nothing to do)", name)
        return None, None
    action = Action.APPROVE if goal is DecisionGoal.APPROVED else Action.REJECT
    status = goal.status
    base = dict(key=step_key(bench.name, name, action), action=action, dataset=name, benchmark=bench.name)
    why = " (the manifest's default)" if by_default else ""
    if a is None:
        if goal is DecisionGoal.REJECTED:
            return None, Note(f"benchmark {bench.name}: {what} has not asked to join: nothing to reject", name)
        reason = f"{what} has not asked to join benchmark {bench.name} yet" if ds_id is not None else \
            f"no dataset {what.removeprefix('dataset ') if name.isdigit() else f'named {name!r}'} on the server yet"
        return Step(change=Change.GATE, reason=f"{reason}: approved once its data owner requests it",
                    args=DecideArgs(dataset_id=ds_id, benchmark_id=bench.id, status=status.value), **base), None
    args = DecideArgs(dataset_id=ds_id, benchmark_id=bench.id, status=status.value, was=a.approval_status.value)
    if a.approval_status is status:
        stamp = f" {a.approved_at}" if a.approved_at else ""
        return Step(change=Change.DONE, reason=f"{status.value.lower()}{stamp}", args=args, **base), None
    metrics = _metrics(a)
    if a.approval_status is ApprovalStatus.PENDING:
        if goal is DecisionGoal.APPROVED and obs.me is not None and a.initiated_by == obs.me:
            refused.append(f"benchmark {bench.name}: approve {what}{at}: you made this request yourself, and MedPerf "
                           "lets only the other side approve it: its data owner approves it (or list it as pending)")
            return None, None
        path = f"/datasets/{ds_id}/benchmarks/{bench.id}/"
        return Step(change=Change.TODO, reason=f"requested {a.created_at or '?'}{why}", detail=metrics,
                    endpoint=f"PUT {path}", sends=sends("PUT", path, "association decision", DECIDE_FIELDS),
                    args=args, **base), None
    if goal is DecisionGoal.APPROVED:  # the latest is REJECTED: only a new request can be approved
        return Step(change=Change.GATE, reason=f"rejected {a.approved_at or ''}".rstrip() + ": MedPerf approves only a "
                    f"pending request: approved once {REQUEST_AGAIN}", args=args, **base), None
    # rejected, the latest APPROVED: MedPerf revokes with a new REJECTED row (the benchmark owner may create it)
    path = "/datasets/benchmarks/"
    return Step(change=Change.TODO, reason=f"approved {a.approved_at or '?'}: revoked by a new REJECTED row{why}",
                detail="revokes the approval", endpoint=f"POST {path}",
                sends=sends("POST", path, "association revocation", REVOKE_FIELDS),
                args=DecideArgs(dataset_id=ds_id, benchmark_id=bench.id, status=status.value,
                                was=a.approval_status.value, revoke=True), show_reason=True, **base), None


def _unmanaged(obs: OwnerObservation, managed: Mapping[int, OwnedBenchmarkSpec]) -> list[Note]:
    """My other benchmarks' pending requests: said, never decided."""
    notes = []
    for b in obs.benchmarks:
        if b.id in managed:
            continue
        pending = sum(1 for a in obs.requests_of(b.id).values() if a.approval_status is ApprovalStatus.PENDING)
        if pending:
            notes.append(Note(f"benchmark {b.name} ({b.id}): {pending} pending request{'s' if pending != 1 else ''}, "
                              "not managed by this manifest"))
    return notes

