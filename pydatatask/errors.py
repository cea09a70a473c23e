"""Every exception pydatatask raises.

Each error also inherits the builtin exception a caller would naturally catch, so
``except KeyError`` keeps working for a missing job::

    PydatataskError
    ├── JobNotFoundError          (KeyError)      a job id is not in a repository
    ├── InvalidJobIdError         (ValueError)    a job id breaks the id rules
    ├── CodecError                (ValueError)    a value could not be encoded for storage,
    │   │                                         or stored data could not be decoded
    │   └── UnstorableValueError  (TypeError)     a metadata repository's format (YAML,
    │                                             BSON) cannot hold a value
    ├── ConfigurationError        (ValueError)    a pipeline, task or link is set up wrongly
    │   ├── PipelineValidationError               the pipeline graph is not runnable
    │   ├── QuotaExceededError                    a job needs more than a whole quota
    │   └── InputError                            a command named something unknown or
    │                                             gave a malformed expression or value
    ├── JobNotReadyError          (RuntimeError)  a job was asked to run while not ready
    ├── JobClaimedError           (RuntimeError)  another controller holds the job
    ├── JobFailedError            (RuntimeError)  a job asked for, or one it needs, failed
    ├── ProcessExitError          (RuntimeError)  a job's script exited with an error status
    ├── LifecycleError            (RuntimeError)  a resource used outside an open session
    ├── MissingDependencyError    (ImportError)   an optional backend package is absent
    └── BackendError              (OSError)       a storage or execution backend failed
        └── BackendUnavailableError (ConnectionError)  it could not be reached in time
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "CodecError",
    "ConfigurationError",
    "InputError",
    "InvalidJobIdError",
    "JobClaimedError",
    "JobFailedError",
    "JobNotFoundError",
    "JobNotReadyError",
    "LifecycleError",
    "MissingDependencyError",
    "PipelineValidationError",
    "ProcessExitError",
    "PydatataskError",
    "QuotaExceededError",
    "UnstorableValueError",
]


class PydatataskError(Exception):
    """Base class of every error raised by pydatatask."""


class JobNotFoundError(PydatataskError, KeyError):
    """A job id is not present in a repository."""

    def __init__(self, job: str, repository: object) -> None:
        super().__init__(job)
        self.job = job
        self.repository = repository

    def __str__(self) -> str:
        return f"job {self.job!r} not found in {self.repository!r}"


class InvalidJobIdError(PydatataskError, ValueError):
    """A job id is empty, too long, or contains characters a repository cannot store."""

    def __init__(self, job: object, reason: str) -> None:
        super().__init__(f"invalid job id {job!r}: {reason}")
        self.job = job
        self.reason = reason


class CodecError(PydatataskError, ValueError):
    """A codec could not encode a value to save, or decode the data stored for a job.

    A value that cannot be encoded is not stored: the job keeps its previous value, or
    stays absent.
    """

    def __init__(self, message: str, job: str, codec: str) -> None:
        super().__init__(message)
        self.job = job
        """The job whose value was being saved or loaded."""
        self.codec = codec
        """The name of the codec."""

    def __reduce__(self) -> tuple[type[CodecError], tuple[str, str, str]]:
        return (type(self), (str(self), self.job, self.codec))


class UnstorableValueError(CodecError, TypeError):
    """A metadata repository's format (``yaml``, ``bson``) cannot hold a value.

    Nothing is stored: the job keeps its previous value. It is also the
    :class:`TypeError` these repositories raised before it existed.
    """


class ConfigurationError(PydatataskError, ValueError):
    """A pipeline, task, link or repository was configured wrongly."""


class PipelineValidationError(ConfigurationError):
    """The pipeline cannot run as wired: a cycle, or an input that nothing produces."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class QuotaExceededError(ConfigurationError):
    """A job asks for more resources than its whole quota, so it can never start."""


class InputError(ConfigurationError):
    """A command named an unknown task or link, or gave a malformed expression or value."""


class JobNotReadyError(PydatataskError, RuntimeError):
    """A job was asked to run while it is not ready; its ``reasons`` say why."""

    def __init__(self, task: str, job: str, reasons: list[str]) -> None:
        super().__init__(f"{task} job {job!r} is not ready: {'; '.join(reasons)}")
        self.reasons = reasons


class JobClaimedError(PydatataskError, RuntimeError):
    """Another controller holds a job this controller was about to start.

    It is no failure of the job: the job leaves no done record here, and the controller
    that holds it records its outcome.
    """

    def __init__(self, task: str, job: str, holder: str) -> None:
        super().__init__(f"{task} job {job!r} is held by {holder}")
        self.task = task
        self.job = job
        self.holder = holder


class JobFailedError(PydatataskError, RuntimeError):
    """A job asked for (``materialize``) failed, or a job it needs did.

    Its ``result`` holds the :class:`~pydatatask.target.Result` so far, with the done
    records of the jobs that ran or were found.
    """

    def __init__(self, task: str, job: str, problem: str, result: Any) -> None:
        super().__init__(f"{task} job {job!r} failed: {problem}")
        self.task = task
        self.job = job
        self.problem = problem
        self.result = result

    def __reduce__(self) -> tuple[type[JobFailedError], tuple[str, str, str, Any]]:
        return (type(self), (self.task, self.job, self.problem, self.result))


class ProcessExitError(PydatataskError, RuntimeError):
    """A job's script ended with a non-zero exit status, or was killed without one."""

    def __init__(self, message: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LifecycleError(PydatataskError, RuntimeError):
    """A session resource was used while its session was closed, or opened twice."""


class MissingDependencyError(PydatataskError, ImportError):
    """An optional backend needs a package that is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        self.install_hint = f"pip install 'pydatatask[{extra}]'"
        super().__init__(
            f"the {module!r} package is needed for this backend; install it with: "
            f"{self.install_hint}",
            name=module,
        )
        self.extra = extra


class BackendError(PydatataskError, OSError):
    """A storage or execution backend reported a failure."""


class BackendUnavailableError(BackendError, ConnectionError):
    """A backend could not be reached, or did not answer in time."""
