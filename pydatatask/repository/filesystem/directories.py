"""A repository with one directory per job."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from pydatatask.repository.filesystem.folder import (
    FolderRepository,
    _create_locked_dir,
    _hidden_name,
    _in_thread,
    _make_hidden,
    _nonempty_dir,
    _remove_tree,
)

__all__ = ["DirectoryRepository"]


class DirectoryRepository(FolderRepository):
    """One directory per job: job ``k`` is the directory ``basedir / (k + extension)``.

    ``info(job)`` is the path of the directory (a ``str``), whether or not it exists
    yet, so a task's template can name the directory it is to fill (``contains`` says
    whether it exists).

    Populate a job with ``async with repo.create(job) as path:``, which yields a hidden
    temporary directory in the folder and renames it into place when the block succeeds
    (replacing a previous directory for the job) or removes it when the block fails, so
    a partial directory is never seen as a job. While the block runs, an exclusive
    ``flock`` on the temporary directory keeps ``validate()``, in any process, from
    removing it; ``validate()`` removes those of killed processes. ``await
    repo.mkdir(job)`` instead creates the final directory directly and returns its
    path; whatever writes into it must accept that readers can see it while it is being
    filled. ``delete`` first renames the directory to a hidden name and then removes the
    whole tree (a tree left by an interrupted ``delete`` goes at the next
    ``validate()``); a symbolic link is removed as a link, never followed.

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

    def _token_of(self, path: str) -> str | None:
        """Hash the name, size and modification time of every file in the tree."""
        if not self._is_member_path(path):
            return None
        digest = hashlib.blake2b(digest_size=8)
        for folder, folders, files in os.walk(path):
            folders.sort()
            for name in sorted(files):
                file = os.path.join(folder, name)
                try:
                    stat = os.lstat(file)
                except FileNotFoundError:
                    continue
                relative = os.path.relpath(file, path)
                digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

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
        temp, lock = await _in_thread(self._make_temp_dir, _drop_temp_dir, job)
        try:
            yield Path(temp)
            await asyncio.to_thread(self._install, job, temp)
        except BaseException:
            await asyncio.to_thread(_remove_tree, temp)
            raise
        finally:
            os.close(lock)  # only now may the folder be tidied around it

    def _make_temp_dir(self, job: str) -> tuple[str, int]:
        """Create a locked hidden directory; return its path and the descriptor locking it."""
        return _make_hidden(self._base, job + self.extension, "tmp", _create_locked_dir)

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


def _drop_temp_dir(made: tuple[str, int]) -> None:
    """Remove a temporary directory whose creator gave up, then release its lock."""
    path, lock = made
    try:
        _remove_tree(path)
    finally:
        os.close(lock)
