"""The benchmark's steps: associate (the compatibility test, then the request), await approval (--wait polls),
run a model (infer + evaluate for one result record), submit (PUT results/{id}/ for each computed result).
Bodies are exactly the ones runner/privacy.py allows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.apply.context import RunContext, row_key
from runner.apply.execution import Computed, ModelExecution, cached, create_record
from runner.container_spec import ContainerSpec
from runner.errors import (
    AssociationRejected,
    MedperfApplyError,
    RunFailed,
    ServerError,
    ServerWriteUncertain,
    StepFailed,
)
from runner.model import (
    ApprovalStatus,
    AssociateArgs,
    AwaitApprovalArgs,
    ModelRun,
    Outcome,
    RemoteResult,
    RunModelArgs,
    Step,
    SubmitArgs,
)
from runner.observe import find_association
from runner.privacy import json_safe

# -- containers of the models and the evaluator, fetched only when something runs -----------------------------


def _model_spec(ctx: RunContext, model_id: int) -> ContainerSpec:
    def fetch() -> ContainerSpec:
        record = ctx.api.get(f"models/{model_id}/")
        container = record.get("container") if isinstance(record, dict) else None
        if record.get("type", "CONTAINER") != "CONTAINER" or not isinstance(container, dict):
            raise RunFailed(f"model {model_id} ({record.get('name', '?')}) is of type {record.get('type')}: only "
                            "container models are supported")
        return ContainerSpec.from_record(container)

    return ctx.memory.spec(("model", model_id), fetch)


def _mlcube_spec(ctx: RunContext, container_id: int) -> ContainerSpec:
    return ctx.memory.spec(("mlcube", container_id),
                           lambda: ContainerSpec.from_record(ctx.api.get(f"mlcubes/{container_id}/")))


def _name(benchmark_id: int, model: int, dataset_id: int) -> str:
    return f"b{benchmark_id}m{model}d{dataset_id}"


def _execute(ctx: RunContext, step: Step, *, benchmark_id: int, result_id: int, dataset_id: int, model: int,
             evaluator: int, ignore_model_errors: bool) -> Computed:
    """infer + evaluate for one record; the summary row is remembered whatever happens."""
    key = row_key(step, model)
    row = ModelRun(step.dataset, step.benchmark or "", model, result_id)
    try:
        model_spec, eval_spec = _model_spec(ctx, model), _mlcube_spec(ctx, evaluator)
        run = ModelExecution(ctx.api, ctx.state, ctx.container_runner(), warn=ctx.memory.warn,
                             on_line=ctx.progress.task, on_download=ctx.progress.download, on_end=ctx.progress.end,
                             interrupted=ctx.interrupted)
        computed = run.run(result_id=result_id, dataset_id=dataset_id, model=model_spec, evaluator=eval_spec,
                           ignore_model_errors=ignore_model_errors, label=f"{step.dataset}: model {model}",
                           info={"name": _name(benchmark_id, model, dataset_id), "benchmark": benchmark_id,
                                 "model": model, "dataset": dataset_id})
    except RunFailed as e:
        ctx.memory.set_row(key, ModelRun(row.dataset, row.benchmark, model, result_id, e.partial, False, str(e)))
        raise StepFailed(f"model {model}: {e}", log_path=e.log_path) from e
    except MedperfApplyError as e:
        ctx.memory.set_row(key, ModelRun(row.dataset, row.benchmark, model, result_id, False, False, str(e)))
        raise StepFailed(f"model {model}: {e}", log_path=e.log_path) from e
    ctx.memory.set_row(key, ModelRun(row.dataset, row.benchmark, model, result_id, computed.partial, False))
    return computed


def _metrics_text(metrics: Mapping[str, Any]) -> str:
    items = list(metrics.items())[:4]
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in items)


# -- associate ----------------------------------------------------------------------------------------------

def associate(ctx: RunContext, step: Step) -> str:
    """Compatibility test (the reference model + evaluator, as a result record b{B}m{M}d{D}), then the request."""
    a = step.args
    assert isinstance(a, AssociateArgs)
    ds_id, bid = ctx.dataset_id(step), int(a.benchmark_id)
    if a.skip_test:
        metrics, tested = {}, "compatibility test skipped (benchmark metadata)"
    else:
        computed = _reference_run(ctx, step, a, ds_id)
        metrics = computed.metrics
        tested = f"reference model {a.reference_model}: {_metrics_text(metrics)}" + \
            (" (from cache)" if computed.from_cache else "") + (" (partial)" if computed.partial else "")
    body = {"dataset": ds_id, "benchmark": bid, "approval_status": ApprovalStatus.PENDING.value,
            "metadata": {"test_result": json_safe(metrics)}}
    ctx.consent(step, body)
    with ctx.journal(step, dataset_id=ds_id, benchmark_id=bid):
        try:
            record = ctx.api.create("datasets/benchmarks/", body)
        except ServerWriteUncertain:
            found = find_association(ctx.api, ds_id, bid)  # did it land? never POST twice blindly
            if found is not None and found.approval_status in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED):
                record = {"approval_status": found.approval_status, "created_at": found.created_at}
            else:
                record = ctx.api.create("datasets/benchmarks/", body)
    status = ApprovalStatus(str(record.get("approval_status") or ApprovalStatus.PENDING))
    with ctx.memory.lock:
        ctx.memory.associations[(ds_id, bid)] = (status, str(record.get("created_at") or ""))
    what = "approved at once (auto-approval)" if status is ApprovalStatus.APPROVED else "requested (PENDING)"
    return f"association {what}; {tested}"


def _reference_run(ctx: RunContext, step: Step, a: AssociateArgs, ds_id: int) -> Computed:
    ref = int(a.reference_model)
    key = row_key(step, ref)
    rid = a.result_id
    if rid is not None:
        found = cached(ctx.state, int(rid))
        if found is not None:  # MedPerf reuses an executed reference run (its cache)
            ctx.memory.remember_result(key, found.result_id)
            ctx.memory.set_row(key, ModelRun(step.dataset, step.benchmark or "", ref, found.result_id,
                                             found.partial, True))
            return found
    with ctx.journal(step, dataset_id=ds_id, benchmark_id=a.benchmark_id, model=ref, part="compatibility test"):
        if rid is None:
            rid = create_record(ctx.api, name=_name(a.benchmark_id, ref, ds_id), benchmark=int(a.benchmark_id),
                                model=ref, dataset=ds_id)
        ctx.memory.remember_result(key, int(rid))
        return _execute(ctx, step, benchmark_id=int(a.benchmark_id), result_id=int(rid), dataset_id=ds_id,
                        model=ref, evaluator=int(a.evaluator), ignore_model_errors=False)


# -- await approval -----------------------------------------------------------------------------------------

def await_approval(ctx: RunContext, step: Step) -> tuple[Outcome, str]:
    """Approved -> ok; REJECTED -> fails at once; pending -> waits at the gate, or polls with --wait."""
    a = step.args
    assert isinstance(a, AwaitApprovalArgs)
    ds_id = a.dataset_id or ctx.memory.dataset_ids.get(step.dataset)
    bid = int(a.benchmark_id)
    if ds_id is None:
        return Outcome.PENDING, "waits for the dataset to be registered"
    ds_id = int(ds_id)
    status, since = ctx.memory.associations.get((ds_id, bid), (None, a.requested_at or ""))
    if status is None:
        found = find_association(ctx.api, ds_id, bid)  # the truth now, not at plan time
        status, since = (found.approval_status, found.created_at) if found else (None, since)
    if status is None:
        return Outcome.PENDING, "waits for the association request (it was not sent)"
    since_text = f" (requested {since})" if since else ""
    if status is ApprovalStatus.APPROVED:
        ctx.memory.approved_now.append(step.key)
        how = "approved at once (auto-approval)" if (ds_id, bid) in ctx.memory.associations else \
            "approved by the benchmark owner"
        return Outcome.OK, how
    if status is ApprovalStatus.REJECTED:
        raise _rejected(step, ds_id)
    if ctx.wait.timeout is None:
        return Outcome.PENDING, (f"waits for the benchmark owner to approve dataset {step.dataset} ({ds_id}) in "
                                 f"benchmark {step.benchmark}{since_text}; apply again later, or `apply --wait`")
    return _poll(ctx, step, ds_id, bid, since_text)


def _poll(ctx: RunContext, step: Step, ds_id: int, bid: int, since_text: str) -> tuple[Outcome, str]:
    """apply --wait: look again with growing pauses until approved, rejected or the timeout."""
    wait = ctx.wait
    start = ctx.clock()
    deadline = start + wait.timeout
    delay = wait.initial
    ctx.notify(f"waiting for the benchmark owner to approve dataset {step.dataset} ({ds_id}) in benchmark "
               f"{step.benchmark}{since_text}: polling every {_duration(wait.initial)} to "
               f"{_duration(wait.cap)}, for at most {_duration(wait.timeout)}")
    while True:
        remaining = deadline - ctx.clock()
        if remaining <= 0:
            return Outcome.PENDING, (f"still not approved after waiting {_duration(wait.timeout)}"
                                     f"{since_text}; apply again later")
        ctx.sleep(min(delay, remaining))
        delay = min(delay * 2, wait.cap)
        found = find_association(ctx.api, ds_id, bid)
        if found is not None and found.approval_status is ApprovalStatus.APPROVED:
            ctx.memory.approved_now.append(step.key)
            return Outcome.OK, f"approved by the benchmark owner after waiting {_duration(ctx.clock() - start)}"
        if found is not None and found.approval_status is ApprovalStatus.REJECTED:
            raise _rejected(step, ds_id)


def _rejected(step: Step, ds_id: int) -> AssociationRejected:
    return AssociationRejected(
        f"the benchmark owner REJECTED the association of dataset {step.dataset} ({ds_id}) with benchmark "
        f"{step.benchmark}", hint="talk to the benchmark owner; once they agree, send a new request (as `medperf "
        f"dataset associate` does after a rejection) with `medperf-apply apply MANIFEST --request-again --target "
        f"dataset/{step.dataset}/benchmark/{step.benchmark}`")


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


# -- run a model --------------------------------------------------------------------------------------------

def run_model(ctx: RunContext, step: Step) -> str:
    """Create (or reuse) the result record, run infer + evaluate, keep the results locally."""
    a = step.args
    assert isinstance(a, RunModelArgs)
    ds_id, model = ctx.dataset_id(step), int(a.model)
    rid = a.result_id
    with ctx.journal(step, dataset_id=ds_id, benchmark_id=a.benchmark_id, model=model, result_id=rid):
        if rid is None:
            rid = create_record(ctx.api, name=_name(a.benchmark_id, model, ds_id), benchmark=int(a.benchmark_id),
                                model=model, dataset=ds_id)
        ctx.memory.remember_result(row_key(step, model), int(rid))
        computed = _execute(ctx, step, benchmark_id=int(a.benchmark_id), result_id=int(rid), dataset_id=ds_id,
                            model=model, evaluator=int(a.evaluator), ignore_model_errors=a.ignore_model_errors)
    return f"result {rid}: {_metrics_text(computed.metrics)}" + (" (partial)" if computed.partial else "")


# -- submit -------------------------------------------------------------------------------------------------

def submit(ctx: RunContext, step: Step) -> str:
    """PUT results/{id}/ {results, metadata: {partial}} for every computed, unsubmitted result of the benchmark."""
    a = step.args
    assert isinstance(a, SubmitArgs)
    bodies: dict[int, dict[str, Any]] = {}
    missing: list[str] = []
    for m in a.models:
        rid = ctx.memory.result_id(row_key(step, m))
        found = cached(ctx.state, rid) if rid is not None else None
        if found is None:
            missing.append(f"model {m}" + (f" (result {rid})" if rid is not None else "") + " has no computed result")
            continue
        bodies[rid] = {"results": json_safe(dict(found.metrics)), "metadata": {"partial": found.partial}}
    if not bodies:
        raise StepFailed("nothing to submit: " + "; ".join(missing or ["no results"]))
    ctx.consent(step, {f"PUT /results/{rid}/": body for rid, body in bodies.items()})
    sent: list[int] = []
    with ctx.journal(step, results=sorted(bodies)):
        for rid, body in bodies.items():
            try:
                ctx.api.update(f"results/{rid}/", body)
            except ServerError as e:
                if e.status == 400 and _finalized(ctx, rid):  # submitted meanwhile: final, leave it alone
                    continue
                raise
            sent.append(rid)
    n = len(sent)
    text = f"submitted {n} result{'s' if n != 1 else ''} ({', '.join(str(r) for r in sent)})"
    if missing:
        text += "; not submitted: " + "; ".join(missing)
    return text


def _finalized(ctx: RunContext, result_id: int) -> bool:
    """Whether the server holds the result as final (a refused submission is explained by observing)."""
    try:
        return RemoteResult.from_record(ctx.api.get(f"results/{result_id}/")).finalized
    except (MedperfApplyError, KeyError, TypeError, ValueError):
        return False
