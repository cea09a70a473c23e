"""Run jobs as Docker containers through the Engine API (aiodocker), and find them again.

Every container a :class:`DockerContainerManager` starts carries the labels
``pydatatask.app``, ``pydatatask.task``, ``pydatatask.job`` (the exact job id) and
``pydatatask.attempt``, and a name made of the app, task and a readable form of the job
id followed by a hash of all three, so one (app, task, job) has at most one container:
a second launch of a running job fails instead of running it twice. A restarted
controller lists its containers by label (one request per task) and waits for them.

A job's standard input is copied into the container as the file
``/.pydatatask-stdin`` before it starts (so a controller crash never leaves a job with a
truncated input), and read through ``/bin/sh``, which the image must then provide. Its
output is read from an attach stream that opens before the container starts, which is
byte-exact; a job found again after a restart is read from the engine's log instead,
which is why containers use the ``local`` log driver (binary-safe) unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import struct
import tarfile
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import IO, Any

from pydatatask._optional import import_optional
from pydatatask.errors import BackendError, BackendUnavailableError, ConfigurationError
from pydatatask.streams import DEFAULT_CHUNK, ByteReader

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

Sink = Callable[[int, bytes], Awaitable[None]]
"""Receives output chunks: ``sink(1, data)`` for stdout, ``sink(2, data)`` for stderr."""

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
    stdin: bool = False
    log_config: Mapping[str, Any] = field(default_factory=lambda: {"Type": "local"})


@dataclass(frozen=True)
class ContainerHandle:
    """One job's container as the engine reported it."""

    id: str
    job: str
    attempt: int
    state: str
    """The engine's state: ``created``, ``running``, ``exited``, ``dead``, ..."""

    @property
    def started(self) -> bool:
        """Whether the container was ever started (only ``created`` ones were not)."""
        return self.state != "created"


@contextlib.contextmanager
def _translate(manager: DockerContainerManager, action: str) -> Iterator[None]:
    """Turn aiodocker and aiohttp errors raised inside the block into pydatatask errors."""
    aiodocker = _aiodocker()
    aiohttp = import_optional("aiohttp", "docker")
    try:
        yield
    except aiodocker.DockerError as exc:
        if exc.status == _UNAVAILABLE_STATUS:
            raise BackendUnavailableError(
                f"could not reach the Docker engine of {manager!r} while {action}: {exc.message}"
            ) from exc
        raise BackendError(
            f"the Docker engine failed while {action} ({exc.status}): {exc.message}"
        ) from exc
    except aiohttp.ClientConnectionError as exc:
        raise BackendUnavailableError(
            f"lost the Docker engine of {manager!r} while {action}: {exc}"
        ) from exc


def _status(error: BaseException) -> int | None:
    cause = error.__cause__
    return getattr(cause, "status", None)


class DockerContainerManager:
    """Start, find, wait for, kill and remove job containers on one Docker engine.

    :param app: the application name in every container's labels and name.
    :param docker: a session accessor returning an ``aiodocker.Docker`` client.
    :raises ConfigurationError: for an app name other than letters, digits, ``_``, ``.``
        and ``-`` (starting with a letter or digit).
    """

    def __init__(self, app: str, docker: Callable[[], Any]) -> None:
        if not isinstance(app, str) or _APP_NAME.fullmatch(app) is None:
            raise ConfigurationError(
                f"invalid app name {app!r}: use letters, digits, '_', '.' and '-'"
            )
        self.app = app
        self._docker = docker

    def __repr__(self) -> str:
        return f"<DockerContainerManager {self.app}>"

    @property
    def docker(self) -> Any:
        """The aiodocker client of the open session."""
        return self._docker()

    def container_name(self, task: str, job: str) -> str:
        """Return the one container name ``job`` of ``task`` may have."""
        key = "\0".join((self.app, task, job)).encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(key).hexdigest()[:12]
        readable = _UNSAFE.sub("_", job).strip("._-")[:40]
        return "-".join(part for part in ("pdt", self.app, task, readable, digest) if part)

    async def create(
        self, task: str, job: str, attempt: int, spec: ContainerSpec
    ) -> ContainerHandle:
        """Create (not start) the job's container, pulling the image when it is missing.

        A stopped leftover container of the same job is removed first.

        :raises BackendError: when the job already has a running container, or the
            engine refuses the container.
        :raises BackendUnavailableError: when the engine cannot be reached.
        """
        name = self.container_name(task, job)
        config = self._config(task, job, attempt, spec)
        for tries in range(3):
            try:
                with _translate(self, f"creating the container {name}"):
                    container = await self.docker.containers.create(config, name=name)
                return ContainerHandle(container.id, job, attempt, "created")
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
        if spec.stdin:
            entrypoint = ["/bin/sh", "-c", f'exec "$0" "$@" < {STDIN_PATH}']
        return {
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
            "AttachStdout": True,
            "AttachStderr": True,
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

    async def put_stdin(self, handle: ContainerHandle, reader: ByteReader) -> None:
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
                await container.put_archive("/", _tar_stream(spool, size))
        finally:
            await asyncio.to_thread(spool.close)

    async def start(self, handle: ContainerHandle) -> None:
        """Start a created container."""
        with _translate(self, f"starting the container of {handle.job!r}"):
            await self.docker.containers.container(handle.id).start()

    def attach(self, handle: ContainerHandle) -> Any:
        """Return an unopened attach stream for stdout and stderr (open it before start)."""
        return self.docker.containers.container(handle.id).attach(stdout=True, stderr=True)

    async def copy_attached(self, stream: Any, sink: Sink) -> None:
        """Pass everything from an attach stream to ``sink`` until the container ends."""
        with _translate(self, "reading a container's output"):
            while (message := await stream.read_out()) is not None:
                await sink(message.stream, message.data)

    async def copy_logs(self, handle: ContainerHandle, sink: Sink) -> None:
        """Pass the container's whole log to ``sink``, following it until the container ends."""
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
                    stream, length = _FRAME.unpack(header)
                    await sink(stream, await response.content.readexactly(length))

    async def wait(self, handle: ContainerHandle) -> int:
        """Wait for the container to end; return its exit status."""
        with _translate(self, f"waiting for the container of {handle.job!r}"):
            result = await self.docker.containers.container(handle.id).wait(timeout=None)
        return int(result.get("StatusCode", -1))

    async def live(self, task: str) -> list[ContainerHandle]:
        """Return every container of ``task`` in this app, in one request."""
        filters = {"label": [f"{LABEL_APP}={self.app}", f"{LABEL_TASK}={task}"]}
        with _translate(self, f"listing the containers of task {task!r}"):
            found = await self.docker.containers.list(all=True, filters=filters)
        handles = []
        for container in found:
            labels = container["Labels"] or {}
            try:
                attempt = int(labels.get(LABEL_ATTEMPT, "1"))
            except ValueError:
                attempt = 1
            if LABEL_JOB in labels:
                handles.append(
                    ContainerHandle(container.id, labels[LABEL_JOB], attempt, container["State"])
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
        labels = container["Config"]["Labels"] or {}
        attempt = int(labels.get(LABEL_ATTEMPT, "1"))
        return ContainerHandle(container.id, job, attempt, container["State"]["Status"])

    async def kill(self, handle: ContainerHandle) -> None:
        """Kill the container (SIGKILL); a container that already ended is left as it is."""
        try:
            with _translate(self, f"killing the container of {handle.job!r}"):
                await self.docker.containers.container(handle.id).kill()
        except BackendError as error:
            if _status(error) not in (404, 409):  # gone, or not running
                raise

    async def remove(self, container_id: str) -> None:
        """Remove a container, killing it if it runs; a missing one is fine."""
        try:
            with _translate(self, f"removing the container {container_id[:12]}"):
                await self.docker.containers.container(container_id).delete(force=True)
        except BackendError as error:
            if _status(error) != 404:
                raise


async def _tar_stream(spool: IO[bytes], size: int) -> AsyncIterator[bytes]:
    """Yield a tar archive holding one file, :data:`STDIN_PATH`, read from ``spool``."""
    entry = tarfile.TarInfo(STDIN_PATH.lstrip("/"))
    entry.size, entry.mode = size, 0o444
    yield entry.tobuf(format=tarfile.GNU_FORMAT)
    while chunk := await asyncio.to_thread(spool.read, DEFAULT_CHUNK):
        yield chunk
    yield b"\0" * ((-size) % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)
