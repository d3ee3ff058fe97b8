"""How apply's steps ended: an Outcome per step, with its message, and the rows of MedPerf's model-run table."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How a step ended (the Ansible vocabulary)."""

    OK = "ok"  # already satisfied
    CHANGED = "changed"
    PENDING = "pending"  # waits at a gate
    FAILED = "failed"
    SKIPPED = "skipped"  # not attempted (with a reason)


@dataclass(frozen=True)
class ModelRun:
    """One row of MedPerf's summary table: model, result id, partial, from cache, error."""

    dataset: str
    benchmark: str
    model: int
    result_id: int | None = None
    partial: bool = False
    from_cache: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "benchmark": self.benchmark, "model": self.model,
                "result_id": self.result_id, "partial": self.partial, "from_cache": self.from_cache,
                "error": self.error}


@dataclass(frozen=True)
class StepResult:
    """How one step ended."""

    key: str
    outcome: Outcome
    duration_s: float = 0.0
    message: str = ""
    log_path: str | None = None
    run: ModelRun | None = None  # for a model run (or the association test): the summary table's row

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "outcome": self.outcome.value, "duration_s": round(self.duration_s, 3),
                "message": self.message, "log_path": self.log_path,
                "run": None if self.run is None else self.run.to_dict()}
