"""A controller running forever takes in what is written to in-memory repositories at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import pydatatask
from pydatatask import scheduler
from tests.forever import NEVER, PATIENCE, running_forever, until


def _pipeline(
    books: pydatatask.Repository,
) -> tuple[pydatatask.Pipeline, pydatatask.InProcessMetadataRepository, pydatatask.Task]:
    shouts = pydatatask.InProcessMetadataRepository()

    @pydatatask.task(inputs={"book": books}, outputs={"shout": shouts})
    async def shout(book: Any) -> str:
        return str(book.decode() if isinstance(book, bytes) else book).upper()

    pipeline = pydatatask.Pipeline([shout])
    pipeline.poll_interval = NEVER
    return pipeline, shouts, shout


async def test_values_dumped_while_running_forever_are_run_without_a_listing() -> None:
    books = pydatatask.InProcessMetadataRepository({f"old{n}": f"old {n}" for n in range(20)})
    pipeline, shouts, _ = _pipeline(books)
    async with pipeline, running_forever(pipeline):
        await until(lambda: len(shouts.data) == 20, "the first 20 jobs")
        listed_at = pipeline.scheduler.last_refresh
        for number in range(10):  # as a web handler in the same process would
            await books.dump(f"new{number}", f"new book {number}")
        await until(lambda: len(shouts.data) == 30, "the 10 new jobs")
        assert pipeline.scheduler.last_refresh == listed_at  # no full listing since
    assert shouts.data["new3"] == "NEW BOOK 3"
    assert not books._listeners  # nobody follows the repository after the run


async def test_a_blob_written_while_running_forever_is_run() -> None:
    books = pydatatask.InProcessBlobRepository({"a": "first"})
    pipeline, shouts, _ = _pipeline(books)
    async with pipeline, running_forever(pipeline):
        await until(lambda: "a" in shouts.data, "the first job")
        async with await books.open("b", "wb") as writer:
            await writer.write(b"second")
        await until(lambda: "b" in shouts.data, "the new job")
    assert shouts.data["b"] == "SECOND"


async def test_a_done_record_deleted_while_running_forever_runs_the_job_again() -> None:
    books = pydatatask.InProcessMetadataRepository({"a": "first"})
    pipeline, shouts, shout = _pipeline(books)
    async with pipeline, running_forever(pipeline):
        await until(lambda: "a" in shouts.data, "the job")
        await books.dump("a", "second")
        await shout.done.delete("a")  # as `rm shout a` from the dashboard
        await until(lambda: shouts.data.get("a") == "SECOND", "the rerun")


async def test_followers_get_each_write_and_deletion_and_leave_when_stopped() -> None:
    repo = pydatatask.InProcessMetadataRepository()
    follow = repo._changes()
    assert follow is not None
    stop = asyncio.Event()
    changes: Any = follow(stop)  # an async generator
    assert await anext(changes) == set()  # it listens from now on
    await repo.dump("a", 1)
    await repo.create("b", 2)
    await repo.delete("c")
    assert await asyncio.wait_for(anext(changes), PATIENCE) == {"a", "b", "c"}
    await repo.delete("a")
    assert await asyncio.wait_for(anext(changes), PATIENCE) == {"a"}
    await changes.aclose()
    assert repo._listeners == []
    await repo.dump("d", 4)  # nobody follows: nothing is kept for anyone


def test_the_example_on_the_memory_page_runs() -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "backends" / "memory.rst"
    lines = page.read_text().splitlines()
    start = lines.index("    import asyncio")
    end = lines.index("    asyncio.run(main())")
    script = "\n".join(line[4:] for line in lines[start : end + 1])
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=PATIENCE
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "WHY IS THE SKY BLUE?\n"


class _SlowToListen(pydatatask.InProcessMetadataRepository):
    """Its follower listens only once ``release`` is set, as a slow stream would."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.release = asyncio.Event()

    def _changes(self) -> Callable[[asyncio.Event], AsyncIterator[set[str]]]:
        follow = super()._changes()

        async def late(stop: asyncio.Event) -> AsyncIterator[set[str]]:
            await self.release.wait()
            async for jobs in follow(stop):
                yield jobs

        return late


async def test_a_follower_listening_after_the_first_listing_brings_one_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler, "LISTEN_WAIT", 0.05)  # start without waiting for it
    books = _SlowToListen({"a": "first"})
    pipeline, shouts, _ = _pipeline(books)
    async with pipeline, running_forever(pipeline):
        await until(lambda: "a" in shouts.data, "the first job")
        books.data["b"] = "second"  # while nobody listens: only a listing finds it
        books.release.set()
        await until(lambda: "b" in shouts.data, "the job a listing after the follower found")
