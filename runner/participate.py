"""The benchmark steps of apply: associate (with the compatibility test), await approval, run a model, submit.

Each function takes the Applier (its clients, state dir, journal, consent prompt and the run's memory of
result ids) and one Step; apply.py dispatches to them. Bodies are exactly the ones privacy.py allows.
"""

from __future__ import annotations

from typing import Any

from runner.errors import AssociationRejected, MedperfApplyError, ServerError, ServerWriteUncertain
from runner.execution import Computed, ModelExecution, RunFailed, cached, create_record
from runner.model import Outcome, Step
from runner.observe import find_association
from runner.records import ModelRun

PENDING, APPROVED, REJECTED = "PENDING", "APPROVED", "REJECTED"


# -- containers of the models and the evaluator, fetched only when something runs -----------------------------

def _model_spec(app, model_id: int):
    from runner.container_spec import ContainerSpec

    with app._lock:
        key = ("model", model_id)
        if key not in app._specs:
            record = app.api.get(f"models/{model_id}/")
            container = record.get("container") if isinstance(record, dict) else None
            if record.get("type", "CONTAINER") != "CONTAINER" or not isinstance(container, dict):
                raise RunFailed(f"model {model_id} ({record.get('name', '?')}) is of type {record.get('type')}: only "
                                "container models are supported")
            app._specs[key] = ContainerSpec.from_record(container)
        return app._specs[key]


def _mlcube_spec(app, container_id: int):
    from runner.container_spec import ContainerSpec

    with app._lock:
        key = ("mlcube", container_id)
        if key not in app._specs:
            app._specs[key] = ContainerSpec.from_record(app.api.get(f"mlcubes/{container_id}/"))
        return app._specs[key]


def _row_key(step: Step, model: int) -> tuple[str, str, int]:
    return (step.dataset, step.benchmark or "", int(model))


def _execute(app, step: Step, *, result_id: int, dataset_id: int, model: int, evaluator: int,
             ignore_model_errors: bool) -> Computed:
    """infer + evaluate for one record; the summary row is remembered whatever happens."""
    from runner.apply import StepFailed

    key = _row_key(step, model)
    label = f"{step.dataset}: model {model}"
    try:
        model_spec, eval_spec = _model_spec(app, model), _mlcube_spec(app, evaluator)
        run = ModelExecution(app.api, app.state, app._container_runner(), warn=app.warnings.append,
                             on_line=app.progress.task)
        computed = run.run(result_id=result_id, dataset_id=dataset_id, model=model_spec, evaluator=eval_spec,
                           ignore_model_errors=ignore_model_errors, label=label,
                           info={"name": _name(step, model, dataset_id), "benchmark": step.args["benchmark_id"],
                                 "model": model, "dataset": dataset_id})
    except RunFailed as e:
        app._rows[key] = ModelRun(step.dataset, step.benchmark or "", model, result_id, e.partial, False, str(e))
        raise StepFailed(f"model {model}: {e}", log_path=e.log_path) from e
    except MedperfApplyError as e:
        app._rows[key] = ModelRun(step.dataset, step.benchmark or "", model, result_id, False, False, str(e))
        raise StepFailed(f"model {model}: {e}", log_path=getattr(e, "log_path", None)) from e
    app._rows[key] = ModelRun(step.dataset, step.benchmark or "", model, result_id, computed.partial, False)
    return computed


def _name(step: Step, model: int, dataset_id: int) -> str:
    return f"b{step.args['benchmark_id']}m{model}d{dataset_id}"


def _metrics_text(metrics) -> str:
    items = list(metrics.items())[:4]
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in items)


# -- associate ----------------------------------------------------------------------------------------------

def associate(app, step: Step) -> str:
    """Compatibility test (the reference model + evaluator, as a result record b{B}m{M}d{D}), then the request."""
    from runner.apply import json_safe

    a = step.args
    ds_id, bid = app._dataset_id(step), int(a["benchmark_id"])
    if a.get("skip_test"):
        metrics, tested = {}, "compatibility test skipped (benchmark metadata)"
    else:
        computed = _reference_run(app, step, ds_id)
        metrics = computed.metrics
        tested = f"reference model {a['reference_model']}: {_metrics_text(metrics)}" + \
            (" (from cache)" if computed.from_cache else "") + (" (partial)" if computed.partial else "")
    body = {"dataset": ds_id, "benchmark": bid, "approval_status": PENDING,
            "metadata": {"test_result": json_safe(metrics)}}
    app._consent(step, body)
    with app._journal(step, dataset_id=ds_id, benchmark_id=bid):
        try:
            record = app.api.create("datasets/benchmarks/", body)
        except ServerWriteUncertain:
            found = find_association(app.api, ds_id, bid)  # did it land? never POST twice blindly
            if found is not None and found.approval_status in (PENDING, APPROVED):
                record = {"approval_status": found.approval_status, "created_at": found.created_at}
            else:
                record = app.api.create("datasets/benchmarks/", body)
    status = str(record.get("approval_status") or PENDING)
    app._assoc[(ds_id, bid)] = (status, str(record.get("created_at") or ""))
    what = "approved at once (auto-approval)" if status == APPROVED else "requested (PENDING)"
    return f"association {what}; {tested}"


def _reference_run(app, step: Step, ds_id: int) -> Computed:
    a = step.args
    ref = int(a["reference_model"])
    key = _row_key(step, ref)
    rid = a.get("result_id")
    if rid is not None:
        found = cached(app.state, int(rid))
        if found is not None:  # MedPerf reuses an executed reference run (its cache)
            app._result_ids[key] = found.result_id
            app._rows[key] = ModelRun(step.dataset, step.benchmark or "", ref, found.result_id, found.partial, True)
            return found
    with app._journal(step, dataset_id=ds_id, benchmark_id=a["benchmark_id"], model=ref, part="compatibility test"):
        if rid is None:
            rid = create_record(app.api, name=_name(step, ref, ds_id), benchmark=int(a["benchmark_id"]), model=ref,
                                dataset=ds_id)
        app._result_ids[key] = int(rid)
        return _execute(app, step, result_id=int(rid), dataset_id=ds_id, model=ref, evaluator=int(a["evaluator"]),
                        ignore_model_errors=False)


# -- await approval -----------------------------------------------------------------------------------------

def await_approval(app, step: Step) -> tuple[Outcome, str]:
    """Approved -> ok; REJECTED -> fails at once; pending -> waits at the gate, or polls with --wait."""
    a = step.args
    ds_id = a.get("dataset_id") or app._ids.get(step.dataset)
    bid = int(a["benchmark_id"])
    if ds_id is None:
        return Outcome.PENDING, "waits for the dataset to be registered"
    ds_id = int(ds_id)
    status, since = app._assoc.get((ds_id, bid), (None, a.get("requested_at") or ""))
    if status is None:
        found = find_association(app.api, ds_id, bid)  # the truth now, not at plan time
        status, since = (found.approval_status, found.created_at) if found else (None, since)
    if status is None:
        return Outcome.PENDING, "waits for the association request (it was not sent)"
    since_text = f" (requested {since})" if since else ""
    if status == APPROVED:
        app.approved_now.append(step.key)
        how = "approved at once (auto-approval)" if (ds_id, bid) in app._assoc else "approved by the benchmark owner"
        return Outcome.OK, how
    if status == REJECTED:
        raise _rejected(step, ds_id)
    if app.wait_timeout is None:
        return Outcome.PENDING, (f"waits for the benchmark owner to approve dataset {step.dataset} ({ds_id}) in "
                                 f"benchmark {step.benchmark}{since_text}; apply again later, or `apply --wait`")
    start = app.clock()
    deadline = start + app.wait_timeout
    delay = app.poll_initial
    app.notify(f"waiting for the benchmark owner to approve dataset {step.dataset} ({ds_id}) in benchmark "
               f"{step.benchmark}{since_text}: polling every {_duration(app.poll_initial)} to "
               f"{_duration(app.poll_cap)}, for at most {_duration(app.wait_timeout)}")
    while True:
        remaining = deadline - app.clock()
        if remaining <= 0:
            return Outcome.PENDING, (f"still not approved after waiting {_duration(app.wait_timeout)}"
                                     f"{since_text}; apply again later")
        app.sleep(min(delay, remaining))
        delay = min(delay * 2, app.poll_cap)
        found = find_association(app.api, ds_id, bid)
        if found is not None and found.approval_status == APPROVED:
            app.approved_now.append(step.key)
            return Outcome.OK, f"approved by the benchmark owner after waiting {_duration(app.clock() - start)}"
        if found is not None and found.approval_status == REJECTED:
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

def run_model(app, step: Step) -> str:
    """Create (or reuse) the result record, run infer + evaluate, keep the results locally."""
    a = step.args
    ds_id, model = app._dataset_id(step), int(a["model"])
    rid = a.get("result_id")
    with app._journal(step, dataset_id=ds_id, benchmark_id=a["benchmark_id"], model=model, result_id=rid):
        if rid is None:
            rid = create_record(app.api, name=_name(step, model, ds_id), benchmark=int(a["benchmark_id"]),
                                model=model, dataset=ds_id)
        app._result_ids[_row_key(step, model)] = int(rid)
        computed = _execute(app, step, result_id=int(rid), dataset_id=ds_id, model=model,
                            evaluator=int(a["evaluator"]), ignore_model_errors=bool(a.get("ignore_model_errors")))
    return f"result {rid}: {_metrics_text(computed.metrics)}" + (" (partial)" if computed.partial else "")


# -- submit -------------------------------------------------------------------------------------------------

def submit(app, step: Step) -> str:
    """PUT results/{id}/ {results, metadata: {partial}} for every computed, unsubmitted result of the benchmark."""
    from runner.apply import StepFailed, json_safe

    a = step.args
    bodies: dict[int, dict[str, Any]] = {}
    missing: list[str] = []
    for m in a.get("models", []):
        rid = app._result_ids.get(_row_key(step, m))
        found = cached(app.state, rid) if rid is not None else None
        if found is None:
            missing.append(f"model {m}" + (f" (result {rid})" if rid is not None else "") + " has no computed result")
            continue
        bodies[rid] = {"results": json_safe(dict(found.metrics)), "metadata": {"partial": found.partial}}
    if not bodies:
        raise StepFailed("nothing to submit: " + "; ".join(missing or ["no results"]))
    app._consent(step, {f"PUT /results/{rid}/": body for rid, body in bodies.items()})
    sent: list[int] = []
    with app._journal(step, results=sorted(bodies)):
        for rid, body in bodies.items():
            try:
                app.api.update(f"results/{rid}/", body)
            except ServerError as e:
                if e.status == 400 and "finalized" in str(e):  # submitted meanwhile: final, leave it alone
                    continue
                raise
            sent.append(rid)
    n = len(sent)
    text = f"submitted {n} result{'s' if n != 1 else ''} ({', '.join(str(r) for r in sent)})"
    if missing:
        text += "; not submitted: " + "; ".join(missing)
    return text
