"""ExecutorTask: bodies on thread and process pools."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import pydatatask as pdt
from pydatatask import InProcessBlobRepository as Blobs
from pydatatask import InProcessMetadataRepository as Memory


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
