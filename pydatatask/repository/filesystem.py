"""Repositories kept in a local folder: one file or one directory per job.

Job ``k`` is the entry ``basedir / (k + extension)``. Every blocking call runs in a worker
thread, batched so that a small value costs one thread hop to write and one to read.
Values are written to a hidden temporary name in the same folder and renamed into
place, so a reader sees either the old value or the new one, never a partial one.

Ids starting with ``.`` are refused: hidden names are kept for temporary files, which
therefore can never collide with a job and are never listed. ``k + extension`` must also
fit in one file name (255 bytes). An id can never name a path outside the folder: the
id rules forbid separators and ``..``, and every path is built as ``basedir / name``.
Symbolic links placed inside the folder by its owner are followed when reading; writes
and deletions replace or remove the link itself, never what it points to.

Operating-system failures other than a missing job surface as the :class:`OSError` the
system raised (``PermissionError``, ``OSError(ENOSPC)``, ...), which callers can catch
by their usual type.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import yaml

from pydatatask.errors import BackendError, ConfigurationError, InvalidJobIdError, JobNotFoundError
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.streams import DEFAULT_CHUNK, ByteReader, ByteWriter

__all__ = ["DirectoryRepository", "FileRepository", "YamlMetadataFileRepository"]

logger = logging.getLogger(__name__)

MAX_NAME_BYTES = 255
"""The longest file name, in bytes, that common filesystems accept."""
LIST_BATCH = 1000
"""Folder entries examined per thread hop while listing."""
PARSE_BATCH = 256
"""YAML files read and parsed per thread hop in :meth:`YamlMetadataFileRepository.info_all`."""

_T = TypeVar("_T")
_TOKEN_BYTES = 4
_MAX_NAMED_INVALID = 5

# libyaml is much faster; the pure-Python classes behave the same.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: Any = type("_Dumper", (getattr(yaml, "CSafeDumper", yaml.SafeDumper),), {})
_DUMPER.add_representer(tuple, yaml.representer.SafeRepresenter.represent_list)


def _hidden_name(name: str, purpose: str) -> str:
    """Return a fresh hidden sibling name for ``name`` that fits in one file name."""
    tail = f".{secrets.token_hex(_TOKEN_BYTES)}.{purpose}"
    budget = MAX_NAME_BYTES - 1 - len(tail)
    prefix = os.fsdecode(os.fsencode(name)[:budget])
    return f".{prefix}{tail}"


def _make_hidden(folder: str, name: str, purpose: str, make: Callable[[str], _T]) -> tuple[str, _T]:
    """Create a fresh hidden sibling of ``name`` with ``make(path)``; run in a thread.

    ``make`` must fail with :class:`FileExistsError` when the path is taken. A missing
    folder is created once, so writing needs no prior :meth:`validate`.
    """
    created_folder = False
    for _ in range(100):
        path = os.path.join(folder, _hidden_name(name, purpose))
        try:
            return path, make(path)
        except FileExistsError:
            continue
        except FileNotFoundError:
            if created_folder:
                raise
            os.makedirs(folder, exist_ok=True)
            created_folder = True
    raise FileExistsError(f"no free temporary name for {name!r} in {folder}")


def _create_file(path: str) -> BinaryIO:
    """Create a new file for writing, with the mode ``0o666 & ~umask`` as ``open`` gives."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return open(os.open(path, flags, 0o666), "wb")


async def _in_thread(func: Callable[..., _T], undo: Callable[[_T], object], *args: Any) -> _T:
    """Run ``func(*args)`` in a worker thread; if the caller is cancelled meanwhile, undo it.

    A thread cannot be interrupted, so what it creates after its caller gave up (an open
    file, a temporary directory) is released, in another thread, as soon as it is done.
    """
    future = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        loop = asyncio.get_running_loop()

        def release(done: asyncio.Future[_T]) -> None:
            if not done.cancelled() and done.exception() is None:
                loop.run_in_executor(None, undo, done.result())

        future.add_done_callback(release)
        raise


def _remove_tree(path: str) -> None:
    """Remove a hidden tree; what cannot be removed is logged (hidden names are never listed)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)


def _nonempty_dir(path: str) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is not None


class _FolderRepository(Repository):
    """What file and directory repositories share: naming, listing, lookup, deletion."""

    job_id_pattern = re.compile(r"[^.].*", re.DOTALL)
    job_id_rule = "it starts with '.', which is kept for temporary files"

    def __init__(
        self, basedir: str | os.PathLike[str], extension: str = "", case_insensitive: bool = False
    ) -> None:
        if not isinstance(extension, str) or any(sep in extension for sep in "/\\\x00"):
            raise ConfigurationError(f"extension {extension!r} cannot be part of a file name")
        self.basedir = Path(basedir).absolute()
        self.extension = extension
        self.case_insensitive = case_insensitive
        self._base = str(self.basedir)

    def __repr__(self) -> str:
        extension = f" extension={self.extension!r}" if self.extension else ""
        return f"<{type(self).__name__} {self._base!r}{extension}>"

    def check_job_id(self, job: object) -> str:
        """Return ``job`` if this repository can hold it, else raise :class:`InvalidJobIdError`.

        On top of the common rules, the id must not start with ``.`` and ``job + extension``
        must fit in one file name.
        """
        job = super().check_job_id(job)
        try:
            size = len(os.fsencode(job + self.extension))
        except UnicodeEncodeError:
            raise InvalidJobIdError(job, "it cannot be encoded as a file name") from None
        if size > MAX_NAME_BYTES:
            raise InvalidJobIdError(
                job, f"with the extension it is longer than {MAX_NAME_BYTES} bytes"
            )
        return job

    async def validate(self) -> None:
        """Create the folder (and its parents) and check that it is writable.

        :raises BackendError: when the folder cannot be created or written.
        """
        await asyncio.to_thread(self._validate_sync)

    def _validate_sync(self) -> None:
        try:
            os.makedirs(self._base, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"{self!r}: cannot create the folder: {exc}") from exc
        if not os.access(self._base, os.W_OK | os.X_OK):
            raise BackendError(f"{self!r}: the folder is not writable")

    # The predicates below run in worker threads.

    @abc.abstractmethod
    def _is_member_entry(self, entry: os.DirEntry[str]) -> bool:
        """Whether a folder entry holds a job (a regular file, a directory, ...)."""

    @abc.abstractmethod
    def _is_member_path(self, path: str) -> bool:
        """Whether the entry at ``path`` holds a job."""

    @abc.abstractmethod
    def _is_removable_path(self, path: str) -> bool:
        """Whether :meth:`delete` should remove the entry at ``path``."""

    @abc.abstractmethod
    def _remove_path(self, path: str) -> None:
        """Remove the entry at ``path``."""

    def _stem(self, name: str) -> str | None:
        """Return the id stored under the file name ``name``, or None if it is no job."""
        if name.startswith("."):
            return None  # temporary or hidden: never a job, never worth a warning
        extension = self.extension
        if not extension:
            return name.lower() if self.case_insensitive else name
        if self.case_insensitive:
            tail = name[-len(extension) :]
            if len(name) > len(extension) and tail.lower() == extension.lower():
                return name[: -len(extension)].lower()
            return None
        if len(name) > len(extension) and name.endswith(extension):
            return name[: -len(extension)]
        return None

    def _member(self, entry: os.DirEntry[str]) -> tuple[str, str] | None:
        """Return ``(id, name)`` when the folder entry holds a job."""
        stem = self._stem(entry.name)
        if stem is None or not self._is_member_entry(entry):
            return None
        return stem, entry.name

    def _open_scan(self) -> os._ScandirIterator[str] | None:
        try:
            return os.scandir(self._base)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _next_batch(
        self, entries: Iterator[os.DirEntry[str]]
    ) -> tuple[list[tuple[str, str]], bool]:
        """Examine up to :data:`LIST_BATCH` entries; return the jobs and whether the end came."""
        found: list[tuple[str, str]] = []
        for count, entry in enumerate(entries, 1):
            if (member := self._member(entry)) is not None:
                found.append(member)
            if count >= LIST_BATCH:
                return found, False
        return found, True

    def _scan_all(self) -> list[tuple[str, str]]:
        entries = self._open_scan()
        if entries is None:
            return []
        with entries:
            return [member for entry in entries if (member := self._member(entry)) is not None]

    async def _scan_listing(self) -> AsyncIterator[tuple[str, str]]:
        entries = await asyncio.to_thread(self._open_scan)
        if entries is None:
            return
        seen: set[str] = set()
        try:
            done = False
            while not done:
                batch, done = await asyncio.to_thread(self._next_batch, entries)
                for job, name in batch:
                    if self.case_insensitive:
                        if job in seen:
                            continue
                        seen.add(job)
                    yield job, name
        finally:
            entries.close()  # closedir does not block; it must also run during finalisation

    async def _iter_ids(self) -> AsyncIterator[str]:
        async for job, _ in self._scan_listing():
            yield job

    def _valid_only(self, found: list[tuple[str, str]]) -> dict[str, str]:
        """Return ``{id: name}`` for the valid ids, warning once about the others."""
        result: dict[str, str] = {}
        skipped: list[str] = []
        for job, name in found:
            if job in result:
                continue
            if self.is_valid_job_id(job):
                result[job] = name
            else:
                skipped.append(job)
        if skipped:
            more = len(skipped) - _MAX_NAMED_INVALID
            logger.warning(
                "%r: skipped %d entries that are not valid job ids: %s%s",
                self,
                len(skipped),
                ", ".join(repr(job) for job in skipped[:_MAX_NAMED_INVALID]),
                f" and {more} more" if more > 0 else "",
            )
        return result

    async def _names(self) -> dict[str, str]:
        return self._valid_only(await asyncio.to_thread(self._scan_all))

    async def ids(self) -> set[str]:
        """Return the set of valid ids present, listing the folder in one thread hop."""
        return set(await self._names())

    async def info_all(self) -> dict[str, Any]:
        """Return ``{job: path}`` for every job present."""
        return {job: self.basedir / name for job, name in (await self._names()).items()}

    def _find(self, job: str, predicate: Callable[[str], bool], every: bool = False) -> list[str]:
        """Return the paths of the entries for ``job`` that pass ``predicate``.

        The exact name comes first. When case-insensitive and ``every`` is true (or the
        exact name fails), the folder is scanned for names equal ignoring case.
        """
        wanted = job + self.extension
        exact = os.path.join(self._base, wanted)
        found = [exact] if predicate(exact) else []
        if not self.case_insensitive or (found and not every):
            return found
        wanted = wanted.lower()
        try:
            with os.scandir(self._base) as entries:
                names = sorted(
                    entry.name
                    for entry in entries
                    if entry.name != os.path.basename(exact)
                    and not entry.name.startswith(".")
                    and entry.name.lower() == wanted
                )
        except (FileNotFoundError, NotADirectoryError):
            return found
        found.extend(path for name in names if predicate(path := os.path.join(self._base, name)))
        return found

    def _locate(self, job: str) -> str | None:
        found = self._find(job, self._is_member_path)
        return found[0] if found else None

    def _target(self, job: str) -> str:
        """Return the path a write of ``job`` goes to: an existing match, else the exact name."""
        found = self._find(job, os.path.lexists)
        return found[0] if found else os.path.join(self._base, job + self.extension)

    def _require(self, job: str) -> str:
        path = self._locate(job)
        if path is None:
            raise JobNotFoundError(job, self)
        return path

    async def _contains(self, job: str) -> bool:
        return await asyncio.to_thread(self._locate, job) is not None

    async def _info(self, job: str) -> Any:
        return Path(await asyncio.to_thread(self._require, job))

    async def _delete(self, job: str) -> None:
        await asyncio.to_thread(self._delete_sync, job)

    def _delete_sync(self, job: str) -> None:
        for path in self._find(job, self._is_removable_path, every=True):
            self._remove_path(path)


class _FileReader(ByteReader):
    """Serve reads from the first chunk read at open time, then from the file."""

    def __init__(self, file: BinaryIO | None, head: bytes) -> None:
        self._file = file
        self._buffer = head
        self._offset = 0
        self._lock = threading.Lock()  # a cancelled read may still run in its thread

    @classmethod
    def open_sync(cls, path: str) -> _FileReader:
        file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the reader
        try:
            head = file.read(DEFAULT_CHUNK)
        except BaseException:
            file.close()
            raise
        if len(head) < DEFAULT_CHUNK:
            file.close()
            return cls(None, head)
        return cls(file, head)

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
    """Buffer up to one chunk in memory; spill to a hidden temporary file; rename on commit."""

    def __init__(self, repository: FileRepository, job: str) -> None:
        self._repository = repository
        self._job = job
        self._chunks: list[bytes] = []
        self._size = 0
        self._file: BinaryIO | None = None
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
        if self._file is None:
            self._temp, self._file = self._repository._create_temp(self._job)
        self._file.writelines(chunks)
        return True

    def _spill_sync(self, chunks: list[bytes]) -> None:
        with self._lock:
            self._spill_locked(chunks)

    def _commit_sync(self, chunks: list[bytes]) -> None:
        with self._lock:
            if not self._spill_locked(chunks):
                return
            assert self._file is not None
            assert self._temp is not None
            target = self._repository._target(self._job)
            _keep_mode(self._file, target)
            self._file.close()
            self._file = None
            os.replace(self._temp, target)
            self._temp = None

    def _discard_sync(self) -> None:
        with self._lock:
            self._discarded = True
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None
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
        await asyncio.to_thread(self._commit_sync, self._take())

    async def _discard(self) -> None:
        self._take()
        if self._touched:
            await asyncio.to_thread(self._discard_sync)


def _keep_mode(file: BinaryIO, target: str) -> None:
    """Give a replacement the mode of the file it replaces, as writing in place would."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return  # a new file keeps 0o666 & ~umask from its creation
    os.fchmod(file.fileno(), mode)


class FileRepository(_FolderRepository, BlobRepository):
    """One regular file per job: job ``k`` is the file ``basedir / (k + extension)``.

    ``info(job)`` is the :class:`pathlib.Path` of the file. ``validate()`` creates the
    folder and its parents; a write also creates it when missing. Listing yields the
    names of regular files (or links to them) ending in ``extension``, without it;
    hidden files, including the temporary files of writes in progress, are never listed.

    A writer keeps up to 64 KiB in memory and then spills to a hidden temporary file
    ``.NAME.RANDOM.tmp`` in the folder, renamed over the job's file when the writer
    closes successfully; a failed or cancelled writer removes it and the old value
    stays. A new file gets the mode ``0o666 & ~umask``; a replaced file keeps its mode.
    Values are not fsynced: they survive a crash of the process, not of the machine.

    With ``case_insensitive=True`` the extension matches in any case, listed ids are
    lower-cased, and ``contains``, ``info``, ``open`` and ``delete`` find an existing
    file whose name equals ``job + extension`` ignoring case (``delete`` removes every
    such file; a write replaces the existing one, else creates ``job + extension``).
    A lookup whose exact spelling is absent scans the folder.
    """

    def __init__(
        self, basedir: str | os.PathLike[str], extension: str = "", case_insensitive: bool = False
    ) -> None:
        super().__init__(basedir, extension, case_insensitive)

    def _is_member_entry(self, entry: os.DirEntry[str]) -> bool:
        return entry.is_file()

    def _is_member_path(self, path: str) -> bool:
        return os.path.isfile(path)

    def _is_removable_path(self, path: str) -> bool:
        return os.path.islink(path) or os.path.isfile(path)

    def _remove_path(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _create_temp(self, job: str) -> tuple[str, BinaryIO]:
        """Create a hidden temporary file beside the job's file; run in a thread."""
        return _make_hidden(self._base, job + self.extension, "tmp", _create_file)

    def _write_sync(self, job: str, data: bytes) -> None:
        """Write ``data`` as the value of ``job`` atomically; run in a thread."""
        writer = _FileWriter(self, job)
        try:
            writer._commit_sync([data])
        except BaseException:
            writer._discard_sync()
            raise

    async def _open_reader(self, job: str) -> ByteReader:
        return await _in_thread(self._open_reader_sync, _FileReader.close_sync, job)

    def _open_reader_sync(self, job: str) -> _FileReader:
        path = self._require(job)
        try:
            return _FileReader.open_sync(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise JobNotFoundError(job, self) from None  # deleted since it was found

    async def _open_writer(self, job: str) -> ByteWriter:
        return _FileWriter(self, job)


class YamlMetadataFileRepository(FileRepository, MetadataRepository):
    """One YAML file per job: ``info(job)`` parses it and ``dump(job, value)`` writes it.

    It is also a :class:`FileRepository`, so ``open(job, mode)`` reads or writes the raw
    YAML text. Values use YAML's safe subset (mappings, sequences, strings, numbers,
    booleans, null, dates); tuples are stored as lists. Writes are atomic, as for
    :class:`FileRepository`.

    ``dump`` of a value YAML cannot represent raises :class:`TypeError` naming the job,
    and the previous value stays. ``info`` of a file that is not valid YAML raises
    :class:`~pydatatask.errors.BackendError` naming the job and the file: the stored data
    is corrupt, which is a failure of the storage rather than of the caller.
    """

    def __init__(self, basedir: str | os.PathLike[str], extension: str = ".yaml") -> None:
        super().__init__(basedir, extension)

    def _parse(self, job: str, path: str, data: bytes) -> Any:
        try:
            return yaml.load(data, Loader=_LOADER)  # a safe loader
        except yaml.YAMLError as exc:
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
        return await asyncio.to_thread(self._load_sync, job)

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

    def _dump_sync(self, job: str, value: Any) -> None:
        try:
            text = yaml.dump(value, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
        except yaml.YAMLError as exc:
            raise TypeError(
                f"{self!r}: cannot store the {type(value).__name__} value of job {job!r} "
                f"as YAML: {exc}"
            ) from exc
        self._write_sync(job, text.encode("utf-8"))

    async def _dump(self, job: str, value: Any) -> None:
        await asyncio.to_thread(self._dump_sync, job, value)


class DirectoryRepository(_FolderRepository):
    """One directory per job: job ``k`` is the directory ``basedir / (k + extension)``.

    ``info(job)`` is the :class:`pathlib.Path` of the directory. Populate a job with
    ``async with repo.create(job) as path:``, which yields a hidden temporary directory
    in the folder and renames it into place when the block succeeds (replacing a
    previous directory for the job) or removes it when the block fails, so a partial
    directory is never seen as a job. ``await repo.mkdir(job)`` instead creates the
    final directory directly and returns its path; whatever writes into it must accept
    that readers can see it while it is being filled. ``delete`` first renames the
    directory to a hidden name and then removes the whole tree; a symbolic link is
    removed as a link, never followed.

    With ``discard_empty=True`` an empty directory does not count as present: it is not
    listed and ``contains`` is false. ``case_insensitive`` works as for
    :class:`FileRepository`.
    """

    def __init__(
        self,
        basedir: str | os.PathLike[str],
        extension: str = "",
        case_insensitive: bool = False,
        discard_empty: bool = False,
    ) -> None:
        super().__init__(basedir, extension, case_insensitive)
        self.discard_empty = discard_empty

    def _is_member_entry(self, entry: os.DirEntry[str]) -> bool:
        if not entry.is_dir():
            return False
        return not self.discard_empty or _nonempty_dir(entry.path)

    def _is_member_path(self, path: str) -> bool:
        if not os.path.isdir(path):
            return False
        return not self.discard_empty or _nonempty_dir(path)

    def _is_removable_path(self, path: str) -> bool:
        return os.path.islink(path) or os.path.isdir(path)

    def _remove_path(self, path: str) -> None:
        if os.path.islink(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        trash = os.path.join(self._base, _hidden_name(os.path.basename(path), "del"))
        try:
            os.rename(path, trash)  # a half-removed tree must never look like a job
        except FileNotFoundError:
            return
        _remove_tree(trash)

    async def mkdir(self, job: str) -> Path:
        """Create the directory of ``job`` (and the folder) if absent; return its path."""
        job = self.check_job_id(job)
        return Path(await asyncio.to_thread(self._mkdir_sync, job))

    def _mkdir_sync(self, job: str) -> str:
        path = self._target(job)
        os.makedirs(path, exist_ok=True)
        return path

    def create(self, job: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """Return a context manager yielding a temporary directory that becomes ``job``'s.

        :raises InvalidJobIdError: at once, when ``job`` is not a valid id.
        """
        return self._create(self.check_job_id(job))

    @contextlib.asynccontextmanager
    async def _create(self, job: str) -> AsyncIterator[Path]:
        temp = await _in_thread(self._make_temp_dir, _remove_tree, job)
        try:
            yield Path(temp)
            await asyncio.to_thread(self._install, job, temp)
        except BaseException:
            await asyncio.to_thread(_remove_tree, temp)
            raise

    def _make_temp_dir(self, job: str) -> str:
        path, _ = _make_hidden(self._base, job + self.extension, "tmp", os.mkdir)
        return path

    def _install(self, job: str, temp: str) -> None:
        target = self._target(job)
        if not os.path.lexists(target):
            os.rename(temp, target)
            return
        # Directories cannot be swapped atomically: move the old one aside first.
        trash = os.path.join(self._base, _hidden_name(os.path.basename(target), "old"))
        os.rename(target, trash)
        try:
            os.rename(temp, target)
        except BaseException:
            os.rename(trash, target)
            raise
        if os.path.islink(trash):
            os.unlink(trash)
        else:
            _remove_tree(trash)
