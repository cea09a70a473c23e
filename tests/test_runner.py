"""Cancelling jobs in the scheduler's worker pool."""

from __future__ import annotations

import asyncio

import pydatatask as pdt
from pydatatask import InProcessMetadataRepository as Memory


async def test_cancel_running_and_queued_jobs() -> None:
    started: dict[str, asyncio.Event] = {}
    finished: list[str] = []

    async def body(job: str) -> None:
        started.setdefault(job, asyncio.Event()).set()
        await asyncio.sleep(3600 if job in {"slow", "queued"} else 0)
        finished.append(job)

    task = pdt.InProcessSyncTask("t", Memory(), func=body, max_concurrent=1)
    task.link("source", Memory({"slow": 1}), is_input=True)
    async with pdt.Pipeline([task]) as pipeline:
        scheduler = pipeline.scheduler
        await pipeline.update()
        await asyncio.wait_for(started.setdefault("slow", asyncio.Event()).wait(), 5)
        assert scheduler.is_running("t", "slow")
        scheduler.start("t", "queued")
        assert await scheduler.cancel("t", "queued")  # still queued: withdrawn
        assert await scheduler.cancel("t", "slow")  # running: cancelled, no record
        assert not await scheduler.cancel("t", "slow")
        assert scheduler.running_count == 0
        assert not await task.done.contains("slow")
        assert not await task.done.contains("queued")
        scheduler.start("t", "fast")  # the pool still works afterwards
        await pdt.run(pipeline, launch_once=True)
        while scheduler.running_count:
            await scheduler.wait(1)
    assert finished == ["fast"]
    assert "queued" not in started


async def test_close_cancels_running_jobs_without_records() -> None:
    gate = asyncio.Event()

    async def body(job: str) -> None:
        gate.set()
        await asyncio.sleep(3600)

    task = pdt.InProcessSyncTask("t", Memory(), func=body)
    task.link("source", Memory({"a": 1, "b": 2}), is_input=True)
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        await pipeline.update()
        await asyncio.wait_for(gate.wait(), 5)
    assert await task.done.ids() == set()


async def test_a_job_queued_while_idle_workers_stop_still_runs() -> None:
    """A job started while the idle workers are being stopped gets a worker of its own."""
    finished: list[str] = []

    async def body(job: str) -> None:
        finished.append(job)

    task = pdt.InProcessSyncTask("t", Memory(), func=body)
    task.link("source", Memory({"a": 1, "b": 2}), is_input=True)
    async with pdt.Pipeline([task]) as pipeline:
        scheduler = pipeline.scheduler
        await pdt.run(pipeline)  # two workers ran a and b, and now wait for work
        assert sorted(finished) == ["a", "b"]
        abandoning = asyncio.create_task(scheduler.runner.abandon())
        await asyncio.sleep(0)  # the idle workers are told to stop, and have not yet
        scheduler.start("t", "next")
        await abandoning
        async with asyncio.timeout(30):
            while "next" not in finished:
                await scheduler.wait(1)
    assert finished[2:] == ["next"]


async def test_jobs_that_wait_run_side_by_side() -> None:
    """Each worker that takes a job wakes the next, so waiting jobs all start at once."""
    jobs = {f"j{number:02d}": number for number in range(40)}
    started: set[str] = set()
    all_started = asyncio.Event()
    gate = asyncio.Event()

    async def body(job: str) -> None:
        started.add(job)
        if started == set(jobs):
            all_started.set()
        await gate.wait()

    task = pdt.InProcessSyncTask("t", Memory(), func=body)
    task.link("source", Memory(jobs), is_input=True)
    async with pdt.Pipeline([task]) as pipeline:
        running = asyncio.create_task(pdt.run(pipeline))
        await asyncio.wait_for(all_started.wait(), 30)  # none has finished yet
        gate.set()
        report = await asyncio.wait_for(running, 30)
    assert report.succeeded == len(jobs)


async def test_jobs_that_never_wait_do_not_wake_a_worker_each() -> None:
    """A stream of jobs that finish without waiting is run by a worker or two."""
    finished: list[str] = []

    async def body(job: str) -> None:
        finished.append(job)

    jobs = {f"j{number:03d}": number for number in range(300)}
    task = pdt.InProcessSyncTask("t", Memory(), func=body)
    task.link("source", Memory(jobs), is_input=True)
    async with pdt.Pipeline([task], max_concurrent_jobs=256) as pipeline:
        await pdt.run(pipeline)
        assert sorted(finished) == sorted(jobs)
        assert len(pipeline.scheduler.runner._workers) <= 2
