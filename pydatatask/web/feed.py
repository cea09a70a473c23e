"""The counts as a stream: read while someone watches, sent when they change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

from pydatatask.errors import PydatataskError
from pydatatask.web.queries import Snapshot
from pydatatask.web.recent import Recent

__all__ = ["KEEPALIVE_SECONDS", "CountsFeed"]

logger = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
"""How long a watcher waits without news before it is sent a comment (keeps proxies open)."""


class CountsFeed:
    """Push every task's counts by state to watchers each time they change.

    The pipeline is read only while at least one watcher is connected, every
    :attr:`Recent.lifetime` seconds of the shared snapshot (half a second unless reading
    takes longer), so a dashboard that nobody looks at costs the pipeline nothing.
    """

    def __init__(self, snapshots: Recent[Snapshot]) -> None:
        self._snapshots = snapshots
        self._latest = ""
        self._version = 0
        self._changed = asyncio.Condition()
        self._watchers = 0
        self._poller: asyncio.Task[None] | None = None
        self._ending = False

    async def watch(self) -> AsyncIterator[str | None]:
        """Yield the counts as one line of JSON now and each time they change.

        Yields None after :data:`KEEPALIVE_SECONDS` without a change; ends when
        :meth:`end` is called.
        """
        self._watchers += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="pydatatask-dashboard-counts")
        seen = 0
        try:
            while not self._ending:
                try:
                    async with self._changed:
                        await asyncio.wait_for(self._news(seen), KEEPALIVE_SECONDS)
                        if self._ending:
                            return
                        seen, latest = self._version, self._latest
                except TimeoutError:
                    yield None  # never while holding the lock
                    continue
                yield latest
        finally:
            self._watchers -= 1

    async def _news(self, seen: int) -> None:
        """Wait, holding the condition's lock, until the version is no longer ``seen``."""
        while self._version == seen and not self._ending:
            await self._changed.wait()

    async def _poll(self) -> None:
        while self._watchers:
            started = time.monotonic()
            try:
                counts = (await self._snapshots.get()).counts()
            except (PydatataskError, OSError) as exc:
                logger.warning("the dashboard could not read the pipeline: %s", exc)
            else:
                text = json.dumps(counts, separators=(",", ":"))
                if text != self._latest:
                    async with self._changed:
                        self._latest = text
                        self._version += 1
                        self._changed.notify_all()
            await asyncio.sleep(max(0.0, self._snapshots.lifetime - (time.monotonic() - started)))

    async def end(self) -> None:
        """End every watcher's stream, so that the pages' connections close."""
        async with self._changed:
            self._ending = True
            self._changed.notify_all()

    async def close(self) -> None:
        """Stop reading the pipeline."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
