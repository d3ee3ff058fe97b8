"""plan | apply | validate: load -> validate -> observe -> plan -> [confirm, apply] -> report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.apply.applier import Applier
from runner.apply.context import RunContext, WaitPolicy
from runner.clients import Api, ContainerRunner, Hasher
from runner.clients.retry import DEADLINE_S
from runner.console import Console
from runner.errors import ExitStatus, PlanFileError, StalePlan, UsageError
from runner.journal import write_atomic
from runner.load import Document, load
from runner.model import (
    FORMAT_VERSION,
    PLAN_FORMAT_VERSION,
    Change,
    Manifest,
    Observation,
    Outcome,
    OwnerManifest,
    Plan,
    RunModelArgs,
    RuntimeSpec,
    ServerSpec,
    Step,
    StepResult,
)
from runner.model import PlanFileError as BadPlanStep
from runner.observe import observe
from runner.owner import Shared, run_owner
from runner.plan import Selection, select
from runner.plan import plan as make_plan
from runner.report import plan as report
from runner.signals import Interruption
from runner.state import StateDir, ValidationCache, root_for
from runner.validate import digest, validate, validate_each

SLURM_PARALLEL = 8  # jobs in flight at once on Slurm unless --parallel says (the cluster queues the rest)


@dataclass(frozen=True)
class Options:
    """What plan, apply and validate are asked to do (cli.py fills it from argv)."""

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
    parallel: int | None = None  # model runs at once (--parallel); None: 1 here, SLURM_PARALLEL jobs on Slurm
    task_timeout: float | None = None  # apply --task-timeout: wall clock per container task
    task_idle_timeout: float | None = None  # apply --task-idle-timeout: no output for this long stops a task
    request_again: bool = False  # plan/apply --request-again: a REJECTED association is requested anew
    request_timeout: float = DEADLINE_S  # --request-timeout: one request, answer included
    ca_file: str | None = None  # --ca-file: a private CA (overrides server.ca_file)
    gpus: str | None = None  # apply --gpus (overrides runtime.gpus, which overrides each task's run_args.gpus)
    shm_size: str | None = None  # apply --shm-size (likewise)
    executor: str | None = None  # apply --executor docker|slurm (overrides runtime.executor)


@dataclass(frozen=True)
class Clients:
    """How to build the edges, decided in cli.py (tests pass fakes)."""

    state: Callable[..., StateDir]  # (root, read_only=False) -> StateDir
    api: Callable[[ServerSpec, StateDir], Api]  # (server, state) -> Api
    runner: Callable[..., ContainerRunner]  # (state, runtime) -> runner; called only when a container must run
    hasher: Hasher
    environ: Mapping[str, str] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep  # --wait's pauses (tests pass a fake clock)
    poll: tuple[float, float] = (5.0, 60.0)  # --wait polls after 5 s, doubling up to 60 s
    clock: Callable[[], float] = time.monotonic
    interruption: Interruption = field(default_factory=Interruption)  # set by SIGINT/SIGTERM (runner/signals.py)


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


@dataclass
class _Run:
    """One plan or apply: what the stages share."""

    opts: Options
    clients: Clients
    console: Console
    events: EventLog
    manifest: Manifest
    state: StateDir
    selected: Selection
    api: Api | None = None

    def observe_and_plan(self) -> tuple[Plan, Observation]:
        if self.api is None:
            self.api = self.clients.api(self.manifest.server, self.state)
        obs = observe(self.manifest, api=self.api, state=self.state, hasher=self.clients.hasher,
                      names=set(self.selected), progress=self.console.progress())
        return make_plan(self.manifest, obs, interactive=self.interactive, targets=self.opts.targets,
                         request_again=self.opts.request_again), obs

    @property
    def interactive(self) -> bool:
        return self.console.can_prompt and not self.opts.yes

    def show(self, plan: Plan, obs: Observation, **extra: Any) -> None:
        self.console.say(report.plan_text(plan, color=self.console.color))
        self.events.emit("plan", has_changes=plan.has_changes, steps=[s.to_dict() for s in plan.steps],
                         requests=obs.requests, **extra)


def reconcile(opts: Options, clients: Clients, console: Console) -> int:
    """Run plan, apply or validate; return the exit status (errors propagate to cli.py)."""
    started = time.monotonic()
    docs = load(opts.manifests, variables=opts.variables, environ=clients.environ)
    if opts.command == "validate":
        return _validated(validate_each(docs), console)
    state_root = state_root_of(docs, opts.state_dir, clients.environ)
    manifest = validate_cached(docs, ValidationCache(state_root))
    if isinstance(manifest, OwnerManifest):  # kind: BenchmarkOwner
        events = EventLog(opts.event_log)
        try:
            return run_owner(opts, clients, console, manifest, state_root, events,
                             Shared(load_plan_file, _stale, exit_code))
        except Exception as e:
            events.emit("error", error=str(e), exit_code=getattr(e, "exit_code", ExitStatus.ERROR))
            raise
        finally:
            events.close()
    if opts.executor is not None and opts.executor != manifest.runtime.executor:  # the plan says where tasks run
        manifest = replace(manifest, runtime=replace(manifest.runtime, executor=opts.executor))
    run = _Run(opts, clients, console, EventLog(opts.event_log), manifest,
               clients.state(state_root, read_only=opts.command == "plan"), select(manifest, opts.targets))
    try:
        if opts.command == "plan":
            return _plan(run)
        with run.state.lock(timeout=opts.lock_timeout) as held:
            if held.took_over is not None:
                console.warn(f"took over the lock of a run that died ({held.took_over.describe()}); "
                             "its unfinished steps are resolved by observing")
            return _apply(run, started)
    except Exception as e:
        run.events.emit("error", error=str(e), exit_code=getattr(e, "exit_code", ExitStatus.ERROR))
        raise
    finally:
        run.events.close()


def validate_cached(docs: Sequence[Document], cache: ValidationCache) -> Manifest | OwnerManifest:
    """Validate, skipping the schema for documents that passed it before; remember the ones that pass now."""
    key = digest(docs)
    known = cache.knows(key)
    manifest = validate(docs, known_valid=known)
    if not known:
        cache.remember(key)
    return manifest


def state_root_of(docs: Sequence[Document], override: str | None, environ: Mapping[str, str]) -> Path:
    """The state dir of the manifest's server (read before validation: validation caches its verdict there)."""
    server = docs[0].data.get("server") if isinstance(docs[0].data, dict) else None
    url = server.get("url") if isinstance(server, dict) and isinstance(server.get("url"), str) else "unknown"
    return root_for(url.rstrip("/"), override, environ)


def _validated(manifests: Sequence[Manifest | OwnerManifest], console: Console) -> int:
    files = [f for m in manifests for f in m.files]
    datasets = [d.name for m in manifests if isinstance(m, Manifest) for d in m.datasets]
    benchmarks = [str(b.benchmark) for m in manifests if isinstance(m, OwnerManifest) for b in m.benchmarks]
    n = len(datasets)
    counted = [f"{n} dataset{'s' if n != 1 else ''}"] if any(isinstance(m, Manifest) for m in manifests) else []
    if any(isinstance(m, OwnerManifest) for m in manifests):
        counted.append(f"{len(benchmarks)} benchmark{'s' if len(benchmarks) != 1 else ''} to decide on")
    text = f"valid: {len(files)} file(s), {', '.join(counted)} ({', '.join(files)})"
    if console.json_mode:
        console.document({"format_version": FORMAT_VERSION, "kind": "validate", "has_changes": False, "valid": True,
                          "files": files, "datasets": datasets, "benchmarks": benchmarks})
    console.say(text)
    return ExitStatus.OK


def _plan(run: _Run) -> int:
    the_plan, obs = run.observe_and_plan()
    run.show(the_plan, obs)
    doc = report.plan_document(the_plan)
    if run.opts.out:
        write_atomic(Path(run.opts.out), json.dumps(doc, indent=2, default=str) + "\n")
        run.console.say(f"Saved the plan to {run.opts.out}: apply it with `medperf-apply apply MANIFEST... "
                        f"{run.opts.out}`.")
    if run.console.json_mode:
        run.console.document(doc)
    return ExitStatus.CHANGES if the_plan.has_changes else ExitStatus.OK


def load_plan_file(path: str) -> Plan:
    """A saved plan of this version, or UsageError (an older or foreign file is refused, never misread)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the saved plan: {e}", where=path) from e
    if not isinstance(doc, dict) or doc.get("kind") != "plan":
        raise UsageError("not a medperf-apply plan file", where=path)
    if doc.get("format_version") != PLAN_FORMAT_VERSION:
        raise PlanFileError(f"the saved plan is of format_version {doc.get('format_version')!r}; this medperf-apply "
                            f"reads format_version {PLAN_FORMAT_VERSION}", where=path,
                            hint="run `medperf-apply plan ... -o FILE` again with this version")
    try:
        return Plan.from_dict(doc)
    except (BadPlanStep, KeyError, TypeError, ValueError) as e:
        raise PlanFileError(f"the saved plan is damaged ({e})", where=path,
                            hint="run `medperf-apply plan ... -o FILE` again") from e


def _stale(saved: Plan, current: Plan, path: str) -> None:
    if json.dumps(saved.fingerprint, sort_keys=True, default=str) != \
            json.dumps(current.fingerprint, sort_keys=True, default=str):
        changed = sorted(k for k in set(saved.fingerprint) | set(current.fingerprint)
                         if saved.fingerprint.get(k) != current.fingerprint.get(k))
        raise StalePlan(f"the saved plan is stale: what it observed has changed since ({', '.join(changed)})",
                        where=path, hint="run `medperf-apply plan ... -o FILE` again and review the new plan")


def _confirmed(run: _Run, the_plan: Plan) -> bool:
    todo = the_plan.todo
    if not todo or run.opts.yes or run.opts.plan_file:
        return True
    if not run.console.can_prompt:
        raise UsageError("there is no terminal to confirm the plan",
                         hint="pass --yes, or save a plan with `plan -o FILE` and apply that file")
    if run.console.confirm(f"Apply {len(todo)} step{'s' if len(todo) != 1 else ''}?"):
        return True
    run.console.say("Apply cancelled: nothing was done.")
    run.events.emit("cancelled")
    return False


def _apply(run: _Run, started: float) -> int:
    current, obs = run.observe_and_plan()
    the_plan = current
    if run.opts.plan_file:
        the_plan = load_plan_file(run.opts.plan_file)
        _stale(the_plan, current, run.opts.plan_file)
    run.show(the_plan, obs)
    if not _confirmed(run, the_plan):
        return ExitStatus.ERROR
    quiet: set[str] = set()  # steps pass one already reported as ok: pass two does not repeat them
    applier = _applier(run, the_plan, obs, quiet)
    results: list[StepResult] = []
    try:
        results = applier.run()
        if applier.approved_now and _has_unknown_models(the_plan):
            results, applier, the_plan = _second_pass(run, the_plan, results, quiet)
    except BaseException:
        run.console.say(report.recap(results + applier.results, elapsed_s=time.monotonic() - started)
                        .replace("Recap:", "Recap (interrupted):", 1))
        raise
    for w in applier.warnings:
        run.console.warn(w)
    elapsed = time.monotonic() - started
    run.console.say(report.recap(results, elapsed_s=elapsed))
    run.events.emit("recap", **report.counts(results), elapsed_s=round(elapsed, 3))
    if run.console.json_mode:
        run.console.document(report.apply_document(the_plan, results, elapsed_s=elapsed))
    return exit_code(results)


def _second_pass(run: _Run, first_plan: Plan, results: list[StepResult], quiet: set[str]
                 ) -> tuple[list[StepResult], Applier, Plan]:
    """The association was approved during this run: the benchmark now lists its models. Plan and run those."""
    run.console.say("The association was approved during this run: planning the benchmark's models.")
    second, obs = run.observe_and_plan()
    run.show(second, obs, second_pass=True)
    first_keys = {r.key for r in results}
    quiet.update(first_keys)
    applier = _applier(run, second, obs, quiet)
    merged = _merge(results, applier.run())
    the_plan = Plan(steps=first_plan.steps + tuple(s for s in second.steps if s.key not in first_keys),
                    notes=first_plan.notes, fingerprint=first_plan.fingerprint)
    return merged, applier, the_plan


def _applier(run: _Run, plan: Plan, obs: Observation, quiet: set[str]) -> Applier:
    console, events, clients, opts = run.console, run.events, run.clients, run.opts

    def on_start(step: Step) -> None:
        if step.change is Change.TODO:
            events.emit("step_start", key=step.key, action=step.action.value, dataset=step.dataset)

    def on_end(step: Step, result: StepResult) -> None:
        if result.outcome is Outcome.OK and step.key in quiet:
            return
        console.say(report.step_line(step, result, color=console.color))
        events.emit("step_end", **result.to_dict())

    def ask(step: Step, body: Mapping[str, Any]) -> bool:
        shown = json.dumps(body, indent=2, default=str)
        return console.confirm(f"Send this for dataset {step.dataset}?",
                               details=f"dataset {step.dataset}: {step.action.label} will send {step.endpoint or ''}:\n"
                               f"{shown}\n(set consent.{step.consent}: true in the manifest to stop this question)\n")

    ctx = RunContext(manifest=run.manifest, obs=obs, api=run.api, state=run.state, hasher=clients.hasher,
                     runner_factory=lambda: clients.runner(run.state, runtime_of(opts, run.manifest)),
                     ask=ask if run.interactive else None,
                     progress=console.progress(), clock=clients.clock, sleep=clients.sleep,
                     wait=WaitPolicy(opts.wait_timeout if opts.wait else None, *clients.poll), notify=console.say,
                     interrupted=clients.interruption.is_set)
    parallel = opts.parallel or (SLURM_PARALLEL if run.manifest.runtime.executor == "slurm" else 1)
    return Applier(ctx=ctx, plan=plan, on_start=on_start, on_end=on_end, parallel=max(1, parallel))


def runtime_of(opts: Options, manifest: Manifest) -> RuntimeSpec:
    """The containers' GPUs and shared memory: apply's options over the manifest's runtime (over run_args)."""
    site = manifest.runtime
    return RuntimeSpec(gpus=opts.gpus if opts.gpus is not None else site.gpus,
                       shm_size=opts.shm_size if opts.shm_size is not None else site.shm_size, where=site.where,
                       executor=opts.executor or site.executor, slurm=site.slurm)


def _merge(first: list[StepResult], second: list[StepResult]) -> list[StepResult]:
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
    return any(isinstance(s.args, RunModelArgs) and s.args.model is None for s in plan.steps)


def exit_code(results: Sequence[StepResult]) -> int:
    outcomes = {r.outcome for r in results}
    if Outcome.FAILED in outcomes or Outcome.SKIPPED in outcomes:
        return ExitStatus.ERROR
    if Outcome.PENDING in outcomes:
        return ExitStatus.GATE
    return ExitStatus.OK
