"""Frozen dataclasses and StrEnums the stages exchange: the Manifest, the Observation, the Plan, the Outcomes."""

from runner.model.manifest import (
    AssociationGoal,
    BenchmarkSpec,
    Consent,
    DatasetSpec,
    DesiredState,
    Manifest,
    Ref,
    ResultsGoal,
    ServerSpec,
    Where,
)
from runner.model.observation import (
    SERVER_DEVELOPMENT,
    SERVER_OPERATION,
    ApprovalStatus,
    BenchmarkModel,
    LocalDataset,
    LocalResult,
    Observation,
    RemoteAssociation,
    RemoteBenchmark,
    RemoteContainer,
    RemoteDataset,
    RemoteResult,
    approved_models,
    identify,
    int_or_none,
    latest_associations,
    latest_results,
)
from runner.model.outcome import ModelRun, Outcome, StepResult
from runner.model.plan import (
    ARGS,
    FORMAT_VERSION,
    PLAN_FORMAT_VERSION,
    Action,
    AssociateArgs,
    AwaitApprovalArgs,
    BenchmarkArgs,
    Change,
    Note,
    Plan,
    PlanFileError,
    PrepareArgs,
    RegisterArgs,
    RunModelArgs,
    SetOperationalArgs,
    Step,
    StepArgs,
    SubmitArgs,
)

__all__ = [
    "ARGS", "FORMAT_VERSION", "PLAN_FORMAT_VERSION", "SERVER_DEVELOPMENT", "SERVER_OPERATION", "Action",
    "ApprovalStatus", "AssociateArgs", "AssociationGoal", "AwaitApprovalArgs", "BenchmarkArgs", "BenchmarkModel",
    "BenchmarkSpec", "Change", "Consent", "DatasetSpec", "DesiredState", "LocalDataset", "LocalResult", "Manifest",
    "ModelRun", "Note", "Observation", "Outcome", "Plan", "PlanFileError", "PrepareArgs", "Ref", "RegisterArgs",
    "RemoteAssociation", "RemoteBenchmark", "RemoteContainer", "RemoteDataset", "RemoteResult", "ResultsGoal",
    "RunModelArgs", "ServerSpec", "SetOperationalArgs", "Step", "StepArgs", "StepResult", "SubmitArgs", "Where",
    "approved_models", "identify", "int_or_none", "latest_associations", "latest_results",
]
