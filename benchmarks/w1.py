"""W1 through pydatatask: two InProcessSyncTask stages over N keys, and the no-op re-run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pydatatask
from benchmarks._common import (
    CONCURRENCY,
    Stopwatch,
    keys,
    peak_rss_mib,
    scratch,
    value_of,
    write_inputs,
)

VARIANTS = ("memory", "files", "yaml")


def _memory_pipeline(names: list[str]) -> tuple[pydatatask.Pipeline, Any]:
    source = pydatatask.InProcessMetadataRepository({key: value_of(key) for key in names})
    upper = pydatatask.InProcessMetadataRepository()
    lengths = pydatatask.InProcessMetadataRepository()
    done_a = pydatatask.InProcessMetadataRepository()
    done_b = pydatatask.InProcessMetadataRepository()

    @pydatatask.InProcessSyncTask("stage_a", done_a)
    async def stage_a(job: str, source: Any, upper: Any) -> None:
        await upper.dump(job, (await source.info(job)).upper())

    @pydatatask.InProcessSyncTask("stage_b", done_b)
    async def stage_b(job: str, upper: Any, lengths: Any) -> None:
        await lengths.dump(job, len(await upper.info(job)))

    _wire(stage_a, stage_b, source, upper, lengths)
    pipeline = pydatatask.Pipeline([stage_a, stage_b], max_concurrent_jobs=CONCURRENCY)
    return pipeline, lengths


def _files_pipeline(root: Path) -> tuple[pydatatask.Pipeline, Any]:
    source = pydatatask.FileRepository(root / "input")
    upper = pydatatask.FileRepository(root / "upper")
    lengths = pydatatask.FileRepository(root / "lengths")
    done_a = pydatatask.YamlMetadataFileRepository(root / "done_a")
    done_b = pydatatask.YamlMetadataFileRepository(root / "done_b")

    @pydatatask.InProcessSyncTask("stage_a", done_a)
    async def stage_a(job: str, source: Any, upper: Any) -> None:
        async with await source.open(job, "rb") as reader:
            data = await reader.read()
        async with await upper.open(job, "wb") as writer:
            await writer.write(data.upper())

    @pydatatask.InProcessSyncTask("stage_b", done_b)
    async def stage_b(job: str, upper: Any, lengths: Any) -> None:
        async with await upper.open(job, "rb") as reader:
            data = await reader.read()
        async with await lengths.open(job, "wb") as writer:
            await writer.write(str(len(data)).encode())

    _wire(stage_a, stage_b, source, upper, lengths)
    pipeline = pydatatask.Pipeline([stage_a, stage_b], max_concurrent_jobs=CONCURRENCY)
    return pipeline, lengths


def _yaml_pipeline(root: Path) -> tuple[pydatatask.Pipeline, Any]:
    source = pydatatask.YamlMetadataFileRepository(root / "input")
    upper = pydatatask.YamlMetadataFileRepository(root / "upper")
    lengths = pydatatask.YamlMetadataFileRepository(root / "lengths")
    done_a = pydatatask.YamlMetadataFileRepository(root / "done_a")
    done_b = pydatatask.YamlMetadataFileRepository(root / "done_b")

    @pydatatask.InProcessSyncTask("stage_a", done_a)
    async def stage_a(job: str, source: Any, upper: Any) -> None:
        await upper.dump(job, (await source.info(job)).upper())

    @pydatatask.InProcessSyncTask("stage_b", done_b)
    async def stage_b(job: str, upper: Any, lengths: Any) -> None:
        await lengths.dump(job, len(await upper.info(job)))

    _wire(stage_a, stage_b, source, upper, lengths)
    pipeline = pydatatask.Pipeline([stage_a, stage_b], max_concurrent_jobs=CONCURRENCY)
    return pipeline, lengths


def _wire(stage_a: Any, stage_b: Any, source: Any, upper: Any, lengths: Any) -> None:
    stage_a.link("source", source, is_input=True)
    stage_a.link("upper", upper, is_output=True)
    stage_b.link("upper", upper, is_input=True)
    stage_b.link("lengths", lengths, is_output=True)


async def _timed_run(pipeline: pydatatask.Pipeline) -> tuple[float, float, Any]:
    """Return (seconds for open + run + close, seconds for run alone, the report)."""
    with Stopwatch() as total:
        async with pipeline:
            with Stopwatch() as running:
                report = await pydatatask.run(pipeline)
    return total.seconds, running.seconds, report


async def _check(lengths: Any, names: list[str], report: Any) -> int:
    """Check the outputs; return how many launches went beyond one per job."""
    expected = 2 * len(names)
    if report.succeeded < expected or report.failed:
        raise RuntimeError(f"W1 did not complete every job: {report}")
    sample = names[len(names) // 2]
    if isinstance(lengths, pydatatask.FileRepository) and not isinstance(
        lengths, pydatatask.YamlMetadataFileRepository
    ):
        async with await lengths.open(sample, "rb") as reader:
            value = int(await reader.read())
    else:
        value = int(await lengths.info(sample))
    if value != len(value_of(sample)):
        raise RuntimeError(f"W1 produced {value} for {sample}, not {len(value_of(sample))}")
    return int(report.launched - expected)


async def _no_op(root: Path, maker: Any) -> dict[str, Any]:
    pipeline, _ = maker(root)
    total, running, report = await _timed_run(pipeline)
    considered = 0
    for task in pipeline.tasks.values():
        considered += len(await task.done.ids())
    if report.launched:
        raise RuntimeError(f"the re-run launched {report.launched} jobs")
    return {
        "seconds": total,
        "run_seconds": running,
        "launched": report.launched,
        "done_jobs_considered": considered,
    }


async def measure(variant: str, count: int) -> dict[str, Any]:
    """Run W1 through pydatatask and return its figures."""
    names = keys(count)
    result: dict[str, Any] = {"n": count, "jobs": 2 * count}
    if variant == "memory":
        pipeline, lengths = _memory_pipeline(names)
        total, running, report = await _timed_run(pipeline)
        extra = await _check(lengths, names, report)
    else:
        maker = _files_pipeline if variant == "files" else _yaml_pipeline
        with scratch(f"w1-{variant}") as root:
            write_inputs(root / "input", names, as_yaml=variant == "yaml")
            pipeline, lengths = maker(root)
            total, running, report = await _timed_run(pipeline)
            extra = await _check(lengths, names, report)
            if variant == "files":
                result["no_op"] = await _no_op(root, maker)
    result.update(
        seconds=total,
        run_seconds=running,
        jobs_per_second=2 * count / total,
        launched=report.launched,
        extra_launches=extra,
        peak_rss_mib=peak_rss_mib(),
    )
    return result


def main(variant: str, count: int) -> dict[str, Any]:
    """Entry point for a worker process."""
    return asyncio.run(measure(variant, count))
