"""PURE: Plan and StepResults -> the text plan, per-step lines, the recap, and JSON documents.

No I/O and no terminal handling here (runner/console.py prints, draws progress bars and asks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner.model import (
    FORMAT_VERSION,
    PLAN_FORMAT_VERSION,
    Action,
    Change,
    ModelRun,
    Outcome,
    Plan,
    PrepareArgs,
    RegisterArgs,
    Step,
    StepResult,
)
from runner.privacy import REGISTER_CONSTANTS
from runner.report.tables import align

LABEL_COLUMN = 26  # where a step's detail starts

_ANNOTATE = {"generated_metadata": "generated_metadata (statistics)", "test_result": "test_result (metrics)",
             "results": "results (metrics)", "report": "report (execution status)"}

_CHANGE_COLOUR = {Change.TODO: "32", Change.DONE: "2", Change.GATE: "33"}
_OUTCOME_COLOUR = {Outcome.OK: "32", Outcome.CHANGED: "33", Outcome.PENDING: "36", Outcome.FAILED: "31",
                   Outcome.SKIPPED: "2"}


def _c(text: str, code: str | None, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def sends_text(fields: Sequence[str], constants: Mapping[str, Any] | None = None) -> str:
    """"sends: a, b (what), c=0": the fields a step sends; constant ones with their value."""
    constants = constants or {}
    return "sends: " + ", ".join(f"{f}={_json(constants[f])}" if f in constants else _ANNOTATE.get(f, f)
                                 for f in fields)


def _json(v: Any) -> str:
    return {True: "true", False: "false"}.get(v, str(v)) if isinstance(v, bool) else \
        ("{}" if v == {} else str(v))


def detail(step: Step) -> str:
    """What the plan line says after the label."""
    if step.change is Change.DONE:
        return step.reason
    if step.change is Change.GATE:
        return step.reason + (f"; then {sends_text(step.sends)}" if step.sends else "")
    if step.action is Action.REGISTER:
        prepared = isinstance(step.args, RegisterArgs) and step.args.submitted_as_prepared
        constants = {**REGISTER_CONSTANTS, "submitted_as_prepared": prepared}
        return f"{step.endpoint}   {sends_text(step.sends, constants)}" + (f"   ({step.detail})" if step.detail else "")
    if step.action is Action.UPDATE:
        return f"{step.endpoint}   {step.detail}; {sends_text(step.sends)}"
    on = f"; {step.runs_on}" if step.runs_on else ""  # the executor, when not this machine's engine
    if isinstance(step.args, PrepareArgs) and (step.args.local_copy or step.args.as_prepared):
        return f"{step.detail}   (local only{on}; nothing sent)"
    if step.action in (Action.PREPARE, Action.RUN_MODEL):
        return f"{step.detail}   (local only{on}; status reports)" + \
            (f"   [{step.reason}]" if step.action is Action.RUN_MODEL and step.show_reason else "")
    text = step.detail or ""
    if step.sends:
        text = f"{text}; {sends_text(step.sends)}" if text else sends_text(step.sends)
    if step.consent:
        text += f"   (asks consent.{step.consent} first)"
    if step.runs_on:
        text += f"   (runs on {step.runs_on})"
    if step.action is Action.ASSOCIATE and step.show_reason:
        text += f"   [{step.reason}]"
    return text


def plan_text(plan: Plan, *, color: bool = False) -> str:
    """The plan: one block per dataset, one line per step, notes, a summary line."""
    lines: list[str] = []
    datasets = list(dict.fromkeys(s.dataset for s in plan.steps))
    for name in datasets:
        lines.append(_c(f"dataset {name}", "1", color))
        bench = None
        for s in (s for s in plan.steps if s.dataset == name):
            indent = "  "
            if s.benchmark is not None:
                if s.benchmark != bench:
                    bench = s.benchmark
                    lines.append(f"  benchmark {bench}")
                indent = "    "
            head = f"{indent}{_symbol(s)} "
            lines.append(_c(head, _CHANGE_COLOUR[s.change], color) + f"{s.label:<{LABEL_COLUMN - len(head)}}"
                         f"{detail(s)}".rstrip())
        for n in plan.notes:
            if n.dataset == name:
                lines.append(f"  note: {n.text}")
    for n in plan.notes:
        if n.dataset not in datasets:
            lines.append(f"note: {n.text}")
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"


def _symbol(step: Step) -> str:
    """"~" for a registered field changed in place, else the change's own symbol (+ = ?)."""
    return "~" if step.action is Action.UPDATE and step.change is Change.TODO else step.change.value


def summary(plan: Plan) -> str:
    todo, done, gates = plan.count(Change.TODO), plan.count(Change.DONE), plan.count(Change.GATE)
    parts = [f"{todo} to do", f"{done} already done"]
    if gates:
        parts.append(f"{gates} {'waits' if gates == 1 else 'wait'} on a gate")
    head = "Plan: " if plan.has_changes else "No changes. Plan: "
    return head + ", ".join(parts) + "."


def step_line(step: Step, result: StepResult, *, color: bool = False) -> str:
    """One line per finished step: outcome, dataset, step, duration, message."""
    where = f"{step.dataset}" + (f" / benchmark {step.benchmark}" if step.benchmark else "")
    if step.action in (Action.APPROVE, Action.REJECT):  # a benchmark owner's decision: its label names the dataset
        where = f"benchmark {step.benchmark}"
    text = f"{_c(f'{result.outcome.value:<8}', _OUTCOME_COLOUR.get(result.outcome), color)} {where}: {step.label:<16}" \
           f" {result.duration_s:7.1f}s"
    if result.message:
        text += f"  {result.message}"
    return text


def counts(results: Sequence[StepResult]) -> dict[str, int]:
    out = {o.value: 0 for o in Outcome}
    for r in results:
        out[r.outcome.value] += 1
    return out


def recap(results: Sequence[StepResult], *, elapsed_s: float | None = None) -> str:
    """The counts of outcomes, then MedPerf's summary table of model runs (one per dataset and benchmark)."""
    c = counts(results)
    text = "Recap: " + ", ".join(f"{v} {k}" for k, v in c.items())
    if elapsed_s is not None:
        text += f" ({elapsed_s:.1f}s)"
    text += "."
    tables = run_tables(results)
    return text + ("\n" + tables if tables else "")


def run_tables(results: Sequence[StepResult]) -> str:
    """MedPerf's `benchmark run` summary: model | result id | partial | from cache | error, and the totals."""
    groups: dict[tuple[str, str], list[ModelRun]] = {}
    for r in results:
        if r.run is not None:
            groups.setdefault((r.run.dataset, r.run.benchmark), []).append(r.run)
    out: list[str] = []
    for (dataset, benchmark), rows in groups.items():
        out.append(f"Model runs of dataset {dataset} in benchmark {benchmark}:")
        cells = [("model", "result id", "partial result", "from cache", "error")]
        for row in rows:
            failed = bool(row.error)
            cells.append((str(row.model), "" if row.result_id is None else str(row.result_id),
                          "" if failed else str(row.partial), "" if failed else str(row.from_cache),
                          _one_line(row.error)))
        out.extend(align(cells, indent="  ", free_last=True))
        cache = [r for r in rows if r.from_cache and not r.error]
        failed = [r for r in rows if r.error]
        ran = [r for r in rows if not r.from_cache and not r.error]
        out.append(f"Total number of models: {len(rows)}")
        out.append(f"    {len(cache)} were skipped (already executed), of which "
                   f"{sum(r.partial for r in cache)} have partial results")
        out.append(f"    {len(failed)} failed")
        out.append(f"    {len(ran)} ran successfully, of which {sum(r.partial for r in ran)} have partial results")
    return "\n".join(out)


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def plan_document(plan: Plan) -> dict[str, Any]:
    """The versioned JSON plan (also the saved plan file)."""
    return plan.to_dict()


def apply_document(plan: Plan, results: Sequence[StepResult], *, elapsed_s: float | None = None) -> dict[str, Any]:
    """The versioned JSON account of an apply: every step with its outcome."""
    by_key = {r.key: r for r in results}
    steps = []
    for s in plan.steps:
        d = s.to_dict()
        r = by_key.get(s.key)
        d["result"] = r.to_dict() if r else None
        steps.append(d)
    return {"format_version": PLAN_FORMAT_VERSION, "kind": "apply", "has_changes": plan.has_changes,
            "recap": counts(results), "elapsed_s": None if elapsed_s is None else round(elapsed_s, 3),
            "steps": steps, "notes": [n.to_dict() for n in plan.notes]}


def event(kind: str, **data: Any) -> dict[str, Any]:
    """One --event-log record (the caller adds the time)."""
    return {"format_version": FORMAT_VERSION, "event": kind, **data}


def error_document(message: str, exit_code: int, *, where: str | None = None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "kind": "error", "has_changes": False, "exit_code": exit_code,
            "error": message, "where": where, **(extra or {})}
