"""What observe reads, as frozen records: my datasets, benchmarks, containers, associations and results on the
server, the state dir's local facts, and the Observation that holds them all. MedPerf's rules for reading
them (latest association wins, approved models in priority order) live here, beside the records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.model.manifest import Ref

SERVER_DEVELOPMENT = "DEVELOPMENT"
SERVER_OPERATION = "OPERATION"


class ApprovalStatus(StrEnum):
    """An association's approval status, as MedPerf's server says it."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"



def int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, int | str) and str(v).isdigit() else None


class MissingField(KeyError):
    """A server record lacks a field MedPerf's server always sends."""

    def __str__(self) -> str:
        return f"missing field {self.args[0]!r}"


def _field(r: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` the record holds (MedPerf has renamed a few fields); MissingField when none."""
    for n in names:
        if n in r:
            return r[n]
    raise MissingField(names[0])


def _record(r: Any) -> Mapping[str, Any]:
    """A server record must be a JSON object (a wrong shape raises, and observe says the server is wrong)."""
    if not isinstance(r, Mapping):
        raise TypeError(f"a record is a {type(r).__name__}, not an object")
    return r

@dataclass(frozen=True)
class RemoteDataset:
    """One of my datasets as the server holds it."""

    id: int
    name: str
    data_preparation_mlcube: int | None
    input_data_hash: str
    generated_uid: str
    state: str
    generated_metadata: Mapping[str, Any] = field(default_factory=dict)
    report: Mapping[str, Any] = field(default_factory=dict)
    modified_at: str = ""
    description: str = ""
    location: str = ""
    user_metadata: Mapping[str, Any] = field(default_factory=dict)
    is_valid: bool = True
    submitted_as_prepared: bool = False

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> RemoteDataset:
        return cls(
            id=int(_field(r, "id")), name=str(_field(r, "name")),
            data_preparation_mlcube=int_or_none(_field(r, "data_preparation_mlcube")),
            input_data_hash=str(r.get("input_data_hash") or ""), generated_uid=str(r.get("generated_uid") or ""),
            state=str(r.get("state") or SERVER_DEVELOPMENT), generated_metadata=dict(r.get("generated_metadata") or {}),
            report=dict(r.get("report") or {}), modified_at=str(r.get("modified_at") or ""),
            description=str(r.get("description") or ""), location=str(r.get("location") or ""),
            user_metadata=dict(r.get("user_metadata") or {}), is_valid=bool(r.get("is_valid", True)),
            submitted_as_prepared=bool(r.get("submitted_as_prepared", False)),
        )

    @property
    def operational(self) -> bool:
        return self.state == SERVER_OPERATION


@dataclass(frozen=True)
class RemoteBenchmark:
    id: int
    name: str
    data_preparation_mlcube: int | None
    reference_model: int | None = None
    data_evaluator_mlcube: int | None = None
    approval_status: str = ""
    state: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    modified_at: str = ""
    dataset_auto_approval_mode: str = ""

    @property
    def skip_compatibility_tests(self) -> bool:
        return bool(self.metadata.get("skip_compatibility_tests"))

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> RemoteBenchmark:
        return cls(
            id=int(_field(r, "id")), name=str(_field(r, "name")),
            data_preparation_mlcube=int_or_none(_field(r, "data_preparation_mlcube")),
            reference_model=int_or_none(_field(r, "reference_model", "reference_model_mlcube")),
            data_evaluator_mlcube=int_or_none(_field(r, "data_evaluator_mlcube")),
            approval_status=str(r.get("approval_status") or ""), state=str(r.get("state") or ""),
            metadata=dict(r.get("metadata") or {}), modified_at=str(r.get("modified_at") or ""),
            dataset_auto_approval_mode=str(r.get("dataset_auto_approval_mode") or ""),
        )


@dataclass(frozen=True)
class RemoteContainer:
    """A container record (MedPerf's "mlcube"); `record` is the raw payload for ContainerSpec.from_record."""

    id: int
    name: str
    image: str = ""
    is_valid: bool = True
    state: str = ""
    modified_at: str = ""
    record: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> RemoteContainer:
        cfg = r.get("container_config") or {}
        return cls(
            id=int(r["id"]), name=str(r.get("name", "")), image=str(cfg.get("image", "") if isinstance(cfg, dict) else ""),
            is_valid=bool(r.get("is_valid", True)), state=str(r.get("state") or ""),
            modified_at=str(r.get("modified_at") or ""), record=dict(r),
        )


@dataclass(frozen=True)
class LocalDataset:
    """What the state dir holds for a dataset id."""

    id: int
    has_raw_yaml: bool = False
    started: bool = False  # a prepare began (prepared-data folders exist)
    ready: bool = False
    has_statistics: bool = False


@dataclass(frozen=True)
class RemoteAssociation:
    """The latest association row of one (dataset, benchmark) pair (MedPerf: history kept, latest wins)."""

    dataset: int
    benchmark: int
    approval_status: ApprovalStatus
    created_at: str = ""
    approved_at: str = ""
    initiated_by: int | None = None
    test_result: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> RemoteAssociation:
        meta = r.get("metadata") if isinstance(r.get("metadata"), Mapping) else {}
        return cls(dataset=int(r["dataset"]), benchmark=int(r["benchmark"]),
                   approval_status=ApprovalStatus(str(r.get("approval_status") or "PENDING")),
                   created_at=str(r.get("created_at") or ""),
                   approved_at=str(r.get("approved_at") or ""), initiated_by=int_or_none(r.get("initiated_by")),
                   test_result=dict(meta.get("test_result") or {}) if isinstance(meta, Mapping) else {})


def identify(datasets: Sequence[RemoteDataset], name: str, prep: int | None, raw_hash: str | None = None
             ) -> tuple[RemoteDataset | None, tuple[RemoteDataset, ...]]:
    """My dataset with this name and data preparation container, and every candidate: the newest one whose
    input_data_hash is `raw_hash` if any, else the newest (a dataset is identified by name + container)."""
    mine = tuple(d for d in datasets if d.name == name and d.data_preparation_mlcube == prep)
    if not mine:
        return None, mine
    exact = [d for d in mine if raw_hash is not None and d.input_data_hash == raw_hash]
    return max(exact or mine, key=lambda d: d.id), mine


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
    chosen = [m for _, m in latest.values() if m.approval_status == ApprovalStatus.APPROVED]
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
class Observation:
    """Everything plan needs, read once, read-only."""

    server_url: str
    my_datasets: tuple[RemoteDataset, ...] = ()
    refs: Mapping[str, RemoteBenchmark | RemoteContainer | None] = field(default_factory=dict)  # Ref.key -> record
    containers: Mapping[int, RemoteContainer] = field(default_factory=dict)  # every container record seen, by id
    raw_hashes: Mapping[str, str] = field(default_factory=dict)  # dataset name -> folders hash of raw data+labels
    local: Mapping[int, LocalDataset] = field(default_factory=dict)  # dataset id -> local facts
    unfinished: tuple[Mapping[str, Any], ...] = ()  # journal entries a crashed run left open
    associations: Mapping[tuple[int, int], RemoteAssociation] = field(default_factory=dict)  # latest per pair
    results: Mapping[tuple[int, int, int], RemoteResult] = field(default_factory=dict)  # latest per (B, M, D)
    # benchmark id -> approved models in priority order; None when the server does not show them yet (403)
    benchmark_models: Mapping[int, tuple[int, ...] | None] = field(default_factory=dict)
    model_names: Mapping[str, int] = field(default_factory=dict)  # names used in `models:` lists -> ids
    local_results: Mapping[int, LocalResult] = field(default_factory=dict)  # result id -> local facts
    requests: int = 0

    def preparation_container(self, ref: Ref) -> int | None:
        """The data preparation container a `prepare_with` reference names (None when not on the server)."""
        record = self.refs.get(ref.key)
        if isinstance(record, RemoteBenchmark):
            return record.data_preparation_mlcube
        return record.id if isinstance(record, RemoteContainer) else None

    def fingerprint(self) -> dict[str, Any]:
        """What a saved plan relies on: any change here makes the plan stale."""
        return {
            "server": self.server_url,
            "datasets": {str(d.id): [d.name, d.state, d.input_data_hash, d.generated_uid, d.modified_at]
                         for d in sorted(self.my_datasets, key=lambda d: d.id)},
            "refs": {k: (None if v is None else [v.id, v.modified_at]) for k, v in sorted(self.refs.items())},
            "raw_hashes": dict(sorted(self.raw_hashes.items())),
            "local": {str(k): [v.has_raw_yaml, v.started, v.ready, v.has_statistics] for k, v in sorted(self.local.items())},
            "associations": {f"{d}/{b}": [a.approval_status, a.created_at]
                             for (d, b), a in sorted(self.associations.items())},
            "results": {f"{b}/{m}/{d}": [r.id, r.finalized] for (b, m, d), r in sorted(self.results.items())},
            "benchmark_models": {str(k): (None if v is None else list(v))
                                 for k, v in sorted(self.benchmark_models.items())},
            "local_results": {str(k): [v.executed, v.partial] for k, v in sorted(self.local_results.items())},
        }
