"""PURE: the benchmark owner's views: the plan of a BenchmarkOwner manifest (one block per benchmark) and the
`association list` table and its versioned JSON document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.model import FORMAT_VERSION, ApprovalStatus, Change, OwnerObservation, Plan, UserInfo
from runner.report.plan import _CHANGE_COLOUR, LABEL_COLUMN, _c, sends_text, summary
from runner.report.tables import align

ASSOCIATIONS_FORMAT_VERSION = FORMAT_VERSION


def owner_plan_text(plan: Plan, *, color: bool = False) -> str:
    """The plan: one block per benchmark, one line per decision with what it sends, notes, a summary line."""
    lines: list[str] = []
    benchmarks = list(dict.fromkeys(s.benchmark for s in plan.steps))
    for name in benchmarks:
        lines.append(_c(f"benchmark {name}", "1", color))
        block = [s for s in plan.steps if s.benchmark == name]
        width = max(LABEL_COLUMN - 4, *(len(s.label) + 2 for s in block))
        for s in block:
            lines.append(_c(f"  {s.change.value} ", _CHANGE_COLOUR[s.change], color) + f"{s.label:<{width}}"
                         + _detail(s).rstrip())
    for n in plan.notes:
        lines.append(f"note: {n.text}")
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"


def _detail(step) -> str:
    if step.change is not Change.TODO:
        return step.reason
    text = f"{step.endpoint}   {sends_text(step.sends)}"
    extra = "; ".join(t for t in (step.detail, step.reason if step.show_reason else "") if t)
    return text + (f"   ({extra})" if extra else "")


# -- association list ---------------------------------------------------------------------------------------------


def _metric(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def _user(u: UserInfo | None, user_id: int | None) -> dict[str, Any] | None:
    if user_id is None:
        return None
    u = u or UserInfo(id=user_id)
    return {"id": u.id, "username": u.username or None, "email": u.email or None, "name": u.name or None}


def association_rows(obs: OwnerObservation, *, benchmark: int | None = None,
                     status: ApprovalStatus | None = None) -> list[dict[str, Any]]:
    """The latest request of every dataset with my benchmarks (one benchmark, one status, when asked), newest first
    within each benchmark."""
    names = {b.id: b.name for b in obs.benchmarks}
    rows = []
    for (ds_id, b_id), a in obs.associations.items():
        if (benchmark is not None and b_id != benchmark) or (status is not None and a.approval_status is not status):
            continue
        info = obs.datasets.get(ds_id)
        rows.append({
            "benchmark": {"id": b_id, "name": names.get(b_id)},
            "dataset": {"id": ds_id, "name": info.name if info else None},
            "approval_status": a.approval_status.value,
            "initiated_by": _user(obs.users.get(a.initiated_by) if a.initiated_by is not None else None,
                                  a.initiated_by),
            "created_at": a.created_at or None,
            "approved_at": a.approved_at or None,
            "test_result": dict(a.test_result),
        })
    rows.sort(key=lambda r: (r["created_at"] or "", r["dataset"]["id"]), reverse=True)  # ISO stamps sort as text
    rows.sort(key=lambda r: r["benchmark"]["id"])  # stable: newest first within each benchmark
    return rows


def _who(u: dict[str, Any] | None) -> str:
    if u is None:
        return "-"
    name = u["name"] or u["username"]
    if name and u["email"] and name != u["email"]:
        return f"{name} <{u['email']}>"
    return name or u["email"] or f"user {u['id']}"


def _when(stamp: str | None) -> str:
    """An API time stamp (ISO 8601, UTC) to the minute: 2026-11-30 08:38 UTC."""
    if not stamp:
        return "-"
    day, _, time = stamp.partition("T")
    return f"{day} {time[:5]} UTC" if len(time) >= 5 and stamp.endswith(("Z", "+00:00")) else stamp


def _metrics_text(test_result: dict[str, Any]) -> str:
    if not test_result:
        return "-"
    return ", ".join(f"{k} {_metric(v)}" for k, v in sorted(test_result.items()))


def association_text(rows: Sequence[dict[str, Any]], *, benchmark: str | None = None,
                     status: str | None = None) -> str:
    """The table: benchmark, dataset, status, who asked, when, the compatibility test's metrics; a count line."""
    of = f" of benchmark {benchmark}" if benchmark else ""
    kind = f"{status} " if status else ""
    if not rows:
        return f"No {kind}association requests{of}.\n"
    cells = [["BENCHMARK", "DATASET", "STATUS", "REQUESTED BY", "REQUESTED AT", "COMPATIBILITY TEST"]]
    for r in rows:
        cells.append([f"{r['benchmark']['name'] or '?'} ({r['benchmark']['id']})",
                      f"{r['dataset']['name'] or '?'} ({r['dataset']['id']})", r["approval_status"],
                      _who(r["initiated_by"]), _when(r["created_at"]), _metrics_text(r["test_result"])])
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["approval_status"]] = counts.get(r["approval_status"], 0) + 1
    tail = "" if status else ": " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    n = len(rows)
    return "\n".join(align(cells, free_last=True)) + f"\n{n} {kind}request{'s' if n != 1 else ''}{of}{tail}.\n"


def association_document(rows: Sequence[dict[str, Any]], *, benchmark: int | None = None,
                         status: ApprovalStatus | None = None) -> dict[str, Any]:
    """The versioned JSON document of `association list` (metrics as the server holds them)."""
    return {"format_version": ASSOCIATIONS_FORMAT_VERSION, "kind": "associations", "has_changes": False,
            "filters": {"benchmark": benchmark, "status": status.value if status else None},
            "associations": list(rows)}
