# Longer than 400 lines on purpose: the blob and YAML file repositories share the atomic
# writer and the durability rules of done records.
"""Blob and YAML repositories with one file per job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
from typing import Any, BinaryIO, ClassVar, TypeVar

from pydatatask import yamltext
from pydatatask.codecs import Codec, codec_for
from pydatatask.errors import BackendError, JobNotFoundError
from pydatatask.repository.base import BlobRepository, MetadataRepository, yaml_of
from pydatatask.repository.filesystem.folder import (
    PARSE_BATCH,
    FolderRepository,
    _create_file,
    _in_thread,
    _make_hidden,
    fsync_folder,
)
from pydatatask.streams import DEFAULT_CHUNK, ByteReader, ByteWriter

__all__ = ["FileRepository", "YamlMetadataFileRepository"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class _FileReader(ByteReader):
    """Serve reads from the first chunk read at open time, then from the file."""

    def __init__(self, file: BinaryIO | None, head: bytes) -> None:
        self._file = file
        self._buffer = head
        self._offset = 0
        self._lock = threading.Lock()  # a cancelled read may still run in its thread

    @classmethod
    def open_sync(cls, path: str) -> _FileReader:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            head = os.read(descriptor, DEFAULT_CHUNK)
            if len(head) == DEFAULT_CHUNK:  # more may follow: keep the file open
                return cls(open(descriptor, "rb", buffering=0), head)
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)  # the whole file was read: no file object needed
        return cls(None, head)

    def _take(self, n: int) -> bytes:
        start = self._offset
        self._offset = min(start + n, len(self._buffer))
        return self._buffer[start : self._offset]

    def _read_sync(self, size: int) -> bytes:
        with self._lock:
            if self._file is None:
                return b""
            data = self._file.read(size) if size >= 0 else self._file.read()
            if size < 0 or len(data) < size:  # a short read of a regular file is its end
                self._file.close()
                self._file = None
            return data

    def close_sync(self) -> None:
        """Close the file; run in a thread."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    async def _read_some(self, n: int) -> bytes:
        if self._offset < len(self._buffer):
            return self._take(n)
        if self._file is None:
            return b""
        self._buffer = await asyncio.to_thread(self._read_sync, max(n, DEFAULT_CHUNK))
        self._offset = 0
        return self._take(n)

    async def read(self, n: int = -1) -> bytes:
        """Return at most ``n`` bytes (everything left, in one thread hop, when ``n`` < 0)."""
        if n >= 0 or self._closed:
            return await super().read(n)
        rest = self._buffer[self._offset :]
        self._buffer, self._offset = b"", 0
        if self._file is not None:
            rest += await asyncio.to_thread(self._read_sync, -1)
        return rest

    async def _release(self) -> None:
        self._buffer = b""
        if self._file is not None:
            await asyncio.to_thread(self.close_sync)


class _FileWriter(ByteWriter):
    """Buffer up to one chunk in memory; spill to a hidden temporary file; rename on commit.

    The temporary file is locked from its creation until it is renamed into place, so
    tidying the folder never takes it from a live writer. A ``durable`` writer also
    fsyncs the file before the rename and the folder after it, so a committed value
    survives a crash of the machine.
    """

    def __init__(self, repository: FileRepository, job: str, *, durable: bool = False) -> None:
        self._repository = repository
        self._job = job
        self._durable = durable
        self._chunks: list[bytes] = []
        self._size = 0
        self._descriptor: int | None = None
        """The temporary file, written with plain system calls (no buffer: chunks are large)."""
        self._temp: str | None = None
        self._touched = False  # a disk hop was started, so discarding needs one too
        # A hop whose caller was cancelled may still be queued or running in its thread:
        # the lock orders it with the discarding hop, and the flag makes it a no-op after.
        self._lock = threading.Lock()
        self._discarded = False

    def _take(self) -> list[bytes]:
        chunks, self._chunks, self._size = self._chunks, [], 0
        return chunks

    def _spill_locked(self, chunks: list[bytes]) -> bool:
        """Write ``chunks`` to the temporary file; return False if already discarded."""
        if self._discarded:
            return False
        if self._descriptor is None:
            self._temp, self._descriptor = self._repository._create_temp(self._job)
        for chunk in chunks:
            _write_all(self._descriptor, chunk)
        return True

    def _spill_sync(self, chunks: list[bytes]) -> None:
        with self._lock:
            self._spill_locked(chunks)

    def _commit_sync(self, chunks: list[bytes], exclusive: bool = False) -> bool:
        """Write ``chunks`` and install the file as the job's value; return whether it was.

        With ``exclusive`` the file is installed only if the job has no file yet (it is
        hard-linked into place, which fails when the name exists). Nothing is installed
        once the writer was discarded.
        """
        with self._lock:
            if not self._spill_locked(chunks):
                return False
            assert self._descriptor is not None
            assert self._temp is not None
            target = self._repository._target(self._job)
            if self._durable:
                os.fsync(self._descriptor)
            # Rename while the file is open, so it stays locked until it leaves its name.
            if exclusive:
                installed = _link_new(self._temp, target)
            else:
                _keep_mode(self._descriptor, target)
                os.replace(self._temp, target)
                installed = True
            self._temp = None
            descriptor, self._descriptor = self._descriptor, None
            os.close(descriptor)
        if installed and self._durable:
            fsync_folder(self._repository._base)
        return installed

    def _discard_sync(self) -> None:
        with self._lock:
            self._discarded = True
            if self._descriptor is not None:
                descriptor, self._descriptor = self._descriptor, None
                with contextlib.suppress(OSError):
                    os.close(descriptor)
            if self._temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._temp)
                self._temp = None

    async def _write(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size >= DEFAULT_CHUNK:
            self._touched = True
            await asyncio.to_thread(self._spill_sync, self._take())

    async def _commit(self) -> None:
        self._touched = True
        await self._repository._small_io(self._commit_sync, self._take())

    async def _discard(self) -> None:
        self._take()
        if self._touched:
            await asyncio.to_thread(self._discard_sync)


def _link_new(temp: str, target: str) -> bool:
    """Give the file ``temp`` the name ``target`` unless that exists; remove ``temp`` either way."""
    try:
        os.link(temp, target)
    except FileExistsError:
        return False
    finally:
        os.unlink(temp)
    return True


def _write_all(descriptor: int, data: bytes) -> None:
    """Write all of ``data`` to ``descriptor`` (``os.write`` may write only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _keep_mode(descriptor: int, target: str) -> None:
    """Give a replacement the mode of the file it replaces, as writing in place would."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return  # a new file keeps 0o666 & ~umask from its creation
    os.fchmod(descriptor, mode)


class FileRepository(FolderRepository, BlobRepository):
    """One regular file per job: job ``k`` is the file ``basedir / (k + extension)``.

    ``info(job)`` is the path of the file (a ``str``), whether or not it exists yet,
    so a task's template can name the file it is to write (``contains`` says whether it
    exists). ``validate()`` creates the folder and its parents; a write also creates it
    when missing. Listing yields the names of regular files (or links to them) ending in
    ``extension``, without it; hidden files, including the temporary files of writes in
    progress, are never listed.

    A writer keeps up to 64 KiB in memory and then spills to a hidden temporary file
    ``.NAME.RANDOM.tmp`` in the folder, renamed over the job's file when the writer
    closes successfully; a failed or cancelled writer removes it and the old value
    stays. The writer holds an exclusive ``flock`` on its temporary file while it lives;
    ``validate()`` removes the temporaries of writers that were killed (those no one
    locks). A new file gets the mode ``0o666 & ~umask``; a replaced file keeps its mode.
    Values are not fsynced: they survive a crash of the process, not of the machine.

    With ``case_insensitive=True`` the extension matches in any case, listed ids are
    lower-cased, and ``contains``, ``info``, ``open`` and ``delete`` find an existing
    file whose name equals ``job + extension`` ignoring case (``delete`` removes every
    such file; a write replaces the existing one, else creates ``job + extension``;
    ``info`` of an absent job is the path of ``job + extension``). A lookup whose exact
    spelling is absent scans the folder.

    ``load(job)`` and ``save(job, value)`` go through ``codec``: a name (``"json"``,
    ``"csv"``, ...) or a :class:`~pydatatask.codecs.Codec`; None picks it from
    ``extension`` (``".json"`` is JSON, ``".csv"`` CSV, and so on; no or another
    extension is bytes). See :mod:`pydatatask.codecs`.

    :raises ConfigurationError: for an unknown codec name, or an extension that cannot be
        part of a file name.
    """

    _durable = False
    """Whether writes are fsynced before and after their rename."""

    def __init__(
        self,
        basedir: str | os.PathLike[str],
        extension: str = "",
        case_insensitive: bool = False,
        *,
        codec: str | Codec | None = None,
    ) -> None:
        super().__init__(basedir, extension, case_insensitive)
        self._codec = codec_for(codec, self.extension)

    def _is_member_entry(self, entry: os.DirEntry[str]) -> bool:
        return entry.is_file()

    def _is_member_path(self, path: str) -> bool:
        return os.path.isfile(path)

    def _is_removable_path(self, path: str) -> bool:
        return os.path.islink(path) or os.path.isfile(path)

    def _remove_path(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _syncs(self) -> bool:
        """Whether writes sync to disk: durable ones, unless the folder is in memory."""
        return self._durable and not self._inline_io  # tmpfs has no disk to sync to

    def _create_temp(self, job: str) -> tuple[str, int]:
        """Create a hidden temporary file beside the job's file; run in a thread."""
        return _make_hidden(self._base, job + self.extension, "tmp", _create_file)

    def _write_sync(self, job: str, data: bytes, exclusive: bool = False) -> bool:
        """Write ``data`` as the value of ``job`` atomically; run in a thread.

        Return whether it was written: with ``exclusive``, only if ``job`` had no file.
        """
        writer = _FileWriter(self, job, durable=self._syncs())
        try:
            return writer._commit_sync([data], exclusive)
        except BaseException:
            writer._discard_sync()
            raise

    async def _open_reader(self, job: str) -> ByteReader:
        if self._inline_io:
            return self._open_reader_sync(job)
        return await _in_thread(self._open_reader_sync, _FileReader.close_sync, job)

    def _open_reader_sync(self, job: str) -> _FileReader:
        if not self.case_insensitive:  # one open, no separate existence check
            try:
                return _FileReader.open_sync(self._exact(job))
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise JobNotFoundError(job, self) from None
        path = self._require(job)
        try:
            return _FileReader.open_sync(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise JobNotFoundError(job, self) from None  # deleted since it was found

    async def _open_writer(self, job: str) -> ByteWriter:
        return _FileWriter(self, job, durable=self._syncs())


class YamlMetadataFileRepository(FileRepository, MetadataRepository):
    """One YAML file per job: ``info(job)`` parses it and ``dump(job, value)`` writes it.

    It is also a :class:`FileRepository`, so ``open(job, mode)`` reads or writes the raw
    YAML text. Values use YAML's safe subset (mappings, sequences, strings, numbers,
    booleans, null, dates); tuples are stored as lists. Writes are atomic, as for
    :class:`FileRepository`, and durable, since done records and claims live here: the
    file is fsynced before it is renamed into place and the folder after, so a value
    that was stored survives a crash of the machine (``durable=False`` skips the syncs,
    for values that need not outlive the machine; in a folder on a memory file system,
    tmpfs or ramfs, there is no disk and they are skipped too). ``info`` of an absent job raises
    :class:`~pydatatask.errors.JobNotFoundError`.

    ``create(job, value)`` is atomic across processes (on one machine, or on a shared
    filesystem that supports hard links): the value is written to a temporary file that
    is then hard-linked to the job's name, which fails when the name exists.

    ``dump`` of a value YAML cannot represent raises
    :class:`~pydatatask.UnstorableValueError` (a :class:`TypeError`) naming the job,
    and the previous value stays. ``info`` of a file that is not valid YAML raises
    :class:`~pydatatask.errors.BackendError` naming the job and the file: the stored data
    is corrupt, which is a failure of the storage rather than of the caller.
    """

    _durable = True
    atomic_create: ClassVar[bool] = True
    """Atomic, as ``create`` claims the job's name with a hard link, which one caller makes."""

    def __init__(
        self, basedir: str | os.PathLike[str], extension: str = ".yaml", *, durable: bool = True
    ) -> None:
        super().__init__(basedir, extension)
        self._durable = durable

    @property
    def durable(self) -> bool:
        """Whether a stored value is synced to disk before it counts as stored."""
        return self._durable

    # Both a metadata and a blob repository: values are the YAML objects, as for ``info``.
    async def load(self, job: str) -> Any:
        """Return the stored value, as ``info`` does.

        :raises JobNotFoundError: when ``job`` is absent.
        :raises BackendError: when the file is not valid YAML.
        """
        return await MetadataRepository.load(self, job)

    async def save(self, job: str, value: Any) -> None:
        """Store ``value`` durably and atomically, as ``dump`` does.

        :raises UnstorableValueError: for a value YAML cannot represent; the previous
            value stays.
        """
        await MetadataRepository.save(self, job, value)

    def _parse(self, job: str, path: str, data: bytes) -> Any:
        try:
            return yamltext.load(data)
        except yamltext.YamlError as exc:
            raise BackendError(
                f"{self!r}: the value of job {job!r} in {path} is not valid YAML: {exc}"
            ) from exc

    def _load_sync(self, job: str) -> Any:
        path = self._require(job)
        try:
            with open(path, "rb") as file:
                data = file.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise JobNotFoundError(job, self) from None
        return self._parse(job, path, data)

    def _load_batch(self, batch: list[tuple[str, str]]) -> list[tuple[str, Any]]:
        loaded: list[tuple[str, Any]] = []
        for job, name in batch:
            path = os.path.join(self._base, name)
            try:
                with open(path, "rb") as file:
                    data = file.read()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue  # deleted while listing
            loaded.append((job, self._parse(job, path, data)))
        return loaded

    async def _info(self, job: str) -> Any:
        return await self._small_io(self._load_sync, job)

    async def info_all(self) -> dict[str, Any]:
        """Return ``{job: value}``, reading and parsing the files in batches in worker threads.

        :raises BackendError: when a file is not valid YAML.
        """
        names = list((await self._names()).items())
        result: dict[str, Any] = {}
        for start in range(0, len(names), PARSE_BATCH):
            batch = names[start : start + PARSE_BATCH]
            result.update(await asyncio.to_thread(self._load_batch, batch))
        return result

    def _dump_sync(self, job: str, value: Any, exclusive: bool = False) -> bool:
        return self._write_sync(job, yaml_of(self, job, value).encode("utf-8"), exclusive)

    async def _dump(self, job: str, value: Any) -> None:
        await self._small_io(self._dump_sync, job, value)

    async def _create(self, job: str, value: Any) -> bool:
        return await self._small_io(self._dump_sync, job, value, True)
