"""W1 written with Dask: the same two stages over N keys, in memory and on files.

One ``dask.delayed`` call per job (stage B of a key depends on stage A of the same key),
computed with Dask's threaded scheduler and as many threads as asyncio's default
executor, which the plain-asyncio lower bound uses. On files every output is written to
a hidden temporary name and renamed into place, and each job then writes its done
marker the same way, as W1's lower bound on files does (no fsync).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from benchmarks._common import (
    DONE_MARKER,
    Stopwatch,
    keys,
    peak_rss_mib,
    read_file,
    replace_file,
    scratch,
    value_of,
    write_inputs,
)

THREADS = min(32, (os.cpu_count() or 1) + 4)
"""Dask's thread count: the size of asyncio's default executor."""


def _dask() -> Any:
    """Return the ``dask`` module (imported late: it is optional)."""
    return importlib.import_module("dask")


def _memory(names: list[str]) -> float:
    dask = _dask()
    source = {key: value_of(key) for key in names}
    upper: dict[str, str] = {}
    lengths: dict[str, int] = {}
    done_a: dict[str, bool] = {}
    done_b: dict[str, bool] = {}

    def stage_a(key: str) -> str:
        upper[key] = source[key].upper()
        done_a[key] = True
        return key

    def stage_b(key: str) -> None:
        lengths[key] = len(upper[key])
        done_b[key] = True

    with Stopwatch() as watch:
        work = [dask.delayed(stage_b)(dask.delayed(stage_a)(key)) for key in names]
        dask.compute(*work, scheduler="threads", num_workers=THREADS)
    sample = names[len(names) // 2]
    if len(done_b) != len(names) or lengths[sample] != len(value_of(sample)):
        raise RuntimeError("W1 with Dask in memory missed keys")
    return watch.seconds


def _files(root: Path, names: list[str]) -> float:
    dask = _dask()
    folders = {part: str(root / part) for part in ("input", "upper", "lengths", "done_a", "done_b")}
    write_inputs(root / "input", names, as_yaml=False)

    def stage_a(key: str) -> str:
        data = read_file(os.path.join(folders["input"], key))
        replace_file(folders["upper"], key, data.upper())
        replace_file(folders["done_a"], key + ".yaml", DONE_MARKER)
        return key

    def stage_b(key: str) -> None:
        data = read_file(os.path.join(folders["upper"], key))
        replace_file(folders["lengths"], key, str(len(data)).encode())
        replace_file(folders["done_b"], key + ".yaml", DONE_MARKER)

    with Stopwatch() as watch:
        for folder in ("upper", "lengths", "done_a", "done_b"):
            os.makedirs(folders[folder], exist_ok=True)
        work = [dask.delayed(stage_b)(dask.delayed(stage_a)(key)) for key in names]
        dask.compute(*work, scheduler="threads", num_workers=THREADS)
    sample = names[len(names) // 2]
    if len(os.listdir(folders["done_b"])) != len(names) or int(
        read_file(os.path.join(folders["lengths"], sample))
    ) != len(value_of(sample)):
        raise RuntimeError("W1 with Dask on files missed keys")
    return watch.seconds


def missing() -> str | None:
    """Return why the Dask workloads cannot run here, or None when they can."""
    if importlib.util.find_spec("dask") is None:
        return "dask is not installed"
    return None


def main(where: str, count: int) -> dict[str, Any]:
    """Run W1 with Dask ``where`` (memory or files) over ``count`` keys."""
    dask = _dask()
    names = keys(count)
    if where == "memory":
        seconds = _memory(names)
    else:
        with scratch("dask-files") as root:
            seconds = _files(root, names)
    return {
        "n": count,
        "jobs": 2 * count,
        "seconds": seconds,
        "jobs_per_second": 2 * count / seconds,
        "peak_rss_mib": peak_rss_mib(),
        "threads": THREADS,
        "dask": dask.__version__,
    }
