"""The apply driver: runs a Plan's steps in order (independent model runs, and datasets, --parallel at a time),
ends each with an Outcome, skips what depends on a step that did not complete, and keeps the model-run table's rows.

Before each mutating part of a step a journal entry is written (RunContext.journal); every body sent passes the
privacy allowlist and the ledger (the API client's before_send).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from runner.apply import benchmark, dataset, owner
from runner.apply.context import RunContext, row_key
from runner.errors import ConsentDeclined, Interrupted, MedperfApplyError
from runner.model import Action, Change, ModelRun, Outcome, Plan, RunModelArgs, Step, StepResult

GROUP_STOP_S = 30.0  # after an interrupt, how long the parallel model runs get to stop their containers
_SLOT_POLL_S = 0.5  # a step waiting for a --parallel slot looks at the interruption this often
_RUNS_CONTAINERS = frozenset({Action.PREPARE, Action.ASSOCIATE, Action.RUN_MODEL})

_HANDLERS: dict[Action, Callable[[RunContext, Step], str]] = {
    Action.REGISTER: dataset.register, Action.UPDATE: dataset.update, Action.PREPARE: dataset.prepare,
    Action.SET_OPERATIONAL: dataset.set_operational, Action.ASSOCIATE: benchmark.associate,
    Action.RUN_MODEL: benchmark.run_model, Action.SUBMIT: benchmark.submit,
    Action.APPROVE: owner.decide, Action.REJECT: owner.decide,
}


@dataclass
class Applier:
    """Executes a plan's steps, in order, with the run's context."""

    ctx: RunContext
    plan: Plan
    on_start: Callable[[Step], None] = lambda step: None
    on_end: Callable[[Step, StepResult], None] = lambda step, result: None
    parallel: int = 1  # model runs at once (--parallel N)
    results: list[StepResult] = field(default_factory=list)  # how each step ended so far (also after Ctrl-C)

    @property
    def warnings(self) -> list[str]:
        return self.ctx.memory.warnings

    @property
    def approved_now(self) -> list[str]:
        return self.ctx.memory.approved_now

    def run(self) -> list[StepResult]:
        """Do every step that can be done; return how each ended (in plan order)."""
        done: dict[str, StepResult] = {}
        self._resolve_unfinished()
        steps = list(self.plan.steps)
        self._slots = threading.BoundedSemaphore(max(1, self.parallel))
        blocks = _dataset_blocks(steps)
        try:
            if self.parallel > 1 and len(blocks) > 1 and self.ctx.ask is None:
                self._run_blocks(blocks, done)
            else:
                self._run_steps(steps, done)
        finally:
            self.ctx.progress.done()
            self.ctx.close()
            order = {s.key: i for i, s in enumerate(steps)}
            with self.ctx.memory.lock:
                self.results.sort(key=lambda r: order.get(r.key, len(order)))
        return list(self.results)

    def _run_steps(self, steps: list[Step], done: dict[str, StepResult]) -> None:
        i = 0
        while i < len(steps):
            group = self._group(steps, i)
            if len(group) == 1:
                self._record(group[0], self._started(group[0], done), done)
            else:
                self._run_group(group, done)
            i += len(group)

    def _run_blocks(self, blocks: list[list[Step]], done: dict[str, StepResult]) -> None:
        """Independent datasets at once (--parallel, no prompts): each dataset's steps in order in a worker; the
        container steps of all of them share --parallel slots, so that many tasks (jobs) are in flight at most.

        An interrupt reaches the main thread only: it stops the workers' containers (cancels their jobs); the
        workers, seeing the run interrupted, start and send nothing more."""
        self.ctx.container_runner()  # built once, before the threads share it
        pool = ThreadPoolExecutor(max_workers=min(self.parallel, len(blocks)), thread_name_prefix="dataset")
        futures = [pool.submit(self._run_steps, block, done) for block in blocks]
        try:
            for f in futures:
                f.result()
        except KeyboardInterrupt as e:
            self.ctx.stop_containers()
            pool.shutdown(wait=False, cancel_futures=True)
            wait([f for f in futures if not f.cancelled()], timeout=GROUP_STOP_S)
            raise e if isinstance(e, Interrupted) else Interrupted("interrupted while datasets ran in parallel") from e
        pool.shutdown()

    def _group(self, steps: list[Step], i: int) -> list[Step]:
        """The step at i, with the independent model runs of the same benchmark after it (--parallel)."""
        group = [steps[i]]
        if self.parallel > 1 and _concurrent(steps[i]):
            while i + len(group) < len(steps):
                nxt = steps[i + len(group)]
                if not (_concurrent(nxt) and nxt.dataset == steps[i].dataset and nxt.benchmark == steps[i].benchmark):
                    break
                group.append(nxt)
        return group

    def _started(self, step: Step, done: Mapping[str, StepResult]) -> StepResult:
        self.on_start(step)
        return self._one(step, done)

    def _record(self, step: Step, result: StepResult, done: dict[str, StepResult]) -> None:
        with self.ctx.memory.lock:
            done[step.key] = result
            self.results.append(result)
            self.on_end(step, result)

    def _run_group(self, group: list[Step], done: dict[str, StepResult]) -> None:
        """Independent model runs of one benchmark, --parallel at a time; results kept in plan order.

        An interrupt reaches the main thread only: it stops the workers' containers, and the workers, seeing the
        run interrupted, send nothing more (but their "interrupted" reports) and end."""
        self.ctx.container_runner()  # built once, before the threads share it
        pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="run-model")
        with self.ctx.memory.lock:  # other datasets' workers may be recording meanwhile
            seen = dict(done)
        futures = [pool.submit(self._started, step, seen) for step in group]
        try:
            outcomes = [f.result() for f in futures]
        except KeyboardInterrupt as e:
            self.ctx.stop_containers()
            pool.shutdown(wait=False, cancel_futures=True)
            wait([f for f in futures if not f.cancelled()], timeout=GROUP_STOP_S)  # (wait() never sees a
            # future cancelled before it ran as done)
            for step, f in zip(group, futures, strict=True):
                if f.done() and not f.cancelled() and f.exception() is None:
                    self._record(step, f.result(), done)  # finished before the interrupt: said in the recap
            raise e if isinstance(e, Interrupted) else Interrupted("interrupted while models ran in parallel") from e
        pool.shutdown()
        for step, result in zip(group, outcomes, strict=True):
            self._record(step, result, done)

    def _resolve_unfinished(self) -> None:
        """Steps a crashed run left open were resolved by observing (the plan saw the truth): close them."""
        for entry in self.ctx.obs.unfinished:
            with contextlib.suppress(MedperfApplyError):
                self.ctx.state.journal.end(entry["id"], "resolved", by="observation")

    def _one(self, step: Step, done: Mapping[str, StepResult]) -> StepResult:
        if self.ctx.interrupted():  # a worker of a parallel group, after the main thread was interrupted
            raise Interrupted(f"not started: {step.key}")
        if step.change is Change.DONE:
            return self._already_done(step)
        waiting = self._waiting(step, done)
        if step.change is Change.GATE and step.action is Action.AWAIT_APPROVAL:
            return waiting or self._await(step)
        if step.change is Change.GATE and step.action is Action.RUN_MODEL:  # "the other approved models"
            gate = done.get(step.after[0]) if step.after else None
            if gate is not None and gate.outcome is Outcome.OK:
                return StepResult(step.key, Outcome.OK, 0.0, "approved now: the models are planned again below")
            return StepResult(step.key, Outcome.PENDING, 0.0, step.reason)
        if step.change is Change.GATE:
            return StepResult(step.key, Outcome.PENDING, 0.0, step.reason)
        if waiting is not None:
            if step.action is Action.RUN_MODEL and waiting.outcome is Outcome.SKIPPED:  # in the table as not run
                return StepResult(waiting.key, waiting.outcome, 0.0, waiting.message,
                                  run=self._row(step, error=f"not run: {waiting.message}"))
            return waiting
        return self._do(step)

    def _do(self, step: Step) -> StepResult:
        start = self.ctx.clock()
        try:
            with self._slot(step):
                message = _HANDLERS[step.action](self.ctx, step)
        except (Interrupted, KeyboardInterrupt) as e:
            raise e if isinstance(e, Interrupted) else Interrupted(f"interrupted during {step.key}") from e
        except ConsentDeclined as e:
            return StepResult(step.key, Outcome.PENDING, self.ctx.clock() - start, str(e))
        except MedperfApplyError as e:
            return StepResult(step.key, Outcome.FAILED, self.ctx.clock() - start, str(e), e.log_path,
                              run=self._failed_row(step, str(e)))
        run = self.ctx.memory.row(self._row_key(step)) if step.action is Action.RUN_MODEL else None
        return StepResult(step.key, Outcome.CHANGED, self.ctx.clock() - start, message, run=run)

    @contextlib.contextmanager
    def _slot(self, step: Step) -> Iterator[None]:
        """One of the --parallel slots for a step that runs containers (waited for; given up on an interrupt)."""
        if step.action not in _RUNS_CONTAINERS:
            yield
            return
        while not self._slots.acquire(timeout=_SLOT_POLL_S):
            if self.ctx.interrupted():
                raise Interrupted(f"not started: {step.key}")
        try:
            yield
        finally:
            self._slots.release()

    def _already_done(self, step: Step) -> StepResult:
        if step.action is Action.REGISTER and step.args.dataset_id is not None:
            self.ctx.memory.remember_dataset(step.dataset, step.args.dataset_id)
        row = self._done_row(step)
        message = step.reason
        if isinstance(step.args, RunModelArgs) and step.args.by_association and row is not None \
                and row.result_id is not None:
            message = f"done by the association test (result {row.result_id})"
        return StepResult(step.key, Outcome.OK, 0.0, message, run=row)

    def _waiting(self, step: Step, done: Mapping[str, StepResult]) -> StepResult | None:
        """How this step ends without being tried when a step it needs waits or did not complete."""
        for dep in step.after:
            r = done.get(dep)
            if r is not None and r.outcome is Outcome.PENDING:
                return StepResult(step.key, Outcome.PENDING, 0.0, f"waits for {self._called(dep)}")
            if r is not None and r.outcome not in (Outcome.OK, Outcome.CHANGED):
                return StepResult(step.key, Outcome.SKIPPED, 0.0, f"{self._called(dep)} did not complete")
        return None

    def _called(self, key: str) -> str:
        """How a step is named in another's message: "run model 2", "prepare", "the benchmark owner's approval"."""
        step = self.plan.step(key)
        if step is None:
            return key
        if step.action is Action.AWAIT_APPROVAL:
            return "the benchmark owner's approval"
        if isinstance(step.args, RunModelArgs) and step.args.model is not None:
            return f"run model {step.args.model}"
        return step.action.label

    def _await(self, step: Step) -> StepResult:
        start = self.ctx.clock()
        try:
            outcome, message = benchmark.await_approval(self.ctx, step)
        except (Interrupted, KeyboardInterrupt) as e:
            raise e if isinstance(e, Interrupted) else Interrupted(
                f"interrupted while waiting for approval ({step.key})") from e
        except MedperfApplyError as e:
            return StepResult(step.key, Outcome.FAILED, self.ctx.clock() - start, str(e))
        return StepResult(step.key, outcome, self.ctx.clock() - start, message)

    # -- the summary table's rows ----------------------------------------------------------------------------

    @staticmethod
    def _row_key(step: Step) -> tuple[str, str, int]:
        return row_key(step, int(getattr(step.args, "model", None) or 0))

    def _row(self, step: Step, **kw) -> ModelRun:
        a = step.args
        assert isinstance(a, RunModelArgs)
        return ModelRun(dataset=step.dataset, benchmark=step.benchmark or "", model=int(a.model),
                        **{"result_id": a.result_id, "partial": a.partial, "from_cache": a.from_cache, **kw})

    def _done_row(self, step: Step) -> ModelRun | None:
        a = step.args
        if not isinstance(a, RunModelArgs) or a.model is None:
            return None
        key = self._row_key(step)
        if a.by_association:
            row = self.ctx.memory.row(key)
            if row is None:
                return self._row(step, from_cache=False, error="the association test did not complete")
            return ModelRun(row.dataset, row.benchmark, row.model, row.result_id, row.partial, True, row.error)
        if a.result_id is not None:
            self.ctx.memory.remember_result(key, a.result_id)
        return self._row(step)

    def _failed_row(self, step: Step, error: str) -> ModelRun | None:
        if not isinstance(step.args, RunModelArgs):
            return None
        row = self.ctx.memory.row(self._row_key(step))
        return ModelRun(step.dataset, step.benchmark or "", int(step.args.model),
                        row.result_id if row else None, row.partial if row else False, False, error)


def _dataset_blocks(steps: list[Step]) -> list[list[Step]]:
    """The plan's steps, dataset by dataset; one block when a step needs another dataset's (not independent)."""
    blocks: dict[str, list[Step]] = {}
    for s in steps:
        blocks.setdefault(s.dataset, []).append(s)
    owner = {s.key: s.dataset for s in steps}
    if any(owner.get(dep, s.dataset) != s.dataset for s in steps for dep in s.after):
        return [steps]
    return list(blocks.values())


def _concurrent(step: Step) -> bool:
    return step.action is Action.RUN_MODEL and step.change is Change.TODO
