"""Readiness, implicit dependencies, failure isolation, retries and timeouts."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pytest

import pydatatask as pdt
from pydatatask import InProcessMetadataRepository as Memory
from pydatatask import admin
from pydatatask import scheduler as scheduler_module
from pydatatask.jobstate import State


def two_stage(
    inputs: dict[str, Any], fail: set[str] = frozenset(), **task_options: Any
) -> tuple[pdt.Pipeline, pdt.InProcessSyncTask, pdt.InProcessSyncTask, Memory, Memory]:
    source = Memory(dict(inputs))
    middle, final = Memory(), Memory()

    @pdt.InProcessSyncTask("upper", Memory(), **task_options)
    async def upper(job: str, source: Memory, middle: Memory) -> None:
        if job in fail:
            raise ValueError(f"cannot process {job}")
        await middle.dump(job, str(await source.info(job)).upper())

    upper.link("source", source, is_input=True)
    upper.link("middle", middle, is_output=True)

    @pdt.InProcessSyncTask("length", Memory())
    async def length(job: str, middle: Memory, final: Memory) -> None:
        await final.dump(job, len(await middle.info(job)))

    length.link("middle", middle, is_input=True)
    length.link("final", final, is_output=True)
    return pdt.Pipeline([upper, length]), upper, length, middle, final


async def test_two_stages_run_to_completion() -> None:
    pipeline, _, length, middle, final = two_stage({"a": "xx", "b": "yyy"})
    async with pipeline:
        report = await pdt.run(pipeline)
    assert report == pdt.RunReport(launched=4, succeeded=4, failed=0, timed_out=False)
    assert middle.data == {"a": "XX", "b": "YYY"}
    assert final.data == {"a": 2, "b": 3}
    record = await length.done.info("a")
    assert record["success"] is True
    assert record["attempt"] == 1
    assert {"start_time", "end_time", "duration"} <= set(record)


async def test_rerun_does_only_missing_work() -> None:
    pipeline, upper, _, _, final = two_stage({"a": "x"})
    async with pipeline:
        await pdt.run(pipeline)
        upper.links["source"].repo.data["b"] = "yy"  # type: ignore[attr-defined]
        await pipeline.scheduler.refresh()
        report = await pdt.run(pipeline)
    assert report.launched == 2
    assert final.data == {"a": 1, "b": 2}


async def test_failure_is_recorded_and_isolated() -> None:
    pipeline, upper, length, _, final = two_stage({"a": "x", "bad": "y", "c": "zz"}, fail={"bad"})
    async with pipeline:
        report = await pdt.run(pipeline)
    assert report.failed == 1
    assert final.data == {"a": 1, "c": 2}
    record = await upper.done.info("bad")
    assert record["success"] is False
    assert "ValueError: cannot process bad" in record["exception"]
    assert "Traceback" in record["traceback"]
    assert not await length.done.contains("bad")  # downstream never ran for it


async def test_downstream_waits_for_upstream_success() -> None:
    source, middle = Memory({"k": 1}), Memory({"k": "stale"})
    order: list[str] = []
    gate = asyncio.Event()

    @pdt.InProcessSyncTask("first", Memory())
    async def first(job: str, middle: Memory) -> None:
        order.append("first start")
        await gate.wait()
        await middle.dump(job, "fresh")
        order.append("first end")

    first.link("source", source, is_input=True)
    first.link("middle", middle, is_output=True)
    seen: list[str] = []

    @pdt.InProcessSyncTask("second", Memory())
    async def second(job: str, middle: Memory) -> None:
        seen.append(await middle.info(job))

    second.link("middle", middle, is_input=True)
    pipeline = pdt.Pipeline([first, second])
    async with pipeline:
        assert await pipeline.update()
        await asyncio.sleep(0)
        assert pipeline.scheduler.jobs("second", State.READY) == set()  # held while first runs
        gate.set()
        await pdt.run(pipeline)
    assert seen == ["fresh"]


async def test_upstream_done_before_start_is_read_from_records() -> None:
    source, middle = Memory({"ok": 1, "bad": 2}), Memory({"ok": "x", "bad": "y"})
    first_done = Memory({"ok": {"success": True}, "bad": {"success": False}})
    first = pdt.InProcessSyncTask("first", first_done, func=lambda job: None)
    first.link("source", source, is_input=True)
    first.link("middle", middle, is_output=True)
    ran: list[str] = []

    @pdt.InProcessSyncTask("second", Memory())
    async def second(job: str) -> None:
        ran.append(job)

    second.link("middle", middle, is_input=True)
    async with pdt.Pipeline([first, second]) as pipeline:
        await pdt.run(pipeline)
    assert ran == ["ok"]


async def test_inhibits_start_and_custom_ready() -> None:
    source, skip, allowed = Memory({"a": 1, "b": 2, "c": 3}), Memory({"b": 0}), Memory({"c": 0})
    ran: list[str] = []

    @pdt.InProcessSyncTask("work", Memory())
    async def work(job: str) -> None:
        ran.append(job)

    work.link("source", source, is_input=True)
    work.link("skip", skip, inhibits_start=True)
    async with pdt.Pipeline([work]) as pipeline:
        await pdt.run(pipeline)
    assert sorted(ran) == ["a", "c"]

    ran.clear()
    only = pdt.InProcessSyncTask("only", Memory(), ready=allowed, func=lambda job: ran.append(job))
    async with pdt.Pipeline([only]) as pipeline:
        await pdt.run(pipeline)
    assert ran == ["c"]


async def test_timeout_is_recorded() -> None:
    @pdt.InProcessSyncTask("slow", Memory(), timeout=0.05)
    async def slow(job: str) -> None:
        await asyncio.sleep(3600)

    slow.link("source", Memory({"k": 1}), is_input=True)
    async with pdt.Pipeline([slow]) as pipeline:
        report = await pdt.run(pipeline)
    record = await slow.done.info("k")
    assert report.failed == 1
    assert record["success"] is False
    assert record["timeout"] is True


async def test_own_timeout_error_is_not_a_timeout() -> None:
    @pdt.InProcessSyncTask("raiser", Memory(), timeout=60)
    async def raiser(job: str) -> None:
        raise TimeoutError("from the body")

    raiser.link("source", Memory({"k": 1}), is_input=True)
    async with pdt.Pipeline([raiser]) as pipeline:
        await pdt.run(pipeline)
    record = await raiser.done.info("k")
    assert "timeout" not in record
    assert "from the body" in record["exception"]


async def test_retries_then_succeeds_and_counts_attempts() -> None:
    calls: dict[str, int] = {}

    @pdt.InProcessSyncTask("flaky", Memory(), retry=pdt.RetryPolicy(max_attempts=3, backoff=0.01))
    async def flaky(job: str) -> None:
        calls[job] = calls.get(job, 0) + 1
        if calls[job] < 3:
            raise ConnectionError("try again")

    flaky.link("source", Memory({"k": 1}), is_input=True)
    async with pdt.Pipeline([flaky]) as pipeline:
        report = await pdt.run(pipeline)
    assert calls == {"k": 3}
    assert report.succeeded == 1
    record = await flaky.done.info("k")
    assert record["success"] is True
    assert record["attempt"] == 3


async def test_retries_exhausted_stay_failed() -> None:
    calls = 0

    @pdt.InProcessSyncTask("broken", Memory(), retry=pdt.RetryPolicy(max_attempts=2, backoff=0.01))
    async def broken(job: str) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    broken.link("source", Memory({"k": 1}), is_input=True)
    async with pdt.Pipeline([broken]) as pipeline:
        report = await pdt.run(pipeline)
        assert not await pipeline.update()
    assert calls == 2
    assert report.failed == 1
    record = await broken.done.info("k")
    assert record["success"] is False
    assert record["attempt"] == 2
    assert "retry_at" not in record


async def test_retry_only_chosen_exceptions() -> None:
    calls = 0

    @pdt.InProcessSyncTask(
        "picky", Memory(), retry=pdt.RetryPolicy(max_attempts=5, backoff=0, retry_on=(OSError,))
    )
    async def picky(job: str) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not worth retrying")

    picky.link("source", Memory({"k": 1}), is_input=True)
    async with pdt.Pipeline([picky]) as pipeline:
        await pdt.run(pipeline)
    assert calls == 1


async def test_restart_continues_the_attempt_count() -> None:
    done = Memory({"k": {"success": False, "attempt": 2, "retry_at": "2000-01-01T00:00:00+00:00"}})
    attempts: list[int] = []

    @pdt.InProcessSyncTask("resumed", done, retry=3)
    async def resumed(job: str) -> None:
        raise ConnectionError("still down")

    original = resumed.run_attempt

    async def spy(job: str, attempt: int, reattach: bool = False) -> Any:
        attempts.append(attempt)
        return await original(job, attempt, reattach)

    resumed.run_attempt = spy  # type: ignore[method-assign]
    resumed.link("source", Memory({"k": 1}), is_input=True)
    async with pdt.Pipeline([resumed]) as pipeline:
        await pdt.run(pipeline)
    assert attempts == [3]
    assert (await done.info("k"))["attempt"] == 3


async def test_concurrency_limits() -> None:
    active = peak = 0

    async def body(job: str) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1

    task = pdt.InProcessSyncTask("limited", Memory(), func=body, max_concurrent=3)
    task.link("source", Memory({str(i): i for i in range(20)}), is_input=True)
    async with pdt.Pipeline([task], max_concurrent_jobs=5) as pipeline:
        report = await pdt.run(pipeline)
    assert report.succeeded == 20
    assert peak == 3

    active = peak = 0
    other = pdt.InProcessSyncTask("global", Memory(), func=body)
    other.link("source", Memory({str(i): i for i in range(20)}), is_input=True)
    async with pdt.Pipeline([other], max_concurrent_jobs=4) as pipeline:
        await pdt.run(pipeline)
    assert peak == 4


async def test_priority_orders_launches() -> None:
    order: list[str] = []
    task = pdt.InProcessSyncTask("ranked", Memory(), func=lambda job: order.append(job))
    task.link("source", Memory({"low": 1, "high": 2, "mid": 3}), is_input=True)
    scores = {"low": 0, "mid": 5, "high": 10}

    async def priority(task_name: str, job: str) -> float:
        return scores[job]

    async with pdt.Pipeline([task], priority=priority, max_concurrent_jobs=1) as pipeline:
        await pdt.run(pipeline)
    assert order == ["high", "mid", "low"]


async def test_chain_finishes_without_idle_waits() -> None:
    repos = [Memory({"k": 0})] + [Memory() for _ in range(10)]
    tasks = []
    for index in range(10):

        async def step(job: str, before: Memory, after: Memory) -> None:
            await after.dump(job, await before.info(job) + 1)

        task = pdt.InProcessSyncTask(f"step{index}", Memory(), func=step)
        task.link("before", repos[index], is_input=True)
        task.link("after", repos[index + 1], is_output=True)
        tasks.append(task)
    pipeline = pdt.Pipeline(tasks, poll_interval=3600)
    async with pipeline:
        report = await pdt.run(pipeline)
    assert report.succeeded == 10
    assert repos[-1].data == {"k": 10}


async def test_run_timeout_cancels_and_reports() -> None:
    @pdt.InProcessSyncTask("forever", Memory())
    async def forever(job: str) -> None:
        await asyncio.sleep(3600)

    forever.link("source", Memory({"k": 1}), is_input=True)
    async with pdt.Pipeline([forever]) as pipeline:
        report = await pdt.run(pipeline, timeout=0.05)
        assert report.timed_out
        assert not await forever.done.contains("k")  # interrupted: runs again next time
        assert pipeline.scheduler.running_count == 0


async def test_forever_picks_up_new_items() -> None:
    source = Memory({"a": 1})
    ran: dict[str, asyncio.Event] = {"a": asyncio.Event(), "b": asyncio.Event()}
    task = pdt.InProcessSyncTask("watch", Memory(), func=lambda job: ran[job].set())
    task.link("source", source, is_input=True)
    async with pdt.Pipeline([task], poll_interval=0.02) as pipeline:
        runner = asyncio.create_task(pdt.run(pipeline, forever=True, timeout=5))
        await asyncio.wait_for(ran["a"].wait(), 5)
        source.data["b"] = 2
        await asyncio.wait_for(ran["b"].wait(), 5)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_launch_once_launches_a_single_round() -> None:
    ran: list[str] = []
    task = pdt.InProcessSyncTask("once", Memory(), func=lambda job: ran.append(job))
    task.link("source", Memory({str(i): i for i in range(10)}), is_input=True)
    async with pdt.Pipeline([task], max_concurrent_jobs=3) as pipeline:
        report = await pdt.run(pipeline, launch_once=True)
    assert report.launched == 3
    assert len(ran) == 3


async def test_done_record_written_after_outputs() -> None:
    out = Memory()
    done = Memory()
    seen_by_done: list[bool] = []

    class Watching(Memory):
        async def _dump(self, job: str, value: Any) -> None:
            seen_by_done.append(job in out.data)
            await super()._dump(job, value)

    watched_done = Watching()

    @pdt.InProcessSyncTask("ordered", watched_done)
    async def ordered(job: str, out: Memory) -> None:
        await out.dump(job, 1)

    ordered.link("source", Memory({"k": 1}), is_input=True)
    ordered.link("out", out, is_output=True)
    async with pdt.Pipeline([ordered]) as pipeline:
        await pdt.run(pipeline)
    assert seen_by_done == [True]
    assert done.data == {}


def test_timestamps_match_isoformat() -> None:
    import random
    from datetime import UTC, datetime

    from pydatatask.task.base import timestamp

    rng = random.Random(7)
    moments = [0.0, 0.9999, 59.5, 1_700_000_000.25] + [rng.uniform(0, 4e9) for _ in range(500)]
    # Neighbours within one millisecond, and across millisecond and second boundaries.
    moments += [1_700_000_000.2501, 1_700_000_000.2509, 1_700_000_000.2511, 1_700_000_000.9995]
    moments += [1_700_000_001.0001, 1_700_000_001.0004, 1_700_000_002.0004]
    for moment in sorted(moments) + moments:
        expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
        assert timestamp(moment) == expected


async def test_jobs_finishing_during_a_refresh_are_not_launched_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler_module, "LISTING_SHARE", 1.0)  # list as often as asked
    runs: dict[str, int] = {}

    class SlowListing(Memory):
        """Lists what it holds, then takes long enough for running jobs to finish."""

        async def ids(self) -> set[str]:
            snapshot = set(self.data)
            await asyncio.sleep(0.02)
            return snapshot

    async def body(job: str) -> None:
        runs[job] = runs.get(job, 0) + 1
        await asyncio.sleep(0.01 * int(job))

    task = pdt.InProcessSyncTask("t", SlowListing(), func=body)
    task.link("source", Memory({str(i): i for i in range(8)}), is_input=True)
    async with pdt.Pipeline([task], poll_interval=0.001) as pipeline:
        report = await pdt.run(pipeline)
    assert runs == {str(i): 1 for i in range(8)}
    assert report.launched == 8


async def test_a_slow_listing_is_repeated_less_often_than_poll_interval() -> None:
    """Periodic full listings take at most a tenth of the controller's time."""
    listings = 0

    class SlowListing(Memory):
        async def ids(self) -> set[str]:
            nonlocal listings
            listings += 1
            await asyncio.sleep(0.2)  # a big or remote store
            return set(self.data)

    task = pdt.InProcessSyncTask("t", Memory(), func=lambda job: None)
    task.link("source", SlowListing({"a": 1}), is_input=True)
    async with pdt.Pipeline([task], poll_interval=0.01) as pipeline:
        report = await pdt.run(pipeline, forever=True, timeout=3)
        assert pipeline.scheduler.listing_interval() >= 9 * 0.2
    assert report.succeeded == 1
    # Every 1.8 s at the most: within 3 s, at most 3 listings (every 0.21 s before).
    assert 1 <= listings <= 3


async def test_a_job_that_ends_while_the_scheduler_relists_is_not_launched_again() -> None:
    # A job of "first" ends while a full re-listing is being taken in: the listing was
    # made before its done record existed, and its completion is not yet reaped. It
    # must not look ready again (it used to be launched a second time).
    source = Memory({"old": 1, "late": 2})
    middle = Memory({"old": 1})
    may_finish = asyncio.Event()
    launches: list[str] = []
    scheduler_of: list[Any] = []

    class SlowLookups(Memory):
        async def _info(self, job: str) -> Any:
            if job == "new":  # read while the re-listing is taken in
                scheduler = scheduler_of[0]
                scheduler.wakeup.clear()
                may_finish.set()
                await asyncio.wait_for(scheduler.wakeup.wait(), 60)  # "late" has ended
            return await super()._info(job)

    first_done = SlowLookups({"old": {"success": True}})

    @pdt.InProcessSyncTask("first", first_done)
    async def first(job: str, source: Memory, middle: Memory) -> None:
        launches.append(job)
        await asyncio.wait_for(may_finish.wait(), 60)
        await middle.dump(job, await source.info(job))

    first.link("source", source, is_input=True)
    first.link("middle", middle, is_output=True)

    @pdt.InProcessSyncTask("second", Memory())
    async def second(job: str, middle: Memory) -> None:
        pass

    second.link("middle", middle, is_input=True)
    pipeline = pdt.Pipeline([first, second])
    async with pipeline:
        scheduler = pipeline.scheduler
        scheduler_of.append(scheduler)
        await scheduler.round()  # launches first "late"; second "old" runs too
        assert scheduler.is_running("first", "late")
        # Outside the pipeline, "new" appears as done by first, with its output.
        await first_done.dump("new", {"success": True})
        await middle.dump("new", 3)
        await source.dump("new", 3)
        await scheduler.refresh()  # second "new" needs first's outcome: a lookup
        assert "late" not in scheduler.jobs("first", State.READY)
        await pdt.run(pipeline, timeout=60)
    assert launches == ["late"]


def test_every_task_takes_the_shared_options_and_refuses_misspelt_ones() -> None:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        for make in (
            lambda **options: pdt.InProcessSyncTask("t", **options),
            lambda **options: pdt.ExecutorTask("t", pool, **options),
        ):
            task = make(timeout=5, retry=2, max_concurrent=3)
            assert (task.timeout, task.retry.max_attempts, task.max_concurrent) == (5.0, 2, 3)
            with pytest.raises(TypeError, match="unexpected keyword argument tiemout"):
                make(tiemout=5)
    finally:
        pool.shutdown()


async def test_a_listing_while_the_pipeline_runs_launches_nothing_twice() -> None:
    """``status`` (or a dashboard) reading a running controller's pipeline changes nothing."""
    source = pdt.InProcessMetadataRepository({f"k{number}": number for number in range(3000)})
    middle = pdt.InProcessMetadataRepository()
    final = pdt.InProcessMetadataRepository()

    @pdt.task(inputs={"number": source}, outputs={"double": middle})
    async def double(number: int) -> int:
        await asyncio.sleep(0)
        return 2 * number

    @pdt.task(inputs={"double": middle}, outputs={"plus": final})
    async def plus(double: int) -> int:
        return double + 1

    async with pdt.Pipeline([double, plus]) as pipeline:
        running = asyncio.create_task(pdt.run(pipeline))
        while not running.done():
            await admin.status(pipeline)
            await pipeline.scheduler.refresh()
        report = await running
    assert report.launched == report.succeeded == 6000
