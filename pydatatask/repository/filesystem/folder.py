# Longer than 400 lines on purpose: what file and directory repositories share (naming,
# listing in batches, lookups, deletion, tidying) and the thread-hop helpers they use.
"""The shared base of folder repositories: id rules, listing, lookups and deletion."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import logging
import os
import random
import re
import shutil
import stat
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydatatask.errors import BackendError, ConfigurationError, InvalidJobIdError, JobNotFoundError
from pydatatask.repository.base import Repository, all_plain
from pydatatask.repository.filesystem.turns import listing_turn
from pydatatask.repository.filesystem.workers import in_worker

logger = logging.getLogger(__name__)

MAX_NAME_BYTES = 255
"""The longest file name, in bytes, that common filesystems accept."""
LIST_BATCH = 1000
"""Folder entries examined per thread hop while listing."""
PARSE_BATCH = 256
"""YAML files read and parsed per thread hop in :meth:`YamlMetadataFileRepository.info_all`."""

STALE_SECONDS = 10.0
"""How old an unlocked temporary must be before :meth:`FolderRepository.validate` removes it.

A writer locks its temporary right after creating it; this covers the instant between.
"""

_INLINE_STATS = 4
"""Up to this many jobs are stat-ed for their tokens in the event loop, not in a thread."""
_T = TypeVar("_T")
_TOKEN_BYTES = 4
# What _hidden_name makes: ".NAME.TOKEN.PURPOSE", NAME possibly cut short.
_HIDDEN_NAME = re.compile(rf"\.(.*)\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.(tmp|del|old)", re.DOTALL)


def _hidden_name(name: str, purpose: str) -> str:
    """Return a fresh hidden sibling name for ``name`` that fits in one file name."""
    # Not secret, as for tempfile's names: O_EXCL refuses a taken name, which is retried;
    # the random module reseeds itself in a forked child. No system call, unlike urandom.
    tail = f".{random.getrandbits(8 * _TOKEN_BYTES):0{2 * _TOKEN_BYTES}x}.{purpose}"
    budget = MAX_NAME_BYTES - 1 - len(tail)
    if len(name) * 4 > budget:  # a character takes up to 4 bytes: cut it to fit
        name = os.fsdecode(os.fsencode(name)[:budget])
    return f".{name}{tail}"


def _noted_hidden(name: str, hidden: list[str]) -> bool:
    """Whether ``name`` is hidden (never a job); if so, add it to ``hidden``."""
    if name.startswith("."):
        hidden.append(name)
        return True
    return False


def _make_hidden(folder: str, name: str, purpose: str, make: Callable[[str], _T]) -> tuple[str, _T]:
    """Create a fresh hidden sibling of ``name`` with ``make(path)``; run in a thread.

    ``make`` must fail with :class:`FileExistsError` when the path is taken. A missing
    folder is created once, so writing needs no prior :meth:`validate`.
    """
    created_folder = False
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    for _ in range(100):
        path = prefix + _hidden_name(name, purpose)
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


def _create_file(path: str) -> int:
    """Create and lock a new file for writing, with the mode ``0o666 & ~umask``.

    Return its descriptor. The exclusive ``flock`` lasts until it is closed; it tells
    :meth:`FolderRepository.validate`, in any process, that a writer still owns the file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    except BaseException:
        os.close(descriptor)
        os.unlink(path)
        raise
    return descriptor


def _create_locked_dir(path: str) -> int:
    """Create a directory and return a descriptor of it holding an exclusive ``flock``."""
    os.mkdir(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except BaseException:
        os.rmdir(path)
        raise
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    except BaseException:
        os.close(descriptor)
        os.rmdir(path)
        raise
    return descriptor


def fsync_folder(folder: str) -> None:
    """Flush a folder's entries (a rename into it) to disk; run in a thread."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
"""The filesystems held in memory, where no operation waits for a device."""


def filesystem_type(path: str) -> str | None:
    """Return the type of the filesystem that holds ``path`` (``ext4``, ``tmpfs``, ...).

    Read from ``/proc/self/mountinfo``: the mount with the longest mount point that
    contains ``path``. None where that cannot be read (not Linux).
    """
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    where = os.path.realpath(path)
    best, found = -1, None
    for line in lines:
        mount, _, rest = line.partition(" - ")
        fields = mount.split()
        if len(fields) < 5 or not rest:
            continue
        point = _unescape(fields[4])
        inside = where == point or where.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, found = len(point), rest.split()[0]
    return found


def _unescape(field: str) -> str:
    """Decode the octal escapes (a space is written as backslash 040) of a mountinfo field."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


async def _in_thread(func: Callable[..., _T], undo: Callable[[_T], object], *args: Any) -> _T:
    """Run ``func(*args)`` in a worker thread; if the caller is cancelled meanwhile, undo it.

    A thread cannot be interrupted, so what it creates after its caller gave up (an open
    file, a temporary directory) is released, in another thread, as soon as it is done.
    """
    future = in_worker(func, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:

        def release(done: asyncio.Future[_T]) -> None:
            if not done.cancelled() and done.exception() is None:
                in_worker(undo, done.result())

        future.add_done_callback(release)
        raise


def _close_scan(entries: os._ScandirIterator[str] | None) -> None:
    if entries is not None:
        entries.close()


def _remove_tree(path: str) -> None:
    """Remove a hidden tree; what cannot be removed is logged (hidden names are never listed)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)


def _remove_if_abandoned(path: str) -> None:
    """Remove the temporary file or tree at ``path`` unless a live writer still locks it.

    Only an entry whose lock can be taken at once and that is older than
    :data:`STALE_SECONDS` is removed, and only if ``path`` still names the entry locked.
    """
    try:
        # O_NONBLOCK: never wait on a FIFO someone named like a temporary.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return  # gone, or a link, which no writer makes
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a live writer owns it
        held = os.fstat(descriptor)
        if time.time() - held.st_mtime < STALE_SECONDS:
            return  # possibly created an instant ago, not locked yet
        with contextlib.suppress(FileNotFoundError):
            now = os.lstat(path)
            if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                return
            if stat.S_ISDIR(held.st_mode):
                _remove_tree(path)
            else:
                os.unlink(path)
    finally:
        os.close(descriptor)


def _nonempty_dir(path: str) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is not None


class LegacyPath(str):
    """A path as pydatatask 0.4 gave it: a ``str``, which ``/`` still joins like a Path."""

    __slots__ = ()

    def __truediv__(self, other: str | os.PathLike[str]) -> Path:
        return Path(self) / other


class FolderRepository(Repository):
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
        self._prefix = os.path.join(self._base, "")
        """The folder's path with a separator at its end, for paths built per job."""
        try:
            self._extension_size = len(os.fsencode(extension))
        except UnicodeEncodeError:  # no name can hold it: check_job_id says so for each id
            self._extension_size = MAX_NAME_BYTES + 1
        self._inline_io = False
        """Whether small file operations run in the event loop: on a filesystem held in
        memory (tmpfs), where they never wait for a device and a thread hop costs more than
        the operation. Found out by :meth:`validate`."""
        self._tidy_pending = False
        """Whether a validation left the tidying to the next full listing."""

    def __repr__(self) -> str:
        extension = f" extension={self.extension!r}" if self.extension else ""
        return f"<{type(self).__name__} {self._base!r}{extension}>"

    async def _small_io(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run a short file operation: in the event loop on a filesystem held in memory.

        Elsewhere it runs in a worker thread, as a disk may keep it waiting.
        """
        if self._inline_io:
            return func(*args)
        return await in_worker(func, *args)

    def check_job_id(self, job: object) -> str:
        """Return ``job`` if this repository can hold it, else raise :class:`InvalidJobIdError`.

        On top of the common rules, the id must not start with ``.`` and ``job + extension``
        must fit in one file name.
        """
        job = super().check_job_id(job)
        if job.isascii() and len(job) + self._extension_size <= MAX_NAME_BYTES:
            return job  # the common case, without encoding the name
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
        """Create the folder (and its parents), check that it is writable, and tidy it.

        Tidying removes what interrupted writers and deletions left behind: hidden
        temporaries no live writer (in any process) holds locked, once they are
        :data:`STALE_SECONDS` old, and the hidden trees of interrupted deletions. A tree
        set aside while a directory was replaced is removed only once the job's
        directory is back in place, as it may otherwise be the job's only copy.

        :raises BackendError: when the folder cannot be created or written.
        """
        await asyncio.to_thread(self._validate_sync, True)

    async def _validate_before_listing(self) -> None:
        """Validate, leaving the tidying to the next full listing of the folder.

        That listing reads every name anyway and tidies the hidden ones it meets, so a
        large folder is read once, not twice, when a pipeline opens and lists it. A
        subclass with a :meth:`validate` of its own is validated by it, in full.
        """
        if type(self).validate is not FolderRepository.validate:
            await self.validate()
            return
        await asyncio.to_thread(self._validate_sync, False)

    async def _finish_validation(self) -> None:
        """Tidy the folder if no full listing did since :meth:`_validate_before_listing`."""
        if self._tidy_pending:
            await asyncio.to_thread(self._tidy_sync)

    def _validate_sync(self, tidy: bool) -> None:
        try:
            os.makedirs(self._base, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"{self!r}: cannot create the folder: {exc}") from exc
        self._inline_io = filesystem_type(self._base) in MEMORY_FILESYSTEMS
        if not os.access(self._base, os.W_OK | os.X_OK):
            raise BackendError(f"{self!r}: the folder is not writable")
        if tidy:
            self._tidy_sync()
        else:
            self._tidy_pending = True

    def _tidy_sync(self) -> None:
        self._tidy_pending = False
        # Names only: a third faster than os.scandir over a large folder.
        self._tidy_hidden([name for name in os.listdir(self._base) if name.startswith(".")])

    def _tidy_hidden(self, names: list[str]) -> None:
        """Remove what the hidden entries ``names`` hold that nothing will finish."""
        for name in names:
            found = _HIDDEN_NAME.fullmatch(name)
            if found is None:
                continue  # hidden, but not ours
            path = os.path.join(self._base, name)
            if found.group(2) == "tmp":
                _remove_if_abandoned(path)
            elif found.group(2) == "del" or self._replaced(name, found.group(1)):
                _remove_tree(path)

    def _replaced(self, hidden: str, original: str) -> bool:
        """Whether the entry the tree ``hidden`` was set aside from is back in place."""
        if len(os.fsencode(hidden)) >= MAX_NAME_BYTES:
            return False  # the original name may have been cut short to fit
        return os.path.lexists(os.path.join(self._base, original))

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
        hidden = self._hidden_seen()
        with entries:
            if hidden is None:
                return [member for entry in entries if (member := self._member(entry)) is not None]
            found = [
                member
                for entry in entries
                if not _noted_hidden(entry.name, hidden)
                and (member := self._member(entry)) is not None
            ]
        self._tidy_hidden(hidden)
        return found

    def _hidden_seen(self) -> list[str] | None:
        """Return a list for a full listing to collect hidden names in, if tidying is due."""
        if not self._tidy_pending:
            return None
        self._tidy_pending = False  # one listing does it, even when two run at once
        return []

    async def _scan_listing(self) -> AsyncGenerator[tuple[str, str], None]:
        entries = await _in_thread(self._open_scan, _close_scan)
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
        async with contextlib.aclosing(self._scan_listing()) as listing:
            async for job, _ in listing:
                yield job

    def _valid_only(self, found: list[tuple[str, str]]) -> dict[str, str]:
        """Return ``{id: name}`` for the valid ids, warning once about the others."""
        names = dict(reversed(found))  # the first name listed for an id wins
        room = MAX_NAME_BYTES - len(os.fsencode(self.extension))
        if (
            type(self).check_job_id is FolderRepository.check_job_id
            and self._listing_keeps_pattern()
            and all_plain(names.keys(), room)
        ):
            return names  # plain ids of listed names never start with "." and fit
        result: dict[str, str] = {}
        skipped: list[str] = []
        for job, name in found:
            if job in result:
                continue
            if self.is_valid_job_id(job):
                result[job] = name
            else:
                skipped.append(job)
        self._warn_skipped(skipped)
        return result

    async def _names(self) -> dict[str, str]:
        async with listing_turn():  # checked in turn too: see listing_turn
            return self._valid_only(await asyncio.to_thread(self._scan_all))

    def _scan_ids(self) -> set[str]:
        """Return the ids in a case-sensitive folder, unchecked; run in a thread.

        :meth:`_stem` and :meth:`_is_member_entry` written as one comprehension: a listing
        of a large folder is mostly this loop.
        """
        entries = self._open_scan()
        if entries is None:
            return set()
        extension, is_member = self.extension, self._is_member_entry
        cut = len(extension)
        hidden = self._hidden_seen()
        with entries:
            if hidden is None:
                return {
                    name[: len(name) - cut]
                    for entry in entries
                    if not (name := entry.name).startswith(".")
                    and len(name) > cut
                    and name.endswith(extension)
                    and is_member(entry)
                }
            found = {
                name[: len(name) - cut]
                for entry in entries
                if not _noted_hidden(name := entry.name, hidden)
                and len(name) > cut
                and name.endswith(extension)
                and is_member(entry)
            }
        self._tidy_hidden(hidden)
        return found

    async def ids(self) -> set[str]:
        """Return the set of valid ids present, listing the folder in one thread hop."""
        if self.case_insensitive:  # names that differ in case only are one id
            return set(await self._names())
        async with listing_turn():  # checked in turn too: see listing_turn
            found = await asyncio.to_thread(self._scan_ids)
            # A listed name fits in a file name, so only the common rules can refuse its id.
            return self._keep_valid(
                found,
                type(self).check_job_id is FolderRepository.check_job_id,
                pattern_holds=self._listing_keeps_pattern(),
            )

    def _listing_keeps_pattern(self) -> bool:
        """Whether every listed id matches :attr:`job_id_pattern` (no ``.`` comes first).

        A subclass's own pattern is checked id by id.
        """
        return type(self).job_id_pattern is FolderRepository.job_id_pattern

    async def info_all(self) -> dict[str, Any]:
        """Return ``{job: path}`` for every job present, each path a ``str``."""
        return {job: os.path.join(self._base, name) for job, name in (await self._names()).items()}

    def fullpath(self, job: str) -> LegacyPath:
        """Return the path of ``job``'s entry, ``basedir / (job + extension)``.

        Deprecated since 0.5: this is pydatatask 0.4's name; use ``await repo.info(job)``
        (the same path, as a ``str``).

        :raises InvalidJobIdError: when ``job`` is not a valid id.
        """
        warnings.warn(
            f"{type(self).__name__}.fullpath(job) is deprecated; use await repo.info(job)",
            DeprecationWarning,
            stacklevel=2,
        )
        return LegacyPath(self._exact(self.check_job_id(job)))

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
        if not self.case_insensitive:
            return self._exact(job)
        found = self._find(job, os.path.lexists)
        return found[0] if found else self._exact(job)

    def _require(self, job: str) -> str:
        path = self._locate(job)
        if path is None:
            raise JobNotFoundError(job, self)
        return path

    async def _contains(self, job: str) -> bool:
        return await asyncio.to_thread(self._locate, job) is not None

    async def _contains_many(self, jobs: list[str]) -> set[str]:
        """Check every job in one thread hop."""
        return await asyncio.to_thread(
            lambda: {job for job in jobs if self._locate(job) is not None}
        )

    async def _tokens(self, jobs: list[str]) -> dict[str, str]:
        """Return each present job's size and modification time, from one stat each."""
        if len(jobs) <= _INLINE_STATS:  # a stat or two: cheaper than a thread hop
            return self._tokens_sync(jobs)
        return await asyncio.to_thread(self._tokens_sync, jobs)

    def _tokens_sync(self, jobs: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for job in jobs:
            path = self._locate(job) if self.case_insensitive else self._exact(job)
            if path is not None and (token := self._token_of(path)) is not None:
                found[job] = token
        return found

    def _exact(self, job: str) -> str:
        return self._prefix + job + self.extension

    def _token_of(self, path: str) -> str | None:
        """Return the token of the entry at ``path``, or None if it holds no job."""
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return f"{stat.st_size}-{stat.st_mtime_ns}"

    async def _info(self, job: str) -> Any:
        """Return the path of ``job`` (a ``str``), present or not: outputs are named ahead."""
        if not self.case_insensitive:
            return self._exact(job)
        return await asyncio.to_thread(self._path_of, job)

    def _path_of(self, job: str) -> str:
        """Return the path of the entry holding ``job``, else the path a write would take."""
        return self._locate(job) or self._target(job)

    async def _delete(self, job: str) -> None:
        await asyncio.to_thread(self._delete_sync, job)

    def _delete_sync(self, job: str) -> None:
        for path in self._find(job, self._is_removable_path, every=True):
            self._remove_path(path)
