"""Latency of a chain of in-memory InProcessSyncTask stages over one key."""

from __future__ import annotations

import asyncio
from typing import Any

import pydatatask
from benchmarks._common import Stopwatch, median

STAGES = 10
TRIALS = 15
KEY = "only"


def _chain() -> pydatatask.Pipeline:
    repos = [pydatatask.InProcessMetadataRepository() for _ in range(STAGES + 1)]
    repos[0].data[KEY] = "value"
    tasks = []
    for index in range(STAGES):

        async def body(job: str, source: Any, target: Any) -> None:
            await target.dump(job, await source.info(job))

        task = pydatatask.InProcessSyncTask(
            f"stage{index}", pydatatask.InProcessMetadataRepository(), func=body
        )
        task.link("source", repos[index], is_input=True)
        task.link("target", repos[index + 1], is_output=True)
        tasks.append(task)
    return pydatatask.Pipeline(tasks)


async def _framework_once() -> float:
    pipeline = _chain()
    async with pipeline:
        with Stopwatch() as watch:
            report = await pydatatask.run(pipeline)
    if report.succeeded != STAGES:
        raise RuntimeError(f"the chain did not finish: {report}")
    return watch.seconds


async def _lower_bound_once() -> float:
    repos: list[dict[str, Any]] = [{KEY: "value"}] + [{} for _ in range(STAGES)]
    done: list[dict[str, bool]] = [{} for _ in range(STAGES)]

    async def stage(index: int, key: str) -> None:
        repos[index + 1][key] = repos[index][key]
        done[index][key] = True

    with Stopwatch() as watch:
        for index in range(STAGES):
            await asyncio.create_task(stage(index, KEY))
    return watch.seconds


async def measure() -> dict[str, Any]:
    """Return the median milliseconds of the chain, through pydatatask and without it."""
    await _framework_once()  # warm up: first-call costs are not latency
    framework = [await _framework_once() for _ in range(TRIALS)]
    lower = [await _lower_bound_once() for _ in range(TRIALS)]
    return {
        "stages": STAGES,
        "trials": TRIALS,
        "ms": median(framework) * 1000,
        "lower_bound_ms": median(lower) * 1000,
        "all_ms": [round(seconds * 1000, 3) for seconds in framework],
    }


def main() -> dict[str, Any]:
    """Entry point for a worker process."""
    return asyncio.run(measure())
