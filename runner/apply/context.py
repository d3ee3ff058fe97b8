"""What a run's step bodies share: the RunContext (clients, state dir, journal, consent, the container runner,
hashing) and the RunMemory (what this run learned: dataset ids, result ids, association answers, the model-run
table's rows, the container specs fetched), passed explicitly to apply/dataset.py and apply/benchmark.py."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.clients import Api, ContainerRunner, Hasher, NoProgress, Progress
from runner.container_spec import ContainerSpec
from runner.errors import ConsentDeclined, DriftError, Interrupted, StepFailed
from runner.hashing import HashCache
from runner.model import ApprovalStatus, Manifest, ModelRun, Observation, Step
from runner.state import StateDir

RowKey = tuple[str, str, int]  # (dataset, benchmark, model)


def row_key(step: Step, model: int) -> RowKey:
    return (step.dataset, step.benchmark or "", int(model))


@dataclass
class RunMemory:
    """What this run learned so far; shared by the steps (and the threads of --parallel), behind one lock."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    dataset_ids: dict[str, int] = field(default_factory=dict)  # dataset name -> id (registered this run or before)
    associations: dict[tuple[int, int], tuple[ApprovalStatus, str]] = field(default_factory=dict)  # sent now
    rows: dict[RowKey, ModelRun] = field(default_factory=dict)  # the model-run table
    result_ids: dict[RowKey, int] = field(default_factory=dict)
    specs: dict[tuple[str, int], ContainerSpec] = field(default_factory=dict)  # ("model"|"mlcube", id)
    approved_now: list[str] = field(default_factory=list)  # await steps that became approved during this run
    warnings: list[str] = field(default_factory=list)

    def remember_dataset(self, name: str, dataset_id: int) -> None:
        with self.lock:
            self.dataset_ids[name] = int(dataset_id)

    def remember_result(self, key: RowKey, result_id: int) -> None:
        with self.lock:
            self.result_ids[key] = int(result_id)

    def result_id(self, key: RowKey) -> int | None:
        with self.lock:
            return self.result_ids.get(key)

    def set_row(self, key: RowKey, row: ModelRun) -> None:
        with self.lock:
            self.rows[key] = row

    def row(self, key: RowKey) -> ModelRun | None:
        with self.lock:
            return self.rows.get(key)

    def spec(self, key: tuple[str, int], fetch: Callable[[], ContainerSpec]) -> ContainerSpec:
        """The container spec of a model or container, fetched once per run."""
        with self.lock:
            if key not in self.specs:
                self.specs[key] = fetch()
            return self.specs[key]

    def warn(self, text: str) -> None:
        with self.lock:
            self.warnings.append(text)


@dataclass(frozen=True)
class WaitPolicy:
    """apply --wait: poll an unapproved association this long, every `initial` s doubling up to `cap`."""

    timeout: float | None = None  # None: do not wait
    initial: float = 5.0
    cap: float = 60.0


@dataclass
class RunContext:
    """The clients and callbacks a run's steps use, built once by reconcile.py."""

    manifest: Manifest
    obs: Observation
    api: Api
    state: StateDir
    hasher: Hasher
    runner_factory: Callable[[], ContainerRunner]  # built only when a container must run
    ask: Callable[[Step, Mapping[str, Any]], bool] | None = None  # consent prompt (a terminal); None = cannot ask
    progress: Progress = field(default_factory=NoProgress)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wait: WaitPolicy = WaitPolicy()
    notify: Callable[[str], None] = lambda text: None  # a human line while a step runs
    interrupted: Callable[[], bool] = lambda: False  # SIGINT/SIGTERM came: nothing more is started or sent
    memory: RunMemory = field(default_factory=RunMemory)
    _runner: ContainerRunner | None = None
    _cache: HashCache | None = None

    @contextlib.contextmanager
    def journal(self, step: Step, **info: Any) -> Iterator[str]:
        """A journal entry around one mutating part of a step: begun before, ended with how it went."""
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

    def consent(self, step: Step, body: Mapping[str, Any]) -> None:
        """Ask once, showing exactly what will be sent, when the manifest has not said (a terminal only)."""
        if not step.consent:
            return
        if self.ask is None or not self.ask(step, body):
            raise ConsentDeclined(f"consent to send {step.consent} not given: nothing was sent; set "
                                  f"consent.{step.consent}: true under dataset {step.dataset} to go on")

    def stop_containers(self) -> None:
        """Stop every container task of this run that is still running (an interrupt, from the main thread)."""
        with self.memory.lock:
            runner = self._runner
        if runner is not None:
            runner.stop_all()

    def container_runner(self) -> ContainerRunner:
        with self.memory.lock:
            if self._runner is None:
                self._runner = self.runner_factory()
            return self._runner

    def hash(self, paths: Sequence[Path], name: str) -> str:
        if self._cache is None:
            self._cache = self.state.hash_cache()
        return self.hasher(list(paths), cache=self._cache, on_progress=self.progress.hashing(name))

    def raw_hash(self, dataset: str) -> str:
        """The raw folders' hash now; DriftError when it differs from what the plan saw."""
        spec = self.manifest.dataset(dataset)
        raw = self.hash([spec.data_path, spec.labels_path], f"{spec.name} (raw data)")
        planned = self.obs.raw_hashes.get(spec.name)
        if planned is not None and raw != planned:
            raise DriftError(f"dataset {spec.name}: the raw data changed since the plan (planned {planned}, "
                             f"now {raw})", hint="plan again")
        return raw

    def dataset_id(self, step: Step) -> int:
        ds_id = getattr(step.args, "dataset_id", None) or self.memory.dataset_ids.get(step.dataset)
        if ds_id is None:
            raise StepFailed(f"dataset {step.dataset} has no server id (register did not complete)")
        return int(ds_id)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
