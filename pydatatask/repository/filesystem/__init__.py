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

from pydatatask.repository.filesystem.directories import DirectoryRepository
from pydatatask.repository.filesystem.files import FileRepository, YamlMetadataFileRepository

__all__ = ["DirectoryRepository", "FileRepository", "YamlMetadataFileRepository"]
