"""plan | apply of a BenchmarkOwner manifest: observe my benchmarks' association requests -> plan the decisions
(pure) -> [confirm, apply] -> report; reconcile.py hands a run here by the documents' kind."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.apply.applier import Applier
from runner.apply.context import RunContext
from runner.console import Console
from runner.errors import ExitStatus, UsageError
from runner.journal import write_atomic
from runner.model import Change, OwnerManifest, OwnerObservation, Plan, Step, StepResult
from runner.observe import observe_owner
from runner.plan import owner_plan
from runner.report import owner as owner_report
from runner.report import plan as report
from runner.state import StateDir

if TYPE_CHECKING:
    from runner.reconcile import Clients, EventLog, Options


@dataclass(frozen=True)
class Shared:
    """What reconcile.py lends an owner's run: its saved-plan reader, its staleness check, its exit status."""

    load_plan_file: Callable[[str], Plan]
    check_stale: Callable[[Plan, Plan, str], None]
    exit_code: Callable[[Sequence[StepResult]], int]


def run_owner(opts: Options, clients: Clients, console: Console, manifest: OwnerManifest, state_root: Path,
              events: EventLog, shared: Shared) -> int:
    """plan or apply the benchmark owner's decisions; return the exit status."""
    for flag, used in (("--target", opts.targets), ("--request-again", opts.request_again), ("--wait", opts.wait)):
        if used:
            raise UsageError(f"{flag} does not apply to a BenchmarkOwner manifest (it acts on a data owner's datasets)")
    started = time.monotonic()
    state = clients.state(state_root, read_only=opts.command == "plan")
    api = clients.api(manifest.server, state)

    def observe_and_plan() -> tuple[Plan, OwnerObservation]:
        obs = observe_owner(manifest.server.url, api)
        obs = replace(obs, unfinished=state.unfinished_steps())
        return owner_plan(manifest, obs), obs

    def show(plan: Plan, obs: OwnerObservation) -> None:
        console.say(owner_report.owner_plan_text(plan, color=console.color))
        events.emit("plan", has_changes=plan.has_changes, steps=[s.to_dict() for s in plan.steps],
                    requests=obs.requests)

    if opts.command == "plan":
        the_plan, obs = observe_and_plan()
        show(the_plan, obs)
        doc = report.plan_document(the_plan)
        if opts.out:
            write_atomic(Path(opts.out), json.dumps(doc, indent=2, default=str) + "\n")
            console.say(f"Saved the plan to {opts.out}: apply it with `medperf-apply apply MANIFEST... {opts.out}`.")
        if console.json_mode:
            console.document(doc)
        return ExitStatus.CHANGES if the_plan.has_changes else ExitStatus.OK
    with state.lock(timeout=opts.lock_timeout) as held:
        if held.took_over is not None:
            console.warn(f"took over the lock of a run that died ({held.took_over.describe()}); its unfinished steps "
                         "are resolved by observing")
        current, obs = observe_and_plan()
        the_plan = current
        if opts.plan_file:
            the_plan = shared.load_plan_file(opts.plan_file)
            shared.check_stale(the_plan, current, opts.plan_file)
        show(the_plan, obs)
        if not _confirmed(opts, console, events, the_plan):
            return ExitStatus.ERROR
        results = _apply(opts, clients, console, events, manifest, api, state, obs, the_plan, started)
        return shared.exit_code(results)


def _confirmed(opts: Options, console: Console, events: EventLog, plan: Plan) -> bool:
    todo = plan.todo
    if not todo or opts.yes or opts.plan_file:
        return True
    if not console.can_prompt:
        raise UsageError("there is no terminal to confirm the plan",
                         hint="pass --yes, or save a plan with `plan -o FILE` and apply that file")
    if console.confirm(f"Send {len(todo)} decision{'s' if len(todo) != 1 else ''}?"):
        return True
    console.say("Apply cancelled: nothing was done.")
    events.emit("cancelled")
    return False


def _apply(opts: Options, clients: Clients, console: Console, events: EventLog, manifest: OwnerManifest, api: Any,
           state: StateDir, obs: OwnerObservation, plan: Plan, started: float) -> list[StepResult]:
    def on_start(step: Step) -> None:
        if step.change is Change.TODO:
            events.emit("step_start", key=step.key, action=step.action.value, dataset=step.dataset)

    def on_end(step: Step, result: StepResult) -> None:
        console.say(report.step_line(step, result, color=console.color))
        events.emit("step_end", **result.to_dict())

    def no_containers():
        raise UsageError("a benchmark owner's decisions run no container (internal error)")

    ctx = RunContext(manifest=manifest, obs=obs, api=api, state=state, hasher=clients.hasher,  # type: ignore[arg-type]
                     runner_factory=no_containers, clock=clients.clock, sleep=clients.sleep, notify=console.say,
                     interrupted=clients.interruption.is_set)
    applier = Applier(ctx=ctx, plan=plan, on_start=on_start, on_end=on_end)
    results: list[StepResult] = []
    try:
        results = applier.run()
    except BaseException:
        console.say(report.recap(applier.results, elapsed_s=time.monotonic() - started)
                    .replace("Recap:", "Recap (interrupted):", 1))
        raise
    elapsed = time.monotonic() - started
    console.say(report.recap(results, elapsed_s=elapsed))
    events.emit("recap", **report.counts(results), elapsed_s=round(elapsed, 3))
    if console.json_mode:
        console.document(report.apply_document(plan, results, elapsed_s=elapsed))
    return results
