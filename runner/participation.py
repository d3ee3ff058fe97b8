"""PURE: the steps of one dataset's participation in one benchmark: associate, await approval, run models, submit.

Called by plan.py for each benchmark a dataset lists; no I/O. MedPerf's rules as the reference describes them:
latest association wins, the compatibility test is the reference model's run, the reference model runs last.
"""

from __future__ import annotations

from runner.errors import AssociationRejected, ParticipationError
from runner.model import (
    Action,
    AssociationGoal,
    BenchmarkSpec,
    Change,
    DatasetSpec,
    DesiredState,
    Note,
    Observation,
    Ref,
    RemoteBenchmark,
    ResultsGoal,
    Step,
)

PENDING, APPROVED, REJECTED = "PENDING", "APPROVED", "REJECTED"


def participation_steps(spec: DatasetSpec, b: BenchmarkSpec, obs: Observation, dataset_steps: list[Step], *,
                        interactive: bool, request_again: bool = False) -> tuple[list[Step], list[Note]]:
    """Steps for one benchmark of a dataset: associate, await approval, run models, submit (DESIGN 3-4)."""
    from runner.plan import resolve, step_key  # plan.py imports this module: its helpers are read at call time
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
    if status == REJECTED and not request_again:
        # Never asked again on its own (a nightly CI run would re-request after every rejection).
        raise AssociationRejected(
            f"dataset {spec.name} ({ds_id}): the association request with benchmark {bench.name} ({bench.id}) was "
            f"REJECTED (decided {assoc.approved_at or assoc.created_at}); it is not requested again on its own",
            where=where,
            hint=f"talk to the benchmark owner; once they agree, send a new request (as `medperf dataset associate` "
                 f"does after a rejection) with `medperf-apply apply MANIFEST --request-again --target "
                 f"dataset/{spec.name}/benchmark/{label}`")
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
            f"the last request was REJECTED ({assoc.approved_at or assoc.created_at}): requested again " \
            "(--request-again)"
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
    if b.models != "all" and listed is None:
        notes.append(Note(f"benchmark {label}: the server lists the benchmark's models once the association is "
                          "approved; the manifest's models are checked against them then", spec.name))
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
    from runner.plan import resolve

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
