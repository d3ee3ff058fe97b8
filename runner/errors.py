"""Every error class of the runner under one root, and the exit statuses: each error knows its status and says
what to do next."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any


class ExitStatus(IntEnum):
    """The exit codes, one meaning each."""

    OK = 0  # converged (plan: nothing to do)
    ERROR = 1  # error, including an invalid manifest
    CHANGES = 2  # plan found changes
    GATE = 3  # apply did all it could but waits at a gate
    USAGE = 64  # usage error
    INTERRUPTED = 130  # interrupted


EXIT_OK = ExitStatus.OK
EXIT_ERROR = ExitStatus.ERROR
EXIT_CHANGES = ExitStatus.CHANGES
EXIT_GATE = ExitStatus.GATE
EXIT_USAGE = ExitStatus.USAGE
EXIT_INTERRUPTED = ExitStatus.INTERRUPTED


class _Said:
    """What a reported condition says: what, where, and what to do (`log_path`: the log to read, if any)."""

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None,
                 log_path: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint
        self.log_path = log_path

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text}; {self.hint}" if self.hint else text


class MedperfApplyError(_Said, Exception):
    """Root of every error the runner reports: one line saying what, where, and what to do."""

    exit_code = ExitStatus.ERROR


class UsageError(MedperfApplyError):
    """The command line itself is wrong."""

    exit_code = ExitStatus.USAGE


class Interrupted(_Said, KeyboardInterrupt):
    """Ctrl-C or SIGTERM: stopped cleanly, resumable by running again.

    A KeyboardInterrupt, not a MedperfApplyError: no handler of errors (a model's failure, a status report that
    could not be sent) can take an interrupt for an error and go on."""

    exit_code = ExitStatus.INTERRUPTED

    def __init__(self, message: str = "interrupted", **kw):
        super().__init__(message, **kw)


class ManifestError(MedperfApplyError):
    """A manifest cannot be read, rendered or validated."""


class InvalidManifest(ManifestError):
    """The manifest breaks the schema or names paths that do not exist: every problem is listed."""

    def __init__(self, problems: Sequence[Any]):
        self.problems = tuple(problems)
        n = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid manifest ({n} problem{'s' if n != 1 else ''}):\n{lines}",
                         hint="fix the lines above and run `medperf-apply validate` again")

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}"


class StateError(MedperfApplyError):
    """The local state dir is unusable (permissions, corrupt files, a lock held by another run)."""


class LockHeld(StateError):
    """Another reconcile holds the state dir's lock."""


class ServerError(MedperfApplyError):
    """The registry answered with a permanent error (4xx) or something that is not its API."""

    def __init__(self, message: str, *, status: int | None = None, body=None, **kw):
        super().__init__(message, **kw)
        self.status = status
        self.body = body


class ServerUnavailable(ServerError):
    """The registry could not be reached or kept failing after the bounded retries."""


class ServerWriteUncertain(ServerUnavailable):
    """A POST may or may not have reached the registry: observe before deciding to send it again."""


class AuthError(MedperfApplyError):
    """The OpenID provider refused a request or could not be asked (server.oidc)."""


class LoginRequired(AuthError):
    """No usable sign-in: the refresh token is missing, expired or revoked; `medperf-apply login` again."""


class PrivacyViolation(MedperfApplyError):
    """A request body holds a field the privacy allowlist does not allow for that endpoint: nothing was sent."""


class ContainerSpecError(MedperfApplyError):
    """A container_config, parameters or additional-files record is malformed."""


class ImageMismatch(MedperfApplyError):
    """The local image's identity differs from the registry record's image_hash."""


class ContainerError(MedperfApplyError):
    """A container task failed: carries image, task, exit code and the last log lines."""

    def __init__(self, message: str, *, image: str = "", task: str = "", exit_code: int | None = None,
                 last_lines: tuple[str, ...] = (), **kw):
        super().__init__(message, **kw)
        self.image = image
        self.task = task
        self.container_exit_code = exit_code
        self.last_lines = tuple(last_lines)

    def explain(self) -> str:
        """"exited with code N; last lines: ..." (or what else went wrong), for a step's message."""
        if self.container_exit_code is None:
            return f"failed: {self}"
        tail = ("; last lines: " + " | ".join(self.last_lines[-3:])) if self.last_lines else ""
        return f"exited with code {self.container_exit_code}{tail}"


class DockerUnavailable(ContainerError):
    """No Docker engine answers at DOCKER_HOST."""


class SlurmJobError(ContainerError):
    """A container task's Slurm job failed, was cancelled, preempted, timed out or lost its node: carries the job
    id, its final state and exit code, the node, and the last log lines."""

    def __init__(self, message: str, *, job_id: str = "", state: str = "", node: str = "", **kw):
        super().__init__(message, **kw)
        self.job_id = job_id
        self.state = state
        self.node = node

    def explain(self) -> str:
        tail = ("; last lines: " + " | ".join(self.last_lines[-3:])) if self.last_lines else ""
        code = f", exit code {self.container_exit_code}" if self.container_exit_code is not None else ""
        return f"failed: Slurm job {self.job_id} ended {self.state}{code}{tail}"


class SlurmUnavailable(ContainerError):
    """sbatch/squeue are missing or the Slurm controller does not answer."""


class SharedStateError(StateError):
    """The state dir is not on a filesystem the Slurm nodes share: the job could not see the task's files."""


class HashError(MedperfApplyError):
    """A file under a data folder cannot be read (or is not a regular file), so the folder has no hash."""


class DriftError(MedperfApplyError):
    """The raw data changed after registration: the dataset must be registered under a new name."""


class ReferenceNotFound(MedperfApplyError):
    """The manifest names a benchmark, container or dataset the server does not have."""


class PlanFileError(MedperfApplyError):
    """A saved plan file of another format version, or damaged: it is refused, never misread."""


class StalePlan(MedperfApplyError):
    """A saved plan no longer matches what the server and the state dir hold: plan again."""


class ParticipationError(MedperfApplyError):
    """A dataset cannot take part in a benchmark as the manifest asks (state, container, models)."""


class AssociationRejected(ParticipationError):
    """The latest association of the dataset with the benchmark is REJECTED: nothing waits for it."""


class StepFailed(MedperfApplyError):
    """A step could not be done; the message says which part and where to look."""


class ConsentDeclined(MedperfApplyError):
    """The data owner did not consent to what a step would send: it waits (a gate), nothing was sent."""


class RunFailed(MedperfApplyError):
    """A model's run failed; its result record stays, not executed, and is reused by the next run."""

    def __init__(self, message: str, *, partial: bool = False, **kw):
        super().__init__(message, **kw)
        self.partial = partial


class DecisionRefused(MedperfApplyError):
    """A BenchmarkOwner manifest asks for a decision MedPerf would refuse (e.g. approving one's own request)."""
