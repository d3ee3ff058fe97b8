"""One root error for the runner; each class knows its exit code and says what to do next."""

from __future__ import annotations

# Exit codes, one meaning each (DESIGN 3).
EXIT_OK = 0  # converged (plan: nothing to do)
EXIT_ERROR = 1  # error, including an invalid manifest
EXIT_CHANGES = 2  # plan found changes
EXIT_GATE = 3  # apply did all it could but waits at a gate
EXIT_USAGE = 64  # usage error
EXIT_INTERRUPTED = 130  # interrupted


class MedperfApplyError(Exception):
    """Root of every error the runner reports: one line saying what, where, and what to do."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text}; {self.hint}" if self.hint else text


class UsageError(MedperfApplyError):
    """The command line itself is wrong."""

    exit_code = EXIT_USAGE


class Interrupted(MedperfApplyError):
    """Ctrl-C or SIGTERM: stopped cleanly, resumable by running again."""

    exit_code = EXIT_INTERRUPTED


class ManifestError(MedperfApplyError):
    """A manifest cannot be read, rendered or validated."""


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


class PrivacyViolation(MedperfApplyError):
    """A request body holds a field DESIGN does not allow for that endpoint: nothing was sent."""


class ContainerSpecError(MedperfApplyError):
    """A container_config, parameters or additional-files record is malformed."""


class ImageMismatch(MedperfApplyError):
    """The local image's identity differs from the registry record's image_hash."""


class ContainerError(MedperfApplyError):
    """A container task failed: carries image, task, exit code and the last log lines."""

    def __init__(self, message: str, *, image: str = "", task: str = "", exit_code: int | None = None,
                 last_lines: tuple[str, ...] = (), log_path: str | None = None, **kw):
        super().__init__(message, **kw)
        self.image = image
        self.task = task
        self.container_exit_code = exit_code
        self.last_lines = tuple(last_lines)
        self.log_path = log_path


class DockerUnavailable(ContainerError):
    """No Docker engine answers at DOCKER_HOST."""


class HashError(MedperfApplyError):
    """A file under a data folder cannot be read (or is not a regular file), so the folder has no hash."""


class DriftError(MedperfApplyError):
    """The raw data changed after registration: the dataset must be registered under a new name."""


class ReferenceNotFound(MedperfApplyError):
    """The manifest names a benchmark, container or dataset the server does not have."""


class StalePlan(MedperfApplyError):
    """A saved plan no longer matches what the server and the state dir hold: plan again."""


class ParticipationError(MedperfApplyError):
    """A dataset cannot take part in a benchmark as the manifest asks (state, container, models)."""


class AssociationRejected(ParticipationError):
    """The latest association of the dataset with the benchmark is REJECTED: nothing waits for it."""
