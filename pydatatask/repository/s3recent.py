"""The ETags of objects an S3 repository wrote a moment ago.

A job's output written through a repository is checked for right after the job
(``contains``), and its ETag is the provenance token of the downstream job that reads
it next. Both would be one ``HeadObject`` each; the ETag from the write's own response
answers them instead, for a few seconds, which saves one or two requests per job of a
chain of S3 stages.

An entry lasts :data:`RECENT_SECONDS`: long enough for the next job in line to start,
short enough that a change made meanwhile by another program goes unnoticed only
briefly. Such a change costs nothing worse than a downstream record whose token is the
older one, which then reads as stale: the safe side. Deleting an object through the
repository forgets its entry at once.
"""

from __future__ import annotations

import time

__all__ = ["RECENT_LIMIT", "RECENT_SECONDS", "RecentETags"]

RECENT_SECONDS = 5.0
"""How long an ETag seen in a response answers for its object."""
RECENT_LIMIT = 4096
"""The most objects remembered at once; the oldest entries go first."""


class RecentETags:
    """ETags of written objects by key, each good for :data:`RECENT_SECONDS`."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, str]] = {}

    def note(self, key: str, etag: str | None) -> None:
        """Remember ``etag`` (quoted as S3 gives it, or not) as ``key``'s, as of now."""
        seen = self._seen
        seen.pop(key, None)
        if not etag:
            return
        seen[key] = (time.monotonic(), etag.strip('"'))
        if len(seen) > RECENT_LIMIT:
            del seen[next(iter(seen))]

    def get(self, key: str) -> str | None:
        """Return ``key``'s ETag if it was seen less than :data:`RECENT_SECONDS` ago."""
        entry = self._seen.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[0] >= RECENT_SECONDS:
            del self._seen[key]
            return None
        return entry[1]

    def forget(self, key: str) -> None:
        """Forget ``key`` (deleted, or its write failed)."""
        self._seen.pop(key, None)
