"""Tasks whose jobs are shell scripts run as processes by a process manager.

A :class:`ProcessTask` renders its jinja2 ``template`` for a job, starts it through a
:class:`~pydatatask.executor.base.LinuxProcessManager` (local or over SSH), records the
job in its ``pids`` repository, waits for it, copies its output streams into the
``stdout``/``stderr`` repositories, and records ``exit_code`` in the done record.

The ``pids`` repository is the memory of what runs: an entry is written before the
process starts and removed only after the job's done record, so a controller that
crashes at any point is followed by one that re-attaches to the running jobs, reaps the
ones that ended meanwhile, and never starts a job twice.

Each entry names the controller that follows the job, and is created only if absent
(:meth:`~pydatatask.MetadataRepository.create`), so a second controller started on the
same pipeline neither starts a job the first one holds nor takes over, resets or
removes the first one's jobs while it lives: it leaves them alone and says so. Jobs of
a controller that died are taken over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydatatask.controller import ControllerId
from pydatatask.errors import (
    BackendError,
    ConfigurationError,
    JobClaimedError,
    JobNotFoundError,
    ProcessExitError,
    PydatataskError,
)
from pydatatask.executor.base import JobState, LinuxProcessManager, ProcessHandle
from pydatatask.executor.local import LocalLinuxManager
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.repository.filesystem import YamlMetadataFileRepository
from pydatatask.repository.filesystem.folder import FolderRepository
from pydatatask.streams import copy_stream
from pydatatask.task.retry import RetryPolicy
from pydatatask.task.script import STDOUT, OnExit, ScriptTask, StdoutSentinel
from pydatatask.templating import render

__all__ = ["STDOUT", "ProcessExitError", "ProcessTask", "StdoutSentinel"]

logger = logging.getLogger(__name__)


class ProcessTask(ScriptTask[LinuxProcessManager]):
    """Run a templated shell script per job as a process group on a Linux host.

    A minimal task names its manager, its script and its links::

        upper = ProcessTask(
            "upper",
            LocalLinuxManager("books"),
            template="tr a-z A-Z < {{ src | shquote }} > {{ dst | shquote }}",
            done=YamlMetadataFileRepository("work/upper-done"),
        )
        upper.link("src", FileRepository("work/books", ".txt"), is_input=True)
        upper.link("dst", FileRepository("work/upper", ".txt"), is_output=True)

    :param name: the task name.
    :param manager: where jobs run: a :class:`~pydatatask.LocalLinuxManager` or
        :class:`~pydatatask.SSHLinuxManager`, or a session accessor returning one.
    :param resource_manager: the quota the jobs draw from (None: no quota).
    :param job_resources: what one job holds from the quota while it runs (None: nothing).
    :param pids: a metadata repository of the jobs that run (a status link that
        inhibits start); it must outlive the controller for restarts to re-attach. By
        default it is the hidden folder ``.pids`` inside the ``done`` folder when
        ``done`` is a folder repository, else ``{local_path}/{app}/.pids/{name}`` of a
        :class:`~pydatatask.LocalLinuxManager`; otherwise it must be given.
    :param template: a jinja2 shell script (required; it may be passed by keyword); it
        sees ``job``, ``task`` (the name), ``env``/``environ`` (the ``environ`` option)
        and every link by name (its ``info`` for the job, computed only when used).
        Values must be shell-safe or quoted with ``| shquote``.
    :param window: the period over which the quota's ``launches`` are counted.
    :param environ: environment variables exported to the script.
    :param done: the done repository.
    :param stdin: a blob repository whose value for the job is the script's stdin.
    :param stdout: a blob repository receiving the script's stdout.
    :param stderr: a blob repository receiving its stderr, or :data:`STDOUT` to merge
        it into stdout.
    :param ready: as for every task.
    :param timeout: kill the job's process group after this long and record a timeout.
    :param retry: a :class:`RetryPolicy` or a number of attempts.
    :param on_exit: what a stopping controller does with running jobs: ``"detach"``
        (the default) leaves them running for the next controller to re-attach;
        ``"kill"`` kills them, and they run again next time.
    :param kill_grace: seconds between SIGTERM and SIGKILL when a job is killed.
    :raises ConfigurationError: for arguments of the wrong kind.
    """

    def __init__(
        self,
        name: str,
        manager: LinuxProcessManager | Callable[[], LinuxProcessManager],
        resource_manager: ResourceManager | None = None,
        job_resources: Resources | None = None,
        pids: MetadataRepository | None = None,
        template: str | None = None,
        window: timedelta | float = timedelta(minutes=1),
        environ: Mapping[str, str] | None = None,
        done: MetadataRepository | None = None,
        stdin: BlobRepository | None = None,
        stdout: BlobRepository | None = None,
        stderr: BlobRepository | StdoutSentinel | None = None,
        ready: Repository | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | int | None = None,
        *,
        on_exit: OnExit = "detach",
        kill_grace: float = 5.0,
        max_concurrent: int | None = None,
    ) -> None:
        if template is None:
            raise ConfigurationError(f"task {name!r}: a ProcessTask needs a template (a script)")
        super().__init__(
            name,
            manager,
            LinuxProcessManager,  # type: ignore[type-abstract]  # only used with isinstance
            resource_manager,
            Resources() if job_resources is None else job_resources,
            template,
            window,
            environ,
            done,
            stdin,
            stdout,
            stderr,
            ready,
            timeout,
            retry,
            on_exit=on_exit,
            max_concurrent=max_concurrent,
        )
        self.kill_grace = kill_grace
        self.pids = pids if pids is not None else _default_pids(name, manager, self.done)
        self.link("pids", self.pids, is_status=True, inhibits_start=True)
        self._finished: set[str] = set()

    def _cleanup_after_record(self, job: str) -> Coroutine[Any, Any, None] | None:
        if job not in self._finished:
            return None
        self._finished.discard(job)
        return self._discard(job)

    # ---------------------------------------------------------------- running

    async def _render(self, job: str) -> str:
        return await render(self.template, self._context(job))

    async def execute(self, job: str, attempt: int) -> dict[str, Any]:
        """Render the script, start it, and wait for it; see the class documentation.

        :raises ProcessExitError: when the script exits with a non-zero status.
        :raises BackendError: when the manager cannot start or follow the job.
        :raises JobClaimedError: when another controller holds the job.
        """
        return await self._launch(job, attempt, claim=True)

    async def _launch(self, job: str, attempt: int, claim: bool) -> dict[str, Any]:
        """Start the job (first claiming it, unless this controller holds it already)."""
        began = asyncio.get_running_loop().time()
        script = await self._render(job)
        source = None
        if "stdin" in self.links:
            stdin = self.links["stdin"].repo
            assert isinstance(stdin, BlobRepository)
            source = await stdin.open(job, "rb")
        try:
            if claim:
                await self._claim(job, attempt)
            try:
                handle = await self.manager.start(
                    self.name,
                    job,
                    script,
                    environ=self.environ,
                    stdin=source,
                    merge_stderr=self.merge_stderr,
                )
            except BaseException:
                await asyncio.shield(self._abandon(job))
                raise
        finally:
            if source is not None:
                await source.close()
        record = {
            **handle.as_record(),
            "attempt": attempt,
            "started": time.time(),
            "controller": ControllerId.current().as_record(),
        }
        await self.pids.dump(job, record)
        return await self._follow(job, handle, began)

    async def _claim(self, job: str, attempt: int) -> None:
        """Create the job's ``pids`` entry, naming this controller, or give way.

        :raises JobClaimedError: when another controller holds the job, or finished
            this attempt of it since this controller last looked.
        """
        me = ControllerId.current()
        entry = {"attempt": attempt, "state": "starting", "controller": me.as_record()}
        if not await self.pids.create(job, entry):
            try:
                holder = ControllerId.from_record((await self.pids.info(job)).get("controller"))
            except (JobNotFoundError, AttributeError):
                holder = None
            raise JobClaimedError(self.name, job, str(holder or "another controller"))
        if await self._recorded(job, attempt):  # it ended under another controller
            await self.pids.delete(job)
            raise JobClaimedError(self.name, job, "another controller that has finished it")

    async def live_jobs(self) -> dict[str, int]:
        """Return the jobs in ``pids``: running, or ended while no controller watched.

        Entries of jobs whose done record is already written are cleaned up. A job
        whose start was interrupted is returned too: :meth:`attach` starts it if it
        never ran. Jobs that another live controller follows are left to it, with a
        warning.
        """
        live: dict[str, int] = {}
        others: dict[str, list[str]] = {}
        for job, entry in (await self.pids.info_all()).items():
            if not isinstance(entry, dict):
                continue
            holder = ControllerId.from_record(entry.get("controller"))
            if holder is not None and not holder.is_current() and holder.is_alive():
                others.setdefault(str(holder), []).append(job)
                continue
            attempt = int(entry.get("attempt", 1))
            if "exit_code" in entry and await self._recorded(job, attempt):
                await self._discard(job)
                continue
            live[job] = attempt
            self._reattaching.add(job)
        for other, jobs in others.items():
            logger.warning(
                "another controller is running this pipeline: %s holds %d %s jobs (%s); "
                "they are left to it (without leases, one controller per pipeline is assumed)",
                other,
                len(jobs),
                self.name,
                ", ".join(repr(job) for job in sorted(jobs)[:3])
                + (", ..." if len(jobs) > 3 else ""),
            )
        return live

    async def attach(self, job: str, attempt: int) -> dict[str, Any]:
        """Wait for a job an earlier controller started, then reap it like :meth:`execute`.

        :raises ProcessExitError: when the script exited with a non-zero status.
        """
        began = asyncio.get_running_loop().time()
        entry = {
            **await self.pids.info(job),
            "controller": ControllerId.current().as_record(),
        }
        await self.pids.dump(job, entry)  # this controller follows it now
        if "exit_code" in entry:  # ended and reaped; only the done record was missing
            self._finished.add(job)
            return self._outcome(job, entry.get("exit_code"))
        if "pid" not in entry:  # the earlier controller stopped while starting it
            found = await self.manager.find(self.name, job)
            if found is None:
                return await self._launch(job, attempt, claim=False)
            await self.pids.dump(job, {**entry, **found.as_record()})
            entry = {**entry, **found.as_record()}
        return await self._follow(job, _handle(entry), began)

    async def _follow(self, job: str, handle: ProcessHandle, began: float) -> dict[str, Any]:
        try:
            state = await self.manager.wait(self.name, job, handle)
        except asyncio.CancelledError:
            if self._should_stop(began):
                await asyncio.shield(self._terminate(job, handle))
            raise
        await self._reap(job, state)
        return self._outcome(job, state.exit_code)

    async def _reap(self, job: str, state: JobState) -> None:
        """Copy the output streams, then mark the pids entry as ended."""
        targets = [("stdout", "stdout")]
        if not self.merge_stderr:
            targets.append(("stderr", "stderr"))
        for link_name, stream in targets:
            link = self.links.get(link_name)
            if link is None:
                continue
            repo = link.repo
            assert isinstance(repo, BlobRepository)
            try:
                reader = await self.manager.open_output(self.name, job, stream)  # type: ignore[arg-type]
            except FileNotFoundError:
                continue  # the job was killed before it could open its streams
            async with reader, await repo.open(job, "wb") as writer:
                await copy_stream(reader, writer)
        entry = await self.pids.info(job)
        await self.pids.dump(job, {**entry, "exit_code": state.exit_code})
        self._finished.add(job)

    # ---------------------------------------------------------------- stopping

    async def _terminate(self, job: str, handle: ProcessHandle) -> None:
        """Kill the job's process group, then forget the job."""
        try:
            await self.manager.kill(self.name, job, handle, self.kill_grace)
        except (OSError, PydatataskError) as exc:
            logger.warning("%s: could not kill job %r: %s", self.name, job, exc)
            return  # keep the pids entry, so the job is not lost track of
        await self._discard(job)

    async def _abandon(self, job: str) -> None:
        """Undo a start that failed or was interrupted: kill what did start, then forget."""
        try:
            handle = await self.manager.find(self.name, job)
            if handle is not None:
                await self.manager.kill(self.name, job, handle, self.kill_grace)
        except (OSError, PydatataskError) as exc:
            logger.warning("%s: could not stop the start of %r: %s", self.name, job, exc)
            return  # keep the pids entry: the next controller resolves it
        await self._discard(job)

    async def _discard(self, job: str) -> None:
        try:
            await self.pids.delete(job)
            await self.manager.cleanup(self.name, job)
        except (OSError, PydatataskError) as exc:
            logger.warning("%s: could not clean up job %r: %s", self.name, job, exc)

    async def kill(self, job: str) -> bool:
        """Kill ``job``'s process group if it runs (``rm`` uses this); True if there was one.

        :raises BackendError: when the manager cannot reach the job's host.
        """
        try:
            entry = await self.pids.info(job)
        except JobNotFoundError:
            return False
        if not isinstance(entry, dict) or "pid" not in entry:
            found = await self.manager.find(self.name, job)
            if found is None:
                await self._discard(job)
                return False
            entry = found.as_record()
        handle = _handle(entry)
        try:
            await self.manager.kill(self.name, job, handle, self.kill_grace)
        except PydatataskError as exc:
            raise BackendError(f"{self.name}: could not kill job {job!r}: {exc}") from exc
        await self._discard(job)
        return True


def _default_pids(
    name: str, manager: LinuxProcessManager | Callable[[], LinuxProcessManager], done: Repository
) -> MetadataRepository:
    """Choose where a task's ``pids`` live when not given: somewhere that outlives the controller.

    :raises ConfigurationError: when there is no such place to choose.
    """
    if isinstance(done, FolderRepository):
        return YamlMetadataFileRepository(done.basedir / ".pids")
    if isinstance(manager, LocalLinuxManager):
        return YamlMetadataFileRepository(Path(manager.root) / manager.app / ".pids" / name)
    raise ConfigurationError(
        f"task {name!r}: pass pids=, a metadata repository that outlives the controller "
        "(no default: done is not a folder repository and the manager is not local)"
    )


def _handle(entry: Mapping[str, Any]) -> ProcessHandle:
    return ProcessHandle(int(entry["pid"]), int(entry["start_time"]), str(entry.get("boot_id", "")))
