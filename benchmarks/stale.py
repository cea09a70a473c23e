"""``status`` and ``plan`` over many done keys that keep provenance, and their floor.

In memory: two stages over N keys, every job done with a record that keeps its tokens
(2N records). On files: one stage over N input files with N YAML done records. One input
is changed before measuring, so exactly one job (two in memory: it and its downstream)
is stale. The lower bound is the same question in plain Python: in memory, hash every
input value and compare it with the recorded token; on files, list the folders, stat
every input and read every done record's bytes (no YAML parsing).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pydatatask
from benchmarks._common import Stopwatch, keys, peak_rss_mib, scratch, value_of
from pydatatask import admin, yamltext
from pydatatask.repository.base import value_token
from pydatatask.task.base import timestamp


def _record(code: str, inputs: dict[str, str], start: str, end: str) -> dict[str, Any]:
    return {
        "success": True,
        "attempt": 1,
        "provenance": {"code": code, "inputs": inputs},
        "start_time": start,
        "end_time": end,
        "duration": 0.001,
    }


async def _measure(pipeline: pydatatask.Pipeline) -> dict[str, Any]:
    async with pipeline:
        with Stopwatch() as status_watch:
            status = await admin.status(pipeline)
        with Stopwatch() as plan_watch:
            planned = await admin.plan(pipeline)
        with Stopwatch() as rerun_watch:
            rerun = await admin.plan(pipeline, rerun_stale=True)
    return {
        "status_s": status_watch.seconds,
        "plan_s": plan_watch.seconds,
        "plan_rerun_s": rerun_watch.seconds,
        "stale": sum(counts["stale"] for counts in status.values()),
        "planned": len(planned),
        "planned_rerun": len(rerun),
    }


async def _memory(count: int) -> dict[str, Any]:
    ids = keys(count)
    source = pydatatask.InProcessMetadataRepository({job: value_of(job) for job in ids})
    middle = pydatatask.InProcessMetadataRepository({job: value_of(job) for job in ids})
    final = pydatatask.InProcessMetadataRepository({job: 1 for job in ids})

    @pydatatask.task(inputs={"value": source}, outputs={"middle": middle})
    def first(value: str) -> str:
        return value

    @pydatatask.task(inputs={"middle": middle}, outputs={"final": final})
    def second(middle: str) -> int:
        return len(middle)

    early, late = timestamp(time.time() - 60), timestamp(time.time() - 30)
    for task, repo, link in ((first, source, "value"), (second, middle, "middle")):
        assert isinstance(task.done, pydatatask.InProcessMetadataRepository)
        start, end = (early, early) if task is first else (late, late)
        task.done.data.update(
            (job, _record(task.code_token, {link: value_token(repo.data[job])}, start, end))
            for job in ids
        )
    source.data[ids[0]] = "changed"
    gc.collect()
    before = peak_rss_mib()
    measured = await _measure(pydatatask.Pipeline([first, second]))
    with Stopwatch() as floor:
        assert isinstance(first.done, pydatatask.InProcessMetadataRepository)
        recorded = first.done.data
        changed = [
            job
            for job, value in source.data.items()
            if hashlib.blake2b(b"s" + value.encode(), digest_size=8).hexdigest()
            != recorded[job]["provenance"]["inputs"]["value"]
        ]
    assert len(changed) == 1
    measured.update(floor_s=floor.seconds, rss_before_mib=before, rss_peak_mib=peak_rss_mib())
    return measured


def _fill_folders(base: Path, ids: list[str], code: str) -> None:
    books, done = base / "books", base / "done"
    books.mkdir()
    done.mkdir()
    when = timestamp(time.time() - 60)
    for job in ids:
        path = books / f"{job}.txt"
        path.write_text(value_of(job))
        stat = path.stat()
        record = _record(code, {"book": f"{stat.st_size}-{stat.st_mtime_ns}"}, when, when)
        (done / f"{job}.yaml").write_text(yamltext.dump(record))


def _file_floor(base: Path) -> tuple[int, int]:
    """Stat every input and read every done record's bytes; return the counts."""
    sizes = {entry.name: entry.stat().st_size for entry in os.scandir(base / "books")}
    read = 0
    for entry in os.scandir(base / "done"):
        with open(entry.path, "rb") as record:
            read += len(record.read())
    return len(sizes), read


async def _files(count: int) -> dict[str, Any]:
    ids = keys(count)
    with scratch("stale") as base:
        books = pydatatask.FileRepository(base / "books", ".txt")
        out = pydatatask.FileRepository(base / "out", ".txt")

        @pydatatask.task(
            done=pydatatask.YamlMetadataFileRepository(base / "done"),
            inputs={"book": books},
            outputs={"out": out},
        )
        def copy(book: str) -> str:
            return book

        with Stopwatch() as seeding:
            _fill_folders(base, ids, copy.code_token)
        (base / "books" / f"{ids[0]}.txt").write_text("changed")
        gc.collect()
        before = peak_rss_mib()
        measured = await _measure(pydatatask.Pipeline([copy]))
        with Stopwatch() as floor:
            stats, read = _file_floor(base)
        assert stats == count
        assert read > 0
        measured.update(
            floor_s=floor.seconds,
            seed_s=seeding.seconds,
            rss_before_mib=before,
            rss_peak_mib=peak_rss_mib(),
        )
    return measured


def main(kind: str, count: int) -> dict[str, Any]:
    """Measure ``kind`` (``memory`` or ``files``) over ``count`` keys."""
    measure = {"memory": _memory, "files": _files}[kind]
    result = asyncio.run(measure(count))
    result.update(kind=kind, count=count)
    return result
