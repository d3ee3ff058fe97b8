"""The Protocols the pipeline talks through: the real clients and the test fakes both satisfy them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class Api(Protocol):
    """The registry (runner.clients.api.ApiClient): paths are relative to /api/v0/."""

    request_count: int

    def get(self, path: str, params: Mapping | None = None) -> Any: ...

    def list(self, path: str) -> list: ...

    def create(self, path: str, body: Mapping) -> dict: ...

    def update(self, path: str, body: Mapping) -> dict: ...


class Hasher(Protocol):
    """MedPerf's folder hash (runner.hashing.folders_hash)."""

    def __call__(self, paths: Sequence[Path], *, cache: Any = None, workers: int | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> str: ...


class Progress(Protocol):
    """Where long work reports how far it got (runner.console draws it on a terminal, or ignores it)."""

    def hashing(self, name: str) -> Callable[[int, int], None] | None: ...

    def task(self, name: str) -> Callable[[str], None] | None: ...

    def done(self) -> None: ...


class NoProgress:
    """Progress that shows nothing (no terminal, JSON mode, tests)."""

    def hashing(self, name: str):
        return None

    def task(self, name: str):
        return None

    def done(self) -> None:
        pass
