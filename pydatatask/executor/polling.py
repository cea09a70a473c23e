"""One poll loop for every engine whose jobs end without telling anyone.

A :class:`BatchPoller` keeps the coroutines waiting for jobs, keyed by handle, and
checks all of them with one batched query per interval (one ``sh`` round trip for
process groups, one list request per task for pods), however many jobs there are. The
interval starts short and grows while nothing changes; a new waiter or an ended job
shortens it again. While the engine cannot be reached
(:class:`~pydatatask.errors.BackendUnavailableError`) it keeps retrying, since an
unreachable engine ends no job; other errors are retried a few times before the
waiters hear of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

from pydatatask.errors import BackendUnavailableError

__all__ = ["BatchPoller"]

logger = logging.getLogger(__name__)

KeyT = TypeVar("KeyT", bound=Hashable)
ResultT = TypeVar("ResultT")


class BatchPoller(Generic[KeyT, ResultT]):
    """Resolves :meth:`wait` calls by calling ``query`` on every pending key at once.

    :param query: checks a batch of keys; returns a result for each key that is done.
    :param name: names the poller in log messages.
    :param shortest: the least time between two queries.
    :param longest: the most, reached while nothing changes.
    :param failures: how many queries in a row may fail (other than with
        :class:`~pydatatask.errors.BackendUnavailableError`) before the waiters get
        the error.
    """

    def __init__(
        self,
        query: Callable[[Sequence[KeyT]], Awaitable[Mapping[KeyT, ResultT]]],
        name: str,
        *,
        shortest: float,
        longest: float,
        failures: int = 5,
    ) -> None:
        self._query = query
        self._name = name
        self._shortest = shortest
        self._longest = longest
        self._failures = failures
        self._waiters: dict[KeyT, list[asyncio.Future[ResultT]]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def wait(self, key: KeyT) -> ResultT:
        """Wait until a query settles ``key``; return its result."""
        loop = asyncio.get_running_loop()
        if self._runner is None or self._runner.done() or self._runner.get_loop() is not loop:
            self._waiters = {}  # waiters of another event loop are gone with it
            self._wake = asyncio.Event()
            self._runner = loop.create_task(self._run(), name=f"{self._name} poller")
        future: asyncio.Future[ResultT] = loop.create_future()
        self._waiters.setdefault(key, []).append(future)
        self._wake.set()
        try:
            return await future
        finally:
            futures = self._waiters.get(key, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiters.pop(key, None)

    async def _run(self) -> None:
        try:
            await self._poll()
        except BaseException as error:
            everyone = list(self._waiters.items())
            if isinstance(error, asyncio.CancelledError):
                for _, futures in everyone:
                    for future in futures:
                        future.cancel()
                raise
            self._settle(everyone, error)
            if not isinstance(error, Exception):
                raise

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        delay, failed, last = self._shortest, 0, -math.inf
        while self._waiters:
            pause = last + delay - loop.time()
            if pause > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._wake.wait()
                if self._wake.is_set():  # a new job to follow: look again soon
                    delay = self._shortest
                continue
            last = loop.time()
            # Only these waiters may be settled: a query that began before a waiter
            # came may predate its job.
            batch = [(key, list(futures)) for key, futures in self._waiters.items()]
            try:
                results = await self._query([key for key, _ in batch])
            except BackendUnavailableError as error:
                logger.warning(
                    "%s: cannot check %d jobs, will retry: %s", self._name, len(batch), error
                )
                delay = min(self._longest, max(delay * 2, self._shortest * 4))
                continue
            except Exception as error:  # noqa: BLE001 - handed to the waiters in the end
                failed += 1
                logger.warning("%s: checking %d jobs failed: %s", self._name, len(batch), error)
                if failed > self._failures:
                    self._settle(batch, error)
                    failed = 0
                delay = min(self._longest, delay * 2)
                continue
            failed = 0
            settled = False
            for key, futures in batch:
                if key in results:
                    settled = self._settle([(key, futures)], results[key]) or settled
            delay = self._shortest if settled else min(self._longest, delay * 1.5)

    @staticmethod
    def _settle(
        batch: Sequence[tuple[KeyT, list[asyncio.Future[ResultT]]]],
        outcome: ResultT | BaseException,
    ) -> bool:
        settled = False
        for _, futures in batch:
            for future in futures:
                if not future.done():
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                    settled = True
        return settled
