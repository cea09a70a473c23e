"""W1 through pydatatask: two InProcessSyncTask stages over N keys, and the no-op re-run."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pydatatask
from benchmarks import _s3
from benchmarks._common import (
    CONCURRENCY,
    TMPFS,
    Stopwatch,
    keys,
    peak_rss_mib,
    scratch,
    value_of,
    write_inputs,
)

VARIANTS = (
    "memory",
    "memory-values",
    "files",
    "files-tmpfs",
    "files-values",
    "files-leases",
    "yaml",
    "s3",
)
"""``files-leases`` is ``files`` with every job claimed in a lease repository of YAML files;
``-values`` variants write the same stages as functions over values (``@pydatatask.task``);
``files-tmpfs`` is ``files`` in a folder under ``/dev/shm``."""


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


def _memory_values_pipeline(names: list[str]) -> tuple[pydatatask.Pipeline, Any]:
    source = pydatatask.InProcessMetadataRepository({key: value_of(key) for key in names})
    upper = pydatatask.InProcessMetadataRepository()
    lengths = pydatatask.InProcessMetadataRepository()

    @pydatatask.task("stage_a", inputs={"source": source}, outputs={"upper": upper})
    async def stage_a(source: str) -> str:
        return source.upper()

    @pydatatask.task("stage_b", inputs={"upper": upper}, outputs={"lengths": lengths})
    async def stage_b(upper: str) -> int:
        return len(upper)

    pipeline = pydatatask.Pipeline([stage_a, stage_b], max_concurrent_jobs=CONCURRENCY)
    return pipeline, lengths


def _files_values_pipeline(root: Path) -> tuple[pydatatask.Pipeline, Any]:
    source = pydatatask.FileRepository(root / "input")
    upper = pydatatask.FileRepository(root / "upper")
    lengths = pydatatask.FileRepository(root / "lengths")

    @pydatatask.task(
        "stage_a",
        done=pydatatask.YamlMetadataFileRepository(root / "done_a"),
        inputs={"source": source},
        outputs={"upper": upper},
    )
    async def stage_a(source: bytes) -> bytes:
        return source.upper()

    @pydatatask.task(
        "stage_b",
        done=pydatatask.YamlMetadataFileRepository(root / "done_b"),
        inputs={"upper": upper},
        outputs={"lengths": lengths},
    )
    async def stage_b(upper: bytes) -> bytes:
        return str(len(upper)).encode()

    pipeline = pydatatask.Pipeline([stage_a, stage_b], max_concurrent_jobs=CONCURRENCY)
    return pipeline, lengths


def _files_pipeline(root: Path, leases: bool = False) -> tuple[pydatatask.Pipeline, Any]:
    return _blob_pipeline(
        pydatatask.FileRepository(root / "input"),
        pydatatask.FileRepository(root / "upper"),
        pydatatask.FileRepository(root / "lengths"),
        pydatatask.YamlMetadataFileRepository(root / "done_a"),
        pydatatask.YamlMetadataFileRepository(root / "done_b"),
        leases=pydatatask.YamlMetadataFileRepository(root / "leases") if leases else None,
    )


def _s3_pipeline(
    where: Any, counter: _s3.RequestCounter | None = None
) -> tuple[pydatatask.Pipeline, Any]:
    """W1 over one bucket: blobs for the data, YAML objects for the done markers."""
    from pydatatask.repository.s3 import S3BucketRepository, YamlMetadataS3Repository

    session = pydatatask.Session()

    async def s3_client() -> AsyncIterator[Any]:
        async with _s3.create_client(where) as client:
            if counter is not None:
                counter.attach(client)
            yield client

    client = session.resource(s3_client)
    bucket = _s3.BUCKET
    return _blob_pipeline(
        S3BucketRepository(client, f"{bucket}/input/"),
        S3BucketRepository(client, f"{bucket}/upper/"),
        S3BucketRepository(client, f"{bucket}/lengths/"),
        YamlMetadataS3Repository(client, f"{bucket}/done_a/"),
        YamlMetadataS3Repository(client, f"{bucket}/done_b/"),
        session,
    )


def _blob_pipeline(
    source: Any,
    upper: Any,
    lengths: Any,
    done_a: Any,
    done_b: Any,
    session: pydatatask.Session | None = None,
    leases: pydatatask.Repository | None = None,
) -> tuple[pydatatask.Pipeline, Any]:
    """W1 over blob repositories: read with ``open(job, "rb")``, write with ``"wb"``."""

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
    pipeline = pydatatask.Pipeline(
        [stage_a, stage_b], session=session, max_concurrent_jobs=CONCURRENCY, leases=leases
    )
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
    if isinstance(lengths, pydatatask.MetadataRepository):
        value = int(await lengths.info(sample))
    else:
        async with await lengths.open(sample, "rb") as reader:
            value = int(await reader.read())
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
    if variant.startswith("memory"):
        build = _memory_values_pipeline if variant == "memory-values" else _memory_pipeline
        pipeline, lengths = build(names)
        total, running, report = await _timed_run(pipeline)
        extra = await _check(lengths, names, report)
    elif variant == "s3":
        with _s3.endpoint() as where:
            await _s3.prepare(where, names, "input/")
            counter = _s3.RequestCounter()
            pipeline, lengths = _s3_pipeline(where, counter)
            total, running, report = await _timed_run(pipeline)
            result["requests"] = dict(sorted(counter.by_operation.items()))
            async with pipeline.session:  # the check reads through the same kind of client
                extra = await _check(lengths, names, report)
    else:
        makers: dict[str, Callable[[Path], tuple[pydatatask.Pipeline, Any]]] = {
            "files": _files_pipeline,
            "files-tmpfs": _files_pipeline,
            "files-leases": functools.partial(_files_pipeline, leases=True),
            "files-values": _files_values_pipeline,
            "yaml": _yaml_pipeline,
        }
        maker = makers[variant]
        under = TMPFS if variant.endswith("-tmpfs") else None
        with scratch(f"w1-{variant}", under) as root:
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
