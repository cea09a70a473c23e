"""Values worth reusing for a moment: computed one at a time, kept while recent."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Recent"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Recent(Generic[T]):
    """The latest result of an async computation, reused while it is recent.

    A result stays recent for ``max(floor, factor * the seconds computing it took)``, so
    reading a million keys is not repeated for every page, nor for more than a fraction
    of the time. One computation runs at a time; callers that arrive meanwhile wait for
    its result.

    :param compute: the computation.
    :param floor: the shortest time a result is reused, in seconds.
    :param factor: how many times its own cost a result is reused: 19 keeps the
        readings under a twentieth (5 %) of a running controller's time.
    """

    def __init__(
        self, compute: Callable[[], Awaitable[T]], floor: float = 0.5, factor: float = 19.0
    ) -> None:
        self._compute = compute
        self._floor = floor
        self._factor = factor
        self._lock = asyncio.Lock()
        self._value: T | None = None
        self._started = float("-inf")
        self._cost = 0.0
        self._background: asyncio.Task[T] | None = None
        self.generation = 0
        """How many results have been computed."""

    @property
    def lifetime(self) -> float:
        """How long, in seconds, a result is reused."""
        return max(self._floor, self._factor * self._cost)

    async def get(self) -> T:
        """Return a recent result, computing a new one when the last is too old."""
        asked = time.monotonic()
        async with self._lock:
            if self._value is not None and asked - self._started < self.lifetime:
                return self._value
            started = time.monotonic()
            value = await self._compute()
            self._value, self._started = value, started
            self._cost = time.monotonic() - started
            self.generation += 1
            return value

    @property
    def latest(self) -> T | None:
        """The latest result, recent or not; None before the first."""
        return self._value

    @property
    def is_recent(self) -> bool:
        """Whether the latest result is still recent."""
        return self._value is not None and time.monotonic() - self._started < self.lifetime

    async def refresh_soon(self) -> None:
        """Start computing a recent result in the background, unless that is under way."""
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(self.get(), name="pydatatask-dashboard-read")
            self._background.add_done_callback(_report_failure)

    async def close(self) -> None:
        """Stop a computation going on in the background."""
        if self._background is not None:
            self._background.cancel()
            await asyncio.gather(self._background, return_exceptions=True)


def _report_failure(task: asyncio.Task[T]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("the dashboard could not read the pipeline: %s", task.exception())
