"""The Manifest as validated: where each dataset should stand, typed (frozen dataclasses and StrEnums)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


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
class OidcSpec:
    """server.oidc: sign in with an OpenID provider (`medperf-apply login`) instead of a static token."""

    issuer: str
    client_id: str
    audience: str | None = None  # the registry's audience in the access tokens (sent as audience and resource)
    scopes: tuple[str, ...] = ("openid", "email", "offline_access")
    refresh_token_env: str | None = None  # CI: a refresh token handed in by this environment variable
    client_secret_env: str | None = None  # CI: the client credentials grant with this variable's secret


@dataclass(frozen=True)
class ServerSpec:
    url: str
    token_env: str | None = None
    token_file: Path | None = None
    where: Where | None = None
    ca_file: Path | None = None  # a private CA's PEM bundle; None: the system's trust store
    oidc: OidcSpec | None = None  # instead of token_env / token_file


@dataclass(frozen=True)
class SlurmSpec:
    """The Slurm jobs' options (runtime.slurm): sbatch's --partition, --account, --time, --gres, and more."""

    partition: str | None = None
    account: str | None = None
    time_limit: str | None = None  # 30m | 4h | 2d | Slurm's own form
    gres: str | None = None  # e.g. gpu:1
    extra_args: tuple[str, ...] = ()  # --name=value each


@dataclass(frozen=True)
class RuntimeSpec:
    """This site's settings for the containers it runs (MedPerf's --gpus and --shm-size; None: the tasks' run_args)
    and where they run (the executor: this machine's Docker engine, or Slurm jobs)."""

    gpus: str | int | None = None  # all | N | device=0,1 (0: none)
    shm_size: str | int | None = None  # e.g. 2g
    where: Where | None = None
    executor: str = "docker"  # docker | slurm
    slurm: SlurmSpec = SlurmSpec()

    @property
    def runs_on(self) -> str | None:
        """Where the container tasks run, for the plan's lines: None for this machine's engine."""
        if self.executor != "slurm":
            return None
        return f"slurm partition {self.slurm.partition}" if self.slurm.partition else "slurm"


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
    prepared: bool = False  # data_path/labels_path hold prepared data (MedPerf's submitted_as_prepared)


@dataclass(frozen=True)
class Manifest:
    server: ServerSpec
    datasets: tuple[DatasetSpec, ...]
    files: tuple[str, ...] = ()
    runtime: RuntimeSpec = RuntimeSpec()

    def dataset(self, name: str) -> DatasetSpec | None:
        return next((d for d in self.datasets if d.name == name), None)
