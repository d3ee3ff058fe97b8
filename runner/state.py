"""The state dir's layout: every file name of it is spelled here, and the local facts observe reads from it.

```
<root>/datasets/<id>/{data/, labels/, metadata/, logs/, statistics.yaml, report.yaml, raw.yaml, .ready}
<root>/results/<id>/{results.yaml, result-info.yaml, predictions/, logs/, local_outputs/, .partial, .executed}
<root>/{hash-cache.sqlite, journal.jsonl, ledger.jsonl, lock, containers/, validated/<manifest digest>}
<root>/slurm/<task key>/{task.json, marker, job.json, job.out, result.json, consumed}
```
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner.errors import StateError
from runner.hashing import HashCache
from runner.journal import Journal, Ledger, Lock, hold_lock, read_yaml, write_atomic, write_yaml_atomic
from runner.model import LocalDataset, LocalResult

ENV_HOME = "MEDPERF_APPLY_HOME"


def root_for(server_url: str, override: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The state dir: --state-dir, else $MEDPERF_APPLY_HOME, else ~/.medperf_apply/<host_port>/."""
    if override:
        return Path(override).expanduser().absolute()
    env = (os.environ if environ is None else environ).get(ENV_HOME)
    if env:
        return Path(env).expanduser().absolute()
    return Path.home() / ".medperf_apply" / server_dir_name(server_url)


class ValidationCache:
    """validated/<digest>: manifests that passed the schema before (jsonschema is not even imported for them)."""

    def __init__(self, state_root: Path):
        self.folder = Path(state_root) / "validated"

    def knows(self, key: str) -> bool:
        return (self.folder / key).exists()

    def remember(self, key: str) -> None:
        try:
            # The state dir may not exist yet: create it private (0700), as StateDir does, or it would stay
            # world-readable with the prepared data and results later written under it.
            self.folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.folder.mkdir(exist_ok=True)
            (self.folder / key).touch()
        except OSError:
            pass  # a cache only


@dataclass(frozen=True)
class DatasetDir:
    """datasets/<id>/: the prepared copy of one dataset, its statistics and the preparation's logs."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def statistics(self) -> Path:
        return self.root / "statistics.yaml"

    @property
    def report(self) -> Path:
        return self.root / "report.yaml"

    @property
    def raw_yaml(self) -> Path:
        return self.root / "raw.yaml"

    @property
    def ready(self) -> Path:
        """Written last by prepare: the prepared copy is complete and checked."""
        return self.root / ".ready"

    def is_ready(self) -> bool:
        return self.ready.exists()

    def has_copy(self) -> bool:
        """A complete prepared copy: .ready with its data and labels folders."""
        return self.ready.exists() and self.data.is_dir() and self.labels.is_dir()

    def read_statistics(self) -> dict | None:
        """The statistics task's output, or None when missing or empty (StateError when corrupt)."""
        data = read_yaml(self.statistics)
        return data if isinstance(data, dict) and data else None

    def write_raw_yaml(self, data_path: Path, labels_path: Path) -> None:
        write_yaml_atomic(self.raw_yaml, {"data_path": str(data_path), "labels_path": str(labels_path)})

    def mark_ready(self) -> None:
        write_atomic(self.ready, b"")

    def unmark_ready(self) -> None:
        self.ready.unlink(missing_ok=True)

    def facts(self, dataset_id: int) -> LocalDataset:
        return LocalDataset(id=dataset_id, has_raw_yaml=self.raw_yaml.is_file(), started=self.data.is_dir(),
                            ready=self.ready.exists(), has_statistics=self.statistics.is_file())


@dataclass(frozen=True)
class ResultDir:
    """results/<id>/: one model run on one dataset: predictions, metrics, logs, and whether it finished."""

    root: Path

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def local_outputs(self) -> Path:
        return self.root / "local_outputs"

    @property
    def results(self) -> Path:
        return self.root / "results.yaml"

    @property
    def results_new(self) -> Path:
        """Where evaluate writes; renamed into results.yaml once the run is complete."""
        return self.root / "results.new.yaml"

    @property
    def info(self) -> Path:
        return self.root / "result-info.yaml"

    @property
    def executed(self) -> Path:
        """Written last by a run: everything else of it is on disk."""
        return self.root / ".executed"

    @property
    def partial(self) -> Path:
        return self.root / ".partial"

    def read_metrics(self) -> dict | None:
        """The metrics of a finished run (.executed), or None."""
        if not self.executed.exists():
            return None
        metrics = read_yaml(self.results)
        return metrics if isinstance(metrics, dict) and metrics else None

    def is_partial(self) -> bool:
        return self.partial.exists()

    def facts(self, result_id: int) -> LocalResult:
        return LocalResult(id=result_id, executed=self.executed.exists(), partial=self.partial.exists())


class StateDir:
    """One server's local state: prepared datasets, local results, hash cache, journal, ledger, lock."""

    def __init__(self, root: Path, *, read_only: bool = False):
        """`read_only`: for the commands that change nothing (plan, status, results): a state dir that cannot be
        written (a read-only mount, a backup) is read as it is, and the hash cache is kept in memory."""
        self.root = Path(root).expanduser().absolute()
        self.read_only = read_only
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            if not read_only:
                raise StateError(f"cannot create the state dir: {e.strerror or e}", where=str(self.root),
                                 hint="choose another with --state-dir or MEDPERF_APPLY_HOME") from e
        if not read_only and not os.access(self.root, os.W_OK | os.X_OK):
            raise StateError("the state dir is not writable", where=str(self.root),
                             hint="fix its permissions or choose another with --state-dir")
        self.journal = Journal(self.root / "journal.jsonl")
        self.ledger = Ledger(self.root / "ledger.jsonl")

    def __repr__(self) -> str:
        return f"StateDir({str(self.root)!r})"

    def dataset(self, dataset_id: int) -> DatasetDir:
        return DatasetDir(self.root / "datasets" / str(int(dataset_id)))

    def result(self, result_id: int) -> ResultDir:
        return ResultDir(self.root / "results" / str(int(result_id)))

    def dataset_dir(self, dataset_id: int) -> Path:
        return self.dataset(dataset_id).root

    def result_dir(self, result_id: int) -> Path:
        return self.result(result_id).root

    @property
    def containers(self) -> Path:
        """The container runner's own files (parameters, additional files, orphan labels)."""
        return self.root / "containers"

    @property
    def slurm_jobs(self) -> Path:
        """The Slurm executor's job folders, one per task key (runner/clients/slurm.py owns what is inside)."""
        return self.root / "slurm"

    def hash_cache(self) -> HashCache:
        """Open the hash cache (the caller closes it); in memory for a read-only command on a read-only dir."""
        path = self.root / "hash-cache.sqlite"
        if self.read_only and not os.access(self.root, os.W_OK):
            return HashCache(Path(":memory:"))
        return HashCache(path)

    @property
    def lock_path(self) -> Path:
        return self.root / "lock"

    @contextlib.contextmanager
    def lock(self, *, timeout: float = 0.0, run_id: str | None = None, poll_interval: float = 0.2) -> Iterator[Lock]:
        """Hold the state dir's lock for one run; wait up to timeout seconds for another run to finish."""
        with hold_lock(self.lock_path, self.journal, timeout=timeout, run_id=run_id,
                       poll_interval=poll_interval) as held:
            yield held

    def local_datasets(self) -> dict[int, LocalDataset]:
        """What the state dir holds per dataset id: raw.yaml, a prepared copy, .ready, statistics.yaml."""
        return {i: self.dataset(i).facts(i) for i in _numbered(self.root / "datasets")}

    def local_results(self) -> dict[int, LocalResult]:
        """What the state dir holds per result id: .executed, .partial."""
        return {i: self.result(i).facts(i) for i in _numbered(self.root / "results")}

    def unfinished_steps(self) -> tuple[dict[str, Any], ...]:
        """The journal's steps that began and never ended (a crashed or killed run)."""
        return tuple({"id": e.id, "step": e.step, "started": e.started, **dict(e.info)}
                     for e in self.journal.unfinished())


def _numbered(folder: Path) -> list[int]:
    try:
        children = list(folder.iterdir())
    except FileNotFoundError:
        return []
    return [int(c.name) for c in children if c.is_dir() and c.name.isdigit()]


def server_dir_name(server_url: str) -> str:
    """Return the per-server folder name: host and port, e.g. 127.0.0.1_8000."""
    parts = urlsplit(server_url if "://" in server_url else f"http://{server_url}")
    host = (parts.hostname or "server").strip("[]")
    try:
        port = parts.port
    except ValueError:
        port = None
    name = f"{host}_{port}" if port else host
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return safe or "server"
