"""The poll loop engines share: one batched query per interval, retries, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from pydatatask.errors import BackendError, BackendUnavailableError
from pydatatask.executor.polling import BatchPoller


class Engine:
    """Answers batched queries; keys listed in ``ended`` are settled."""

    def __init__(self) -> None:
        self.ended: dict[str, int] = {}
        self.queries: list[list[str]] = []
        self.failures: list[Exception] = []

    async def query(self, keys: Sequence[str]) -> Mapping[str, int]:
        self.queries.append(list(keys))
        if self.failures:
            raise self.failures.pop(0)
        return {key: self.ended[key] for key in keys if key in self.ended}


async def test_many_waiters_cost_one_query_per_interval() -> None:
    engine = Engine()
    poller = BatchPoller(engine.query, "test", shortest=0.02, longest=0.1)
    waiters = [asyncio.create_task(poller.wait(f"job{index}")) for index in range(50)]
    await asyncio.sleep(0.2)
    assert not any(waiter.done() for waiter in waiters)
    assert all(len(keys) == 50 for keys in engine.queries[1:])
    assert len(engine.queries) <= 0.2 / 0.02 + 2
    engine.ended = {f"job{index}": index for index in range(50)}
    assert await asyncio.gather(*waiters) == list(range(50))


async def test_an_unreachable_engine_is_retried_and_other_errors_end_the_wait() -> None:
    engine = Engine()
    poller = BatchPoller(engine.query, "test", shortest=0.01, longest=0.02, failures=2)
    engine.failures = [BackendUnavailableError("down")] * 5
    waiter = asyncio.create_task(poller.wait("job"))
    await asyncio.sleep(0.3)
    assert not waiter.done()  # an unreachable engine ends no job
    engine.ended["job"] = 0
    assert await waiter == 0
    engine.failures = [BackendError("broken")] * 3
    with pytest.raises(BackendError, match="broken"):
        await poller.wait("other")


async def test_a_cancelled_waiter_leaves_the_others() -> None:
    engine = Engine()
    poller = BatchPoller(engine.query, "test", shortest=0.01, longest=0.02)
    first, second = (asyncio.create_task(poller.wait(key)) for key in ("a", "b"))
    await asyncio.sleep(0.05)
    first.cancel()
    engine.ended["b"] = 7
    assert await second == 7
    assert first.cancelled()
