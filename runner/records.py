"""Frozen records of benchmark participation, as the server and the state dir hold them: the latest association
of a (dataset, benchmark) pair, my latest result per (benchmark, model, dataset), a benchmark's approved models
in priority order, local results, and the rows of MedPerf's summary table. Pure data, shared by every stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.model import _int_or_none


def _record(r: Any) -> Mapping[str, Any]:
    """A server record must be a JSON object (a wrong shape raises, and observe says the server is wrong)."""
    if not isinstance(r, Mapping):
        raise TypeError(f"a record is a {type(r).__name__}, not an object")
    return r


@dataclass(frozen=True)
class RemoteAssociation:
    """The latest association row of one (dataset, benchmark) pair (MedPerf: history kept, latest wins)."""

    dataset: int
    benchmark: int
    approval_status: str  # PENDING | APPROVED | REJECTED
    created_at: str = ""
    approved_at: str = ""
    initiated_by: int | None = None
    test_result: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> RemoteAssociation:
        meta = r.get("metadata") if isinstance(r.get("metadata"), Mapping) else {}
        return cls(dataset=int(r["dataset"]), benchmark=int(r["benchmark"]),
                   approval_status=str(r.get("approval_status") or "PENDING"), created_at=str(r.get("created_at") or ""),
                   approved_at=str(r.get("approved_at") or ""), initiated_by=_int_or_none(r.get("initiated_by")),
                   test_result=dict(meta.get("test_result") or {}) if isinstance(meta, Mapping) else {})


def latest_associations(rows) -> dict[tuple[int, int], RemoteAssociation]:
    """(dataset, benchmark) -> the latest row by created_at (then id), as MedPerf's client and server decide."""
    out: dict[tuple[int, int], tuple[tuple, RemoteAssociation]] = {}
    for r in rows:
        a = RemoteAssociation.from_record(_record(r))
        order = (a.created_at, int(r.get("id") or 0))
        key = (a.dataset, a.benchmark)
        if key not in out or order >= out[key][0]:
            out[key] = (order, a)
    return {k: v for k, (_, v) in out.items()}


@dataclass(frozen=True)
class BenchmarkModel:
    """A model association of a benchmark (latest row per model), in the server's priority order."""

    model: int
    approval_status: str
    priority: int = 0
    created_at: str = ""


def approved_models(rows) -> tuple[int, ...]:
    """The models whose latest association is APPROVED, highest priority first (the server's order)."""
    latest: dict[int, tuple[tuple, BenchmarkModel]] = {}
    first_seen: dict[int, int] = {}
    for i, r in enumerate(rows):
        r = _record(r)
        m = BenchmarkModel(model=int(r["model"]), approval_status=str(r.get("approval_status") or ""),
                           priority=int(r.get("priority") or 0), created_at=str(r.get("created_at") or ""))
        first_seen.setdefault(m.model, i)
        if m.model not in latest or m.created_at >= latest[m.model][0][0]:
            latest[m.model] = ((m.created_at,), m)
    chosen = [m for _, m in latest.values() if m.approval_status == "APPROVED"]
    chosen.sort(key=lambda m: (-m.priority, first_seen[m.model]))
    return tuple(m.model for m in chosen)


@dataclass(frozen=True)
class RemoteResult:
    """One of my execution records (MedPerf's ModelResult), created before running, final once submitted."""

    id: int
    name: str
    benchmark: int
    model: int
    dataset: int
    finalized: bool = False
    results: Mapping[str, Any] = field(default_factory=dict)
    partial: bool = False
    created_at: str = ""
    modified_at: str = ""

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> RemoteResult:
        meta = r.get("metadata") if isinstance(r.get("metadata"), Mapping) else {}
        return cls(id=int(r["id"]), name=str(r.get("name") or ""), benchmark=int(r["benchmark"]),
                   model=int(r["model"]), dataset=int(r["dataset"]), finalized=bool(r.get("finalized")),
                   results=dict(r.get("results") or {}), partial=bool(meta.get("partial", False)),
                   created_at=str(r.get("created_at") or ""), modified_at=str(r.get("modified_at") or ""))


def latest_results(rows) -> dict[tuple[int, int, int], RemoteResult]:
    """(benchmark, model, dataset) -> my latest execution record by created_at (then id)."""
    out: dict[tuple[int, int, int], RemoteResult] = {}
    for r in rows:
        res = RemoteResult.from_record(_record(r))
        key = (res.benchmark, res.model, res.dataset)
        if key not in out or (res.created_at, res.id) >= (out[key].created_at, out[key].id):
            out[key] = res
    return out


@dataclass(frozen=True)
class LocalResult:
    """What the state dir holds for a result id: results/<id>/{results.yaml, .executed, .partial}."""

    id: int
    executed: bool = False
    partial: bool = False


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
