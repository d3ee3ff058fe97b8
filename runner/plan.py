"""PURE: (Manifest, Observation) -> Plan of ordered Steps with reasons and the exact fields each step sends.

No I/O here: no HTTP, no Docker, no files. Dataset steps come in DESIGN 4's order (register, prepare, set
operational); benchmark participation (associate, await approval, run models, submit) plugs in through
`_participation_steps`, as more steps of the same plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from runner import privacy
from runner.errors import AssociationRejected, DriftError, ParticipationError, ReferenceNotFound, UsageError
from runner.model import (
    Action,
    AssociationGoal,
    BenchmarkSpec,
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
    ResultsGoal,
    Step,
)

PENDING, APPROVED, REJECTED = "PENDING", "APPROVED", "REJECTED"

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


def plan(manifest: Manifest, obs: Observation, *, interactive: bool = False, targets: Sequence[str] = ()) -> Plan:
    """Return the ordered steps that take the server and the state dir to what the manifest asks."""
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
            b_steps, b_notes = _participation_steps(spec, b, obs, ds_steps, interactive=interactive)
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
        elif ready:
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


def _participation_steps(spec: DatasetSpec, b: BenchmarkSpec, obs: Observation, dataset_steps: list[Step], *,
                         interactive: bool) -> tuple[list[Step], list[Note]]:
    """Steps for one benchmark of a dataset: associate, await approval, run models, submit (DESIGN 3-4)."""
    bench = resolve(Ref("benchmark", b.benchmark), obs, where=b.where, dataset=spec.name)
    assert isinstance(bench, RemoteBenchmark)
    where = str(b.where) if b.where else (str(spec.where) if spec.where else None)
    label = str(b.benchmark)
    if spec.state is not DesiredState.OPERATIONAL:
        raise ParticipationError(f"dataset {spec.name} lists benchmark {label}, but asks state {spec.state.value}: "
                                 "taking part in a benchmark needs an operational dataset", where=where,
                                 hint="set state: operational, or remove the benchmark from this dataset")
    prep = _prep_of(spec, obs)
    if bench.data_preparation_mlcube != prep:
        raise ParticipationError(
            f"dataset {spec.name} is prepared with container {prep}, but benchmark {bench.name} ({bench.id}) "
            f"uses container {bench.data_preparation_mlcube}: the specified dataset wasn't prepared for this "
            "benchmark", where=where,
            hint=f"register a dataset prepared with prepare_with: {{benchmark: {bench.name}}} to take part in it")
    by_action = {s.action: s for s in dataset_steps}
    ds_id = by_action[Action.REGISTER].args.get("dataset_id")
    set_op = by_action[Action.SET_OPERATIONAL]
    assoc = obs.associations.get((ds_id, bench.id)) if ds_id is not None else None
    status = assoc.approval_status if assoc is not None else None
    ref = bench.reference_model
    d_text = str(ds_id) if ds_id is not None else "?"
    keys = {a: step_key(spec.name, a, label) for a in (Action.ASSOCIATE, Action.AWAIT_APPROVAL, Action.SUBMIT)}
    common = {"dataset_id": ds_id, "benchmark_id": bench.id}
    steps: list[Step] = []
    notes: list[Note] = []

    # associate
    if status == REJECTED and b.association is AssociationGoal.APPROVED:
        raise AssociationRejected(
            f"dataset {spec.name} ({ds_id}): the association request with benchmark {bench.name} ({bench.id}) was "
            f"REJECTED (decided {assoc.approved_at or assoc.created_at}); it is not requested again on its own",
            where=where,
            hint="talk to the benchmark owner; to send a new request (as `medperf dataset associate` does after a "
                 "rejection), set association: requested for this benchmark and apply once")
    skip = bench.skip_compatibility_tests
    associating = status not in (PENDING, APPROVED)
    if not associating:
        when = f"requested {assoc.created_at}" if status == PENDING else f"approved {assoc.approved_at}".rstrip()
        steps.append(Step(keys[Action.ASSOCIATE], Action.ASSOCIATE, spec.name, Change.DONE,
                          f"associated ({status}, {when})", benchmark=label, args=dict(common)))
    else:
        ref_res = obs.results.get((bench.id, ref, ds_id)) if ds_id is not None and ref is not None else None
        ref_cached = ref_res is not None and not ref_res.finalized and _executed(obs, ref_res.id)
        if skip:
            detail = "compatibility test skipped (benchmark metadata skip_compatibility_tests)"
        elif ref_res is not None and (ref_cached or ref_res.finalized):
            detail = f"reuses the run of model {ref} (reference, result {ref_res.id}, from cache)"
        else:
            detail = f"runs model {ref} (reference) + evaluator"
        reason = "not requested yet" if status is None else \
            f"the last request was REJECTED ({assoc.approved_at or assoc.created_at}): requested again"
        args = {**common, "reference_model": ref, "evaluator": bench.data_evaluator_mlcube, "skip_test": skip,
                "result_id": ref_res.id if ref_res is not None else None,
                "name": f"b{bench.id}m{ref}d{d_text}", "ignore_model_errors": b.ignore_model_errors}
        base = dict(key=keys[Action.ASSOCIATE], action=Action.ASSOCIATE, dataset=spec.name, benchmark=label,
                    endpoint="POST /datasets/benchmarks/", sends=ASSOCIATE_SHOWN, detail=detail, args=args,
                    after=(set_op.key,))
        if set_op.change is Change.GATE:
            steps.append(Step(change=Change.GATE, reason="waits for set operational (an association needs an "
                              "operational dataset)", **base))
        elif skip:
            steps.append(Step(change=Change.TODO, reason=reason, **base))
        else:
            steps.append(_with_consent(spec, "compatibility_results", "the compatibility test's metrics", reason,
                                       base, interactive=interactive))
    associate = steps[-1]

    # await approval
    approved = status == APPROVED
    awaits = b.association is AssociationGoal.APPROVED
    if awaits:
        if approved:
            steps.append(Step(keys[Action.AWAIT_APPROVAL], Action.AWAIT_APPROVAL, spec.name, Change.DONE,
                              f"approved {assoc.approved_at}".rstrip(), benchmark=label, args=dict(common)))
        else:
            if associating and bench.dataset_auto_approval_mode == "ALWAYS":
                why = "the benchmark approves requests automatically (policy ALWAYS)"
            else:
                why = "benchmark owner must approve"
            if status == PENDING:
                why += f" (requested {assoc.created_at})"
            steps.append(Step(keys[Action.AWAIT_APPROVAL], Action.AWAIT_APPROVAL, spec.name, Change.GATE, why,
                              benchmark=label, args={**common, "requested_at": assoc.created_at if assoc else None},
                              after=(associate.key,)))
    gate_key = keys[Action.AWAIT_APPROVAL] if awaits else None

    if b.results is ResultsGoal.NONE:
        return steps, notes

    # run models
    listed = obs.benchmark_models.get(bench.id)
    known, unknown_rest = _models(spec, b, bench, listed, obs, where)
    if not approved and not awaits:
        others = [m for m in known if m != ref] or unknown_rest
        if others:
            notes.append(Note(f"benchmark {label}: association: requested does not wait for approval; the models "
                              "other than the reference run (and results are submitted) once the benchmark owner "
                              "approves: apply again then", spec.name))
        return steps, notes
    run_keys = []
    to_submit: list[int] = []
    submitted: list[int] = []
    for m in known:
        is_ref = m == ref
        res = obs.results.get((bench.id, m, ds_id)) if ds_id is not None else None
        key = step_key(spec.name, Action.RUN_MODEL, label, str(m))
        run_keys.append(key)
        margs = {**common, "model": m, "reference": is_ref, "evaluator": bench.data_evaluator_mlcube,
                 "result_id": res.id if res is not None and not res.finalized else None,
                 "name": f"b{bench.id}m{m}d{d_text}", "ignore_model_errors": b.ignore_model_errors}
        if res is not None and res.finalized:
            submitted.append(m)
            steps.append(Step(key, Action.RUN_MODEL, spec.name, Change.DONE, f"result {res.id} submitted",
                              benchmark=label, args={**margs, "result_id": res.id, "partial": res.partial,
                                                     "from_cache": True}))
            continue
        to_submit.append(m)
        if res is not None and _executed(obs, res.id):
            steps.append(Step(key, Action.RUN_MODEL, spec.name, Change.DONE, f"result {res.id} computed here "
                              "(from cache)", benchmark=label,
                              args={**margs, "partial": obs.local_results[res.id].partial, "from_cache": True}))
        elif is_ref and associating and not skip:
            steps.append(Step(key, Action.RUN_MODEL, spec.name, Change.DONE,
                              f"done by the association test (b{bench.id}m{m}d{d_text})", benchmark=label,
                              args={**margs, "by_association": True, "from_cache": True}))
        else:
            reason = "not run yet" if res is None else \
                f"result record {res.id} exists but was not run here: runs with it"
            after = (associate.key,) if is_ref or gate_key is None else (gate_key,)
            steps.append(Step(key, Action.RUN_MODEL, spec.name, Change.TODO, reason, benchmark=label,
                              detail="infer + evaluate", endpoint="POST /results/", sends=RUN_SHOWN, args=margs,
                              after=after))
    if unknown_rest:
        key = step_key(spec.name, Action.RUN_MODEL, label, "approved")
        run_keys.append(key)
        steps.append(Step(key, Action.RUN_MODEL, spec.name, Change.GATE, "the benchmark's other approved models "
                          "are listed once the benchmark owner approves", benchmark=label,
                          args={**common, "model": None}, after=(gate_key,) if gate_key else ()))

    # submit
    if b.results is ResultsGoal.SUBMITTED:
        if not to_submit and not unknown_rest:
            n = len(submitted)
            steps.append(Step(keys[Action.SUBMIT], Action.SUBMIT, spec.name, Change.DONE,
                              f"{n} result{'s' if n != 1 else ''} submitted", benchmark=label,
                              args={**common, "models": [], "submitted": submitted}))
        else:
            reason = "computed results not submitted yet" + (f" ({len(submitted)} already submitted)"
                                                             if submitted else "")
            base = dict(key=keys[Action.SUBMIT], action=Action.SUBMIT, dataset=spec.name, benchmark=label,
                        endpoint="PUT /results/{id}/", sends=SUBMIT_SHOWN,
                        args={**common, "models": to_submit, "submitted": submitted, "more": unknown_rest},
                        after=tuple(k for k in (gate_key,) if k))
            steps.append(_with_consent(spec, "results", "the models' metrics", reason, base, interactive=interactive))
    return steps, notes


ASSOCIATE_SHOWN = ("test_result",)  # with dataset, benchmark, approval_status=PENDING (privacy allowlist)
RUN_SHOWN = ("model_report", "evaluation_report")  # status reports (execution_status only) on the result record
SUBMIT_SHOWN = ("results", "partial")


def _executed(obs: Observation, result_id: int) -> bool:
    local = obs.local_results.get(result_id)
    return local is not None and local.executed


def _prep_of(spec: DatasetSpec, obs: Observation) -> int | None:
    record = resolve(spec.prepare_with, obs, where=spec.where, dataset=spec.name)
    return record.data_preparation_mlcube if isinstance(record, RemoteBenchmark) else record.id


def _models(spec: DatasetSpec, b: BenchmarkSpec, bench: RemoteBenchmark, listed: tuple[int, ...] | None,
            obs: Observation, where: str | None) -> tuple[list[int], bool]:
    """The models to run, in the server's priority order with the reference model last (as MedPerf appends it),
    and whether more are to come once the server lists them (it does not before approval)."""
    ref = bench.reference_model
    if b.models == "all":
        if listed is None:
            return ([ref] if ref is not None else []), True
        return [m for m in listed if m != ref] + ([ref] if ref is not None else []), False
    wanted: list[int] = []
    for m in b.models:
        if isinstance(m, str):
            if m not in obs.model_names:
                raise ParticipationError(f"dataset {spec.name}, benchmark {b.benchmark}: no model named {m!r} on "
                                         f"{obs.server_url}", where=where, hint="check the model's name or use its id")
            m = obs.model_names[m]
        wanted.append(int(m))
    if listed is not None:
        allowed = set(listed) | ({ref} if ref is not None else set())
        bad = [m for m in wanted if m not in allowed]
        if bad:
            names = {v: k for k, v in obs.model_names.items()}
            shown = ", ".join(f"{m}" + (f" ({names[m]})" if m in names else "") for m in bad)
            raise ParticipationError(
                f"dataset {spec.name}: model{'s' if len(bad) > 1 else ''} {shown} of the manifest "
                f"{'are' if len(bad) > 1 else 'is'} not associated with benchmark {bench.name} ({bench.id})",
                where=where, hint=f"the benchmark's models: {', '.join(str(m) for m in sorted(allowed))}")
        order = {m: i for i, m in enumerate(listed)}
        wanted.sort(key=lambda m: (m == ref, order.get(m, len(order))))
    else:
        wanted.sort(key=lambda m: m == ref)
    return list(dict.fromkeys(wanted)), False


def _with_consent(spec: DatasetSpec, what: str, shown: str, reason: str, base: dict, *, interactive: bool) -> Step:
    given = getattr(spec.consent, what)
    where = f" ({spec.where})" if spec.where else ""
    if given is True:
        return Step(change=Change.TODO, reason=reason, **base)
    if given is False:
        return Step(change=Change.GATE, reason=f"consent.{what} is false for dataset {spec.name}{where}: "
                    f"{shown} may not be sent", **base)
    if interactive:
        return Step(change=Change.TODO, reason=f"{reason}; needs consent to send {shown}: asked once before sending",
                    consent=what, **base)
    return Step(change=Change.GATE, reason=f"waits for consent to send {shown}: set consent.{what}: true under "
                f"dataset {spec.name}{where}", **base)


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
