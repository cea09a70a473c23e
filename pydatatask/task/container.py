"""Tasks whose jobs are templated shell commands run in Docker containers.

A :class:`ContainerTask` renders its jinja2 ``image`` and ``template`` for a job into a
:class:`~pydatatask.executor.docker.ContainerSpec`, which a
:class:`~pydatatask.executor.docker.DockerContainerManager` runs; the lifecycle (follow,
re-attach, timeout, kill, quota, clean-up) is
:class:`~pydatatask.task.external.ExternalTask`'s, like :class:`~pydatatask.ProcessTask`'s
for host processes.

The engine is the memory of what runs: containers are labelled with the app, task and
job, so a restarted controller lists them (one request per task), waits again for the
running ones and reaps the ones that ended meanwhile, without starting any job twice.
A container is removed only after its job's done record is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydatatask.errors import ConfigurationError
from pydatatask.executor.docker import ContainerHandle, ContainerSpec, DockerContainerManager
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.streams import ByteReader
from pydatatask.task.external import Source
from pydatatask.task.retry import RetryPolicy
from pydatatask.task.script import OnExit, ScriptTask, StdoutSentinel
from pydatatask.templating import referenced_names, render

__all__ = ["ContainerTask"]


class ContainerTask(ScriptTask[ContainerSpec, ContainerHandle]):
    """Run a templated shell script per job in a container of a templated image.

    :param name: the task name.
    :param manager: the :class:`~pydatatask.DockerContainerManager` that runs containers,
        or a session accessor returning one.
    :param resource_manager: the quota the jobs draw from (None: no quota).
    :param job_resources: what one job holds from the quota while it runs; its CPU and
        memory are also given to the engine as the container's limits.
    :param image: a jinja2 template of the image name, with the same context as
        ``template`` (e.g. ``"{{ images }}"`` for a link to a
        :class:`~pydatatask.DockerRepository`). A missing image is pulled.
    :param template: a jinja2 shell script run as ``entrypoint + [script]``; it sees
        ``job``, ``task`` (the name), ``env``/``environ`` and every link by name (its
        ``info`` for the job, computed only when used). Quote values with ``| shquote``.
    :param window: the period over which the quota's ``launches`` are counted.
    :param environ: environment variables set in the container.
    :param done: the done repository.
    :param stdin: a blob repository whose value for the job is the script's stdin (the
        image must then have ``/bin/sh``).
    :param stdout: a blob repository receiving the script's stdout.
    :param stderr: a blob repository receiving its stderr, or :data:`~pydatatask.STDOUT`
        to merge it into stdout.
    :param ready: as for every task.
    :param timeout: kill the container after this long and record a timeout.
    :param retry: a :class:`RetryPolicy` or a number of attempts.
    :param entrypoint: the command the script is appended to.
    :param network_mode: the container's network (``"none"``, ``"host"``, a network name).
    :param on_exit: what a stopping controller does with running containers:
        ``"detach"`` (the default) leaves them for the next controller to re-attach;
        ``"kill"`` removes them, and their jobs run again next time.
    :param log_config: the engine's ``LogConfig`` for the containers; the default
        ``local`` driver keeps the output byte-exact, whoever reads it.
    :param max_concurrent: the most jobs of this task running at once.
    :param version: the code's version for provenance (default: a hash of the templates).
    :param user: run the script as this user of the image (``name``, ``uid`` or
        ``uid:gid``, as the engine's ``User``; default: the image's user).
    :param workdir: run the script in this folder of the container (created if missing;
        default: the image's working directory).
    :raises TypeError: for an unknown keyword argument.
    :raises ConfigurationError: for arguments of the wrong kind.
    """

    def __init__(
        self,
        name: str,
        manager: DockerContainerManager | Callable[[], DockerContainerManager],
        resource_manager: ResourceManager | None,
        job_resources: Resources,
        image: str,
        template: str,
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
        entrypoint: Sequence[str] = ("/bin/sh", "-c"),
        network_mode: str = "none",
        on_exit: OnExit = "detach",
        log_config: Mapping[str, Any] | None = None,
        max_concurrent: int | None = None,
        version: str | None = None,
        user: str | None = None,
        workdir: str | None = None,
    ) -> None:
        if not isinstance(image, str):
            raise ConfigurationError(f"task {name!r}: image must be a str")
        if isinstance(entrypoint, str) or not entrypoint:
            raise ConfigurationError(f"task {name!r}: entrypoint must be a non-empty list")
        referenced_names(image)  # a syntax error shows now, not at the first job
        self._manager: Source[DockerContainerManager] = Source(
            name, "manager", manager, DockerContainerManager
        )
        super().__init__(
            name,
            template,
            manager=self._manager,
            resource_manager=resource_manager,
            job_resources=job_resources,
            window=window,
            environ=environ,
            done=done,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            ready=ready,
            on_exit=on_exit,
            timeout=timeout,
            retry=retry,
            max_concurrent=max_concurrent,
            version=version,
        )
        self.image = image
        self.entrypoint = list(entrypoint)
        self.network_mode = network_mode
        self.log_config = dict(log_config) if log_config is not None else {"Type": "local"}
        self.user = user
        self.workdir = workdir

    @property
    def manager(self) -> DockerContainerManager:
        """The manager that runs this task's containers (an accessor's value while open).

        :raises ConfigurationError: when an accessor returns something else.
        :raises LifecycleError: when the accessor's session is closed.
        """
        return self._manager.get()

    def templates(self) -> dict[str, str]:
        """Return the script template and the image template."""
        return {**super().templates(), "image template": self.image}

    async def _spec(self, context: dict[str, Any], stdin: ByteReader | None) -> ContainerSpec:
        image = (await render(self.image, context)).strip()
        script = await render(self.template, context)
        return ContainerSpec(
            image=image,
            command=[*self.entrypoint, script],
            environ=self.environ,
            cpu=self.job_resources.cpu,
            memory=self.job_resources.memory,
            network_mode=self.network_mode,
            stdin=stdin,
            log_config=self.log_config,
            user=self.user,
            workdir=self.workdir,
        )
