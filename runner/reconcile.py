"""The pipeline in one short function: load -> validate -> observe -> plan -> (confirm) -> apply -> report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import report
from runner.console import Console
from runner.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_GATE, EXIT_OK, StalePlan, UsageError
from runner.load import load
from runner.model import FORMAT_VERSION, Change, Manifest, Outcome, Plan, ServerSpec, Step
from runner.ports import Api, Hasher


@dataclass(frozen=True)
class Options:
    command: str  # "plan" | "apply" | "validate"
    manifests: tuple[str, ...]
    variables: Mapping[str, Any] = field(default_factory=dict)
    plan_file: str | None = None  # apply a saved plan
    out: str | None = None  # plan -o FILE
    output: str = "text"
    event_log: str | None = None
    targets: tuple[str, ...] = ()
    state_dir: str | None = None
    lock_timeout: float = 0.0
    yes: bool = False
    wait: bool = False  # apply --wait: poll an unapproved association until approved or the timeout
    wait_timeout: float = 6 * 3600.0
    parallel: int = 1  # model runs at once
    benchmark: str | None = None  # results --benchmark
    format: str = "table"  # results --format table|yaml|json
    task_timeout: float | None = None  # apply --task-timeout: wall clock per container task
    task_idle_timeout: float | None = None  # apply --task-idle-timeout: no output for this long stops a task
    request_again: bool = False  # plan/apply --request-again: a REJECTED association is requested anew


@dataclass(frozen=True)
class Clients:
    """How to build the edges, decided in cli.py (tests pass fakes)."""

    state: Callable[[Path], Any]  # root -> StateDir
    api: Callable[[ServerSpec, Any], Api]  # (server, state) -> Api
    runner: Callable[[Any], Any]  # state -> ContainerRunner (called only when a container must run)
    hasher: Hasher
    environ: Mapping[str, str] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep  # --wait's pauses (tests pass a fake clock)
    poll: tuple[float, float] = (5.0, 60.0)  # --wait polls after 5 s, doubling up to 60 s
    clock: Callable[[], float] = time.monotonic


class EventLog:
    """--event-log FILE: one JSON object per line, appended as things happen."""

    def __init__(self, path: str | None):
        self._f = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 - closed in close()

    def emit(self, kind: str, **data: Any) -> None:
        if self._f is not None:
            rec = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **report.event(kind, **data)}
            self._f.write(json.dumps(rec, default=str) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def reconcile(opts: Options, clients: Clients, console: Console) -> int:
    """Run one command of the pipeline; return its exit code (errors propagate to cli.py)."""
    from runner.validate import validate

    started = time.monotonic()
    if opts.command in ("status", "results"):
        from runner import status

        return status.status(opts, clients, console) if opts.command == "status" else \
            status.results(opts, clients, console)
    docs = load(opts.manifests, variables=opts.variables, environ=clients.environ)
    if opts.command == "validate":
        manifest = validate(docs)
        return _validated(manifest, console)
    from runner.plan import plan as make_plan
    from runner.plan import select

    state_root = _state_root(docs, opts)
    manifest = validate(docs, cache_dir=state_root / "validated")
    selected = select(manifest, opts.targets)
    state = clients.state(state_root)
    events = EventLog(opts.event_log)
    try:
        if opts.command == "plan":
            return _plan(opts, clients, console, events, manifest, state, selected, make_plan)
        with state.lock(timeout=opts.lock_timeout) as held:
            if getattr(held, "took_over", None) is not None:
                console.warn(f"took over the lock of a run that died ({held.took_over.describe()}); "
                             "its unfinished steps are resolved by observing")
            return _apply(opts, clients, console, events, manifest, state, selected, make_plan, started)
    except Exception as e:
        events.emit("error", error=str(e), exit_code=getattr(e, "exit_code", EXIT_ERROR))
        raise
    finally:
        events.close()


def _validated(manifest: Manifest, console: Console) -> int:
    n = len(manifest.datasets)
    text = f"valid: {len(manifest.files)} file(s), {n} dataset{'s' if n != 1 else ''} ({', '.join(manifest.files)})"
    if console.json_mode:
        console.document({"format_version": FORMAT_VERSION, "kind": "validate", "has_changes": False, "valid": True,
                          "files": list(manifest.files), "datasets": [d.name for d in manifest.datasets]})
    console.say(text)
    return EXIT_OK


def _state_root(docs, opts: Options) -> Path:
    from runner.state import StateDir

    server = docs[0].data.get("server") if isinstance(docs[0].data, dict) else None
    url = server.get("url") if isinstance(server, dict) and isinstance(server.get("url"), str) else "unknown"
    return StateDir.default_root(url.rstrip("/"), opts.state_dir)


def _interactive(opts: Options, console: Console) -> bool:
    return console.can_prompt and not opts.yes


def _observe_and_plan(opts, clients, console, manifest, state, selected, make_plan) -> tuple[Plan, Any, Any]:
    from runner.observe import observe

    api = clients.api(manifest.server, state)
    progress = console.progress()
    obs = observe(manifest, api=api, state=state, hasher=clients.hasher, names=set(selected), progress=progress)
    return make_plan(manifest, obs, interactive=_interactive(opts, console), targets=opts.targets,
                     request_again=opts.request_again), obs, api


def _plan(opts, clients, console, events, manifest, state, selected, make_plan) -> int:
    the_plan, obs, _ = _observe_and_plan(opts, clients, console, manifest, state, selected, make_plan)
    console.say(report.plan_text(the_plan, color=console.color))
    events.emit("plan", has_changes=the_plan.has_changes, steps=[s.to_dict() for s in the_plan.steps],
                requests=obs.requests)
    doc = report.plan_document(the_plan)
    if opts.out:
        from runner.state import write_atomic

        write_atomic(Path(opts.out), json.dumps(doc, indent=2, default=str) + "\n")
        console.say(f"Saved the plan to {opts.out}: apply it with `medperf-apply apply MANIFEST... {opts.out}`.")
    if console.json_mode:
        console.document(doc)
    return EXIT_CHANGES if the_plan.has_changes else EXIT_OK


def load_plan_file(path: str) -> Plan:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the saved plan: {e}", where=path) from e
    if not isinstance(doc, dict) or doc.get("kind") != "plan" or doc.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"not a medperf-apply plan file (format_version {FORMAT_VERSION})", where=path)
    return Plan.from_dict(doc)


def _stale(saved: Plan, current: Plan, path: str) -> None:
    if json.dumps(saved.fingerprint, sort_keys=True, default=str) != \
            json.dumps(current.fingerprint, sort_keys=True, default=str):
        changed = sorted(k for k in set(saved.fingerprint) | set(current.fingerprint)
                         if saved.fingerprint.get(k) != current.fingerprint.get(k))
        raise StalePlan(f"the saved plan is stale: what it observed has changed since ({', '.join(changed)})",
                        where=path, hint="run `medperf-apply plan ... -o FILE` again and review the new plan")


def _apply(opts, clients, console, events, manifest, state, selected, make_plan, started) -> int:
    from runner.apply import Applier

    current, obs, api = _observe_and_plan(opts, clients, console, manifest, state, selected, make_plan)
    the_plan = current
    if opts.plan_file:
        the_plan = load_plan_file(opts.plan_file)
        _stale(the_plan, current, opts.plan_file)
    console.say(report.plan_text(the_plan, color=console.color))
    events.emit("plan", has_changes=the_plan.has_changes, steps=[s.to_dict() for s in the_plan.steps],
                requests=obs.requests)
    todo = the_plan.todo
    if todo and not opts.yes and not opts.plan_file:
        if not console.can_prompt:
            raise UsageError("there is no terminal to confirm the plan",
                             hint="pass --yes, or save a plan with `plan -o FILE` and apply that file")
        if not console.confirm(f"Apply {len(todo)} step{'s' if len(todo) != 1 else ''}?"):
            console.say("Apply cancelled: nothing was done.")
            events.emit("cancelled")
            return EXIT_ERROR

    def on_start(step: Step) -> None:
        if step.change is Change.TODO:
            events.emit("step_start", key=step.key, action=step.action.value, dataset=step.dataset)

    quiet: set[str] = set()  # steps pass one already reported as ok: pass two does not repeat them

    def on_end(step: Step, result) -> None:
        if result.outcome is Outcome.OK and step.key in quiet:
            return
        console.say(report.step_line(step, result, color=console.color))
        events.emit("step_end", **result.to_dict())

    def ask(step: Step, body: Mapping[str, Any]) -> bool:
        shown = json.dumps(body, indent=2, default=str)
        console.stderr.write(f"dataset {step.dataset}: {step.action.label} will send {step.endpoint or ''}:\n"
                             f"{shown}\n(set consent.{step.consent}: true in the manifest to stop this question)\n")
        return console.confirm(f"Send this for dataset {step.dataset}?")

    def make_applier(plan: Plan, obs) -> Any:
        return Applier(manifest=manifest, plan=plan, obs=obs, api=api, state=state, hasher=clients.hasher,
                       runner_factory=lambda: clients.runner(state), progress=console.progress(),
                       ask=ask if _interactive(opts, console) else None, on_start=on_start, on_end=on_end,
                       wait_timeout=opts.wait_timeout if opts.wait else None, sleep=clients.sleep,
                       poll_initial=clients.poll[0], poll_cap=clients.poll[1], parallel=max(1, opts.parallel),
                       clock=clients.clock, notify=console.say)

    applier = make_applier(the_plan, obs)
    results: list = []
    try:
        results = applier.run()
        if applier.approved_now and _has_unknown_models(the_plan):
            # The association was approved during this run: the benchmark now lists its models. Plan those.
            from runner.observe import observe

            console.say("The association was approved during this run: planning the benchmark's models.")
            obs = observe(manifest, api=api, state=state, hasher=clients.hasher, names=set(selected),
                          progress=console.progress())
            second = make_plan(manifest, obs, interactive=_interactive(opts, console), targets=opts.targets,
                               request_again=opts.request_again)
            console.say(report.plan_text(second, color=console.color))
            events.emit("plan", has_changes=second.has_changes, steps=[s.to_dict() for s in second.steps],
                        requests=obs.requests, second_pass=True)
            first_keys = {r.key for r in results}
            quiet.update(first_keys)
            applier = make_applier(second, obs)
            results = _merge(results, applier.run())
            the_plan = Plan(steps=the_plan.steps + tuple(s for s in second.steps if s.key not in first_keys),
                            notes=the_plan.notes, fingerprint=the_plan.fingerprint)
    except BaseException:
        console.say(report.recap(results + applier.results, elapsed_s=time.monotonic() - started)
                    .replace("Recap:", "Recap (interrupted):", 1))
        raise
    for w in applier.warnings:
        console.warn(w)
    elapsed = time.monotonic() - started
    console.say(report.recap(results, elapsed_s=elapsed))
    events.emit("recap", **report.counts(results), elapsed_s=round(elapsed, 3))
    if console.json_mode:
        console.document(report.apply_document(the_plan, results, elapsed_s=elapsed))
    return exit_code(results)


def _merge(first: list, second: list) -> list:
    """One account of a two-pass apply: what pass two added or changed, not its re-confirmations of pass one;
    a model's row of pass one (e.g. run by the association test) moves to its place in pass two's order."""
    by_key = {r.key: r for r in first}
    second_keys = {r.key for r in second}
    merged = [r for r in first if not (r.run is not None and r.key in second_keys)]
    for r in second:
        prev = by_key.get(r.key)
        if prev is None:
            merged.append(r)
        elif prev.run is not None:
            merged.append(prev)
        elif r.outcome is not Outcome.OK:
            merged.append(r)
    return merged


def _has_unknown_models(plan: Plan) -> bool:
    return any(s.action.value == "run_model" and s.args.get("model") is None for s in plan.steps)


def exit_code(results: Sequence) -> int:
    outcomes = {r.outcome for r in results}
    if Outcome.FAILED in outcomes or Outcome.SKIPPED in outcomes:
        return EXIT_ERROR
    if Outcome.PENDING in outcomes:
        return EXIT_GATE
    return EXIT_OK
