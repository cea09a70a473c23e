"""Tasks whose jobs are templated shell commands run in Docker containers.

A :class:`ContainerTask` renders its jinja2 ``image`` and ``template`` for a job, runs the
script in a container through a :class:`~pydatatask.executor.docker.DockerContainerManager`,
streams the container's output into the ``stdout``/``stderr`` repositories, and records
``exit_code`` in the done record, like :class:`~pydatatask.ProcessTask` does for host
processes.

The engine is the memory of what runs: containers are labelled with the app, task and
job, so a restarted controller lists them (one request per task), waits again for the
running ones and reaps the ones that ended meanwhile, without starting any job twice.
A container is removed only after its job's done record is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydatatask.errors import (
    ConfigurationError,
    JobNotFoundError,
    PydatataskError,
)
from pydatatask.executor.docker import ContainerHandle, ContainerSpec, DockerContainerManager
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.streams import ByteWriter
from pydatatask.task.retry import RetryPolicy
from pydatatask.task.script import OnExit, ScriptTask, StdoutSentinel
from pydatatask.templating import referenced_names, render

__all__ = ["ContainerTask"]

logger = logging.getLogger(__name__)


class ContainerTask(ScriptTask[DockerContainerManager]):
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
        ``local`` driver keeps output byte-exact for a controller that re-attaches.
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
    ) -> None:
        if not isinstance(image, str):
            raise ConfigurationError(f"task {name!r}: image must be a str")
        if isinstance(entrypoint, str) or not entrypoint:
            raise ConfigurationError(f"task {name!r}: entrypoint must be a non-empty list")
        referenced_names(image)  # a syntax error shows now, not at the first job
        super().__init__(
            name,
            manager,
            DockerContainerManager,
            resource_manager,
            job_resources,
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
        self.image = image
        self.entrypoint = list(entrypoint)
        self.network_mode = network_mode
        self.log_config = dict(log_config) if log_config is not None else {"Type": "local"}
        self._found: dict[str, ContainerHandle] = {}
        self._finished: dict[str, str] = {}

    def templates(self) -> dict[str, str]:
        """Return the script template and the image template."""
        return {**super().templates(), "image template": self.image}

    def _cleanup_after_record(self, job: str) -> Coroutine[Any, Any, None] | None:
        container = self._finished.pop(job, None)
        return None if container is None else self._remove(job, container)

    async def _remove(self, job: str, container: str) -> None:
        try:
            await self.manager.remove(container)
        except (OSError, PydatataskError) as exc:
            logger.warning("%s: could not remove the container of job %r: %s", self.name, job, exc)

    # ---------------------------------------------------------------- running

    async def _spec(self, job: str) -> ContainerSpec:
        context = self._context(job)
        image = (await render(self.image, context)).strip()
        script = await render(self.template, context)
        return ContainerSpec(
            image=image,
            command=[*self.entrypoint, script],
            environ=self.environ,
            cpu=self.job_resources.cpu,
            memory=self.job_resources.memory,
            network_mode=self.network_mode,
            stdin="stdin" in self.links,
            log_config=self.log_config,
        )

    async def execute(self, job: str, attempt: int) -> dict[str, Any]:
        """Render, create and start the job's container, then follow it to its end.

        :raises ProcessExitError: when the script exits with a non-zero status.
        :raises BackendError: when the engine cannot run or follow the container.
        """
        began = asyncio.get_running_loop().time()
        spec = await self._spec(job)
        handle = await self.manager.create(self.name, job, attempt, spec)
        try:
            if spec.stdin:
                stdin = self.links["stdin"].repo
                assert isinstance(stdin, BlobRepository)
                async with await stdin.open(job, "rb") as source:
                    await self.manager.put_stdin(handle, source)
            stream = self.manager.attach(handle)
            await stream.__aenter__()
        except BaseException:
            await asyncio.shield(self._remove(job, handle.id))
            raise
        try:
            try:
                await self.manager.start(handle)
            except BaseException:
                await asyncio.shield(self._remove(job, handle.id))
                raise
            return await self._follow(job, handle, began, stream)
        finally:
            await stream.close()

    async def live_jobs(self) -> dict[str, int]:
        """Return the jobs whose containers an earlier controller left, running or ended.

        Containers that never started are removed (those jobs start normally), and so
        are those of jobs whose done record is already written.
        """
        live: dict[str, int] = {}
        for handle in await self.manager.live(self.name):
            if not handle.started or (
                handle.state in ("exited", "dead")
                and await self._recorded(handle.job, handle.attempt)
            ):
                await self._remove(handle.job, handle.id)
                continue
            live[handle.job] = handle.attempt
            self._found[handle.job] = handle
            self._reattaching.add(handle.job)
        return live

    async def attach(self, job: str, attempt: int) -> dict[str, Any]:
        """Wait for a container an earlier controller started, then reap it.

        Its output is read from the engine's log, from the beginning.

        :raises ProcessExitError: when the script exited with a non-zero status.
        :raises JobNotFoundError: when the job has no container any more.
        """
        began = asyncio.get_running_loop().time()
        handle = self._found.pop(job, None) or await self.manager.find(self.name, job)
        if handle is None:
            raise JobNotFoundError(job, self)
        return await self._follow(job, handle, began, None)

    async def _follow(
        self, job: str, handle: ContainerHandle, began: float, stream: Any
    ) -> dict[str, Any]:
        try:
            exit_code = await self._collect(job, handle, stream)
        except asyncio.CancelledError:
            if self._should_stop(began):
                await asyncio.shield(self._remove(job, handle.id))
            raise
        except Exception:
            # It cannot be followed to its end: stop it rather than leave it unwatched.
            await asyncio.shield(self._remove(job, handle.id))
            raise
        self._finished[job] = handle.id
        return self._outcome(job, exit_code)

    async def _collect(self, job: str, handle: ContainerHandle, stream: Any) -> int:
        """Stream the container's output into the linked repositories; return its status."""
        writers: dict[int, ByteWriter] = {}
        try:
            for number, link_name in ((1, "stdout"), (2, "stderr")):
                link = self.links.get(link_name)
                if link is not None and isinstance(link.repo, BlobRepository):
                    writers[number] = await link.repo.open(job, "wb")
            if self.merge_stderr and 1 in writers:
                writers[2] = writers[1]

            async def sink(number: int, data: bytes) -> None:
                writer = writers.get(number)
                if writer is not None:
                    await writer.write(data)

            if stream is not None:
                await self.manager.copy_attached(stream, sink)
            else:
                await self.manager.copy_logs(handle, sink)
            exit_code = await self.manager.wait(handle)
        except BaseException:
            for writer in writers.values():
                await asyncio.shield(writer.abort())
            raise
        for writer in {id(writer): writer for writer in writers.values()}.values():
            await writer.close()
        return exit_code

    async def kill(self, job: str) -> bool:
        """Remove ``job``'s container if it has one (``rm`` uses this); True if it had.

        :raises BackendError: when the engine cannot be reached.
        """
        handle = await self.manager.find(self.name, job)
        if handle is None:
            return False
        await self.manager.remove(handle.id)
        return True
