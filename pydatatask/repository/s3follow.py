"""Take in new objects of an append-only S3 prefix without listing all of it.

S3 has no change notifications a client can follow on its own, but it lists keys in
order and can start after a given key (``ListObjectsV2`` with ``StartAfter``). Where
every new key sorts after every existing one (ids that are dates, sequence numbers or
ULIDs), asking for the keys after the greatest one known finds exactly the new objects,
in one request that returns nothing while nothing arrives, however many keys are there.

The first mark is the greatest key of the repository's last complete listing (the
controller lists every repository when it starts). Every key written after that listing
sorts after its greatest key, so none is missed. A key that sorts earlier (an id out of
order) is not seen here; the controller's full listing every ``poll_interval`` still
finds it, as it finds deletions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from pydatatask.errors import BackendUnavailableError

if TYPE_CHECKING:
    from pydatatask.repository.s3 import S3BucketRepository

__all__ = ["follow_appends"]

logger = logging.getLogger(__name__)


async def follow_appends(repo: S3BucketRepository, stop: asyncio.Event) -> AsyncIterator[set[str]]:
    """Yield an empty set at once, then the ids of the keys after the greatest one known.

    It asks every ``repo.follow_every`` seconds until ``stop`` is set. While the store
    cannot be reached it says so once and keeps asking; other errors end the follower
    (the controller then relies on its full listings).
    """
    yield set()  # listening: what is written from now on sorts after the next mark
    mark = repo._listed_up_to
    unreachable = False
    while not await _stopped_within(stop, repo.follow_every):
        if mark is None:  # no complete listing yet: the controller's first one comes soon
            mark = repo._listed_up_to
            continue
        found: set[str] = set()
        try:
            async for entries in repo._pages(mark):
                for entry in entries:
                    job = repo._job_of(entry["Key"])
                    if job is not None:
                        found.add(job)
                if entries:
                    mark = max(mark, entries[-1]["Key"])
        except BackendUnavailableError as exc:
            if not unreachable:
                logger.warning("%r: cannot look for new objects for now: %s", repo, exc)
            unreachable = True
        else:
            if unreachable:
                logger.info("%r: looking for new objects again", repo)
            unreachable = False
        if found:
            yield found


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; return whether ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
