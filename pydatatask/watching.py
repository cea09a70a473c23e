"""Notice ids added to or removed from repositories as it happens, without listing them.

A running controller (``run --forever``) lists every repository once, and then learns
of new inputs, outputs and records from notifications where the backend gives them:

- a folder of a :class:`~pydatatask.FileRepository`,
  :class:`~pydatatask.DirectoryRepository` or
  :class:`~pydatatask.YamlMetadataFileRepository` on a local file system is watched
  with inotify (through the ``watchfiles`` package, the ``watch`` extra);
- a :class:`~pydatatask.MongoMetadataRepository` follows its collection's change
  stream (MongoDB gives one on a replica set or a sharded cluster; on a standalone
  server the controller says so once and relies on listings);
- an :class:`~pydatatask.S3BucketRepository` made with ``append_only=True`` is asked
  every ``follow_every`` seconds for the keys after the greatest one it knows
  (``StartAfter``; see :mod:`pydatatask.repository.s3follow`);
- :class:`~pydatatask.InProcessMetadataRepository` and
  :class:`~pydatatask.InProcessBlobRepository` tell of every write and deletion made
  through them, for example by a web handler in the same process (changes made to
  their ``data`` dict directly are not told).

A notification names ids that *may* have changed; the scheduler checks just those, so
taking in new ids costs nothing per id already done. The full listing every
``poll_interval`` stays as the safety net (notifications can be lost, and network file
systems send none).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydatatask.repository.base import Repository
from pydatatask.repository.filesystem.folder import FolderRepository

__all__ = ["Changes", "changes_of", "watching_available"]

logger = logging.getLogger(__name__)

Changes = Callable[[asyncio.Event], AsyncIterator[set[str]]]
"""Yields an empty set once it listens, then sets of ids that may have changed (empty
sets after the first mean nothing), until the event is set."""

_DEBOUNCE_MS = 50
"""How long a burst of file events is gathered before the ids are handed over."""
_QUIET_MS = 200
"""After this long without events the watcher says so; the first time, it is listening."""


def watching_available() -> bool:
    """Whether ``watchfiles`` can be imported (the ``watch`` extra)."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


def changes_of(repo: Repository) -> Changes | None:
    """Return how to follow ``repo``'s changes, or None when only listing it tells."""
    if isinstance(repo, FolderRepository):
        return (lambda stop: _folder_changes(repo, stop)) if watching_available() else None
    return repo._changes()


async def _folder_changes(repo: FolderRepository, stop: asyncio.Event) -> AsyncIterator[set[str]]:
    """Yield an empty set once the folder is watched, then the ids named by file events."""
    import watchfiles

    base = str(repo.basedir)
    prefix = base.rstrip(os.sep) + os.sep
    watched: Any = watchfiles.awatch(
        base,
        watch_filter=None,
        debounce=_DEBOUNCE_MS,
        step=_DEBOUNCE_MS // 2,
        stop_event=stop,  # an asyncio.Event does what an anyio one does here
        recursive=False,
        # An empty set every quiet while: the first one says the folder is watched.
        rust_timeout=_QUIET_MS,
        yield_on_timeout=True,
    )
    listening = False
    async for events in watched:
        if not listening:
            listening = True
            yield set()
        jobs: set[str] = set()
        for _, path in events:
            if not path.startswith(prefix):
                continue  # the folder itself
            job = repo._stem(path[len(prefix) :].split(os.sep, 1)[0])
            if job is not None:
                jobs.add(job)
        if jobs:
            yield jobs
