"""The edges: the Protocols the pipeline talks through (the real clients and the test fakes both satisfy them).

Only the modules of this package talk HTTP (api, files), Docker (containers, images) or Slurm (slurm); each is
imported where it is built, so planning imports neither requests nor docker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runner.container_spec import ContainerSpec

# The Slurm job's exit status when the job dir it was given holds no matching marker (the state dir is not shared).
# Here, not in runner.clients.slurm, so that the job's entry point (slurm_task) needs none of the submitter's imports.
NOT_SHARED_EXIT = 97


class Api(Protocol):
    """The registry (runner.clients.api.ApiClient): paths are relative to /api/v0/."""

    request_count: int

    def get(self, path: str, params: Mapping | None = None) -> Any: ...

    def list(self, path: str) -> list: ...

    def create(self, path: str, body: Mapping) -> dict: ...

    def update(self, path: str, body: Mapping) -> dict: ...


@dataclass(frozen=True)
class TaskRun:
    """What one finished task run left behind."""

    task: str
    exit_code: int
    duration_s: float
    log_path: Path


class ContainerRunner(Protocol):
    """What apply needs from a container engine; DockerRunner and the test fakes implement it."""

    def check_image(self, spec: ContainerSpec, *, on_progress: Callable[[int, int], None] | None = None) -> str:
        """The registered image is in the engine (pulled or loaded if needed, with its bytes to on_progress)."""

    def run_task(self, spec: ContainerSpec, task: str, volumes: Mapping[str, Path], *, log_path: Path,
                 on_line: Callable[[str], None] | None = None,
                 inactivity_timeout: float | None = None, timeout: float | None = None) -> TaskRun: ...

    def stop_all(self) -> None:
        """Stop every task still running (an interrupt, from another thread than theirs)."""

    def adopts(self, spec: ContainerSpec, task: str, volumes: Mapping[str, Path], *, log_path: Path) -> bool:
        """run_task would adopt a run of this task that a dead run left (a Slurm job still in flight, or finished
        well and never seen through) instead of starting one: the caller keeps the task's outputs as they are."""


class Hasher(Protocol):
    """MedPerf's folder hash (runner.hashing.folders_hash)."""

    def __call__(self, paths: Sequence[Path], *, cache: Any = None, workers: int | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> str: ...


class Progress(Protocol):
    """Where long work reports how far it got (runner.console draws it on a terminal, or ignores it)."""

    def hashing(self, name: str) -> Callable[[int, int], None] | None: ...

    def task(self, name: str) -> Callable[[str], None] | None: ...

    def download(self, name: str) -> Callable[[int, int], None] | None:
        """Bytes done and total of an image pull or a download (a bar only once bytes move)."""

    def end(self, name: str) -> None:
        """The work called `name` (a task, a download) is over, however it ended: its bar goes."""

    def done(self) -> None: ...


class NoProgress:
    """Progress that shows nothing (no terminal, JSON mode, tests)."""

    def hashing(self, name: str):
        return None

    def task(self, name: str):
        return None

    def download(self, name: str):
        return None

    def end(self, name: str) -> None:
        pass

    def done(self) -> None:
        pass
