"""ExecutorTask: bodies on thread and process pools."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pydatatask as pdt
from pydatatask import InProcessBlobRepository as Blobs
from pydatatask import InProcessMetadataRepository as Memory

TIMED_OUT = "task 'slow' job 'k' timed out after 0.2 s: its repositories refuse every call"


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


async def test_sync_body_runs_in_a_worker_with_blocking_views(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    controller_thread = threading.get_ident()
    threads: set[int] = set()
    source, texts = Memory({"a": "x", "b": "yy"}), Blobs()

    def body(job: str, source: Any, texts: Any) -> None:
        threads.add(threading.get_ident())
        value = source.info(job)
        assert source.contains(job)
        with texts.open(job, "w") as writer:
            writer.write(value * 2)
        assert sorted(source) == ["a", "b"]

    task = pdt.ExecutorTask("sync", pool, Memory(), func=body)
    task.link("source", source, is_input=True)
    task.link("texts", texts, is_output=True)
    async with pdt.Pipeline([task]) as pipeline:
        report = await pdt.run(pipeline)
    assert report.succeeded == 2, [await task.done.info(j) for j in ("a", "b")]
    assert texts.data == {"a": b"xx", "b": b"yyyy"}
    assert controller_thread not in threads


async def test_async_body_uses_session_resources_on_a_kept_loop(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    session = pdt.Session()
    controller_loop = asyncio.get_running_loop()

    @session.resource
    async def client() -> AsyncIterator[asyncio.AbstractEventLoop]:
        yield asyncio.get_running_loop()

    class ClientBound(Memory):
        """Checks that every call happens on the loop that owns the client."""

        async def _dump(self, job: str, value: Any) -> None:
            assert asyncio.get_running_loop() is client()
            await super()._dump(job, value)

    out = ClientBound()
    loops: set[int] = set()

    async def body(job: str, out: Any) -> None:
        loop = asyncio.get_running_loop()
        assert loop is not controller_loop
        loops.add(id(loop))
        await out.dump(job, job.upper())

    task = pdt.ExecutorTask("async", pool, Memory(), func=body)
    task.link("source", Memory({str(i): i for i in range(8)}), is_input=True)
    task.link("out", out, is_output=True)
    async with pdt.Pipeline([task], session) as pipeline:
        report = await pdt.run(pipeline)
    assert report.succeeded == 8, [await task.done.info(str(i)) for i in range(8)]
    assert len(loops) <= 2  # one loop per worker thread, not one per job


async def test_async_body_timeout_cancels_it(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    cancelled = threading.Event()

    async def body(job: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = pdt.ExecutorTask("slow", pool, Memory(), func=body, timeout=0.05)
    task.link("source", Memory({"k": 1}), is_input=True)
    async with pdt.Pipeline([task]) as pipeline:
        await pdt.run(pipeline)
    assert (await task.done.info("k"))["timeout"] is True
    assert cancelled.wait(5)


async def _end_then_release(
    task: pdt.ExecutorTask,
    release: threading.Event,
    finished: threading.Event,
    run_timeout: float | None = None,
) -> None:
    """Run until the job has ended, then let its body go on and wait until it returns."""
    async with pdt.Pipeline([task]) as pipeline:
        try:
            await pdt.run(pipeline, timeout=run_timeout)
        finally:
            release.set()
        assert await asyncio.to_thread(finished.wait, 60), "the body never returned"


def _refused(body: Any, refusals: list[str], finished: threading.Event) -> Any:
    """Wrap a plain ``body`` to note each LifecycleError it raises and when it returns."""

    @functools.wraps(body)  # keeps the signature that binds links to parameters
    def wrapped(job: str, **repositories: Any) -> None:
        try:
            body(job, **repositories)
        except pdt.LifecycleError as error:
            refusals.append(str(error))
        finally:
            finished.set()

    return wrapped


async def test_sync_body_cannot_write_after_its_timeout(
    pool: concurrent.futures.ThreadPoolExecutor, tmp_path: Path
) -> None:
    release, finished = threading.Event(), threading.Event()
    refusals: list[str] = []
    out = pdt.FileRepository(tmp_path / "out", ".txt")
    kept, marks = Memory({"k": "old"}), Memory()

    def body(job: str, out: Any, kept: Any, marks: Any) -> None:
        release.wait(60)
        attempts: list[Callable[[], Any]] = [
            lambda: out.open(job, "w"),
            lambda: out.open(job, "wb"),
            lambda: marks.dump(job, "late"),
            lambda: kept.delete(job),
        ]
        for attempt in attempts:
            try:
                attempt()
            except pdt.LifecycleError as error:
                refusals.append(str(error))

    task = pdt.ExecutorTask(
        "slow", pool, Memory(), func=_refused(body, refusals, finished), timeout=0.2
    )
    task.link("source", Memory({"k": 1}), is_input=True)
    task.link("out", out, is_output=True)
    task.link("kept", kept, is_output=True)
    task.link("marks", marks, is_output=True)
    await _end_then_release(task, release, finished)
    assert (await task.done.info("k"))["timeout"] is True
    assert refusals == [TIMED_OUT] * 4
    assert os.listdir(tmp_path / "out") == []
    assert marks.data == {}
    assert kept.data == {"k": "old"}


async def test_writer_opened_before_the_timeout_commits_nothing(
    pool: concurrent.futures.ThreadPoolExecutor, tmp_path: Path
) -> None:
    release, finished = threading.Event(), threading.Event()
    refusals: list[str] = []
    out = pdt.FileRepository(tmp_path / "out", ".txt")

    def body(job: str, out: Any) -> None:
        with out.open(job, "wb") as writer:
            writer.write(b"x" * (1 << 17))  # past the in-memory buffer: on disk already
            release.wait(60)  # then the block ends, which would commit the value

    task = pdt.ExecutorTask(
        "slow", pool, Memory(), func=_refused(body, refusals, finished), timeout=0.2
    )
    task.link("source", Memory({"k": 1}), is_input=True)
    task.link("out", out, is_output=True)
    await _end_then_release(task, release, finished)
    assert (await task.done.info("k"))["timeout"] is True
    assert refusals == [TIMED_OUT]
    assert os.listdir(tmp_path / "out") == []  # neither the value nor its temporary file


async def test_async_body_cannot_finish_a_writer_after_its_timeout(
    pool: concurrent.futures.ThreadPoolExecutor, tmp_path: Path
) -> None:
    release, finished = threading.Event(), threading.Event()
    refusals: list[str] = []
    out = pdt.FileRepository(tmp_path / "out", ".txt")

    async def body(job: str, out: Any) -> None:
        try:
            async with await out.open(job, "w") as writer:
                await writer.write("x" * (1 << 17))
                release.wait(60)  # blocking code holds the worker loop past the timeout
                await writer.write("late")
        except pdt.LifecycleError as error:
            refusals.append(str(error))
        finally:
            finished.set()

    task = pdt.ExecutorTask("slow", pool, Memory(), func=body, timeout=0.2)
    task.link("source", Memory({"k": 1}), is_input=True)
    task.link("out", out, is_output=True)
    await _end_then_release(task, release, finished)
    assert (await task.done.info("k"))["timeout"] is True
    assert refusals == [TIMED_OUT]
    assert os.listdir(tmp_path / "out") == []


async def test_body_of_a_cancelled_job_cannot_write(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    release, finished = threading.Event(), threading.Event()
    refusals: list[str] = []
    marks = Memory()

    def body(job: str, marks: Any) -> None:
        release.wait(60)
        marks.dump(job, "late")

    task = pdt.ExecutorTask("stopped", pool, Memory(), func=_refused(body, refusals, finished))
    task.link("source", Memory({"k": 1}), is_input=True)
    task.link("marks", marks, is_output=True)
    await _end_then_release(task, release, finished, run_timeout=0.2)
    assert not await task.done.contains("k")
    assert refusals == ["task 'stopped' job 'k' was cancelled: its repositories refuse every call"]
    assert marks.data == {}


async def test_failure_in_worker_is_recorded(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    def body(job: str) -> None:
        raise RuntimeError("worker failed")

    task = pdt.ExecutorTask("failing", pool, Memory(), func=body)
    task.link("source", Memory({"k": 1}), is_input=True)
    async with pdt.Pipeline([task]) as pipeline:
        await pdt.run(pipeline)
    assert "RuntimeError: worker failed" in (await task.done.info("k"))["exception"]


def square_file(job: str) -> None:
    assert int(job) ** 2 >= 0


async def test_process_pool_runs_bodies_that_take_only_the_job() -> None:
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as processes:
        task = pdt.ExecutorTask("proc", processes, Memory(), func=square_file)
        task.link("source", Memory({"3": 1, "4": 2}), is_input=True)
        async with pdt.Pipeline([task]) as pipeline:
            report = await pdt.run(pipeline)
    assert report.succeeded == 2


async def test_process_pool_rejects_repository_parameters() -> None:
    def body(job: str, source: Any) -> None:
        return None

    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as processes:
        task = pdt.ExecutorTask("proc", processes, Memory(), func=body)
        task.link("source", Memory({"k": 1}), is_input=True)
        with pytest.raises(pdt.ConfigurationError, match="process pool"):
            await pdt.Pipeline([task]).open()


def test_executor_must_be_an_executor() -> None:
    with pytest.raises(pdt.ConfigurationError, match=r"concurrent\.futures\.Executor"):
        pdt.ExecutorTask("bad", "threads", Memory())  # type: ignore[arg-type]
