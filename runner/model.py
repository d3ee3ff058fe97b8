"""Frozen dataclasses and str-Enums shared by every stage: the Manifest, the Observation, the Plan, the Outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # benchmark participation's records live in runner/records.py
    from runner.records import LocalResult, ModelRun, RemoteAssociation, RemoteResult

FORMAT_VERSION = 1  # of the JSON documents (plan file, --output json)


# ---------------------------------------------------------------------------------------------- manifest


class DesiredState(StrEnum):
    """Where a dataset should stand; states only move forward."""

    REGISTERED = "registered"
    PREPARED = "prepared"
    OPERATIONAL = "operational"

    @property
    def rank(self) -> int:
        return _STATE_RANK[self.value]


_STATE_RANK = {"registered": 1, "prepared": 2, "operational": 3}


class AssociationGoal(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"


class ResultsGoal(StrEnum):
    NONE = "none"
    COMPUTED = "computed"
    SUBMITTED = "submitted"


@dataclass(frozen=True)
class Where:
    """A place in the user's file (1-based line and column)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


@dataclass(frozen=True)
class ServerSpec:
    url: str
    token_env: str | None = None
    token_file: Path | None = None
    where: Where | None = None


@dataclass(frozen=True)
class Ref:
    """A reference by id or name to a benchmark or a container on the server."""

    kind: str  # "benchmark" | "container"
    value: int | str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"


@dataclass(frozen=True)
class Consent:
    """What may leave this machine; None = not said (ask in a terminal, block in CI)."""

    statistics: bool | None = None
    compatibility_results: bool | None = None
    results: bool | None = None


@dataclass(frozen=True)
class BenchmarkSpec:
    benchmark: int | str
    association: AssociationGoal = AssociationGoal.APPROVED
    models: str | tuple[int | str, ...] = "all"
    results: ResultsGoal = ResultsGoal.SUBMITTED
    ignore_model_errors: bool = False
    where: Where | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    data_path: Path
    labels_path: Path
    prepare_with: Ref
    state: DesiredState = DesiredState.OPERATIONAL
    description: str = ""
    location: str = ""
    consent: Consent = Consent()
    benchmarks: tuple[BenchmarkSpec, ...] = ()
    where: Where | None = None


@dataclass(frozen=True)
class Manifest:
    server: ServerSpec
    datasets: tuple[DatasetSpec, ...]
    files: tuple[str, ...] = ()

    def dataset(self, name: str) -> DatasetSpec | None:
        return next((d for d in self.datasets if d.name == name), None)


# ---------------------------------------------------------------------------------------------- observation

SERVER_DEVELOPMENT = "DEVELOPMENT"
SERVER_OPERATION = "OPERATION"


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, int | str) and str(v).isdigit() else None


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

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> RemoteDataset:
        return cls(
            id=int(r["id"]), name=str(r.get("name", "")),
            data_preparation_mlcube=_int_or_none(r.get("data_preparation_mlcube")),
            input_data_hash=str(r.get("input_data_hash") or ""), generated_uid=str(r.get("generated_uid") or ""),
            state=str(r.get("state") or SERVER_DEVELOPMENT), generated_metadata=dict(r.get("generated_metadata") or {}),
            report=dict(r.get("report") or {}), modified_at=str(r.get("modified_at") or ""),
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
            id=int(r["id"]), name=str(r.get("name", "")),
            data_preparation_mlcube=_int_or_none(r.get("data_preparation_mlcube")),
            reference_model=_int_or_none(r.get("reference_model") or r.get("reference_model_mlcube")),
            data_evaluator_mlcube=_int_or_none(r.get("data_evaluator_mlcube")),
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


# ---------------------------------------------------------------------------------------------- plan


class Action(StrEnum):
    """What a step does. Issue 5 adds the benchmark actions; the order here is the order within a dataset."""

    REGISTER = "register"
    PREPARE = "prepare"
    SET_OPERATIONAL = "set_operational"
    ASSOCIATE = "associate"
    AWAIT_APPROVAL = "await_approval"
    RUN_MODEL = "run_model"
    SUBMIT = "submit"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def mutating(self) -> bool:
        return self is not Action.AWAIT_APPROVAL


class Change(StrEnum):
    """How a step stands in the plan: its symbol in the text plan."""

    TODO = "+"  # will be done
    DONE = "="  # already done: nothing to do
    GATE = "?"  # waits on something outside this run (approval, consent)


class Outcome(StrEnum):
    """How a step ended (the Ansible vocabulary)."""

    OK = "ok"  # already satisfied
    CHANGED = "changed"
    PENDING = "pending"  # waits at a gate
    FAILED = "failed"
    SKIPPED = "skipped"  # not attempted (with a reason)


@dataclass(frozen=True)
class Step:
    key: str  # "dataset/NAME/ACTION[/benchmark/B[/model/M]]": unique, used by --target, the journal, saved plans
    action: Action
    dataset: str
    change: Change
    reason: str
    benchmark: str | None = None
    sends: tuple[str, ...] = ()  # exact fields the step sends
    endpoint: str | None = None  # e.g. "POST /datasets/"
    detail: str = ""  # what will be done, e.g. "chestxray_prep: prepare, sanity_check, statistics"
    consent: str | None = None  # consent key still to be given at a prompt ("statistics")
    args: Mapping[str, Any] = field(default_factory=dict)  # what apply needs (ids, tasks)
    after: tuple[str, ...] = ()  # keys of steps this one needs first

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "action": self.action.value, "dataset": self.dataset, "benchmark": self.benchmark,
                "change": self.change.name.lower(), "reason": self.reason, "sends": list(self.sends),
                "endpoint": self.endpoint, "detail": self.detail, "consent": self.consent,
                "args": dict(self.args), "after": list(self.after)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        return cls(key=d["key"], action=Action(d["action"]), dataset=d["dataset"], benchmark=d.get("benchmark"),
                   change=Change[d["change"].upper()], reason=d.get("reason", ""), sends=tuple(d.get("sends", ())),
                   endpoint=d.get("endpoint"), detail=d.get("detail", ""), consent=d.get("consent"),
                   args=dict(d.get("args") or {}), after=tuple(d.get("after", ())))


@dataclass(frozen=True)
class Note:
    """Something the user should know that is not a step: less asked than exists, no longer managed."""

    text: str
    dataset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "text": self.text}


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    notes: tuple[Note, ...] = ()
    fingerprint: Mapping[str, Any] = field(default_factory=dict)

    @property
    def todo(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.change is Change.TODO)

    @property
    def has_changes(self) -> bool:
        return any(s.change is not Change.DONE for s in self.steps)

    def count(self, change: Change) -> int:
        return sum(1 for s in self.steps if s.change is change)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "kind": "plan", "has_changes": self.has_changes,
                "summary": {"to_do": self.count(Change.TODO), "done": self.count(Change.DONE),
                            "gates": self.count(Change.GATE)},
                "steps": [s.to_dict() for s in self.steps], "notes": [n.to_dict() for n in self.notes],
                "fingerprint": dict(self.fingerprint)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        return cls(steps=tuple(Step.from_dict(s) for s in d.get("steps", ())),
                   notes=tuple(Note(n["text"], n.get("dataset")) for n in d.get("notes", ())),
                   fingerprint=dict(d.get("fingerprint") or {}))


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
