"""The worker threads that run folder repositories' short file operations."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from pydatatask.repository.filesystem import workers
from pydatatask.repository.filesystem.workers import MAX_WORKERS, in_worker

PATIENCE = 60.0


async def test_a_call_gives_its_result_or_raises_its_error() -> None:
    assert await in_worker(sum, [1, 2, 3]) == 6
    with pytest.raises(FileNotFoundError):
        await in_worker(os.stat, "/nonexistent/pydatatask")


async def test_calls_run_side_by_side() -> None:
    """Calls that wait on each other finish only if they run in threads of their own."""
    parties = min(3, MAX_WORKERS)
    barrier = threading.Barrier(parties, timeout=PATIENCE)
    results = await asyncio.gather(*(in_worker(barrier.wait) for _ in range(parties)))
    assert sorted(results) == list(range(parties))


async def test_a_cancelled_caller_leaves_the_call_to_finish() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(PATIENCE)
        finished.set()
        return "done"

    call = in_worker(slow)
    assert await in_worker(started.wait, PATIENCE)
    call.cancel()
    release.set()
    assert await in_worker(finished.wait, PATIENCE)
    assert await in_worker(str.upper, "next") == "NEXT"  # its result was dropped quietly
    assert call.cancelled()


async def test_a_call_after_the_threads_stopped_starts_them_again() -> None:
    """As at exit: the threads finish and end; a later call must not wait for them."""
    assert await in_worker(str.upper, "before") == "BEFORE"
    await asyncio.to_thread(workers._pool.stop)
    assert await asyncio.wait_for(in_worker(str.upper, "after"), PATIENCE) == "AFTER"


def test_threads_serve_one_event_loop_after_another() -> None:
    release = threading.Event()

    async def leave_a_call_behind() -> None:
        in_worker(release.wait, PATIENCE)  # its loop closes before it returns

    asyncio.run(leave_a_call_behind())
    release.set()
    for number in range(3):
        assert asyncio.run(_upper(f"loop {number}")) == f"LOOP {number}"


async def _upper(text: str) -> str:
    return await in_worker(str.upper, text)


def test_a_forked_child_gets_threads_of_its_own() -> None:
    assert asyncio.run(_upper("parent")) == "PARENT"  # the parent's threads exist
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which reports by exit status
        code = 1
        try:
            if asyncio.run(asyncio.wait_for(_upper("child"), PATIENCE)) == "CHILD":
                code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + PATIENCE
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            break
        assert time.monotonic() < deadline, "the forked child never finished its call"
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
