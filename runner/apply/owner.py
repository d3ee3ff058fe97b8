"""The benchmark owner's step: a decision on the latest association request of (dataset, benchmark), as MedPerf
takes it: PUT datasets/{D}/benchmarks/{B}/ {approval_status} on a PENDING request, or a new REJECTED row
(POST datasets/benchmarks/) to revoke an approval. The latest row is read again first: a decision already
taken is not sent twice, and one the plan did not expect is refused (plan again)."""

from __future__ import annotations

from runner.apply.context import RunContext
from runner.errors import ServerError, ServerWriteUncertain, StepFailed
from runner.model import DecideArgs, Step
from runner.observe import find_association


def decide(ctx: RunContext, step: Step) -> str:
    """Send the decision the plan holds; return what happened."""
    a = step.args
    assert isinstance(a, DecideArgs) and a.dataset_id is not None and a.benchmark_id is not None
    what = f"dataset {step.dataset} ({a.dataset_id}) with benchmark {step.benchmark} ({a.benchmark_id})"
    latest = find_association(ctx.api, a.dataset_id, a.benchmark_id)
    now = latest.approval_status.value if latest is not None else "no request"
    if now == a.status:
        return f"already {a.status} (decided since the plan)"
    if now != a.was:
        raise StepFailed(f"the request of {what} is {now} now, not {a.was} as planned: nothing was sent",
                         hint="plan again")
    try:
        with ctx.journal(step, dataset=a.dataset_id, benchmark=a.benchmark_id, status=a.status, revoke=a.revoke):
            try:
                if a.revoke:
                    ctx.api.create("datasets/benchmarks/", {"dataset": a.dataset_id, "benchmark": a.benchmark_id,
                                                            "approval_status": a.status, "metadata": {}})
                else:
                    ctx.api.update(f"datasets/{a.dataset_id}/benchmarks/{a.benchmark_id}/",
                                   {"approval_status": a.status})
            except ServerWriteUncertain:
                again = find_association(ctx.api, a.dataset_id, a.benchmark_id)  # never repeated blindly: observe
                if again is not None and again.approval_status.value == a.status:
                    return f"{a.status} (the answer was lost; the server holds it)"
                raise
    except ServerWriteUncertain:
        raise
    except ServerError as e:
        if e.status in (400, 403, 404):
            raise StepFailed(f"the server refused to {step.action.label} {what}: {e.message}",
                             hint="check the token is the benchmark owner's, then plan again") from e
        raise
    return f"{a.status}" + (" (approval revoked)" if a.revoke else "")
