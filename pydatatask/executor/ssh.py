"""Run jobs as process groups on a Linux host reached over SSH (needs the ``ssh`` extra).

The manager does not open connections: ``ssh`` is an accessor, usually a session
resource, that returns an open :class:`asyncssh.SSHClientConnection`. Whoever creates
the connection owns its options: ``known_hosts`` (host keys are checked against the
user's ``~/.ssh/known_hosts`` unless told otherwise), ``client_keys``, ``username`` and
``connect_timeout``, which bounds how long an unreachable host can stall the pipeline.
:func:`ssh_connection` does this with error messages that name the host.

One connection carries every job: each operation is a short remote ``sh -c`` command
on its own channel, and files move over one SFTP session opened once per connection.
Channels in use at once are limited by ``max_sessions``, which must stay below the
server's ``MaxSessions`` (10 by default for OpenSSH).

The accessor is called for every operation, so an accessor that returns a fresh
connection after the old one dropped (an ``async`` accessor is awaited) lets the
manager recover. While the connection is down, operations raise
:class:`~pydatatask.errors.BackendUnavailableError`, except waiting for a job, which
keeps retrying: a lost connection never makes a running job look finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydatatask._optional import import_optional
from pydatatask.errors import BackendError, BackendUnavailableError, ConfigurationError
from pydatatask.executor.linux import Account, LinuxProcessManager
from pydatatask.streams import DEFAULT_CHUNK, ByteReader

if TYPE_CHECKING:
    import asyncssh

__all__ = ["SSHLinuxManager", "ssh_connection"]


def _asyncssh() -> ModuleType:
    return import_optional("asyncssh", "ssh")


@contextlib.contextmanager
def _translated(where: str) -> Iterator[None]:
    """Turn asyncssh and socket failures into pydatatask errors naming ``where``."""
    module = _asyncssh()
    no_such_file: type[asyncssh.SFTPNoSuchFile] = module.SFTPNoSuchFile
    permission_denied: type[asyncssh.PermissionDenied] = module.PermissionDenied
    not_verifiable: type[asyncssh.HostKeyNotVerifiable] = module.HostKeyNotVerifiable
    disconnected: type[asyncssh.DisconnectError] = module.DisconnectError
    not_opened: type[asyncssh.ChannelOpenError] = module.ChannelOpenError
    ssh_error: type[asyncssh.Error] = module.Error
    try:
        yield
    except no_such_file as exc:
        raise FileNotFoundError(f"{where}: {exc.reason}") from exc
    except permission_denied as exc:
        raise BackendError(f"{where}: SSH authentication failed: {exc.reason}") from exc
    except not_verifiable as exc:
        raise BackendError(
            f"{where}: the server's host key is not trusted ({exc.reason}); "
            "check the known_hosts given to asyncssh.connect"
        ) from exc
    except (disconnected, not_opened) as exc:
        raise BackendUnavailableError(f"{where}: SSH connection failed: {exc.reason}") from exc
    except ssh_error as exc:
        raise BackendError(f"{where}: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, BackendError | FileNotFoundError):
            raise
        raise BackendUnavailableError(f"{where}: cannot reach the SSH server: {exc}") from exc


@contextlib.asynccontextmanager
async def ssh_connection(
    host: str, port: int = 22, *, connect_timeout: float = 10.0, **options: Any
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """Open an asyncssh connection for a session resource, with clear errors.

    ``options`` go to :func:`asyncssh.connect` (``username``, ``client_keys``,
    ``known_hosts``, ...). Host keys are verified against ``known_hosts`` (by default
    ``~/.ssh/known_hosts``).

    :raises BackendUnavailableError: when the host cannot be reached within
        ``connect_timeout`` seconds, or refuses the connection.
    :raises BackendError: when authentication fails or the host key is not trusted.
    """
    if TYPE_CHECKING:  # checked against asyncssh's own signature; imported lazily below
        connect = asyncssh.connect
    else:
        connect = _asyncssh().connect
    where = (
        f"ssh://{options.get('username', '')}{'@' if 'username' in options else ''}{host}:{port}"
    )
    with _translated(where):
        connection = await connect(host, port, connect_timeout=connect_timeout, **options)
    try:
        yield connection
    finally:
        connection.close()
        with contextlib.suppress(Exception):
            await connection.wait_closed()


class _SFTPReader(ByteReader):
    def __init__(self, file: asyncssh.SFTPClientFile, where: str) -> None:
        self._file = file
        self._where = where

    async def _read_some(self, n: int) -> bytes:
        with _translated(self._where):
            data: bytes = await self._file.read(n)
        return data

    async def _release(self) -> None:
        with contextlib.suppress(Exception):
            await self._file.close()


class SSHLinuxManager(LinuxProcessManager):
    """Run each job as a process group on an SSH host, under ``{remote_path}/{app}/``.

    :param app: names this application's folder under ``remote_path``.
    :param ssh: an accessor (a session resource) returning an open asyncssh connection;
        it may also be an ``async`` function.
    :param remote_path: the folder on the host holding job folders.
    :param max_sessions: channels used at once on the connection (one more is the SFTP
        session); keep it below the server's ``MaxSessions``.
    :param command_timeout: seconds after which one remote command counts as lost.
    :raises ConfigurationError: for an invalid app name or a non-callable ``ssh``.
    """

    def __init__(
        self,
        app: str,
        ssh: Callable[[], asyncssh.SSHClientConnection | Awaitable[asyncssh.SSHClientConnection]],
        remote_path: str = "/tmp/pydatatask",
        *,
        max_sessions: int = 8,
        command_timeout: float = 60.0,
    ) -> None:
        if not callable(ssh):
            raise ConfigurationError("ssh must be an accessor returning an asyncssh connection")
        if max_sessions < 1:
            raise ConfigurationError("max_sessions must be at least 1")
        super().__init__(app, remote_path)
        self._ssh = ssh
        self._max_sessions = max_sessions
        self.command_timeout = command_timeout
        self._sftp: tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels = asyncio.Semaphore(max_sessions)
        self._sftp_lock = asyncio.Lock()

    def _for_this_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # asyncio primitives belong to one event loop
            self._loop = loop
            self._channels = asyncio.Semaphore(self._max_sessions)
            self._sftp_lock = asyncio.Lock()
            self._sftp = None

    async def connection(self) -> asyncssh.SSHClientConnection:
        """Return the accessor's current connection.

        :raises BackendUnavailableError: when it is closed.
        """
        connection = self._ssh()
        if inspect.isawaitable(connection):
            connection = await connection
        if connection.is_closed():
            raise BackendUnavailableError(f"{self!r}: the SSH connection is closed")
        return connection

    async def account(self, user: str) -> Account | None:
        """Accept ``user`` only as the connection's own login: jobs run as that account.

        :raises ConfigurationError: for any other user; connect as that user instead.
        :raises BackendUnavailableError: when the connection is closed.
        """
        login = (await self.connection()).get_extra_info("username")
        if user != login:
            raise ConfigurationError(
                f"{self!r}: cannot run jobs as {user!r} over an SSH connection that logged "
                f"in as {login!r}; connect as {user!r} instead"
            )
        return None

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        self._for_this_loop()
        connection = await self.connection()
        async with self._sftp_lock:
            if self._sftp is None or self._sftp[0] is not connection:
                async with self._channels:
                    with _translated(repr(self)):
                        client = await connection.start_sftp_client()
                self._sftp = (connection, client)
            return self._sftp[1]

    async def run_shell(self, script: str, *args: str) -> tuple[int, bytes, bytes]:
        """Run ``sh -c script sh args...`` on the host; return (status, stdout, stderr).

        :raises BackendUnavailableError: when the connection is down or the command
            does not finish within ``command_timeout``.
        """
        self._for_this_loop()
        connection = await self.connection()
        command = shlex.join(["sh", "-c", script, "sh", *args])
        timeout_error: type[asyncssh.TimeoutError] = _asyncssh().TimeoutError
        async with self._channels:
            with _translated(repr(self)):
                try:
                    result = await connection.run(
                        command, check=False, encoding=None, timeout=self.command_timeout
                    )
                except timeout_error as exc:
                    raise BackendUnavailableError(
                        f"{self!r}: a remote command took over {self.command_timeout:g} s"
                    ) from exc
        if result.exit_status is None and connection.is_closed():
            raise BackendUnavailableError(f"{self!r}: the SSH connection closed during a command")
        status = result.exit_status if result.exit_status is not None else 255
        # Run with encoding=None, the output is bytes; the type allows str for other encodings.
        stdout, stderr = result.stdout or b"", result.stderr or b""
        if isinstance(stdout, str) or isinstance(stderr, str):
            raise TypeError("asyncssh returned text for a command run with encoding=None")
        return status, stdout, stderr

    async def write_file(self, path: str, data: bytes | ByteReader) -> None:
        """Write ``data`` to ``path`` on the host over SFTP, in bounded chunks."""
        sftp = await self._sftp_client()
        with _translated(f"{self!r} {path}"):
            async with sftp.open(path, "wb", encoding=None) as file:
                if isinstance(data, bytes):
                    await file.write(data)
                    return
                while chunk := await data.read(DEFAULT_CHUNK):
                    await file.write(chunk)

    async def open_file(self, path: str) -> ByteReader:
        """Open ``path`` on the host for reading over SFTP.

        :raises FileNotFoundError: when it does not exist.
        """
        sftp = await self._sftp_client()
        where = f"{self!r} {path}"
        with _translated(where):
            file = await sftp.open(path, "rb", encoding=None)
        return _SFTPReader(file, where)
