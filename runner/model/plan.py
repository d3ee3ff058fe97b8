"""The Plan: ordered Steps, each with a typed record of what apply needs (one per kind of step), and Notes.

A Plan is what `plan -o FILE` saves and `apply FILE` reads back: `PLAN_FORMAT_VERSION` names its shape, and a
file of another version is refused rather than misread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

FORMAT_VERSION = 1  # of the JSON documents that hold no steps (status, results, validate, errors, events)
PLAN_FORMAT_VERSION = 2  # of the documents that hold steps (plan file, plan and apply --output json)


class Action(StrEnum):
    """What a step does; the order here is the order within a dataset."""

    REGISTER = "register"
    UPDATE = "update"
    PREPARE = "prepare"
    SET_OPERATIONAL = "set_operational"
    ASSOCIATE = "associate"
    AWAIT_APPROVAL = "await_approval"
    RUN_MODEL = "run_model"
    SUBMIT = "submit"
    # the benchmark owner's (kind: BenchmarkOwner): a decision on a dataset's association request
    APPROVE = "approve"
    REJECT = "reject"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class Change(StrEnum):
    """How a step stands in the plan: its symbol in the text plan."""

    TODO = "+"  # will be done
    DONE = "="  # already done: nothing to do
    GATE = "?"  # waits on something outside this run (approval, consent)


class PlanFileError(ValueError):
    """A saved plan's step does not have the shape this version writes."""


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class StepArgs:
    """What apply needs to do a step (ids, tasks, models), as the planner decided it."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepArgs:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise PlanFileError(f"unknown {cls.kind} argument(s): {', '.join(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**values)


@dataclass(frozen=True)
class RegisterArgs(StepArgs):
    kind: ClassVar[str] = "register"
    dataset_id: int | None = None  # when done: the dataset it registered as
    data_preparation_mlcube: int | None = None
    input_data_hash: str = ""
    submitted_as_prepared: bool = False  # the folders hold prepared data (manifest `prepared: true`)


@dataclass(frozen=True)
class UpdateArgs(StepArgs):
    kind: ClassVar[str] = "update"
    dataset_id: int | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)  # field -> the manifest's value
    was: Mapping[str, Any] = field(default_factory=dict)  # field -> the server's value


@dataclass(frozen=True)
class PrepareArgs(StepArgs):
    kind: ClassVar[str] = "prepare"
    dataset_id: int | None = None  # None: the id register gives it in the same run
    container: int | None = None
    tasks: tuple[str, ...] = ()
    # A local copy of a dataset the server already holds as prepared: nothing is sent, and the prepared data must
    # hash to the server's generated_uid before any model runs on it.
    local_copy: bool = False
    generated_uid: str = ""
    # The manifest's folders already hold prepared data (MedPerf's submitted_as_prepared): they are copied into the
    # state dir instead of running prepare; sanity_check and statistics run on the copy.
    as_prepared: bool = False


@dataclass(frozen=True)
class SetOperationalArgs(StepArgs):
    kind: ClassVar[str] = "set_operational"
    dataset_id: int | None = None


@dataclass(frozen=True)
class BenchmarkArgs(StepArgs):
    """The pair every benchmark step acts on."""

    dataset_id: int | None = None
    benchmark_id: int | None = None


@dataclass(frozen=True)
class AssociateArgs(BenchmarkArgs):
    kind: ClassVar[str] = "associate"
    reference_model: int | None = None
    evaluator: int | None = None
    skip_test: bool = False  # the benchmark skips compatibility tests
    result_id: int | None = None  # the reference model's record, when one exists
    name: str = ""  # b{B}m{M}d{D}
    ignore_model_errors: bool = False


@dataclass(frozen=True)
class AwaitApprovalArgs(BenchmarkArgs):
    kind: ClassVar[str] = "await_approval"
    requested_at: str | None = None


@dataclass(frozen=True)
class RunModelArgs(BenchmarkArgs):
    kind: ClassVar[str] = "run_model"
    model: int | None = None  # None: "the benchmark's other models", known once approved
    reference: bool = False
    evaluator: int | None = None
    result_id: int | None = None
    name: str = ""
    ignore_model_errors: bool = False
    partial: bool = False
    from_cache: bool = False
    by_association: bool = False  # the association's compatibility test runs it


@dataclass(frozen=True)
class SubmitArgs(BenchmarkArgs):
    kind: ClassVar[str] = "submit"
    models: tuple[int, ...] = ()  # whose computed results are submitted
    submitted: tuple[int, ...] = ()  # already submitted
    more: bool = False  # more models come once the benchmark lists them


@dataclass(frozen=True)
class DecideArgs(BenchmarkArgs):
    """The benchmark owner's decision on the latest request of (dataset, benchmark)."""

    kind: ClassVar[str] = "decide"
    status: str = ""  # APPROVED | REJECTED: what is sent
    was: str = ""  # the latest row's status the plan saw (PENDING; APPROVED for a revocation)
    revoke: bool = False  # APPROVED -> REJECTED: a new REJECTED row (POST), as MedPerf revokes


ARGS = {Action.REGISTER: RegisterArgs, Action.UPDATE: UpdateArgs, Action.PREPARE: PrepareArgs, Action.SET_OPERATIONAL: SetOperationalArgs,
        Action.ASSOCIATE: AssociateArgs, Action.AWAIT_APPROVAL: AwaitApprovalArgs, Action.RUN_MODEL: RunModelArgs,
        Action.SUBMIT: SubmitArgs, Action.APPROVE: DecideArgs, Action.REJECT: DecideArgs}


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
    args: StepArgs | None = None  # what apply needs; None = the action's record with its defaults
    after: tuple[str, ...] = ()  # keys of steps this one needs first
    show_reason: bool = False  # the reason belongs on the plan line (e.g. a re-request, a reused record)
    runs_on: str | None = None  # where its container tasks run when not this machine's engine: "slurm partition gpu"

    def __post_init__(self) -> None:
        if self.args is None:
            object.__setattr__(self, "args", ARGS[self.action]())
        elif not isinstance(self.args, ARGS[self.action]):
            raise TypeError(f"{self.key}: {type(self.args).__name__} is not the arguments of {self.action.value}")

    @property
    def label(self) -> str:
        """What the step is called on a plan line: "register", "run model 2", "submit 2 results"."""
        a = self.args
        if isinstance(a, RunModelArgs):
            return "run other models" if a.model is None else f"run model {a.model}"
        if isinstance(a, PrepareArgs) and a.local_copy and self.change is not Change.DONE:
            return "prepare (local copy)"
        if isinstance(a, DecideArgs):
            named = a.dataset_id is not None and self.dataset != str(a.dataset_id)
            return f"{self.action.label} dataset {self.dataset}" + (f" ({a.dataset_id})" if named else "")
        if isinstance(a, SubmitArgs) and self.change is not Change.DONE:
            n, more = len(a.models), "+" if a.more else ""
            return f"submit {n}{more} result{'s' if n != 1 or more else ''}"
        return self.action.label

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "action": self.action.value, "dataset": self.dataset, "benchmark": self.benchmark,
                "change": self.change.name.lower(), "reason": self.reason, "sends": list(self.sends),
                "endpoint": self.endpoint, "detail": self.detail, "consent": self.consent,
                "args": self.args.to_dict(), "after": list(self.after), "show_reason": self.show_reason,
                **({"runs_on": self.runs_on} if self.runs_on else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        action = Action(d["action"])
        return cls(key=d["key"], action=action, dataset=d["dataset"], benchmark=d.get("benchmark"),
                   change=Change[d["change"].upper()], reason=d.get("reason", ""), sends=tuple(d.get("sends", ())),
                   endpoint=d.get("endpoint"), detail=d.get("detail", ""), consent=d.get("consent"),
                   args=ARGS[action].from_dict(d.get("args") or {}), after=tuple(d.get("after", ())),
                   show_reason=bool(d.get("show_reason", False)), runs_on=d.get("runs_on"))


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

    def step(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": PLAN_FORMAT_VERSION, "kind": "plan", "has_changes": self.has_changes,
                "summary": {"to_do": self.count(Change.TODO), "done": self.count(Change.DONE),
                            "gates": self.count(Change.GATE)},
                "steps": [s.to_dict() for s in self.steps], "notes": [n.to_dict() for n in self.notes],
                "fingerprint": dict(self.fingerprint)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        return cls(steps=tuple(Step.from_dict(s) for s in d.get("steps", ())),
                   notes=tuple(Note(n["text"], n.get("dataset")) for n in d.get("notes", ())),
                   fingerprint=dict(d.get("fingerprint") or {}))
