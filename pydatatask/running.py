"""Running a pipeline: rounds of the scheduler until no work remains, or forever."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from pydatatask.jobstate import State
from pydatatask.report import RunReport

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline
    from pydatatask.scheduler import Scheduler

__all__ = ["run"]

# Ready jobs held back by a quota's launch window are looked at again this often.
_QUOTA_RECHECK_SECONDS = 0.25


async def run(
    pipeline: Pipeline,
    forever: bool = False,
    launch_once: bool = False,
    timeout: float | None = None,  # noqa: ASYNC109 - part of the public API
    rerun_stale: bool = False,
) -> RunReport:
    """Run rounds until no work remains (or forever), waking as soon as a job finishes.

    :param pipeline: an open pipeline.
    :param forever: keep going when idle, re-reading repositories every
        ``pipeline.poll_interval`` seconds (or less often when a listing takes long) to
        pick up changes made from outside, and
        when the next occurrence of a schedule falls due. Local folders, MongoDB
        collections, append-only S3 prefixes and in-memory repositories are also
        followed, so what lands in them is taken in at once (see
        :mod:`pydatatask.watching`). A pipeline whose only inputs
        from outside are schedules sleeps until the next occurrence.
    :param launch_once: launch only in the first round, then wait for those jobs.
    :param timeout: stop after this many seconds; jobs still running are cancelled and
        run again next time.
    :param rerun_stale: run the stale jobs again (see :mod:`pydatatask.provenance`),
        then what they make stale downstream; without it, a stale job is left as it is.
    """
    scheduler: Scheduler = pipeline.scheduler
    try:
        if forever:
            await scheduler.start_watching()  # new inputs are noticed as they come, not listed
        return await _run(pipeline, scheduler, forever, launch_once, timeout, rerun_stale)
    finally:
        scheduler.survivors.thaw()
        if forever:
            await scheduler.stop_watching()


async def _run(
    pipeline: Pipeline,
    scheduler: Scheduler,
    forever: bool,
    launch_once: bool,
    timeout: float | None,  # noqa: ASYNC109 - the caller's
    rerun_stale: bool,
) -> RunReport:
    before = scheduler.totals()
    if rerun_stale:
        await scheduler.rerun_stale()
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    timed_out = False
    first = True
    while True:
        more = await scheduler.round(launch=first or not launch_once)
        first = False
        if launch_once and scheduler.running_count == 0 and not scheduler.completions:
            break
        if not more and not forever:
            break
        waits = [scheduler.listing_interval()] if forever and scheduler.polls else []
        if forever and scheduler.next_occurrence_at is not None:
            waits.append(max(0.0, scheduler.next_occurrence_at - time.monotonic()))
        if scheduler.running_count == 0 and any(
            states.count(State.READY) for states in scheduler.states.values()
        ):
            # Ready jobs that could not launch wait for a quota's launch window to pass.
            waits.append(min(pipeline.poll_interval, _QUOTA_RECHECK_SECONDS))
        retry = scheduler.next_deadline()
        if retry is not None:
            waits.append(max(0.0, retry - time.monotonic()))
        if deadline is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                timed_out = True
                break
            waits.append(remaining)
        await scheduler.wait(min(waits) if waits else None)
    if timed_out:
        await scheduler.shutdown()
        await scheduler.round(launch=False)
    return scheduler.report_since(before, timed_out)
