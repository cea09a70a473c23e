"""Renewing leases costs one write per controller per interval, however many jobs run."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pydatatask
from pydatatask.leases import Claim, Holder, Leases


class _Counting(pydatatask.InProcessMetadataRepository):
    """Claims in a dict that count the writes made to each entry."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: Counter[str] = Counter()

    async def _dump(self, job: str, value: Any) -> None:
        self.writes[job] += 1
        await super()._dump(job, value)

    async def _create(self, job: str, value: Any) -> bool:
        self.writes[job] += 1
        return await super()._create(job, value)


async def test_one_renewal_per_interval_renews_every_claim() -> None:
    repo = _Counting()
    leases = Leases(repo, 1.5)  # a renewal every half second
    try:
        claims = [await leases.claim("task", f"job{index}") for index in range(50)]
        assert all(isinstance(claim, Claim) for claim in claims)
        repo.writes.clear()
        await asyncio.sleep(2.2)  # four intervals and a bit: past the lease itself
        heartbeats = [key for key in repo.writes if key.startswith("~controller.")]
        assert len(heartbeats) == 1, repo.writes
        assert 3 <= repo.writes[heartbeats[0]] <= 5, repo.writes
        assert sum(repo.writes.values()) == repo.writes[heartbeats[0]]  # no claim rewritten
        assert all(leases.holds(claim) for claim in claims if isinstance(claim, Claim))
    finally:
        await leases.close()


async def test_the_heartbeat_of_a_killed_controller_is_removed_by_the_next_one() -> None:
    """A heartbeat left behind (its controller was killed) goes once it is a lease old."""
    repo = pydatatask.InProcessMetadataRepository()
    killed = Leases(repo, 30)
    assert isinstance(await killed.claim("task", "job"), Claim)
    assert killed._renewing is not None
    killed._renewing.cancel()  # as if it were killed: nothing is cleaned up
    left = {key for key in await repo.ids() if key.startswith("~controller.")}
    assert len(left) == 1
    soon = Leases(repo, 30, clock=lambda: time.time() + 20)
    assert isinstance(await soon.claim("task", "job"), Holder)  # it still stands
    other = await soon.claim("task", "other")
    assert isinstance(other, Claim)
    await soon.release(other)
    await soon.close()
    assert left <= await repo.ids()  # expired, but not yet for a whole lease: kept
    later = Leases(repo, 30, clock=lambda: time.time() + 61)
    taken = await later.claim("task", "job")
    assert isinstance(taken, Claim)
    assert taken.taken_over
    assert not left & await repo.ids()
    await later.release(taken)
    await later.close()
    assert await repo.ids() == set()


async def test_a_renewed_claim_still_holds_after_its_first_expiry_has_passed() -> None:
    """Another controller reads the heartbeat again rather than trust an expiry it saw once."""
    repo = pydatatask.InProcessMetadataRepository()
    holder, other = Leases(repo, 1.5), Leases(repo, 1.5)
    try:
        claim = await holder.claim("task", "job")
        assert isinstance(claim, Claim)
        assert isinstance(await other.claim("task", "job"), Holder)
        await asyncio.sleep(2.0)  # past the expiry the other one read: renewed since
        assert holder.holds(claim)
        assert isinstance(await other.claim("task", "job"), Holder)
    finally:
        await holder.close()
        await other.close()


async def test_a_stopping_controller_removes_heartbeats_left_since_it_started() -> None:
    repo = pydatatask.InProcessMetadataRepository()
    later = [0.0]
    staying = Leases(repo, 30, clock=lambda: time.time() + later[0])
    assert isinstance(await staying.claim("task", "first"), Claim)
    killed = Leases(repo, 30)
    assert isinstance(await killed.claim("task", "second"), Claim)
    assert killed._renewing is not None
    killed._renewing.cancel()  # as if it were killed: nothing is cleaned up
    later[0] = 61.0  # a lease past its expiry
    taken = await staying.claim("task", "second")
    assert isinstance(taken, Claim)
    await staying.release(taken)
    assert sum(key.startswith("~controller.") for key in await repo.ids()) == 2
    await staying.close()
    assert await repo.ids() == {"task.first.0"}  # the claim it kept, nothing else
