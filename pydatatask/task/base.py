# Longer than 400 lines on purpose: the task contract and the one place where a job's
# attempt is timed, bounded and turned into its record belong together.
"""The task contract: links, readiness inputs, and the one place a job's outcome is recorded."""

from __future__ import annotations

import abc
import asyncio
import hashlib
import inspect
import keyword
import logging
import re
import time
import traceback
import warnings
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypedDict, Unpack

from pydatatask.errors import ConfigurationError, JobClaimedError
from pydatatask.link import Link
from pydatatask.records import JobResult
from pydatatask.repository.base import MetadataRepository, Repository
from pydatatask.repository.combinators import RelatedItemRepository
from pydatatask.repository.memory import InProcessMetadataRepository
from pydatatask.task.retry import RetryPolicy
from pydatatask.task.stopping import StopReason, stop_reason

__all__ = ["DONE_LINK", "Task", "TaskOptions", "failure_record", "source_of", "timestamp"]

logger = logging.getLogger(__name__)

DONE_LINK = "done"
_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def source_of(func: object) -> str:
    """Return the source of a function for a code token, or what stands for it.

    Functions without source at hand (built in, or defined at a prompt) are described
    by their compiled code, or failing that by their qualified name.
    """
    try:
        return inspect.getsource(func)  # type: ignore[arg-type]
    except (OSError, TypeError):
        pass
    code = getattr(func, "__code__", None)
    if code is not None:
        return repr((code.co_code, code.co_consts, code.co_names))
    kind = type(func)
    module = getattr(func, "__module__", kind.__module__)
    return f"{module}.{getattr(func, '__qualname__', kind.__qualname__)}"


def timestamp(epoch: float) -> str:
    """Format a Unix time as an ISO 8601 UTC string, the form done records use."""
    moment = int(epoch * 1000)  # milliseconds
    last_moment, last_text = _last_millisecond[0]
    if moment == last_moment:
        return last_text
    second, milliseconds = divmod(moment, 1000)
    last_second, prefix = _last_second[0]
    if second != last_second:
        prefix = datetime.fromtimestamp(second, UTC).isoformat()[: -len("+00:00")]
        _last_second[0] = (second, prefix)
    text = f"{prefix}.{milliseconds:03d}+00:00"
    _last_millisecond[0] = (moment, text)
    return text


# The formatted date and time of the last whole second and of the last millisecond seen:
# many jobs start and end within the same ones. Each is one tuple, replaced whole.
_last_second: list[tuple[int, str]] = [(-(10**18), "")]  # a second no clock gives
_last_millisecond: list[tuple[int, str]] = [(-(10**18), "")]


def failure_record(error: BaseException) -> dict[str, Any]:
    """Describe an exception as done-record fields."""
    return {
        "exception": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
    }


class _Deadline:
    """Cancels the current asyncio task with :attr:`StopReason.TIMEOUT` after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self.claimed = False
        self._task = asyncio.current_task()
        self._handle = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        assert self._task is not None
        self.fired = True
        self._task.cancel(StopReason.TIMEOUT)

    def claim(self, cancelled: asyncio.CancelledError | None = None) -> bool:
        """Whether the attempt ended because of this deadline; if so, undo its cancel."""
        if not self.fired or (
            cancelled is not None and stop_reason(cancelled) is not StopReason.TIMEOUT
        ):
            return False
        assert self._task is not None
        self._task.uncancel()
        self.claimed = True
        return True

    def close(self) -> None:
        self._handle.cancel()


def _seconds(value: timedelta | float | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise ConfigurationError(f"{what} must be positive, not {value!r}")
    return seconds


class TaskOptions(TypedDict, total=False):
    """The options every kind of task takes, by keyword, with the same meaning."""

    timeout: timedelta | float | None
    """Stop a job after this long (a ``timedelta`` or seconds) and record a timeout."""
    retry: RetryPolicy | int | None
    """A :class:`RetryPolicy`, or a number of attempts."""
    max_concurrent: int | None
    """The most jobs of the task running at once."""
    version: str | None
    """The task's code version, kept in every done record; a new one makes the task's
    jobs stale (without it, a hash of the body, template, image or manifest is kept)."""


class Task(abc.ABC):
    """One stage of a pipeline; a job is this task applied to one id.

    Every task has a ``done`` link (status, inhibits start) that receives one record per
    finished job: ``success``, ``start_time``, ``end_time``, ``duration``, ``attempt``, and
    on failure ``exception`` and ``traceback`` or ``timeout``.

    :param name: letters, digits, ``_`` and ``-``; unique in a pipeline.
    :param done: where job records go (an in-memory repository when omitted, so nothing
        is remembered across runs).
    :param ready: when given, the repository listing the jobs that may run, in place of
        the ids required by the input links. Done and running jobs are still excluded.
    :param timeout: cancel a job after this long (a ``timedelta`` or seconds) and record
        a timeout.
    :param retry: a :class:`RetryPolicy` or a number of attempts.
    :param max_concurrent: the most jobs of this task running at once.
    :param version: the code's version, kept in each done record's ``provenance``; a new
        one makes the task's done jobs stale (without it, a hash of the body, template,
        image or manifest stands for the code).
    """

    runs_elsewhere: ClassVar[bool] = False
    """Whether jobs run outside the controller and can be re-adopted with :meth:`attach`."""
    claims: MetadataRepository | None = None
    """Where the task notes the jobs it runs elsewhere (a process task's ``pids``), if
    anywhere. Its entries hold jobs back only without leases: with leases, the lease
    decides who follows a job."""

    def __init__(
        self,
        name: str,
        done: MetadataRepository | None = None,
        ready: Repository | None = None,
        **options: Unpack[TaskOptions],
    ) -> None:
        unknown = set(options) - set(TaskOptions.__annotations__)
        if unknown:
            raise TypeError(
                f"task {name!r}: unexpected keyword argument {', '.join(sorted(unknown))}; "
                f"the options of every task are {', '.join(TaskOptions.__annotations__)}"
            )
        timeout = options.get("timeout")
        max_concurrent = options.get("max_concurrent")
        if not isinstance(name, str) or _TASK_NAME.fullmatch(name) is None:
            raise ConfigurationError(
                f"invalid task name {name!r}: use letters, digits, '_' and '-', "
                "starting with a letter or '_'"
            )
        if max_concurrent is not None and max_concurrent < 1:
            raise ConfigurationError(f"task {name!r}: max_concurrent must be at least 1")
        self.name = name
        self.links: dict[str, Link] = {}
        self.done: MetadataRepository = done if done is not None else InProcessMetadataRepository()
        self.ready = ready
        self.timeout = _seconds(timeout, f"task {name!r} timeout")
        self.retry = RetryPolicy.coerce(options.get("retry"))
        self.max_concurrent = max_concurrent
        version = options.get("version")
        if version is not None and (not isinstance(version, str) or not version):
            raise ConfigurationError(f"task {name!r}: version must be a non-empty str")
        self.version = version
        self._code_token: str | None = None
        self.link(DONE_LINK, self.done, is_status=True, inhibits_start=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def link(
        self,
        name: str,
        repo: Repository,
        is_input: bool = False,
        is_output: bool = False,
        is_status: bool = False,
        inhibits_start: bool = False,
        required_for_start: bool | None = None,
        inhibits_output: bool = False,
        required_for_output: bool | None = None,
    ) -> Link:
        """Connect this task to ``repo`` under ``name`` (see :class:`~pydatatask.Link`).

        :raises ConfigurationError: for a duplicate or unusable name, or a non-repository.
        """
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ConfigurationError(
                f"task {self.name!r}: link name {name!r} must be a Python identifier"
            )
        if name == "job":
            raise ConfigurationError(f"task {self.name!r}: 'job' is reserved for the job id")
        if name in self.links:
            raise ConfigurationError(f"task {self.name!r} already has a link named {name!r}")
        if not isinstance(repo, Repository):
            raise ConfigurationError(
                f"task {self.name!r}: link {name!r} needs a Repository, not {type(repo).__name__}"
            )
        link = Link(
            repo,
            is_input=is_input,
            is_output=is_output,
            is_status=is_status,
            inhibits_start=inhibits_start,
            required_for_start=required_for_start,
            inhibits_output=inhibits_output,
            required_for_output=required_for_output,
        )
        self.links[name] = link
        return link

    def plug(
        self,
        output: Task,
        output_links: Iterable[str] | None = None,
        meta: bool = True,
        translator: Repository | None = None,
        translate_allow_deletes: bool = False,
        translate_prefetch_lookup: bool = True,
    ) -> None:
        """Link the outputs of the task ``output`` as inputs of this task.

        Deprecated since 0.5, as pydatatask 0.4's way to connect tasks: link the
        repository itself with :meth:`link` (``is_input=True``); a task that reads what
        another writes already waits for it.

        Every output link of ``output`` (those named in ``output_links``, when given)
        becomes an input link of the same name. With ``meta``, the links that inhibit
        ``output``'s output also inhibit this task's start, and those required for its
        output are required for this task's start; such a link that is not an output is
        named ``OUTPUT_LINK``. With ``translator``, every linked repository is seen
        through ``RelatedItemRepository(repo, translator, translate_allow_deletes,
        translate_prefetch_lookup)``.

        :raises ConfigurationError: when a link name is already taken.
        """
        warnings.warn(
            "Task.plug() is deprecated; link the other task's output repositories with "
            "Task.link(name, repo, is_input=True): the dependency follows from them",
            DeprecationWarning,
            stacklevel=2,
        )
        wanted = None if output_links is None else set(output_links)
        for name, link in list(output.links.items()):
            options: dict[str, bool] = {}
            if link.is_output and (wanted is None or name in wanted):
                options["is_input"] = True
            if meta and link.inhibits_output:
                options["inhibits_start"] = True
            if meta and link.required_for_output:
                options["required_for_start"] = True
            if not options:
                continue
            repo = link.repo
            if translator is not None:
                repo = RelatedItemRepository(
                    repo, translator, translate_allow_deletes, translate_prefetch_lookup
                )
            self.link(name if link.is_output else f"{output.name}_{name}", repo, **options)

    @property
    def code_token(self) -> str:
        """The token of the task's code in done records, its ``version`` or else a hash.

        The hash covers what :meth:`code_material` returns, taken once, when first asked.
        """
        if self.version is not None:
            return self.version
        if self._code_token is None:
            material = self.code_material().encode("utf-8", "surrogatepass")
            self._code_token = "#" + hashlib.blake2b(material, digest_size=8).hexdigest()
        return self._code_token

    def code_material(self) -> str:
        """Return the text that stands for the task's code (its body, template, ...)."""
        return type(self).__qualname__

    def reads(self) -> list[Repository]:
        """Return the repositories whose contents decide when this task's jobs start."""
        return [link.repo for link in self.links.values() if link.is_read]

    def writes(self) -> list[Repository]:
        """Return the repositories this task's jobs write (outputs and status)."""
        return [link.repo for link in self.links.values() if link.is_output or link.is_status]

    async def bind(self) -> None:  # noqa: B027 - most tasks need no preparation
        """Check the wiring when the pipeline opens; raise :class:`ConfigurationError`."""

    async def live_jobs(self, shared: bool = False) -> dict[str, int]:
        """Return the jobs an earlier controller left running, with their attempt numbers.

        Tasks whose jobs run outside the controller (processes, containers, pods)
        rediscover them here, so a restarted controller waits for them with
        :meth:`attach` instead of launching them twice. With ``shared`` (leases let
        several controllers run the pipeline), jobs that live controllers follow are
        left out without a warning.
        """
        return {}

    async def attach(self, job: str, attempt: int) -> dict[str, Any]:
        """Wait for a job found by :meth:`live_jobs` to end; like :meth:`execute`."""
        raise NotImplementedError(f"{type(self).__name__} cannot rediscover running jobs")

    async def kill(self, job: str) -> bool:
        """Stop ``job`` where it runs outside this controller; True if it was running.

        ``rm`` calls this so a removed job cannot write after its removal. Tasks whose
        jobs run in the controller have nothing to stop here.
        """
        return False

    async def finish_cleanup(self) -> None:  # noqa: B027 - most tasks leave nothing behind
        """Wait for clean-up started after finished jobs; the pipeline calls it on close."""

    def reserve(self, job: str) -> bool:
        """Claim the resources ``job`` needs; False when it must wait for capacity.

        :raises QuotaExceededError: when the job can never fit.
        """
        return True

    def release(self, job: str) -> None:  # noqa: B027 - nothing reserved by default
        """Give back what :meth:`reserve` claimed for ``job``."""

    def abandon(self, job: str) -> None:
        """Give back what :meth:`reserve` claimed, leaving the job's traces to its new holder.

        Called instead of :meth:`release` when this controller lost its lease on ``job``.
        """
        self.release(job)

    @abc.abstractmethod
    async def execute(self, job: str, attempt: int) -> dict[str, Any]:
        """Run the job; return extra fields for its done record; raise on failure."""

    def _begin(self, job: str, attempt: int, reattach: bool) -> Awaitable[dict[str, Any]]:
        return self.attach(job, attempt) if reattach else self.execute(job, attempt)

    async def run_attempt(
        self, job: str, attempt: int, reattach: bool = False
    ) -> tuple[JobResult, BaseException | None]:
        """Run one attempt within the timeout; return its result and its error.

        With ``reattach``, wait for a job an earlier controller started instead. The
        body's failure is returned as data, never raised; :class:`JobClaimedError` (another
        controller holds the job) propagates. So does cancellation by the controller
        (``StopReason.REMOVED``, ``StopReason.SHUTDOWN``), so such a job leaves
        no record. The timeout cancels the attempt with ``StopReason.TIMEOUT``, so
        code that waits for a job elsewhere knows to stop it; the attempt is then
        recorded as timed out, whatever error the cancellation turned into.
        """
        started = time.time()
        success = False
        fields: Mapping[str, Any] | None = None
        failure: BaseException | None = None
        timer = None if self.timeout is None else _Deadline(self.timeout)
        try:
            fields = await self._begin(job, attempt, reattach)
        except JobClaimedError:
            raise  # not a failure of the job: it leaves no record here
        except asyncio.CancelledError as cancelled:
            if timer is None or not timer.claim(cancelled):
                raise
        except Exception as error:  # noqa: BLE001 - user code fails into the record
            if timer is None or not timer.claim():  # else the timeout's cancellation became this
                failure = error
                fields = failure_record(error)
        else:  # unless the body swallowed the timeout's cancellation
            success = timer is None or not timer.claim()
        finally:
            if timer is not None:
                timer.close()
        result = JobResult(success, attempt)
        if timer is not None and timer.claimed:
            failure = TimeoutError(f"timed out after {self.timeout:g} s")
            result.timeout = True
            result.exception = str(failure)
        elif fields:
            result.update(fields)
        ended = time.time()
        result.start_time = timestamp(started)
        result.end_time = timestamp(ended)
        result.duration = int((ended - started) * 1e6 + 0.5) / 1e6  # round(x, 6), cheaper
        return result, failure
