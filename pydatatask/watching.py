"""Notice ids added to or removed from repositories as it happens, without listing them.

A running controller (``run --forever``) lists every repository once, and then learns
of new inputs, outputs and records from notifications where the backend gives them: a
folder of a :class:`~pydatatask.FileRepository`, :class:`~pydatatask.DirectoryRepository`
or :class:`~pydatatask.YamlMetadataFileRepository` on a local file system is watched
with inotify (through the ``watchfiles`` package, the ``watch`` extra). A notification
names ids that *may* have changed; the scheduler checks just those. The full listing
every ``poll_interval`` stays as the safety net (notifications can be lost, and network
file systems send none).
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
"""Yields sets of ids that may have changed, until the event is set."""

_DEBOUNCE_MS = 50
"""How long a burst of file events is gathered before the ids are handed over."""


def watching_available() -> bool:
    """Whether ``watchfiles`` can be imported (the ``watch`` extra)."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


def changes_of(repo: Repository) -> Changes | None:
    """Return how to follow ``repo``'s changes, or None when only listing it tells."""
    if isinstance(repo, FolderRepository) and watching_available():
        return lambda stop: _folder_changes(repo, stop)
    return None


async def _folder_changes(repo: FolderRepository, stop: asyncio.Event) -> AsyncIterator[set[str]]:
    """Yield the ids named by file events in the repository's folder."""
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
    )
    async for events in watched:
        jobs: set[str] = set()
        for _, path in events:
            if not path.startswith(prefix):
                continue  # the folder itself
            job = repo._stem(path[len(prefix) :].split(os.sep, 1)[0])
            if job is not None:
                jobs.add(job)
        if jobs:
            yield jobs
