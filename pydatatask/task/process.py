"""Tasks whose jobs are shell scripts run as processes by a process manager.

A :class:`ProcessTask` renders its jinja2 ``template`` for a job into a
:class:`~pydatatask.executor.linux.ProcessSpec`, which a
:class:`~pydatatask.executor.linux.LinuxProcessManager` (local or over SSH) runs; the
lifecycle (follow, re-attach, timeout, kill, quota, clean-up) is
:class:`~pydatatask.task.external.ExternalTask`'s.

The ``pids`` repository is the task's claim store, the memory of what runs: an entry is
created before the process starts and removed only after the job's done record, so a
controller that crashes at any point is followed by one that re-attaches to the running
jobs, reaps the ones that ended meanwhile, and never starts a job twice. Each entry
names the controller that follows the job, and is created only if absent
(:meth:`~pydatatask.MetadataRepository.create`), so a second controller started on the
same pipeline neither starts a job the first one holds nor takes over, resets or
removes the first one's jobs while it lives: it leaves them alone and says so. Jobs of
a controller that died are taken over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydatatask.errors import ConfigurationError, ProcessExitError
from pydatatask.executor.linux import LinuxProcessManager, ProcessHandle, ProcessSpec
from pydatatask.executor.local import LocalLinuxManager
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.repository.filesystem import YamlMetadataFileRepository
from pydatatask.repository.filesystem.folder import FolderRepository
from pydatatask.streams import ByteReader
from pydatatask.task.external import Source
from pydatatask.task.retry import RetryPolicy
from pydatatask.task.script import STDOUT, OnExit, ScriptTask, StdoutSentinel
from pydatatask.templating import render

__all__ = ["STDOUT", "ProcessExitError", "ProcessTask", "StdoutSentinel"]


class ProcessTask(ScriptTask[ProcessSpec, ProcessHandle]):
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
    :param max_concurrent: the most jobs of this task running at once.
    :param version: the code's version for provenance (default: a hash of the templates).
    :param user: run the script as this account of the host (a name or uid), switched
        to with ``setpriv``, which needs the manager to run as root; over SSH only the
        connection's own login is accepted. The pipeline checks it when it opens.
    :param workdir: run the script in this folder of the host (default: the job's folder).
    :raises TypeError: for an unknown keyword argument.
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
        version: str | None = None,
        user: str | None = None,
        workdir: str | None = None,
    ) -> None:
        if template is None:
            raise ConfigurationError(f"task {name!r}: a ProcessTask needs a template (a script)")
        self._manager: Source[LinuxProcessManager] = Source(
            name, "manager", manager, LinuxProcessManager
        )
        super().__init__(
            name,
            template,
            manager=self._manager,
            resource_manager=resource_manager,
            job_resources=Resources() if job_resources is None else job_resources,
            window=window,
            environ=environ,
            done=done,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            ready=ready,
            on_exit=on_exit,
            kill_grace=kill_grace,
            timeout=timeout,
            retry=retry,
            max_concurrent=max_concurrent,
            version=version,
        )
        self.pids = pids if pids is not None else _default_pids(name, manager, self.done)
        self.link("pids", self.pids, is_status=True, inhibits_start=True)
        self.claims = self.pids
        self.user = user
        self.workdir = workdir

    @property
    def manager(self) -> LinuxProcessManager:
        """The manager that runs this task's jobs (an accessor's value while its session is open).

        :raises ConfigurationError: when an accessor returns something else.
        :raises LifecycleError: when the accessor's session is closed.
        """
        return self._manager.get()

    async def bind(self) -> None:
        """Check the wiring and templates, and that jobs can run as ``user`` on the host.

        :raises ConfigurationError: as :meth:`ExternalTask.bind
            <pydatatask.task.external.ExternalTask.bind>`, or for a ``user`` the host has
            not, or its manager cannot switch to.
        """
        await super().bind()
        if self.user is not None:
            try:
                await self.manager.account(self.user)
            except ConfigurationError as exc:
                raise ConfigurationError(f"task {self.name!r}: {exc}") from exc

    async def _spec(self, context: dict[str, Any], stdin: ByteReader | None) -> ProcessSpec:
        return ProcessSpec(
            script=await render(self.template, context),
            environ=self.environ,
            stdin=stdin,
            merge_stderr=self.merge_stderr,
            user=self.user,
            workdir=self.workdir,
        )


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
