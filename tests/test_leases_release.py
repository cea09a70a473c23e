"""A claim given back while other controllers claim the same job: still one holder.

Giving a taken-over claim back deletes several generations, one request each. These
tests stop a release between two of its deletes (and one controller for good there)
and check that two other controllers never both win the job.
"""

from __future__ import annotations

import asyncio
import contextlib

import pydatatask
from pydatatask.leases import Claim, Holder, Leases


class _Pausing(pydatatask.InProcessMetadataRepository):
    """Claims in a dict whose next delete, once armed, waits after it is done."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.paused = asyncio.Event()
        self.go_on = asyncio.Event()

    async def _delete(self, job: str) -> None:
        await super()._delete(job)
        if self.armed:
            self.armed = False
            self.paused.set()
            await self.go_on.wait()


async def _taken_over(repo: _Pausing) -> tuple[Leases, Claim]:
    """Return a controller holding the job's second generation (its first holder left)."""
    gone, holder = Leases(repo, 30), Leases(repo, 30)
    assert isinstance(await gone.claim("task", "job"), Claim)
    await gone.close()  # its heartbeat goes: its claim stands for no one
    claim = await holder.claim("task", "job")
    assert isinstance(claim, Claim)
    assert claim.generation == 1
    return holder, claim


async def test_a_release_caught_midway_leaves_the_job_to_one_controller() -> None:
    repo = _Pausing()
    releasing, claim = await _taken_over(repo)
    first, second = Leases(repo, 30), Leases(repo, 30)
    try:
        repo.armed = True
        release = asyncio.create_task(releasing.release(claim))
        await repo.paused.wait()
        won = await first.claim("task", "job")
        repo.go_on.set()
        await release
        also = await second.claim("task", "job")
        assert not (isinstance(won, Claim) and isinstance(also, Claim)), (won, also)
        assert isinstance(won, Claim) or isinstance(also, Claim)
    finally:
        for leases in (releasing, first, second):
            await leases.close()


async def test_a_controller_dying_midway_through_a_release_leaves_the_job_to_one() -> None:
    repo = _Pausing()
    releasing, claim = await _taken_over(repo)
    first, second = Leases(repo, 30), Leases(repo, 30)
    try:
        repo.armed = True
        release = asyncio.create_task(releasing.release(claim))
        await repo.paused.wait()
        won = await first.claim("task", "job")
        release.cancel()  # it dies here: its heartbeat goes, what it left stands for no one
        with contextlib.suppress(asyncio.CancelledError):
            await release
        await releasing.close()
        also = await second.claim("task", "job")
        assert not (isinstance(won, Claim) and isinstance(also, Claim)), (won, also)
        if isinstance(won, Claim):
            assert isinstance(also, Holder)
            await first.release(won)
        else:
            assert isinstance(also, Claim)
            await second.release(also)
        again = await second.claim("task", "job")
        assert isinstance(again, Claim)
        await second.release(again)
    finally:
        for leases in (releasing, first, second):
            await leases.close()
