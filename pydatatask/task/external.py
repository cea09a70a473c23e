# Longer than 400 lines on purpose: the whole lifecycle every engine shares (start, follow,
# claims, re-attach, stop, clean-up) reads best in one place, as one class.
"""The one lifecycle of jobs that run outside the controller (processes, containers, pods).

An :class:`ExternalTask` renders a spec per job from its jinja2 template and hands it to
an :class:`~pydatatask.executor.protocol.Executor`; task kinds differ only in the spec
they render. The lifecycle is the same for every engine:

- **execute**: render the spec, claim the job, submit it, follow it;
- **follow**: wait for the job to end, copy its output streams into the task's links,
  and record its exit status; a failed job's ``exit_code`` goes into its done record;
- **stop**: when the wait is cancelled, the cancellation's reason
  (``pydatatask.task.stopping.StopReason``) decides: a timeout or an ``rm`` always
  stops the job; a stopping controller does so only with ``on_exit="kill"``, and
  otherwise leaves it running for the next controller;
- **attach**: a restarted controller re-adopts the jobs it finds
  (:meth:`ExternalTask.live_jobs`),
  waiting for the running ones and reaping the ones that ended meanwhile, so no job
  runs twice;
- **forget**: a job's traces on the engine are removed only after its done record is
  written, so a crash at any point loses nothing and leaves nothing behind.

Where the engine alone cannot tell which controller follows a job, the task keeps a
*claim store* (a process task's ``pids``): each entry is created only if absent and
names its controller (``pydatatask.controller.ControllerId``) and the job's
handle, so a second controller neither starts a job the first one holds nor takes over
its jobs while it lives; it leaves them alone and says so. The jobs of a controller that
died are taken over.

A template may use ``job``, the task's :attr:`~ExternalTask.reserved_names` (``task``,
``env``, and what the task kind adds), every link by name, and jinja2's globals
(``range``, ``dict``, ...). Any other name is reported when the pipeline opens, unless
the template reads it with ``| default(...)`` or tests it with ``is defined``.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from datetime import timedelta
from typing import Any, ClassVar, Generic, Literal, TypeVar, Unpack

from pydatatask.controller import ControllerId
from pydatatask.errors import (
    BackendError,
    ConfigurationError,
    JobClaimedError,
    JobNotFoundError,
    ProcessExitError,
    PydatataskError,
)
from pydatatask.executor.protocol import Executor, JobHandle, Outputs
from pydatatask.quota import ResourceManager, Resources, TaskQuota
from pydatatask.records import JobResult
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.streams import ByteWriter
from pydatatask.task.base import Task, TaskOptions
from pydatatask.task.stopping import StopReason, stop_reason
from pydatatask.templating import Lazy, environment, referenced_names, required_names

__all__ = ["ExternalTask", "OnExit", "Source"]

logger = logging.getLogger(__name__)

OnExit = Literal["detach", "kill"]
"""What a stopping controller does with running jobs (leave them, or stop them)."""
SpecT = TypeVar("SpecT")
HandleT = TypeVar("HandleT", bound=JobHandle)
ValueT = TypeVar("ValueT", covariant=True)


class Source(Generic[ValueT]):
    """A value given as itself or as a session accessor returning it.

    :raises ConfigurationError: for a value that is neither of ``kind`` nor callable.
    """

    def __init__(
        self, task: str, what: str, value: ValueT | Callable[[], ValueT], kind: type[Any]
    ) -> None:
        if not isinstance(value, kind) and not callable(value):
            raise ConfigurationError(
                f"task {task!r}: {what} must be a {kind.__name__} or a session accessor "
                f"returning one, not {type(value).__name__}"
            )
        self._task, self._what, self._value, self._kind = task, what, value, kind

    def get(self) -> ValueT:
        """Return the value (an accessor's value while its session is open).

        :raises ConfigurationError: when an accessor returns something else.
        :raises LifecycleError: when the accessor's session is closed.
        """
        if isinstance(self._value, self._kind):
            return self._value  # type: ignore[no-any-return]  # checked just now
        assert callable(self._value)
        value = self._value()
        if not isinstance(value, self._kind):
            raise ConfigurationError(
                f"task {self._task!r}: the {self._what} accessor returned a "
                f"{type(value).__name__}, not a {self._kind.__name__}"
            )
        return value  # type: ignore[no-any-return]  # checked just now


class ExternalTask(Task, Generic[SpecT, HandleT]):
    """A task whose jobs are rendered from ``template`` and run by an executor.

    Subclasses render the spec (:meth:`rendered`) and name the output streams they
    keep (:attr:`streams`); this class does the rest (see the module documentation).

    :param template: the jinja2 template of a job's spec.
    :param window: the period over which the quota's ``launches`` are counted.
    :param executor: the executor, given as itself or as a session accessor.
    :param quota: the quota the jobs draw from (None: no quota).
    :param estimate: what one job holds from the quota until its spec says otherwise
        (None: unknown until the first job's spec is rendered).
    :param on_exit: what a stopping controller does with running jobs: ``"detach"``
        leaves them for the next controller to re-attach; ``"kill"`` stops them, and
        they run again next time.
    :param kill_grace: seconds between a polite stop and a forced one (None: the
        executor's default).
    :param options: the options of every task (:class:`~pydatatask.task.base.TaskOptions`:
        ``timeout``, ``retry``, ``max_concurrent``); ``name``, ``done`` and ``ready`` are
        also those of every task (see :class:`~pydatatask.Task`).
    :raises TypeError: for an option that is not one of every task's.
    :raises ConfigurationError: for a template that is not a str or does not parse, or
        an unknown ``on_exit``.
    """

    runs_elsewhere: ClassVar[bool] = True

    reserved_names: ClassVar[frozenset[str]] = frozenset({"task", "env"})
    """Template names the task provides besides ``job``; no link may take them."""

    def __init__(
        self,
        name: str,
        template: str,
        *,
        window: timedelta | float,
        done: MetadataRepository | None,
        ready: Repository | None,
        executor: Source[Executor[SpecT, HandleT]],
        quota: ResourceManager | None,
        estimate: Resources | None,
        on_exit: OnExit,
        kill_grace: float | None = None,
        **options: Unpack[TaskOptions],
    ) -> None:
        super().__init__(name, done, ready, **options)
        if not isinstance(template, str):
            raise ConfigurationError(f"task {name!r}: template must be a str")
        if on_exit not in ("detach", "kill"):
            raise ConfigurationError(f"task {name!r}: on_exit must be 'detach' or 'kill'")
        if quota is not None and not isinstance(quota, ResourceManager):
            raise ConfigurationError(f"task {name!r}: the quota must be a ResourceManager")
        referenced_names(template)  # a syntax error shows now, not at the first job
        self.template = template
        self.window = window
        self.on_exit: OnExit = on_exit
        self.kill_grace = kill_grace
        self.streams: dict[str, str] = {}
        """Which link receives each output stream (``stdout``, ``stderr``, ``log``)."""
        self.claims = None
        """The claim store, for engines that cannot tell who follows a job."""
        self._executor = executor
        self._quota = TaskQuota(quota, name, estimate, window)
        self._adopted: dict[str, HandleT] = {}
        self._finished: dict[str, HandleT] = {}
        self._failed: dict[str, dict[str, Any]] = {}
        self._forgetting: dict[str, asyncio.Task[None]] = {}
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def executor(self) -> Executor[SpecT, HandleT]:
        """The executor of this task's jobs (an accessor's value while its session is open)."""
        return self._executor.get()

    # ---------------------------------------------------------------- templates

    async def bind(self) -> None:
        """Check the executor, and that no link hides a template name or is unknown to it.

        :raises ConfigurationError: for a link named like one of :attr:`reserved_names`,
            a template name that is neither ``job``, a reserved name, a link nor a
            jinja2 global (a name read with ``| default(...)`` or tested with
            ``is defined`` may be missing), or an executor of the wrong kind.
        """
        clash = self.reserved_names & set(self.links)
        if clash:
            raise ConfigurationError(
                f"task {self.name!r}: links may not be named {', '.join(sorted(clash))}"
            )
        known = {"job", *self.reserved_names, *self.links}
        for what, template in self.templates().items():
            unknown = required_names(template) - known - environment().globals.keys()
            if unknown:
                raise ConfigurationError(
                    f"task {self.name!r}: its {what} uses {_names(unknown)}, which "
                    f"{'is' if len(unknown) == 1 else 'are'} not defined; it can use "
                    f"{_names(known)}"
                )
        _ = self.executor

    def templates(self) -> dict[str, str]:
        """Return the task's templates by what they render, all with the same names."""
        return {"template": self.template}

    def code_material(self) -> str:
        """Return the task's templates (a script, a container's image, a manifest)."""
        return "\0".join(f"{what}\0{text}" for what, text in sorted(self.templates().items()))

    def _link_context(self, job: str) -> dict[str, Any]:
        """Return each link's ``info`` for ``job``, computed only if a template uses it."""
        return {
            name: Lazy(functools.partial(link.repo.info, job)) for name, link in self.links.items()
        }

    @abc.abstractmethod
    def rendered(self, job: str, attempt: int) -> AbstractAsyncContextManager[SpecT]:
        """Render the spec of ``job``; what it holds open (an input) is closed on exit.

        :raises ConfigurationError: for a template that cannot render this job.
        """

    def _asks(self, spec: SpecT) -> Resources | None:
        """Return what a job of ``spec`` asks from the quota, if the spec says."""
        return None

    def _holds(self, handle: HandleT) -> Resources | None:
        """Return what a job found running holds from the quota, if the engine says."""
        return None

    # ---------------------------------------------------------------- quota

    def reserve(self, job: str) -> bool:
        """Charge ``job``'s share of the quota; False when there is no room for now.

        :raises QuotaExceededError: when one job needs more than the whole quota.
        """
        return self._quota.reserve(job)

    def release(self, job: str) -> None:
        """Give back the job's share, then forget the job now that it is recorded."""
        self._quota.release(job)
        self._adopted.pop(job, None)
        handle = self._finished.pop(job, None)
        if handle is not None:
            cleanup = asyncio.get_running_loop().create_task(self._forget(handle))
            self._forgetting[job] = cleanup
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleaned)

    def abandon(self, job: str) -> None:
        """Give back the job's share; its traces and claim entry stay for its new holder."""
        self._quota.release(job)
        self._adopted.pop(job, None)
        self._finished.pop(job, None)

    def _cleaned(self, cleanup: asyncio.Task[None]) -> None:
        self._cleanups.discard(cleanup)
        for job, pending in list(self._forgetting.items()):
            if pending is cleanup:
                del self._forgetting[job]

    async def finish_cleanup(self) -> None:
        """Wait for the clean-up of finished jobs (removing their traces) to end."""
        while pending := [cleanup for cleanup in self._cleanups if not cleanup.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    # ---------------------------------------------------------------- running

    async def execute(self, job: str, attempt: int) -> dict[str, Any]:
        """Render, claim and submit the job, then follow it to its end.

        :raises ProcessExitError: when the job fails (a non-zero or unknown exit status).
        :raises JobClaimedError: when another controller holds the job.
        :raises BackendError: when the engine cannot start or follow the job.
        :raises QuotaExceededError: when the job asks for more than the whole quota.
        """
        pending = self._forgetting.get(job)
        if pending is not None:  # an earlier attempt's traces go first
            await asyncio.gather(pending, return_exceptions=True)
        return await self._start(job, attempt, claim=True)

    async def _start(self, job: str, attempt: int, claim: bool) -> dict[str, Any]:
        async with self.rendered(job, attempt) as spec:
            asks = self._asks(spec)
            if asks is not None:
                self._quota.settle(job, asks)
            if claim:
                await self._claim(job, attempt)
            try:
                for repo in self._written_outside():
                    await repo.before_outside_write(job)
                handle = await self.executor.submit(self.name, job, attempt, spec)
            except BaseException:
                await asyncio.shield(self._unclaim(job))
                raise
        return await self._follow(job, handle, note=True)

    async def _follow(self, job: str, handle: HandleT, note: bool = False) -> dict[str, Any]:
        try:
            if note and self.claims is not None:
                entry = {
                    "attempt": handle.attempt,
                    "started": time.time(),
                    "controller": ControllerId.current().as_record(),
                    "handle": handle.as_record(),
                }
                await self.claims.dump(job, entry)
            status = await self.executor.wait(handle)
            await self._collect(job, handle)
        except asyncio.CancelledError as cancelled:
            reason = stop_reason(cancelled)
            if reason in (StopReason.TIMEOUT, StopReason.REMOVED) or (
                reason is StopReason.SHUTDOWN and self.on_exit == "kill"
            ):
                await asyncio.shield(self._stop(handle))
            raise
        except Exception:
            # It cannot be followed to its end: stop it rather than leave it unwatched.
            await asyncio.shield(self._stop(handle))
            raise
        self._finished[job] = handle
        fields = {**status.details}
        if status.code is not None:
            fields["exit_code"] = status.code
        if status.succeeded:
            for repo in self._written_outside():
                await repo.after_outside_write(job)
            return fields
        self._failed[job] = fields
        raise ProcessExitError(f"job {job!r} of {self.name} {status.describe()}", status.code)

    def _written_outside(self) -> list[Repository]:
        """Return the output repositories the job writes itself (not through a stream)."""
        streamed = set(self.streams.values())
        return [
            link.repo
            for name, link in self.links.items()
            if link.is_output and name not in streamed
        ]

    async def _collect(self, job: str, handle: HandleT) -> None:
        """Copy the ended job's output streams into their links."""

        async def opener(link: str) -> ByteWriter:
            repo = self.links[link].repo
            assert isinstance(repo, BlobRepository)
            return await repo.open(job, "wb")

        outputs = Outputs(
            {
                stream: (link, functools.partial(opener, link))
                for stream, link in self.streams.items()
                if link in self.links
            }
        )
        try:
            await self.executor.collect(handle, outputs)
        except BaseException:
            await asyncio.shield(outputs.abort())
            raise
        await outputs.close()

    async def run_attempt(
        self, job: str, attempt: int, reattach: bool = False
    ) -> tuple[JobResult, BaseException | None]:
        """Run one attempt; a failed job's ``exit_code`` goes into the done record too."""
        self._failed.pop(job, None)
        result, error = await super().run_attempt(job, attempt, reattach)
        result.update(self._failed.pop(job, {}))
        return result, error

    # ---------------------------------------------------------------- claims

    async def _claim(self, job: str, attempt: int) -> None:
        """Create the job's claim entry, naming this controller, or give way.

        :raises JobClaimedError: when another controller holds the job, or finished
            this attempt of it since this controller last looked.
        """
        if self.claims is None:
            return
        me = ControllerId.current()
        entry = {"attempt": attempt, "state": "starting", "controller": me.as_record()}
        if not await self.claims.create(job, entry):
            try:
                holder = ControllerId.from_record((await self.claims.info(job)).get("controller"))
            except (JobNotFoundError, AttributeError):
                holder = None
            raise JobClaimedError(self.name, job, str(holder or "another controller"))
        if await self._recorded(job, attempt):  # it ended under another controller
            await self.claims.delete(job)
            raise JobClaimedError(self.name, job, "another controller that has finished it")

    async def _unclaim(self, job: str) -> None:
        if self.claims is None:
            return
        try:
            await self.claims.delete(job)
        except (OSError, PydatataskError) as exc:
            logger.warning("%s: could not remove the claim of job %r: %s", self.name, job, exc)

    async def _recorded(self, job: str, attempt: int) -> bool:
        """Whether the done record of ``job`` already covers ``attempt``."""
        try:
            record = await self.done.info(job)
        except JobNotFoundError:
            return False
        return isinstance(record, dict) and int(record.get("attempt", 0)) >= attempt

    def _restored(self, job: str, entry: Any) -> HandleT | None:
        """Return the handle a claim entry names, or None when its start was interrupted."""
        record = entry.get("handle") if isinstance(entry, dict) else None
        if not isinstance(record, dict):
            return None
        try:
            return self.executor.restore(self.name, job, int(entry.get("attempt", 1)), record)
        except BackendError as exc:
            logger.warning("%s: job %r has an unreadable handle: %s", self.name, job, exc)
            return None

    async def _claimed(self, shared: bool) -> dict[str, tuple[int, HandleT | None]]:
        """Return the jobs of the claim store that no other live controller follows."""
        assert self.claims is not None
        found: dict[str, tuple[int, HandleT | None]] = {}
        others: dict[str, list[str]] = {}
        for job, entry in (await self.claims.info_all()).items():
            if not isinstance(entry, dict):
                continue
            holder = ControllerId.from_record(entry.get("controller"))
            if holder is not None and not holder.is_current() and holder.is_alive():
                others.setdefault(str(holder), []).append(job)
                continue
            found[job] = (int(entry.get("attempt", 1)), self._restored(job, entry))
        for other, jobs in ({} if shared else others).items():
            logger.warning(
                "another controller is running this pipeline: %s holds %d %s jobs (%s); "
                "they are left to it (without leases, one controller per pipeline is assumed)",
                other,
                len(jobs),
                self.name,
                ", ".join(repr(job) for job in sorted(jobs)[:3])
                + (", ..." if len(jobs) > 3 else ""),
            )
        return found

    # ---------------------------------------------------------------- restarts

    async def live_jobs(self, shared: bool = False) -> dict[str, int]:
        """Return the jobs an earlier controller left, running or ended, with their attempts.

        The traces of jobs whose done record is already written are removed instead.
        Jobs that another live controller follows are left to it, with a warning.
        """
        if self.claims is not None:
            found = await self._claimed(shared)
        else:
            found = {
                handle.job: (handle.attempt, handle)
                for handle in await self.executor.live(self.name)
            }
        live: dict[str, int] = {}
        for job, (attempt, handle) in found.items():
            if handle is not None:
                self._adopted[job] = handle
            if await self._recorded(job, attempt):  # only its clean-up was missing
                try:
                    await self.kill(job)
                except (OSError, PydatataskError) as exc:
                    logger.warning("%s: could not clean up job %r: %s", self.name, job, exc)
                continue
            live[job] = attempt
            self._quota.adopt(job, None if handle is None else self._holds(handle))
        return live

    async def attach(self, job: str, attempt: int) -> dict[str, Any]:
        """Follow a job an earlier controller left, then reap it like :meth:`execute`.

        A job whose start was interrupted before it ran is started now.

        :raises ProcessExitError: when the job failed.
        """
        handle = self._adopted.pop(job, None)
        if self.claims is not None:  # this controller follows it now
            try:
                entry = await self.claims.info(job)
            except JobNotFoundError:  # taken over before its start was noted
                entry = None
            if isinstance(entry, dict):
                me = ControllerId.current().as_record()
                await self.claims.dump(job, {**entry, "controller": me})
                handle = self._restored(job, entry)
        noted = handle is not None
        if handle is None:
            handle = await self.executor.find(self.name, job)
        if handle is None:
            return await self._start(job, attempt, claim=False)
        return await self._follow(job, handle, note=not noted)

    # ---------------------------------------------------------------- stopping

    async def _stop(self, handle: HandleT) -> None:
        """Stop the job; it is forgotten once its record, if it gets one, is written."""
        try:
            await self.executor.stop(handle, self.kill_grace)
        except (OSError, PydatataskError) as exc:
            logger.warning("%s: could not stop job %r: %s", self.name, handle.job, exc)
            return  # keep its traces and claim, so it is not lost track of
        self._finished[handle.job] = handle

    async def _forget(self, handle: HandleT) -> None:
        try:
            await self.executor.forget(handle)
        except (OSError, PydatataskError) as exc:
            logger.warning("%s: could not clean up job %r: %s", self.name, handle.job, exc)
            return  # keep the claim: the next controller cleans up
        await self._unclaim(handle.job)

    async def kill(self, job: str) -> bool:
        """Stop ``job`` where it runs and forget it (``rm`` uses this); True if it had traces.

        :raises BackendError: when the engine cannot be reached or refuses.
        """
        handle = self._adopted.pop(job, None)
        if self.claims is not None:
            with suppress(JobNotFoundError):
                handle = self._restored(job, await self.claims.info(job)) or handle
        if handle is None:
            handle = await self.executor.find(self.name, job)
        if handle is None:
            await self._unclaim(job)
            return False
        try:
            await self.executor.stop(handle, self.kill_grace)
        except PydatataskError as exc:
            raise BackendError(f"{self.name}: could not stop job {job!r}: {exc}") from exc
        await self._forget(handle)
        return True


def _names(names: set[str] | frozenset[str]) -> str:
    return ", ".join(repr(name) for name in sorted(names))
