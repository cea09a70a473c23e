"""Hive-partitioned dataset repositories, on disk and on a real S3 server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import pydatatask
from pydatatask import (
    ConfigurationError,
    InProcessMetadataRepository,
    InProcessSyncTask,
    InvalidJobIdError,
    JobNotFoundError,
    Pipeline,
    run,
)
from pydatatask.repository.dataset import HiveDatasetRepository, S3HiveDatasetRepository
from tests.servers.s3 import S3Server, client_factory

ROWS = [{"city": "Oslo", "temp": 3}, {"city": "Lima", "temp": 19}]


def snapshot(root: Path) -> list[str]:
    """Return every file and folder under ``root``, relative, sorted."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


async def write(repo: HiveDatasetRepository | S3HiveDatasetRepository, job: str, text: str) -> None:
    async with await repo.open(job, "w") as writer:
        await writer.write(text)


async def test_layout_ids_and_latest(tmp_path: Path) -> None:
    repo = HiveDatasetRepository(tmp_path, "weather")
    assert await repo.latest() is None
    await repo.validate()
    await write(repo, "2024-01-01", "day,n\n1,1\n")
    await write(repo, "2024-01-02", "day,n\n2,2\n")
    assert snapshot(tmp_path) == [
        "dataset=weather",
        "dataset=weather/rundate=2024-01-01",
        "dataset=weather/rundate=2024-01-01/data.csv",
        "dataset=weather/rundate=2024-01-02",
        "dataset=weather/rundate=2024-01-02/data.csv",
        "latest",
        "latest/dataset=weather",
        "latest/dataset=weather/data.csv",
    ]
    assert await repo.ids() == {"2024-01-01", "2024-01-02"}
    assert await repo.latest() == "2024-01-02"
    assert repo.latest_path.read_text() == "day,n\n2,2\n"
    assert await repo.contains("2024-01-01")
    assert not await repo.contains("2024-01-03")
    assert await repo.info("2024-01-03") == (
        tmp_path / "dataset=weather" / "rundate=2024-01-03" / "data.csv"
    )
    with pytest.raises(JobNotFoundError):
        await repo.load("2024-01-03")


async def test_backfill_leaves_latest_alone(tmp_path: Path) -> None:
    repo = HiveDatasetRepository(tmp_path, "weather")
    await write(repo, "2024-01-05", "new\n")
    before = repo.latest_path.read_bytes()
    stat = repo.latest_path.stat()
    await write(repo, "2024-01-01", "old\n")
    assert repo.latest_path.read_bytes() == before == b"new\n"
    assert repo.latest_path.stat().st_ino == stat.st_ino
    await write(repo, "2024-01-05", "rewritten\n")  # the same greatest id replaces it
    assert repo.latest_path.read_bytes() == b"rewritten\n"


async def test_latest_is_replaced_atomically(tmp_path: Path) -> None:
    repo = HiveDatasetRepository(tmp_path, "weather")
    await write(repo, "2024-01-01", "a" * 100_000)
    seen: set[int] = set()
    stop = asyncio.Event()

    def watch() -> None:
        while not stop.is_set():
            data = repo.latest_path.read_bytes()  # fails if it is ever missing
            seen.add(len(data))

    watcher = asyncio.create_task(asyncio.to_thread(watch))
    for day in range(2, 20):
        await write(repo, f"2024-01-{day:02}", str(day % 10) * (100_000 + day))
    stop.set()
    await watcher
    assert seen <= {100_000} | {100_000 + day for day in range(2, 20)}
    assert os.listdir(repo.latest_path.parent) == ["data.csv"]
    for day in range(1, 20):
        assert os.listdir(tmp_path / "dataset=weather" / f"rundate=2024-01-{day:02}") == [
            "data.csv"
        ]


async def test_failed_write_leaves_no_partition(tmp_path: Path) -> None:
    repo = HiveDatasetRepository(tmp_path, "weather")
    await write(repo, "2024-01-01", "kept\n")
    with pytest.raises(RuntimeError):
        async with await repo.open("2024-01-02", "w") as writer:
            await writer.write("partial")
            raise RuntimeError("boom")
    assert await repo.ids() == {"2024-01-01"}
    assert repo.latest_path.read_text() == "kept\n"


async def test_delete_points_latest_at_the_new_greatest(tmp_path: Path) -> None:
    repo = HiveDatasetRepository(tmp_path, "weather")
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        await write(repo, day, day)
    await repo.delete("2024-01-01")  # not the latest: latest/ stays
    assert repo.latest_path.read_text() == "2024-01-03"
    await repo.delete("2024-01-03")
    assert not (tmp_path / "dataset=weather" / "rundate=2024-01-03").exists()
    assert await repo.latest() == "2024-01-02"
    assert repo.latest_path.read_text() == "2024-01-02"
    await repo.delete("2024-01-03")  # absent: nothing happens
    await repo.delete("2024-01-02")
    assert await repo.latest() is None
    assert not repo.latest_path.exists()


async def test_refresh_latest_after_an_outside_write(tmp_path: Path) -> None:
    repo = HiveDatasetRepository(tmp_path, "weather")
    await write(repo, "2024-01-01", "one")
    path = await repo.info("2024-01-02")
    path.parent.mkdir()
    path.write_text("two")
    assert repo.latest_path.read_text() == "one"
    assert await repo.refresh_latest() == "2024-01-02"
    assert repo.latest_path.read_text() == "two"


async def test_without_latest_and_other_names(tmp_path: Path) -> None:
    repo = HiveDatasetRepository(
        tmp_path, "sales", partition="day", filename="part.json", latest=False
    )
    assert repo.codec.name == "json"
    await repo.save("2024-02-01", {"total": 3})
    assert await repo.load("2024-02-01") == {"total": 3}
    assert (tmp_path / "dataset=sales" / "day=2024-02-01" / "part.json").is_file()
    assert not (tmp_path / "latest").exists()
    await repo.delete("2024-02-01")
    assert await repo.ids() == set()


def test_bad_names_and_ids(tmp_path: Path) -> None:
    bad: list[dict[str, Any]] = [{"partition": "a=b"}, {"filename": ".hidden"}, {"filename": "a/b"}]
    for kwargs in bad:
        with pytest.raises(ConfigurationError):
            HiveDatasetRepository(tmp_path, "weather", **kwargs)
    with pytest.raises(ConfigurationError):
        HiveDatasetRepository(tmp_path, "a/b")
    repo = HiveDatasetRepository(tmp_path, "weather")
    for job in ("a=b", "100%", "-x", ".x", "a b"):
        assert not repo.is_valid_job_id(job)
    with pytest.raises(InvalidJobIdError):
        repo.check_job_id("..")


@pytest.mark.backend
async def test_csv_codec_and_pyarrow_reads_the_dataset(tmp_path: Path) -> None:
    pyarrow: Any = pytest.importorskip("pyarrow")
    pytest.importorskip("pyarrow.dataset")

    repo = HiveDatasetRepository(tmp_path, "weather")
    assert repo.codec.name == "csv"
    await repo.save("2024-01-01", ROWS)
    await repo.save("2024-01-02", [{"city": "Oslo", "temp": 4}])
    table = await repo.load("2024-01-01")
    assert table.to_pylist() == ROWS
    # A writer in progress leaves a hidden temporary that readers skip.
    writer = await repo.open("2024-01-03", "wb")
    await writer.write(b"city,temp\n" + b"x,1\n" * 40_000)
    try:
        partitioning = pyarrow.dataset.partitioning(
            pyarrow.schema([("rundate", pyarrow.string())]), flavor="hive"
        )
        data = pyarrow.dataset.dataset(
            tmp_path / "dataset=weather", partitioning=partitioning, format="csv"
        ).to_table()
    finally:
        await writer.abort()
    rows = sorted(data.to_pylist(), key=lambda row: (row["rundate"], row["city"]))
    assert rows == [
        {"city": "Lima", "temp": 19, "rundate": "2024-01-01"},
        {"city": "Oslo", "temp": 3, "rundate": "2024-01-01"},
        {"city": "Oslo", "temp": 4, "rundate": "2024-01-02"},
    ]
    latest = pyarrow.dataset.dataset(repo.latest_path, format="csv").to_table()
    assert latest.to_pylist() == [{"city": "Oslo", "temp": 4}]


async def test_pipeline_writes_one_partition_per_day(tmp_path: Path) -> None:
    days = InProcessMetadataRepository({f"2024-03-{day:02}": day for day in (1, 2, 3)})
    dataset = HiveDatasetRepository(tmp_path / "lake", "counts", filename="data.txt")

    @InProcessSyncTask("daily", InProcessMetadataRepository())
    async def daily(
        job: str, days: InProcessMetadataRepository, out: HiveDatasetRepository
    ) -> None:
        await out.save(job, f"{job}: {await days.info(job)}\n")

    daily.link("days", days, is_input=True)
    daily.link("out", dataset, is_output=True)
    async with Pipeline([daily]) as pipeline:
        report = await run(pipeline)
    assert report.succeeded == 3
    assert await dataset.ids() == {"2024-03-01", "2024-03-02", "2024-03-03"}
    assert await dataset.latest() == "2024-03-03"
    assert dataset.latest_path.read_text() == "2024-03-03: 3\n"


# --- S3 ------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="function")
async def s3_dataset(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str
) -> AsyncIterator[S3HiveDatasetRepository]:
    session = pydatatask.Session()
    accessor = session.resource(client_factory(s3_server))
    repo = S3HiveDatasetRepository(accessor, s3_shared_bucket, "weather", prefix=s3_prefix)
    async with session:
        await repo.validate()
        yield repo


async def read_key(repo: S3HiveDatasetRepository, key: str) -> bytes:
    client: Any = repo._client()
    response = await client.get_object(Bucket=repo.bucket, Key=key)
    async with response["Body"] as body:
        data: bytes = await body.read()
    return data


async def list_keys(repo: S3HiveDatasetRepository, prefix: str) -> list[str]:
    client: Any = repo._client()
    page = await client.list_objects_v2(Bucket=repo.bucket, Prefix=prefix)
    return sorted(entry["Key"] for entry in page.get("Contents", ()))


@pytest.mark.backend
async def test_s3_layout_latest_and_backfill(
    s3_dataset: S3HiveDatasetRepository, s3_prefix: str
) -> None:
    repo = s3_dataset
    assert await repo.latest() is None
    await write(repo, "2024-01-02", "two")
    await write(repo, "2024-01-01", "one")  # a backfill
    assert await list_keys(repo, s3_prefix) == [
        f"{s3_prefix}dataset=weather/rundate=2024-01-01/data.csv",
        f"{s3_prefix}dataset=weather/rundate=2024-01-02/data.csv",
        f"{s3_prefix}latest/dataset=weather/data.csv",
    ]
    assert await repo.ids() == {"2024-01-01", "2024-01-02"}
    assert await repo.latest() == "2024-01-02"
    assert await read_key(repo, repo.latest_key) == b"two"
    await write(repo, "2024-01-03", "three")
    assert await read_key(repo, repo.latest_key) == b"three"
    info = await repo.info("2024-01-03")
    assert info["key"] == f"{s3_prefix}dataset=weather/rundate=2024-01-03/data.csv"
    await repo.delete("2024-01-03")
    assert await read_key(repo, repo.latest_key) == b"two"
    await repo.delete("2024-01-01")
    await repo.delete("2024-01-02")
    assert await list_keys(repo, s3_prefix) == []


@pytest.mark.backend
async def test_s3_csv_round_trip(s3_dataset: S3HiveDatasetRepository) -> None:
    pytest.importorskip("pyarrow")
    await s3_dataset.save("2024-01-01", ROWS)
    assert (await s3_dataset.load("2024-01-01")).to_pylist() == ROWS
    assert await read_key(s3_dataset, s3_dataset.latest_key) == await read_key(
        s3_dataset, s3_dataset.object_key("2024-01-01")
    )


async def test_a_process_task_writing_the_partition_file_updates_latest(tmp_path: Path) -> None:
    days = InProcessMetadataRepository({"2026-03-01": "a", "2026-03-02": "b"})
    dataset = HiveDatasetRepository(tmp_path / "lake", "temps", filename="data.txt")
    extract = pydatatask.ProcessTask(
        "extract",
        pydatatask.LocalLinuxManager("lake", local_path=tmp_path / "jobs"),
        template="echo {{ job | shquote }} > {{ out | shquote }}",
        done=InProcessMetadataRepository(),
    )
    extract.link("day", days, is_input=True)
    extract.link("out", dataset, is_output=True)
    latest = tmp_path / "lake" / "latest" / "dataset=temps" / "data.txt"
    async with Pipeline([extract]) as pipeline:
        report = await run(pipeline)
        assert report.succeeded == 2
        assert latest.read_text() == "2026-03-02\n"
        # A backfill of an older day leaves latest/ alone; a newer day replaces it.
        days.data["2026-02-28"] = "c"
        days.data["2026-03-03"] = "d"
        await pipeline.scheduler.refresh()
        assert (await run(pipeline)).succeeded == 2
    assert latest.read_text() == "2026-03-03\n"
    assert await dataset.ids() == {"2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03"}
    assert (tmp_path / "lake" / "dataset=temps" / "rundate=2026-02-28" / "data.txt").exists()
