# Just over 400 lines: the Docker engine's executor, from creating a container to
# removing it, kept together as the other engines are.
"""Run jobs as Docker containers through the Engine API (aiodocker), and find them again.

:class:`DockerContainerManager` is the :class:`~pydatatask.executor.protocol.Executor`
of containers. Every container it starts carries the labels ``pydatatask.app``,
``pydatatask.task``, ``pydatatask.job`` (the exact job id) and ``pydatatask.attempt``,
and a name made of the app, task and a readable form of the job id followed by a hash
of all three, so one (app, task, job) has at most one container: a second launch of a
running job fails instead of running it twice. A restarted controller lists its
containers by label (one request per task) and waits for them. The engine tells when a
container ends, so nothing polls.

A job's standard input is copied into the container as the file
``/.pydatatask-stdin`` before it starts (so a controller crash never leaves a job with a
truncated input), and read through ``/bin/sh``, which the image must then provide. Its
output is read from the engine's log once it ended, the same way whether or not the
controller watched it run; containers use the ``local`` log driver (binary-safe) unless
told otherwise, and the driver's size limits bound what is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import struct
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

from pydatatask._optional import import_optional
from pydatatask.errors import BackendError, BackendUnavailableError, ConfigurationError
from pydatatask.executor.protocol import Executor, ExitStatus, JobHandle, Outputs
from pydatatask.streams import DEFAULT_CHUNK, ByteReader, ByteWriter

if TYPE_CHECKING:
    import aiodocker
    import aiohttp

__all__ = [
    "LABEL_APP",
    "LABEL_ATTEMPT",
    "LABEL_JOB",
    "LABEL_TASK",
    "STDIN_PATH",
    "ContainerHandle",
    "ContainerSpec",
    "DockerContainerManager",
]

logger = logging.getLogger(__name__)

LABEL_APP = "pydatatask.app"
LABEL_TASK = "pydatatask.task"
LABEL_JOB = "pydatatask.job"
LABEL_ATTEMPT = "pydatatask.attempt"
STDIN_PATH = "/.pydatatask-stdin"
"""Where a job's standard input is placed in its container."""

_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_FRAME = struct.Struct(">BxxxL")
_UNAVAILABLE_STATUS = 900  # what aiodocker reports when the engine cannot be reached


def _aiodocker() -> ModuleType:
    return import_optional("aiodocker", "docker")


@dataclass(frozen=True)
class ContainerSpec:
    """What to run: the image, the command, and how to confine it."""

    image: str
    command: Sequence[str]
    environ: Mapping[str, str] = field(default_factory=dict)
    cpu: float = 0.0
    """Cores, passed to the engine as ``NanoCpus`` (0: no limit)."""
    memory: int = 0
    """Bytes, passed to the engine as ``Memory`` (0: no limit)."""
    network_mode: str = "none"
    stdin: ByteReader | None = None
    """The job's standard input, copied into the container before it starts."""
    log_config: Mapping[str, Any] = field(default_factory=lambda: {"Type": "local"})
    user: str | None = None
    """The engine's ``User`` (a name, ``uid`` or ``uid:gid``), if not the image's user."""
    workdir: str | None = None
    """The engine's ``WorkingDir``, if not the image's."""


@dataclass(frozen=True)
class ContainerHandle(JobHandle):
    """One job's container as the engine reported it."""

    id: str
    state: str = field(default="unknown", compare=False)
    """The engine's state when it was looked up (``created``, ``running``, ``exited``, ...)."""

    def as_record(self) -> dict[str, Any]:
        """Return the container id."""
        return {"container": self.id}


@contextlib.contextmanager
def _translate(manager: DockerContainerManager, action: str) -> Iterator[None]:
    """Turn aiodocker and aiohttp errors raised inside the block into pydatatask errors."""
    docker_error: type[aiodocker.DockerError] = _aiodocker().DockerError
    connection_error: type[aiohttp.ClientConnectionError] = import_optional(
        "aiohttp", "docker"
    ).ClientConnectionError
    try:
        yield
    except docker_error as exc:
        if exc.status == _UNAVAILABLE_STATUS:
            raise BackendUnavailableError(
                f"could not reach the Docker engine of {manager!r} while {action}: {exc.message}"
            ) from exc
        raise BackendError(
            f"the Docker engine failed while {action} ({exc.status}): {exc.message}"
        ) from exc
    except connection_error as exc:
        raise BackendUnavailableError(
            f"lost the Docker engine of {manager!r} while {action}: {exc}"
        ) from exc


def _status(error: BaseException) -> int | None:
    cause = error.__cause__
    return getattr(cause, "status", None)


class DockerContainerManager(Executor[ContainerSpec, ContainerHandle]):
    """Start, find, wait for, stop and remove job containers on one Docker engine.

    :param app: the application name in every container's labels and name.
    :param docker: a session accessor returning an ``aiodocker.Docker`` client.
    :raises ConfigurationError: for an app name other than letters, digits, ``_``, ``.``
        and ``-`` (starting with a letter or digit).
    """

    def __init__(self, app: str, docker: Callable[[], aiodocker.Docker]) -> None:
        if not isinstance(app, str) or _APP_NAME.fullmatch(app) is None:
            raise ConfigurationError(
                f"invalid app name {app!r}: use letters, digits, '_', '.' and '-'"
            )
        self.app = app
        self._docker = docker

    def __repr__(self) -> str:
        return f"<DockerContainerManager {self.app}>"

    @property
    def docker(self) -> aiodocker.Docker:
        """The aiodocker client of the open session."""
        return self._docker()

    def container_name(self, task: str, job: str) -> str:
        """Return the one container name ``job`` of ``task`` may have."""
        key = "\0".join((self.app, task, job)).encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(key).hexdigest()[:12]
        readable = _UNSAFE.sub("_", job).strip("._-")[:40]
        return "-".join(part for part in ("pdt", self.app, task, readable, digest) if part)

    # ---------------------------------------------------------------- starting

    async def submit(
        self, task: str, job: str, attempt: int, spec: ContainerSpec
    ) -> ContainerHandle:
        """Create the job's container (pulling a missing image), copy its input, start it.

        A stopped leftover container of the same job is removed first.

        :raises BackendError: when the job already has a running container, or the
            engine refuses the container.
        :raises BackendUnavailableError: when the engine cannot be reached.
        """
        handle = await self._create(task, job, attempt, spec)
        try:
            if spec.stdin is not None:
                await self._put_stdin(handle, spec.stdin)
            with _translate(self, f"starting the container of {job!r}"):
                await self.docker.containers.container(handle.id).start()
        except BaseException:
            await asyncio.shield(self._remove_quietly(handle))
            raise
        return replace(handle, state="running")

    async def _create(
        self, task: str, job: str, attempt: int, spec: ContainerSpec
    ) -> ContainerHandle:
        name = self.container_name(task, job)
        config = self._config(task, job, attempt, spec)
        for tries in range(3):
            try:
                with _translate(self, f"creating the container {name}"):
                    container = await self.docker.containers.create(config, name=name)
                return ContainerHandle(task, job, attempt, container.id, "created")
            except BackendError as error:
                status = _status(error)
                if status == 404 and tries == 0:
                    await self.pull(spec.image)
                elif status == 409:
                    await self._remove_leftover(name)
                else:
                    raise
        raise BackendError(f"could not create the container {name}")

    def _config(self, task: str, job: str, attempt: int, spec: ContainerSpec) -> dict[str, Any]:
        host: dict[str, Any] = {
            "NetworkMode": spec.network_mode,
            "LogConfig": dict(spec.log_config),
        }
        if spec.cpu > 0:
            host["NanoCpus"] = round(spec.cpu * 1e9)
        if spec.memory > 0:
            host["Memory"] = spec.memory
        command = list(spec.command)
        entrypoint: list[str] | None = None
        if spec.stdin is not None:
            entrypoint = ["/bin/sh", "-c", f'exec "$0" "$@" < {STDIN_PATH}']
        identity = {"User": spec.user} if spec.user is not None else {}
        if spec.workdir is not None:
            identity["WorkingDir"] = spec.workdir
        return {
            **identity,
            "Image": spec.image,
            "Entrypoint": entrypoint or [command[0]],
            "Cmd": command if entrypoint else command[1:],
            "Env": [f"{key}={value}" for key, value in spec.environ.items()],
            "Labels": {
                LABEL_APP: self.app,
                LABEL_TASK: task,
                LABEL_JOB: job,
                LABEL_ATTEMPT: str(attempt),
            },
            "HostConfig": host,
        }

    async def pull(self, image: str) -> None:
        """Pull ``image`` into the engine.

        :raises BackendError: when the engine cannot pull it.
        """
        logger.info("%r: pulling %s", self, image)
        with _translate(self, f"pulling the image {image}"):
            await self.docker.images.pull(image)

    async def _remove_leftover(self, name: str) -> None:
        with _translate(self, f"inspecting the existing container {name}"):
            existing = await self.docker.containers.get(name)
        if existing["State"].get("Running"):
            raise BackendError(
                f"the container {name} of this job is already running; "
                "another controller may be running this pipeline"
            )
        logger.warning("%r: removing the leftover container %s", self, name)
        await self.remove(existing.id)

    async def _put_stdin(self, handle: ContainerHandle, reader: ByteReader) -> None:
        """Copy ``reader`` into the created container as :data:`STDIN_PATH`.

        The input is spooled to a temporary file first, because a tar entry needs its
        size up front; it is streamed, never held in memory whole.
        """
        spool = await asyncio.to_thread(tempfile.TemporaryFile)
        try:
            size = 0
            while chunk := await reader.read(DEFAULT_CHUNK):
                await asyncio.to_thread(spool.write, chunk)
                size += len(chunk)
            await asyncio.to_thread(spool.seek, 0)
            container = self.docker.containers.container(handle.id)
            with _translate(self, f"copying the input into the container of {handle.job!r}"):
                # aiodocker leaves put_archive unannotated; aiohttp sends the async iterator.
                await container.put_archive(  # type: ignore[no-untyped-call]
                    "/", _tar_stream(spool, size)
                )
        finally:
            await asyncio.to_thread(spool.close)

    async def _remove_quietly(self, handle: ContainerHandle) -> None:
        try:
            await self.remove(handle.id)
        except (OSError, BackendError) as exc:
            logger.warning("%r: could not remove the container of %r: %s", self, handle.job, exc)

    # ---------------------------------------------------------------- finding

    async def live(self, task: str) -> list[ContainerHandle]:
        """Return ``task``'s started containers in this app, running or ended, in one request."""
        filters = {"label": [f"{LABEL_APP}={self.app}", f"{LABEL_TASK}={task}"]}
        with _translate(self, f"listing the containers of task {task!r}"):
            found = await self.docker.containers.list(all=True, filters=filters)
        handles = []
        for container in found:
            labels = container["Labels"] or {}
            if LABEL_JOB in labels and container["State"] not in ("created", "removing"):
                handles.append(
                    ContainerHandle(
                        task,
                        labels[LABEL_JOB],
                        _attempt(labels),
                        container.id,
                        container["State"],
                    )
                )
        return handles

    async def find(self, task: str, job: str) -> ContainerHandle | None:
        """Return the container of ``job``, or None when it has none."""
        name = self.container_name(task, job)
        try:
            with _translate(self, f"inspecting the container {name}"):
                container = await self.docker.containers.get(name)
        except BackendError as error:
            if _status(error) == 404:
                return None
            raise
        state = container["State"]["Status"]
        if state == "removing":  # being removed already: the job is gone
            return None
        labels = container["Config"]["Labels"] or {}
        return ContainerHandle(task, job, _attempt(labels), container.id, state)

    def restore(
        self, task: str, job: str, attempt: int, record: Mapping[str, Any]
    ) -> ContainerHandle:
        """Rebuild a handle from its container id.

        :raises BackendError: when the record names no container.
        """
        if not isinstance(record.get("container"), str):
            raise BackendError(f"not a container handle: {dict(record)!r}")
        return ContainerHandle(task, job, attempt, record["container"])

    # ---------------------------------------------------------------- following

    async def wait(self, handle: ContainerHandle) -> ExitStatus:
        """Wait for the container to end; one that is gone ended without a status."""
        try:
            with _translate(self, f"waiting for the container of {handle.job!r}"):
                result = await self.docker.containers.container(handle.id).wait(timeout=None)
        except BackendError as error:
            if _status(error) == 404:
                return ExitStatus(None)
            raise
        return ExitStatus(int(result.get("StatusCode", -1)))

    async def stop(self, handle: ContainerHandle, grace: float | None = None) -> None:
        """Stop the container: SIGTERM, then SIGKILL after ``grace`` seconds.

        Without a ``grace`` it is killed at once. A container that ended is left as it is.
        """
        container = self.docker.containers.container(handle.id)
        try:
            with _translate(self, f"stopping the container of {handle.job!r}"):
                if grace is None or grace <= 0:
                    await container.kill()
                else:
                    await container.stop(t=math.ceil(grace))
        except BackendError as error:
            if _status(error) not in (404, 409):  # gone, or not running
                raise

    async def collect(self, handle: ContainerHandle, outputs: Outputs) -> None:
        """Copy the ended container's log, byte for byte, to ``stdout`` and ``stderr``."""
        writers: dict[int, ByteWriter] = {}
        for number, stream in ((1, "stdout"), (2, "stderr")):
            if outputs.wants(stream):
                writers[number] = await outputs.writer(stream)
        if not writers:
            return
        params = {"stdout": "1", "stderr": "1", "follow": "1"}
        # aiodocker decodes logs to text; the raw multiplexed stream keeps bytes intact.
        with _translate(self, f"reading the log of the container of {handle.job!r}"):
            async with self.docker._query(
                f"containers/{handle.id}/logs", "GET", params=params, timeout=None
            ) as response:
                while True:
                    try:
                        header = await response.content.readexactly(_FRAME.size)
                    except asyncio.IncompleteReadError:
                        return
                    number, length = _FRAME.unpack(header)
                    data = await response.content.readexactly(length)
                    if number in writers:
                        await writers[number].write(data)

    async def forget(self, handle: ContainerHandle) -> None:
        """Remove the container."""
        await self.remove(handle.id)

    async def remove(self, container_id: str) -> None:
        """Remove a container, killing it if it runs.

        A missing container is fine, and so is one whose removal is already under way
        (the engine answers 409 to a second, forced removal).
        """
        try:
            with _translate(self, f"removing the container {container_id[:12]}"):
                await self.docker.containers.container(container_id).delete(force=True)
        except BackendError as error:
            if _status(error) not in (404, 409):
                raise


def _attempt(labels: Mapping[str, str]) -> int:
    try:
        return int(labels.get(LABEL_ATTEMPT, "1"))
    except ValueError:
        return 1


async def _tar_stream(spool: IO[bytes], size: int) -> AsyncIterator[bytes]:
    """Yield a tar archive holding one file, :data:`STDIN_PATH`, read from ``spool``."""
    entry = tarfile.TarInfo(STDIN_PATH.lstrip("/"))
    entry.size, entry.mode = size, 0o444
    yield entry.tobuf(format=tarfile.GNU_FORMAT)
    while chunk := await asyncio.to_thread(spool.read, DEFAULT_CHUNK):
        yield chunk
    yield b"\0" * ((-size) % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)
