"""Take in new objects of an append-only S3 prefix without listing all of it.

S3 has no change notifications a client can follow on its own, but it lists keys in
order and can start after a given key (``ListObjectsV2`` with ``StartAfter``). Where
every new key sorts after every existing one (ids that are dates, sequence numbers or
ULIDs), asking for the keys after a mark finds the new objects, in one request that
returns little while little arrives, however many keys are there.

Writers that upload several objects at once do not finish them in key order: ``day-2``
may appear a moment after ``day-3``. So the mark lags: it moves up to the greatest key
of a listing only :data:`SETTLE_SECONDS` after that listing, and each request lists
again the keys that appeared meanwhile (the follower names each id once). An object
that appears up to about :data:`SETTLE_SECONDS` after one that sorts later is still
found.

The first mark comes from the controller's first complete listing: the greatest key
before the first one (in key order) that was written in the last
:data:`SETTLE_SECONDS`, by the store's own clock, so that uploads under way while the
controller starts are not missed either. A key that sorts earlier than that (an id out
of order, or an upload slower than :data:`SETTLE_SECONDS` to appear) is not seen here;
the controller's full listing every ``poll_interval`` still finds it, as it finds
deletions.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydatatask.errors import BackendUnavailableError

if TYPE_CHECKING:
    from pydatatask.repository.s3 import S3BucketRepository

__all__ = ["SETTLE_SECONDS", "Listed", "ListingMarks", "follow_appends"]

logger = logging.getLogger(__name__)

SETTLE_SECONDS = 10.0
"""How long after a listing the follower keeps asking again for the keys it saw."""


@dataclass(frozen=True)
class Listed:
    """Where a follower may start, from one complete listing of the prefix."""

    settled: str
    """The greatest key before the first one written recently ("" when none is older)."""
    greatest: str
    """The greatest key listed ("" for none)."""
    at: float
    """``time.monotonic()`` when the listing ended."""


class ListingMarks:
    """Note, page by page, what a complete listing tells a follower."""

    def __init__(self) -> None:
        self._settled = ""
        self._greatest = ""
        self._recent_seen = False

    def note(self, page: Mapping[str, Any]) -> None:
        """Take in one page of a ``ListObjectsV2`` response, pages in key order."""
        entries = page.get("Contents", ())
        if not entries:
            return
        self._greatest = max(self._greatest, entries[-1]["Key"])
        if self._recent_seen:
            return
        recent_from = _server_time(page) - datetime.timedelta(seconds=SETTLE_SECONDS)
        for entry in entries:
            modified = entry.get("LastModified")
            if modified is not None and modified > recent_from:
                self._recent_seen = True
                return
            self._settled = entry["Key"]

    def listed(self) -> Listed:
        """Return the marks of the whole listing, once its last page is noted."""
        return Listed(self._settled, self._greatest, time.monotonic())


def _server_time(page: Mapping[str, Any]) -> datetime.datetime:
    """Return the store's clock at the response (its ``Date`` header), else this machine's."""
    header = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if header:
        with contextlib.suppress(TypeError, ValueError):
            stamp = email.utils.parsedate_to_datetime(header)
            if stamp.tzinfo is not None:
                return stamp
    return datetime.datetime.now(datetime.UTC)


class _LaggingMark:
    """Where the next request starts: the greatest key listed ``SETTLE_SECONDS`` ago."""

    def __init__(self, first: Listed) -> None:
        self.key = first.settled
        self._pending: deque[tuple[float, str]] = deque([(first.at, first.greatest)])
        """(when a listing ended, the greatest key it saw), oldest first."""
        self._greatest = self.key
        self._named: set[str] = set()
        """The keys after the mark whose ids were named."""

    def take(self, page: Mapping[str, Any], job_of: Callable[[str], str | None]) -> set[str]:
        """Return the ids of the page's keys not named before, and note them."""
        found: set[str] = set()
        for entry in page.get("Contents", ()):
            key: str = entry["Key"]
            self._greatest = max(self._greatest, key)
            job = job_of(key)
            if job is not None and key not in self._named:
                self._named.add(key)
                found.add(job)
        return found

    def listed(self) -> None:
        """Note that a listing ran to its end; move the mark past what has settled."""
        now = time.monotonic()
        self._pending.append((now, self._greatest))
        settled = self.key
        while self._pending and self._pending[0][0] <= now - SETTLE_SECONDS:
            settled = max(settled, self._pending.popleft()[1])
        if settled != self.key:
            self.key = settled
            self._named = {key for key in self._named if key > settled}


async def follow_appends(repo: S3BucketRepository, stop: asyncio.Event) -> AsyncIterator[set[str]]:
    """Yield an empty set at once, then the ids of new keys after the mark.

    It asks every ``repo.follow_every`` seconds until ``stop`` is set. While the store
    cannot be reached it says so once and keeps asking; other errors end the follower
    (the controller then relies on its full listings).
    """
    yield set()  # listening: what is written from now on appears after the first mark
    mark: _LaggingMark | None = None
    unreachable = False
    while not await _stopped_within(stop, repo.follow_every):
        if mark is None:  # no complete listing yet: the controller's first one comes soon
            if repo._listed is not None:
                mark = _LaggingMark(repo._listed)
            continue
        found: set[str] = set()
        try:
            async for page in repo._pages(mark.key):
                found |= mark.take(page, repo._job_of)
        except BackendUnavailableError as exc:
            if not unreachable:
                logger.warning("%r: cannot look for new objects for now: %s", repo, exc)
            unreachable = True
        else:
            if unreachable:
                logger.info("%r: looking for new objects again", repo)
            unreachable = False
            mark.listed()
        if found:
            yield found


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; return whether ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
