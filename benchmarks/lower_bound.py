"""The same W1 work with no framework: plain dicts, coroutines and ``asyncio.to_thread``.

Each lower bound runs stage A for every key, then stage B for every key, as
``asyncio.gather`` over one coroutine per key, each holding a semaphore of
:data:`~benchmarks._common.CONCURRENCY` slots while it works.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from benchmarks import _s3
from benchmarks._common import (
    CONCURRENCY,
    DONE_MARKER,
    TMPFS,
    Stopwatch,
    keys,
    peak_rss_mib,
    read_file,
    replace_file,
    scratch,
    value_of,
    write_inputs,
)

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


async def _bounded(names: list[str], work: Callable[[str], Awaitable[None]]) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(key: str) -> None:
        async with slots:
            await work(key)

    await asyncio.gather(*(one(key) for key in names))


async def _memory(names: list[str]) -> float:
    source = {key: value_of(key) for key in names}
    upper: dict[str, str] = {}
    lengths: dict[str, int] = {}
    done_a: dict[str, bool] = {}
    done_b: dict[str, bool] = {}

    async def stage_a(key: str) -> None:
        upper[key] = source[key].upper()
        done_a[key] = True

    async def stage_b(key: str) -> None:
        lengths[key] = len(upper[key])
        done_b[key] = True

    with Stopwatch() as watch:
        await _bounded(names, stage_a)
        await _bounded(names, stage_b)
    if len(lengths) != len(names) or len(done_b) != len(names):
        raise RuntimeError("the in-memory lower bound missed keys")
    return watch.seconds


def _read_yaml(path: str) -> Any:
    return yaml.load(read_file(path), Loader=_LOADER)  # a safe loader


def _write_yaml(folder: str, name: str, value: Any) -> None:
    replace_file(folder, name, yaml.dump(value, Dumper=_DUMPER).encode())


async def _files(root: Path, names: list[str], as_yaml: bool) -> float:
    folders = {part: str(root / part) for part in ("input", "upper", "lengths", "done_a", "done_b")}
    write_inputs(root / "input", names, as_yaml=as_yaml)
    suffix = ".yaml" if as_yaml else ""

    async def stage_a(key: str) -> None:
        name = key + suffix
        path = os.path.join(folders["input"], name)
        if as_yaml:
            value = await asyncio.to_thread(_read_yaml, path)
            await asyncio.to_thread(_write_yaml, folders["upper"], name, value.upper())
        else:
            data = await asyncio.to_thread(read_file, path)
            await asyncio.to_thread(replace_file, folders["upper"], name, data.upper())
        await asyncio.to_thread(replace_file, folders["done_a"], key + ".yaml", DONE_MARKER)

    async def stage_b(key: str) -> None:
        name = key + suffix
        path = os.path.join(folders["upper"], name)
        if as_yaml:
            value = await asyncio.to_thread(_read_yaml, path)
            await asyncio.to_thread(_write_yaml, folders["lengths"], name, len(value))
        else:
            data = await asyncio.to_thread(read_file, path)
            await asyncio.to_thread(replace_file, folders["lengths"], name, str(len(data)).encode())
        await asyncio.to_thread(replace_file, folders["done_b"], key + ".yaml", DONE_MARKER)

    with Stopwatch() as watch:
        for folder in ("upper", "lengths", "done_a", "done_b"):
            os.makedirs(folders[folder], exist_ok=True)
        await _bounded(names, stage_a)
        await _bounded(names, stage_b)
    if len(os.listdir(folders["done_b"])) != len(names):
        raise RuntimeError("the filesystem lower bound missed keys")
    return watch.seconds


async def _s3_bound(
    where: _s3.Endpoint, names: list[str], counter: _s3.RequestCounter | None = None
) -> float:
    """W1 with one aiobotocore client: three requests per job, no framework."""
    bucket = _s3.BUCKET
    await _s3.prepare(where, names, "input/")

    async def get(client: Any, key: str) -> bytes:
        response = await client.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    with Stopwatch() as watch:
        async with _s3.create_client(where) as client:
            if counter is not None:
                counter.attach(client)
            await client.head_bucket(Bucket=bucket)

            async def stage_a(key: str) -> None:
                data = await get(client, f"input/{key}")
                await client.put_object(Bucket=bucket, Key=f"upper/{key}", Body=data.upper())
                await client.put_object(Bucket=bucket, Key=f"done_a/{key}.yaml", Body=DONE_MARKER)

            async def stage_b(key: str) -> None:
                data = await get(client, f"upper/{key}")
                length = str(len(data)).encode()
                await client.put_object(Bucket=bucket, Key=f"lengths/{key}", Body=length)
                await client.put_object(Bucket=bucket, Key=f"done_b/{key}.yaml", Body=DONE_MARKER)

            await _bounded(names, stage_a)
            await _bounded(names, stage_b)
    async with _s3.create_client(where) as client:
        sample = names[len(names) // 2]
        if int(await get(client, f"lengths/{sample}")) != len(value_of(sample)):
            raise RuntimeError("the S3 lower bound wrote a wrong length")
    return watch.seconds


def _write_durably(folder: str, name: str, data: bytes) -> None:
    """Write a record as pydatatask writes done records: synced, renamed, folder synced."""
    temp = os.path.join(folder, f".{name}.tmp")
    with open(temp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, os.path.join(folder, name))
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _files_sync(root: Path, names: list[str]) -> float:
    """W1 on files as plain synchronous Python: one loop per stage, no event loop, no threads.

    Outputs go to a temporary name and are renamed into place; done markers are made
    durable as pydatatask's done records are. This is the like-for-like floor: the same
    files written the same way, with nothing else.
    """
    folders = {part: str(root / part) for part in ("input", "upper", "lengths", "done_a", "done_b")}
    write_inputs(root / "input", names, as_yaml=False)
    with Stopwatch() as watch:
        for folder in ("upper", "lengths", "done_a", "done_b"):
            os.makedirs(folders[folder], exist_ok=True)
        for key in names:
            data = read_file(os.path.join(folders["input"], key))
            replace_file(folders["upper"], key, data.upper())
            _write_durably(folders["done_a"], key + ".yaml", DONE_MARKER)
        for key in names:
            data = read_file(os.path.join(folders["upper"], key))
            replace_file(folders["lengths"], key, str(len(data)).encode())
            _write_durably(folders["done_b"], key + ".yaml", DONE_MARKER)
    if len(os.listdir(folders["done_b"])) != len(names):
        raise RuntimeError("the synchronous filesystem floor missed keys")
    return watch.seconds


async def measure(variant: str, count: int) -> dict[str, Any]:
    """Run the lower bound matching W1 ``variant`` and return its figures."""
    names = keys(count)
    extra: dict[str, Any] = {}
    if variant == "memory":
        seconds = await _memory(names)
    elif variant == "s3":
        counter = _s3.RequestCounter()
        with _s3.endpoint() as where:
            seconds = await _s3_bound(where, names, counter)
        extra["requests"] = dict(sorted(counter.by_operation.items()))
    else:
        under = TMPFS if "-tmpfs" in variant else None
        with scratch(f"lower-{variant}", under) as root:
            if variant.endswith("-sync"):
                seconds = _files_sync(root, names)
            else:
                seconds = await _files(root, names, as_yaml=variant == "yaml")
    return {
        "n": count,
        "jobs": 2 * count,
        "seconds": seconds,
        "jobs_per_second": 2 * count / seconds,
        "peak_rss_mib": peak_rss_mib(),
        **extra,
    }


def main(variant: str, count: int) -> dict[str, Any]:
    """Entry point for a worker process."""
    return asyncio.run(measure(variant, count))
