"""The benchmark owner's side, as frozen records: the BenchmarkOwner manifest (which datasets' association
requests are approved, rejected or left pending) and what observe reads for it (my benchmarks, their latest
association rows, the datasets' names, the requesters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runner.model.manifest import ServerSpec, Where
from runner.model.observation import ApprovalStatus, RemoteAssociation, RemoteBenchmark


class DecisionGoal(StrEnum):
    """Where a dataset's association request with my benchmark should stand."""

    APPROVED = "approved"
    REJECTED = "rejected"
    PENDING = "pending"  # leave it undecided (no step)

    @property
    def status(self) -> ApprovalStatus:
        return ApprovalStatus(self.value.upper())


@dataclass(frozen=True)
class OwnedDatasetSpec:
    dataset: int | str  # id or name
    association: DecisionGoal
    where: Where | None = None


@dataclass(frozen=True)
class OwnedBenchmarkSpec:
    benchmark: int | str  # id or name, one I own
    datasets: tuple[OwnedDatasetSpec, ...] = ()
    default: DecisionGoal = DecisionGoal.PENDING  # for PENDING requests not listed
    where: Where | None = None


@dataclass(frozen=True)
class OwnerManifest:
    """kind: BenchmarkOwner."""

    server: ServerSpec
    benchmarks: tuple[OwnedBenchmarkSpec, ...]
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as any user may see it (its public record): enough to name it."""

    id: int
    name: str
    owner: int | None = None
    state: str = ""

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> DatasetInfo:
        owner = r.get("owner")
        return cls(id=int(r["id"]), name=str(r.get("name") or ""), owner=int(owner) if isinstance(owner, int) else None,
                   state=str(r.get("state") or ""))


@dataclass(frozen=True)
class UserInfo:
    """A requester as /users/{id}/ shows them; only the id when the server does not show the user to me."""

    id: int
    username: str = ""
    email: str = ""
    name: str = ""

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> UserInfo:
        name = " ".join(str(r.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
        return cls(id=int(r["id"]), username=str(r.get("username") or ""), email=str(r.get("email") or ""), name=name)

    def __str__(self) -> str:
        who = self.name or self.username
        if who and self.email:
            return f"{who} <{self.email}>"
        return who or self.email or f"user {self.id}"


@dataclass(frozen=True)
class OwnerObservation:
    """What the benchmark owner's plan and list need, read once, read-only."""

    server_url: str
    me: int | None = None  # my user id (a request I made myself cannot be approved by me)
    benchmarks: tuple[RemoteBenchmark, ...] = ()  # the benchmarks I own
    associations: Mapping[tuple[int, int], RemoteAssociation] = field(default_factory=dict)  # my benchmarks' pairs
    datasets: Mapping[int, DatasetInfo] = field(default_factory=dict)  # every dataset the server lists
    users: Mapping[int, UserInfo] = field(default_factory=dict)  # requesters (the list command only)
    unfinished: tuple[Mapping[str, Any], ...] = ()  # journal entries a crashed run left open (resolved by this)
    requests: int = 0

    def benchmark(self, ref: int | str) -> RemoteBenchmark | None:
        """My benchmark with this id or name."""
        return next((b for b in self.benchmarks if (b.id if isinstance(ref, int) else b.name) == ref), None)

    def requests_of(self, benchmark_id: int) -> dict[int, RemoteAssociation]:
        """dataset id -> the latest association row with this benchmark."""
        return {d: a for (d, b), a in self.associations.items() if b == benchmark_id}

    def fingerprint(self) -> dict[str, Any]:
        """What a saved plan relies on: any change here makes the plan stale."""
        return {
            "server": self.server_url, "me": self.me,
            "benchmarks": {str(b.id): [b.name, b.modified_at] for b in self.benchmarks},
            "associations": {f"{d}/{b}": [a.approval_status, a.created_at, a.approved_at]
                             for (d, b), a in sorted(self.associations.items())},
        }
