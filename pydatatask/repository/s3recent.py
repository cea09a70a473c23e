"""The ETags an S3 repository saw a moment ago: in its own writes' responses and in listings.

A job's output written through a repository is checked for right after the job
(``contains``), and its ETag is the provenance token of the downstream job that reads
it next. Both would be one ``HeadObject`` each; the ETag from the write's own response
answers them instead, for a few seconds, which saves one or two requests per job of a
chain of S3 stages.

A listing gives every object's ETag too. The ids a scheduler lists are the jobs it is
about to run, so the ETags of the last listings serve as their inputs' provenance
tokens (see :meth:`~pydatatask.Repository.remembered_token`), which saves the first
stage of a chain its ``HeadObject`` per job. They never answer ``contains``, nor a
check for stale jobs, which asks for the current ETags.

A written entry lasts :data:`RECENT_SECONDS`: long enough for the next job in line to
start, short enough that a change made meanwhile by another program goes unnoticed
only briefly. A listed entry lasts :data:`LISTED_SECONDS`, and at most
:data:`LISTED_LIMIT` of them are kept (about 16 MiB), the oldest going first. Either
kind of change made meanwhile costs nothing worse than a downstream record whose token
is the older one, which then reads as stale: the safe side. Writing or deleting an
object through the repository forgets what a listing said of it at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["LISTED_LIMIT", "LISTED_SECONDS", "RECENT_LIMIT", "RECENT_SECONDS", "RecentETags"]

RECENT_SECONDS = 5.0
"""How long an ETag seen in a write's response answers for its object."""
RECENT_LIMIT = 4096
"""The most written objects remembered at once; the oldest entries go first."""
LISTED_SECONDS = 60.0
"""How long an ETag seen in a listing serves as its object's provenance token."""
LISTED_LIMIT = 65_536
"""The most listed objects remembered at once; the oldest entries go first."""


class RecentETags:
    """ETags of written objects, and of listed ones, by key."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, str]] = {}
        self._listed: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def note(self, key: str, etag: str | None) -> None:
        """Remember ``etag`` (quoted as S3 gives it, or not) as ``key``'s, written just now."""
        seen = self._seen
        seen.pop(key, None)
        self._listed.pop(key, None)
        if not etag:
            return
        seen[key] = (time.monotonic(), etag.strip('"'))
        if len(seen) > RECENT_LIMIT:
            del seen[next(iter(seen))]

    def note_listed(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Remember the ETags of a listing page's ``Contents`` entries, as of now."""
        now = time.monotonic()
        listed = self._listed
        for entry in entries:
            etag = entry.get("ETag")
            if etag:
                key = entry["Key"]
                listed[key] = (now, etag.strip('"'))
                listed.move_to_end(key)
        while len(listed) > LISTED_LIMIT:
            listed.popitem(last=False)

    def get(self, key: str) -> str | None:
        """Return the ETag of ``key`` if this repository wrote it in the last few seconds."""
        return _fresh(self._seen, key, RECENT_SECONDS)

    def token(self, key: str) -> str | None:
        """Return ``key``'s ETag from a recent write or, failing that, a recent listing."""
        written = self.get(key)
        if written is not None:
            return written
        return _fresh(self._listed, key, LISTED_SECONDS)

    def forget(self, key: str) -> None:
        """Forget ``key`` (deleted, or its write failed or is under way)."""
        self._seen.pop(key, None)
        self._listed.pop(key, None)


def _fresh(entries: dict[str, tuple[float, str]], key: str, seconds: float) -> str | None:
    """Return the ETag of ``key`` noted less than ``seconds`` ago; drop an older entry."""
    entry = entries.get(key)
    if entry is None:
        return None
    if time.monotonic() - entry[0] >= seconds:
        del entries[key]
        return None
    return entry[1]
