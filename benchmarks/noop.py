"""The no-op curve: re-running W1 when all K keys are already done, and its floor.

The state a completed W1 run leaves (inputs, both outputs, and the done records a run
writes, provenance included) is written directly, untimed, so that large K costs no
full run. Then a fresh pipeline is opened, run and closed; it must launch nothing.

The floor is the least any controller must do to learn that there is nothing to do: in
memory, take the id sets of the repositories and their set differences in plain Python;
on files, ``os.scandir`` every folder the pipeline lists (found by watching an untimed
re-run first) and take the same set differences. Re-runs and floor take turns.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydatatask
from benchmarks import w1
from benchmarks._common import Stopwatch, keys, median, peak_rss_mib, scratch, value_of
from pydatatask import yamltext
from pydatatask.repository.base import value_token
from pydatatask.task.base import timestamp

FLOOR_TRIALS = 3
"""The re-run and the floor are each the median of this many trials, taken in turns."""


async def _paired(
    make: Callable[[], pydatatask.Pipeline], floor: Callable[[], int]
) -> dict[str, Any]:
    """Time a no-op re-run and the floor in turns, :data:`FLOOR_TRIALS` times; return medians.

    Each trial opens, runs and closes a fresh pipeline (``make()``), then times ``floor()``,
    which returns the work it found left. Taking turns gives both the same state of the
    machine: the disk's write-back of what was written before, or the first pass over
    memory or a folder that nothing read since it was written, which this machine
    sometimes makes several times slower for either. The first re-run's time is
    reported as ``first_seconds``.
    """
    trials = []
    floors = []
    for _ in range(FLOOR_TRIALS):
        total, running, report = await w1._timed_run(make())
        if report.launched:
            raise RuntimeError(f"the re-run launched {report.launched} jobs")
        trials.append((total, running))
        with Stopwatch() as timed:
            left = floor()
        if left:
            raise RuntimeError(f"the floor found {left} jobs to do")
        floors.append(timed.seconds)
    return {
        "seconds": median([total for total, _ in trials]),
        "run_seconds": median([running for _, running in trials]),
        "first_seconds": trials[0][0],
        "floor_seconds": median(floors),
        "launched": 0,
    }


def _record(code: str, link: str, token: str, when: str) -> dict[str, Any]:
    """A done record as a successful run writes it."""
    return {
        "success": True,
        "attempt": 1,
        "provenance": {"code": code, "inputs": {link: token}},
        "start_time": when,
        "end_time": when,
        "duration": 0.001,
    }


def _memory_floor(repos: dict[str, dict[str, Any]]) -> int:
    """List the ids of every repository, take the differences; return the work left.

    Every repository is listed, as the pipeline on files lists every folder.
    """
    ids = {name: set(data) for name, data in repos.items()}
    todo_a = ids["source"] - ids["done_a"]
    todo_b = ids["upper"] - ids["done_b"]
    return len(todo_a) + len(todo_b)


def _data(repo: pydatatask.Repository) -> dict[str, Any]:
    assert isinstance(repo, pydatatask.InProcessMetadataRepository)
    return repo.data


async def _memory(count: int) -> dict[str, Any]:
    names = keys(count)
    pipeline, _ = w1._memory_pipeline(names)
    stage_a, stage_b = pipeline.tasks["stage_a"], pipeline.tasks["stage_b"]
    repos = {
        "source": _data(stage_a.links["source"].repo),
        "upper": _data(stage_a.links["upper"].repo),
        "lengths": _data(stage_b.links["lengths"].repo),
        "done_a": _data(stage_a.done),
        "done_b": _data(stage_b.done),
    }
    when = timestamp(time.time() - 60)
    code_a, code_b = stage_a.code_token, stage_b.code_token
    for key in names:
        upper = repos["source"][key].upper()
        repos["upper"][key] = upper
        repos["lengths"][key] = len(upper)
        repos["done_a"][key] = _record(code_a, "source", value_token(repos["source"][key]), when)
        repos["done_b"][key] = _record(code_b, "upper", value_token(upper), when)
    gc.collect()
    # The pipeline is reopened each time: its repositories hold the state.
    result = await _paired(lambda: pipeline, lambda: _memory_floor(repos))
    return {**result, "listed": sorted(repos)}


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


def _seed_files(root: Path, names: list[str], code_a: str, code_b: str) -> None:
    """Write what a completed W1 run on plain files leaves behind."""
    for part in ("input", "upper", "lengths", "done_a", "done_b"):
        (root / part).mkdir()
    when = timestamp(time.time() - 60)
    for key in names:
        data = value_of(key).encode()
        for part, content in (("input", data), ("upper", data.upper())):
            _write(root / part / key, content)
        _write(root / "lengths" / key, str(len(data)).encode())
        for part, code, link in (("done_a", code_a, "source"), ("done_b", code_b, "upper")):
            stat = os.stat(root / ("input" if link == "source" else "upper") / key)
            token = f"{stat.st_size}-{stat.st_mtime_ns}"
            record = yamltext.dump(_record(code, link, token, when))
            _write(root / part / f"{key}.yaml", record.encode())


def _listed_folders(pipeline: pydatatask.Pipeline) -> list[str]:
    """Re-run ``pipeline`` (untimed) and return the folders it passed to ``os.scandir``."""
    listed: list[str] = []
    real = os.scandir

    def spy(path: Any = ".") -> Iterator[os.DirEntry[str]]:
        listed.append(os.fspath(path))
        return real(path)

    async def rerun() -> None:
        async with pipeline:
            report = await pydatatask.run(pipeline)
        if report.launched:
            raise RuntimeError(f"the re-run launched {report.launched} jobs")

    os.scandir = spy  # type: ignore[assignment]
    try:
        asyncio.run(rerun())
    finally:
        os.scandir = real
    return sorted({folder for folder in listed if os.path.isdir(folder)})


def _names(entry: os.DirEntry[str]) -> str:
    return entry.name.removesuffix(".yaml")


def files_floor(folders: list[str], root: Path) -> int:
    """Scan every folder once, then take the set differences; return the work left."""
    ids: dict[str, set[str]] = {}
    for folder in folders:
        with os.scandir(folder) as entries:
            ids[folder] = {_names(entry) for entry in entries if not entry.name.startswith(".")}

    def of(part: str) -> set[str]:
        return ids.get(str(root / part), set())

    return len(of("input") - of("done_a")) + len(of("upper") - of("done_b"))


def _files(count: int) -> dict[str, Any]:
    names = keys(count)
    with scratch("noop-files") as root:
        pipeline, _ = w1._files_pipeline(root)
        _seed_files(
            root, names, pipeline.tasks["stage_a"].code_token, pipeline.tasks["stage_b"].code_token
        )
        folders = _listed_folders(w1._files_pipeline(root)[0])
        os.sync()  # what was written lands on the disk before anything is timed
        gc.collect()
        result = asyncio.run(
            _paired(lambda: w1._files_pipeline(root)[0], lambda: files_floor(folders, root))
        )
        listed = [os.path.relpath(folder, root) for folder in folders]
    return {**result, "listed": listed}


def main(where: str, count: int) -> dict[str, Any]:
    """Measure the no-op re-run over ``count`` done keys ``where`` (memory or files)."""
    result = asyncio.run(_memory(count)) if where == "memory" else _files(count)
    if result["launched"]:
        raise RuntimeError(f"the no-op re-run launched {result['launched']} jobs")
    result.update(
        where=where,
        keys=count,
        done_jobs=2 * count,
        per_1k_keys=result["seconds"] / count * 1000,
        peak_rss_mib=peak_rss_mib(),
    )
    return result
