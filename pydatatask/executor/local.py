"""Run jobs as process groups on this machine (see :mod:`pydatatask.executor.linux`)."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import BinaryIO

from pydatatask.executor.commands import run_command
from pydatatask.executor.linux import LinuxProcessManager, ProcessHandle
from pydatatask.streams import DEFAULT_CHUNK, ByteReader

__all__ = ["LocalLinuxManager"]


class _LocalFileReader(ByteReader):
    """Reads a local file in chunks, each read in a worker thread."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    async def _read_some(self, n: int) -> bytes:
        return await asyncio.to_thread(self._file.read, n)

    async def _release(self) -> None:
        await asyncio.to_thread(self._file.close)


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


def _remove_folder(directory: str, line: str) -> None:
    """Remove a job folder unless its pid file names another start than ``line``."""
    try:
        with open(os.path.join(directory, "pid"), encoding="ascii", errors="replace") as file:
            current = file.readline().strip()
    except FileNotFoundError:
        current = line
    if current == line:
        shutil.rmtree(directory, ignore_errors=True)


class LocalLinuxManager(LinuxProcessManager):
    """Run each job as a process group on this machine, under ``{local_path}/{app}/``.

    Jobs are detached from the controller: they keep running when it exits or crashes,
    and a restarted controller finds them again through the task's ``pids`` repository.

    :param app: names this application's folder under ``local_path``.
    :param local_path: the folder holding job folders.
    :raises ConfigurationError: for an invalid app name.
    """

    def __init__(self, app: str, local_path: str | os.PathLike[str] = "/tmp/pydatatask") -> None:
        super().__init__(app, os.fspath(local_path))

    async def run_shell(self, script: str, *args: str) -> tuple[int, bytes, bytes]:
        """Run ``sh -c script sh args...`` here; return (status, stdout, stderr)."""
        return await run_command("sh", "-c", script, "sh", *args)

    async def write_file(self, path: str, data: bytes | ByteReader) -> None:
        """Write ``data`` to ``path``, copying a reader in bounded chunks."""
        if isinstance(data, bytes):
            await asyncio.to_thread(_write_bytes, path, data)
            return
        file = await asyncio.to_thread(open, path, "wb")
        try:
            while chunk := await data.read(DEFAULT_CHUNK):
                await asyncio.to_thread(file.write, chunk)
        finally:
            await asyncio.to_thread(file.close)

    async def open_file(self, path: str) -> ByteReader:
        """Open ``path`` for reading.

        :raises FileNotFoundError: when it does not exist.
        """
        return _LocalFileReader(await asyncio.to_thread(_open_binary, path))

    async def forget(self, handle: ProcessHandle) -> None:
        """Remove the job's folder, unless it holds a newer start of the job by now."""
        await asyncio.to_thread(_remove_folder, self.job_dir(handle.task, handle.job), handle.line)
