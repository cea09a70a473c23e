"""New keys while K are done: how long ``run --forever`` takes to notice and finish them.

On files: one stage over a folder of N input files, all done (YAML done records) before
the controller starts. With a poll interval of an hour, 100 new input files are written
(each to a temporary name, then renamed); the figure is the time from the first write
until all 100 done records exist. The lower bound is writing the 100 files and 100
records in plain Python.

In memory: the same stage over in-memory repositories holding K done keys; the 100 new
values are dumped into the input repository, as code beside the controller would. The
lower bound is plain asyncio: the 100 values put on a queue, and a worker taking each
and storing its result and a record in dicts.

On S3 (SeaweedFS on loopback): the same stage over one bucket, its input prefix made
``append_only``, so the controller asks only for the keys after the greatest one it
knows. The 100 new objects are written by another client. The lower bound is writing
the 100 outputs and 100 records with plain aiobotocore; one full listing of the input
prefix is also timed, as what each look would cost without ``append_only``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pydatatask
from benchmarks import _s3
from benchmarks._common import Stopwatch, keys, peak_rss_mib, scratch, value_of
from pydatatask import yamltext
from pydatatask.watching import watching_available

NEW = 100
_WAIT = 120.0  # seconds at most for each wait, so that a broken run ends with its reason
S3_FOLLOW = 0.1
"""Seconds between the controller's requests for new keys of the append-only S3 input."""


def _seed(base: Path, names: list[str]) -> None:
    (base / "books").mkdir()
    (base / "shouts").mkdir()
    (base / "done").mkdir()
    record = yamltext.dump({"success": True, "attempt": 1})
    for name in names:
        (base / "books" / f"{name}.txt").write_text(value_of(name))
        (base / "shouts" / f"{name}.txt").write_text(value_of(name).upper())
        (base / "done" / f"{name}.yaml").write_text(record)


def _write_new(base: Path, names: list[str]) -> None:
    for name in names:
        temporary = base / "books" / f".{name}.tmp"
        temporary.write_text(value_of(name))
        temporary.rename(base / "books" / f"{name}.txt")


async def _time_arrivals(
    pipeline: pydatatask.Pipeline,
    arrive: Callable[[], Awaitable[None]],
    all_done: Callable[[], Awaitable[bool]],
    idle: float = 0.5,
) -> tuple[float, bool]:
    """Run ``pipeline`` forever; return the seconds from ``arrive()`` until ``all_done()``.

    The controller idles ``idle`` seconds after its first listing, before ``arrive()``.

    Also return whether the controller listed its repositories again meanwhile.
    """
    pipeline.poll_interval = 3600.0
    async with pipeline:
        running = asyncio.create_task(pydatatask.run(pipeline, forever=True))
        try:
            deadline = time.monotonic() + _WAIT
            while pipeline.scheduler.last_refresh is None:
                _check_running(running, deadline, "the controller did not list its inputs")
                await asyncio.sleep(0.01)
            await asyncio.sleep(idle)  # idle, as a controller between arrivals
            listed_at = pipeline.scheduler.last_refresh
            with Stopwatch() as noticed:
                await arrive()
                deadline = time.monotonic() + _WAIT
                while not await all_done():
                    _check_running(running, deadline, "the new keys were not done")
                    await asyncio.sleep(0.001)
            return noticed.seconds, pipeline.scheduler.last_refresh != listed_at
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


def _check_running(running: asyncio.Task[Any], deadline: float, late: str) -> None:
    """Raise what ended the controller early, or ``late`` once ``deadline`` has passed."""
    if running.done():
        raise RuntimeError(f"the controller stopped: {running.exception() or 'no error'}")
    if time.monotonic() > deadline:
        raise RuntimeError(f"{late} within {_WAIT:g} s")


async def _measure(count: int) -> dict[str, Any]:
    with scratch("newkeys") as base:
        _seed(base, keys(count))
        books = pydatatask.FileRepository(base / "books", ".txt")
        shouts = pydatatask.FileRepository(base / "shouts", ".txt")

        @pydatatask.task(
            done=pydatatask.YamlMetadataFileRepository(base / "done"),
            inputs={"book": books},
            outputs={"shout": shouts},
        )
        async def shout(book: str) -> str:
            return book.upper()

        new = [f"new{number:03d}" for number in range(NEW)]

        async def all_done() -> bool:
            return len(await shout.done.contains_many(new)) == NEW

        seconds, listed_again = await _time_arrivals(
            pydatatask.Pipeline([shout]), lambda: asyncio.to_thread(_write_new, base, new), all_done
        )
        with scratch("newkeys-floor") as floor_base:
            (floor_base / "books").mkdir()
            (floor_base / "done").mkdir()
            with Stopwatch() as floor:
                _write_new(floor_base, new)
                for name in new:
                    (floor_base / "done" / f"{name}.yaml").write_text("success: true\n")
    return {
        "where": "files",
        "done": count,
        "new": NEW,
        "seconds": seconds,
        "floor_seconds": floor.seconds,
        "listed_again": listed_again,
        "peak_rss_mib": peak_rss_mib(),
    }


async def _measure_memory(count: int) -> dict[str, Any]:
    names = keys(count)
    books = pydatatask.InProcessMetadataRepository({name: value_of(name) for name in names})
    shouts = pydatatask.InProcessMetadataRepository(
        {name: value_of(name).upper() for name in names}
    )
    record = {"success": True, "attempt": 1}
    done = pydatatask.InProcessMetadataRepository(dict.fromkeys(names, record))

    @pydatatask.task(done=done, inputs={"book": books}, outputs={"shout": shouts})
    async def shout(book: str) -> str:
        return book.upper()

    new = [f"new{number:03d}" for number in range(NEW)]

    async def arrive() -> None:
        for name in new:
            await books.dump(name, value_of(name))

    async def all_done() -> bool:
        return done.data.keys() >= set(new)

    seconds, listed_again = await _time_arrivals(pydatatask.Pipeline([shout]), arrive, all_done)
    return {
        "where": "memory",
        "done": count,
        "new": NEW,
        "seconds": seconds,
        "floor_seconds": await _memory_floor(new),
        "listed_again": listed_again,
        "peak_rss_mib": peak_rss_mib(),
    }


async def _memory_floor(new: list[str]) -> float:
    arrivals: asyncio.Queue[str] = asyncio.Queue()
    results: dict[str, str] = {}
    records: dict[str, dict[str, Any]] = {}

    async def worker() -> None:
        while True:
            name = await arrivals.get()
            results[name] = value_of(name).upper()
            records[name] = {"success": True, "attempt": 1}
            arrivals.task_done()

    consumer = asyncio.create_task(worker())
    with Stopwatch() as floor:
        for name in new:
            arrivals.put_nowait(name)
        await arrivals.join()
    consumer.cancel()
    return floor.seconds


async def _measure_s3(count: int) -> dict[str, Any]:
    """The same stage over one bucket, its input prefix made ``append_only``."""
    from pydatatask.repository import s3follow
    from pydatatask.repository.s3 import S3BucketRepository, YamlMetadataS3Repository

    names = keys(count)
    new = [f"new{number:03d}" for number in range(NEW)]  # they sort after every "k..." id
    with _s3.endpoint() as where:
        await _s3.prepare(where, names, "books/", ".txt")
        async with _s3.create_client(where) as outside:
            record = yamltext.dump({"success": True, "attempt": 1})
            await _s3.upload(outside, ((f"shouts/{name}.txt", value_of(name)) for name in names))
            await _s3.upload(outside, ((f"done/{name}.yaml", record) for name in names))
            session = pydatatask.Session()

            async def s3_client() -> AsyncIterator[Any]:
                async with _s3.create_client(where) as client:
                    yield client

            client = session.resource(s3_client)
            books = S3BucketRepository(
                client, f"{_s3.BUCKET}/books/", ".txt", append_only=True, follow_every=S3_FOLLOW
            )

            @pydatatask.task(
                done=YamlMetadataS3Repository(client, f"{_s3.BUCKET}/done/"),
                inputs={"book": books},
                outputs={"shout": S3BucketRepository(client, f"{_s3.BUCKET}/shouts/", ".txt")},
            )
            async def shout(book: bytes) -> bytes:
                return book.upper()

            def arrive() -> Awaitable[None]:
                return _s3.upload(outside, ((f"books/{name}.txt", value_of(name)) for name in new))

            async def all_done() -> bool:
                await asyncio.sleep(0.01)  # one listing request every 10 ms at most
                found = await outside.list_objects_v2(Bucket=_s3.BUCKET, Prefix="done/new")
                return bool(found.get("KeyCount", 0) == NEW)

            seconds, listed_again = await _time_arrivals(
                pydatatask.Pipeline([shout], session),
                arrive,
                all_done,
                # the keys just uploaded settle first, as in a controller long under way
                idle=s3follow.SETTLE_SECONDS + 1,
            )
            floor = await _s3_floor(outside, new)
            async with session:
                with Stopwatch() as listing:
                    await books.ids()
    return {
        "where": "s3",
        "done": count,
        "new": NEW,
        "seconds": seconds,
        "floor_seconds": floor,
        "full_listing_seconds": listing.seconds,
        "listed_again": listed_again,
        "peak_rss_mib": peak_rss_mib(),
    }


async def _s3_floor(client: Any, new: list[str]) -> float:
    """Write the 100 outputs and records of the new keys, as few requests as it takes."""
    with Stopwatch() as floor:
        await _s3.upload(client, ((f"floor/shouts/{name}.txt", value_of(name)) for name in new))
        await _s3.upload(client, ((f"floor/done/{name}.yaml", "success: true\n") for name in new))
    return floor.seconds


def main(where: str, count: int) -> dict[str, Any]:
    """Measure with ``count`` done keys: ``files`` (needs the ``watch`` extra), ``memory``
    or ``s3`` (needs the ``s3`` extra and SeaweedFS)."""
    if where == "memory":
        return asyncio.run(_measure_memory(count))
    if where == "s3":
        reason = _s3.missing()
        return {"skipped": reason} if reason else asyncio.run(_measure_s3(count))
    if not watching_available():
        return {"skipped": "watchfiles is not installed (the 'watch' extra)"}
    return asyncio.run(_measure(count))
