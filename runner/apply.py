"""The only place that changes anything: executes a Plan's steps through the clients, journalled.

Before each mutating step a journal entry is written; every body sent passes the ledger and the privacy
allowlist (the ApiClient's before_send); local files are written atomically.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import (
    DriftError,
    Interrupted,
    MedperfApplyError,
    ServerWriteUncertain,
)
from runner.model import Action, Change, Manifest, Observation, Outcome, Plan, Step, StepResult
from runner.observe import find_dataset
from runner.plan import REGISTER_FIELDS, SET_OPERATIONAL_FIELDS
from runner.ports import Api, Hasher, NoProgress, Progress
from runner.records import ModelRun


class ConsentDeclined(MedperfApplyError):
    """The data owner did not consent to what a step would send: it waits (a gate), nothing was sent."""


class StepFailed(MedperfApplyError):
    """A step could not be done; the message says which part and where to look."""

    def __init__(self, message: str, *, log_path: str | None = None, **kw):
        super().__init__(message, **kw)
        self.log_path = log_path


@dataclass
class Applier:
    """Executes a plan's steps, in order, against the clients it is given."""

    manifest: Manifest
    plan: Plan
    obs: Observation
    api: Api
    state: Any  # runner.state.StateDir
    hasher: Hasher
    runner_factory: Callable[[], Any]  # -> ContainerRunner, built only when a container must run
    ask: Callable[[Step, Mapping[str, Any]], bool] | None = None  # consent prompt (a terminal); None = cannot ask
    progress: Progress = field(default_factory=NoProgress)
    on_start: Callable[[Step], None] = lambda step: None
    on_end: Callable[[Step, StepResult], None] = lambda step, result: None
    clock: Callable[[], float] = time.monotonic
    warnings: list[str] = field(default_factory=list)
    _ids: dict[str, int] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)  # how each step ended so far (also after Ctrl-C)
    _runner: Any = None
    _cache: Any = None
    wait_timeout: float | None = None  # apply --wait: poll an unapproved association this long (None: do not wait)
    sleep: Callable[[float], None] = time.sleep
    poll_initial: float = 5.0  # --wait polls after 5 s, doubling up to 60 s
    poll_cap: float = 60.0
    parallel: int = 1  # model runs at once (--parallel N)
    notify: Callable[[str], None] = lambda text: None  # a human line while a step runs (e.g. "waiting since...")
    approved_now: list[str] = field(default_factory=list)  # await steps that became approved during this run
    _assoc: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)  # requested now: status, when
    _rows: dict[tuple[str, str, int], ModelRun] = field(default_factory=dict)  # summary rows by (ds, bench, model)
    _result_ids: dict[tuple[str, str, int], int] = field(default_factory=dict)
    _specs: dict[tuple[str, int], Any] = field(default_factory=dict)  # ("model"|"mlcube", id) -> ContainerSpec
    _lock: Any = field(default_factory=lambda: __import__("threading").RLock())

    # -- driver -----------------------------------------------------------------------------------------------

    def run(self) -> list[StepResult]:
        """Do every step that can be done; return how each ended (in plan order)."""
        done: dict[str, StepResult] = {}
        self._resolve_unfinished()
        steps = list(self.plan.steps)
        try:
            i = 0
            while i < len(steps):
                group = [steps[i]]
                if self.parallel > 1 and _concurrent(steps[i]):
                    while i + len(group) < len(steps) and _concurrent(steps[i + len(group)]) and \
                            steps[i + len(group)].dataset == steps[i].dataset and \
                            steps[i + len(group)].benchmark == steps[i].benchmark:
                        group.append(steps[i + len(group)])
                if len(group) == 1:
                    self._record(group[0], self._started(group[0], done), done)
                else:
                    self._run_group(group, done)
                i += len(group)
        finally:
            self.progress.done()
            if self._cache is not None:
                self._cache.close()
        return list(self.results)

    def _started(self, step: Step, done: Mapping[str, StepResult]) -> StepResult:
        self.on_start(step)
        return self._one(step, done)

    def _record(self, step: Step, result: StepResult, done: dict[str, StepResult]) -> None:
        with self._lock:
            done[step.key] = result
            self.results.append(result)
            self.on_end(step, result)

    def _run_group(self, group: list[Step], done: dict[str, StepResult]) -> None:
        """Independent model runs of one benchmark, --parallel at a time; results kept in plan order."""
        from concurrent.futures import ThreadPoolExecutor

        self._container_runner()  # built once, before the threads share it
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="run-model") as pool:
            futures = [pool.submit(self._started, step, dict(done)) for step in group]
            outcomes = [f.result() for f in futures]
        for step, result in zip(group, outcomes, strict=True):
            self._record(step, result, done)

    def _resolve_unfinished(self) -> None:
        """Steps a crashed run left open were resolved by observing (the plan saw the truth): close them."""
        for entry in self.obs.unfinished:
            with contextlib.suppress(MedperfApplyError):
                self.state.journal.end(entry["id"], "resolved", by="observation")

    def _one(self, step: Step, done: Mapping[str, StepResult]) -> StepResult:
        if step.change is Change.DONE:
            if step.action is Action.REGISTER and step.args.get("dataset_id") is not None:
                self._ids[step.dataset] = int(step.args["dataset_id"])
            row = self._done_row(step)
            message = step.reason
            if step.args.get("by_association") and row is not None and row.result_id is not None:
                message = f"done by the association test (result {row.result_id})"
            return StepResult(step.key, Outcome.OK, 0.0, message, run=row)
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
        start = self.clock()
        try:
            message = self._do(step)
        except (Interrupted, KeyboardInterrupt) as e:
            raise e if isinstance(e, Interrupted) else Interrupted(
                f"interrupted during {step.key}; run again to resume") from e
        except ConsentDeclined as e:
            return StepResult(step.key, Outcome.PENDING, self.clock() - start, str(e))
        except StepFailed as e:
            return StepResult(step.key, Outcome.FAILED, self.clock() - start, str(e), e.log_path,
                              run=self._failed_row(step, str(e)))
        except MedperfApplyError as e:
            return StepResult(step.key, Outcome.FAILED, self.clock() - start, str(e),
                              getattr(e, "log_path", None), run=self._failed_row(step, str(e)))
        return StepResult(step.key, Outcome.CHANGED, self.clock() - start, message,
                          run=self._rows.get(_row_key(step)) if step.action is Action.RUN_MODEL else None)

    def _waiting(self, step: Step, done: Mapping[str, StepResult]) -> StepResult | None:
        """How this step ends without being tried when a step it needs waits or did not complete."""
        for dep in step.after:
            r = done.get(dep)
            if r is not None and r.outcome is Outcome.PENDING:
                return StepResult(step.key, Outcome.PENDING, 0.0, f"waits for {_short_key(dep)}")
            if r is not None and r.outcome not in (Outcome.OK, Outcome.CHANGED):
                return StepResult(step.key, Outcome.SKIPPED, 0.0, f"{_short_key(dep)} did not complete")
        return None

    def _do(self, step: Step) -> str:
        from runner import participate, preparation

        handler = {Action.REGISTER: self._register, Action.PREPARE: lambda s: preparation.prepare(self, s),
                   Action.SET_OPERATIONAL: self._set_operational,
                   Action.ASSOCIATE: lambda s: participate.associate(self, s),
                   Action.RUN_MODEL: lambda s: participate.run_model(self, s),
                   Action.SUBMIT: lambda s: participate.submit(self, s)}.get(step.action)
        if handler is None:
            raise StepFailed(f"{step.action.label} is not supported by this version")
        return handler(step)

    def _await(self, step: Step) -> StepResult:
        from runner import participate

        start = self.clock()
        try:
            outcome, message = participate.await_approval(self, step)
        except (Interrupted, KeyboardInterrupt) as e:
            raise e if isinstance(e, Interrupted) else Interrupted(
                f"interrupted while waiting for approval ({step.key}); run again to resume") from e
        except MedperfApplyError as e:
            return StepResult(step.key, Outcome.FAILED, self.clock() - start, str(e))
        return StepResult(step.key, outcome, self.clock() - start, message)

    # -- the summary table's rows ----------------------------------------------------------------------------

    def _row(self, step: Step, **kw) -> ModelRun:
        a = step.args
        return ModelRun(dataset=step.dataset, benchmark=step.benchmark or "", model=int(a["model"]),
                        **{"result_id": a.get("result_id"), "partial": bool(a.get("partial", False)),
                           "from_cache": bool(a.get("from_cache", False)), **kw})

    def _done_row(self, step: Step) -> ModelRun | None:
        if step.action is not Action.RUN_MODEL or step.args.get("model") is None:
            return None
        key = _row_key(step)
        if step.args.get("by_association"):
            row = self._rows.get(key)
            if row is None:
                return self._row(step, from_cache=False, error="the association test did not complete")
            return ModelRun(row.dataset, row.benchmark, row.model, row.result_id, row.partial, True, row.error)
        if step.args.get("result_id") is not None:
            self._result_ids[key] = int(step.args["result_id"])
        return self._row(step)

    def _failed_row(self, step: Step, error: str) -> ModelRun | None:
        if step.action is not Action.RUN_MODEL:
            return None
        row = self._rows.get(_row_key(step))
        return ModelRun(step.dataset, step.benchmark or "", int(step.args["model"]),
                        row.result_id if row else None, row.partial if row else False, False, error)

    @contextlib.contextmanager
    def _journal(self, step: Step, **info):
        entry = self.state.journal.begin(step.key, **info)
        try:
            yield entry
        except (Interrupted, KeyboardInterrupt):
            self.state.journal.end(entry, "interrupted")
            raise
        except BaseException as e:
            self.state.journal.end(entry, "failed", error=str(e)[:500])
            raise
        else:
            self.state.journal.end(entry, "changed")

    # -- helpers ----------------------------------------------------------------------------------------------

    def _hash(self, paths, name: str) -> str:
        if self._cache is None:
            self._cache = self.state.hash_cache()
        return self.hasher(list(paths), cache=self._cache, on_progress=self.progress.hashing(name))

    def _container_runner(self):
        if self._runner is None:
            self._runner = self.runner_factory()
        return self._runner

    def _dataset_id(self, step: Step) -> int:
        ds_id = step.args.get("dataset_id") or self._ids.get(step.dataset)
        if ds_id is None:
            raise StepFailed(f"dataset {step.dataset} has no server id (register did not complete)")
        return int(ds_id)

    def _raw_hash(self, step: Step) -> str:
        spec = self.manifest.dataset(step.dataset)
        raw = self._hash([spec.data_path, spec.labels_path], f"{spec.name} (raw data)")
        planned = self.obs.raw_hashes.get(spec.name)
        if planned is not None and raw != planned:
            raise DriftError(f"dataset {spec.name}: the raw data changed since the plan (planned {planned}, "
                             f"now {raw})", hint="plan again")
        return raw

    def _write_raw_yaml(self, ds_id: int, step: Step) -> None:
        from runner.state import write_yaml_atomic

        spec = self.manifest.dataset(step.dataset)
        write_yaml_atomic(self.state.dataset_dir(ds_id) / "raw.yaml",
                          {"data_path": str(spec.data_path), "labels_path": str(spec.labels_path)})

    # -- register ---------------------------------------------------------------------------------------------

    def _register(self, step: Step) -> str:
        spec = self.manifest.dataset(step.dataset)
        prep = int(step.args["data_preparation_mlcube"])
        raw = self._raw_hash(step)
        values = {"name": spec.name, "description": spec.description, "location": spec.location,
                  "input_data_hash": raw, "generated_uid": raw,  # MedPerf: the raw hash until set operational
                  "data_preparation_mlcube": prep, "split_seed": 0, "submitted_as_prepared": False,
                  "for_test": False, "generated_metadata": {}, "user_metadata": {}}
        body = {k: values[k] for k in REGISTER_FIELDS}
        with self._journal(step, dataset=spec.name, data_preparation_mlcube=prep, input_data_hash=raw):
            try:
                record = self.api.create("datasets/", body)
                ds_id = int(record["id"])
            except ServerWriteUncertain:
                # The POST may have landed: look before sending it again (never twice blindly).
                found = find_dataset(self.api, spec.name, prep)
                if found is not None and found.input_data_hash == raw:
                    ds_id = found.id
                else:
                    ds_id = int(self.api.create("datasets/", body)["id"])
            self._ids[spec.name] = ds_id
            self._write_raw_yaml(ds_id, step)
        return f"dataset {ds_id}"

    def _consent(self, step: Step, body: Mapping[str, Any]) -> None:
        """Ask once, showing exactly what will be sent, when the manifest has not said (a terminal only)."""
        if not step.consent:
            return
        if self.ask is None or not self.ask(step, body):
            raise ConsentDeclined(f"consent to send {step.consent} not given: nothing was sent; set "
                                  f"consent.{step.consent}: true under dataset {step.dataset} to go on")

    # -- set operational --------------------------------------------------------------------------------------

    def _set_operational(self, step: Step) -> str:
        spec = self.manifest.dataset(step.dataset)
        ds_id = self._dataset_id(step)
        root = self.state.dataset_dir(ds_id)
        if not (root / ".ready").exists():
            raise StepFailed(f"dataset {spec.name} ({ds_id}) is not prepared (no .ready in {root})")
        raw = self._raw_hash(step)
        prepared = self._hash([root / "data", root / "labels"], f"{spec.name} (prepared data)")
        stats = _read_statistics(root / "statistics.yaml")
        if not stats:
            raise StepFailed(f"dataset {spec.name}: {root / 'statistics.yaml'} is empty; prepare it again")
        values = {"input_data_hash": raw, "generated_uid": prepared, "generated_metadata": json_safe(stats),
                  "state": "OPERATION"}
        body = {k: values[k] for k in SET_OPERATIONAL_FIELDS}
        self._consent(step, body)
        with self._journal(step, dataset_id=ds_id, generated_uid=prepared):
            self.api.update(f"datasets/{ds_id}/", body)
        return f"dataset {ds_id} is operational (generated_uid {prepared[:12]}...)"


def _concurrent(step: Step) -> bool:
    return step.action is Action.RUN_MODEL and step.change is Change.TODO


def _row_key(step: Step) -> tuple[str, str, int]:
    return (step.dataset, step.benchmark or "", int(step.args.get("model") or 0))


def _short_key(key: str) -> str:
    """"dataset/d/benchmark/b/run_model/model/2" -> "run model 2"; "dataset/d/prepare" -> "prepare"."""
    parts = key.split("/")
    if parts[-1] == "await_approval":
        return "the benchmark owner's approval"
    if len(parts) >= 7 and parts[-2] == "model":
        return f"{parts[-3].replace('_', ' ')} {parts[-1]}"
    return parts[-1].replace("_", " ")


def json_safe(value: Any) -> Any:
    """As MedPerf sends them: NaN and infinities become the strings "nan", "Infinity", "-Infinity"."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return "nan" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _read_statistics(path: Path) -> dict | None:
    from runner.state import read_yaml

    data = read_yaml(path)
    return data if isinstance(data, dict) and data else None
