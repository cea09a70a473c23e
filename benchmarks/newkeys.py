"""New keys while K are done: how long ``run --forever`` takes to notice and finish them.

One stage over a folder of N input files, all done (YAML done records) before the
controller starts. With a poll interval of an hour, 100 new input files are written
(each to a temporary name, then renamed); the figure is the time from the first write
until all 100 done records exist. The lower bound is writing the 100 files and 100
records in plain Python.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pydatatask
from benchmarks._common import Stopwatch, keys, peak_rss_mib, scratch, value_of
from pydatatask import yamltext
from pydatatask.watching import watching_available

NEW = 100
_WAIT = 600.0  # seconds at most for the new jobs, so that a broken run still ends


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

        pipeline = pydatatask.Pipeline([shout])
        pipeline.poll_interval = 3600.0
        new = [f"new{number:03d}" for number in range(NEW)]
        async with pipeline:
            running = asyncio.create_task(pydatatask.run(pipeline, forever=True))
            try:
                while pipeline.scheduler.last_refresh is None:  # noqa: ASYNC110 - no event
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.5)  # idle, as a controller between arrivals
                listed_at = pipeline.scheduler.last_refresh
                with Stopwatch() as noticed:
                    await asyncio.to_thread(_write_new, base, new)
                    deadline = time.monotonic() + _WAIT
                    while len(await shout.done.contains_many(new)) < NEW:
                        assert time.monotonic() < deadline, "the new keys were not done"
                        await asyncio.sleep(0.01)
                listed_again = pipeline.scheduler.last_refresh != listed_at
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        with scratch("newkeys-floor") as floor_base:
            (floor_base / "books").mkdir()
            (floor_base / "done").mkdir()
            with Stopwatch() as floor:
                _write_new(floor_base, new)
                for name in new:
                    (floor_base / "done" / f"{name}.yaml").write_text("success: true\n")
    return {
        "done": count,
        "new": NEW,
        "seconds": noticed.seconds,
        "floor_seconds": floor.seconds,
        "listed_again": listed_again,
        "peak_rss_mib": peak_rss_mib(),
    }


def main(count: int) -> dict[str, Any]:
    """Measure with ``count`` done keys (skipped without the ``watch`` extra)."""
    if not watching_available():
        return {"skipped": "watchfiles is not installed (the 'watch' extra)"}
    return asyncio.run(_measure(count))
