"""A schedule feeding a Hive dataset in S3, both from a pipeline file, on a real server."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import pydatatask
from tests.servers.s3 import S3Server

pytest.importorskip("jsonschema")
pytestmark = pytest.mark.backend  # the yaml-pipelines, s3 and tables extras

PIPELINE = textwrap.dedent(
    """
    resources:
      store:
        kind: s3
        endpoint_url: "${S3_ENDPOINT}"
        access_key: "${S3_KEY}"
        secret_key: "${S3_SECRET}"
        region: us-east-1
    repositories:
      days: {kind: schedule, every: "day at 02:30", tz: Europe/Berlin,
             start: "2026-03-28", id_format: "%Y-%m-%d"}
      sales: {kind: dataset-s3, resource: store, bucket: "${S3_BUCKET}",
              prefix: "${S3_PREFIX}", dataset: sales}
    tasks:
      extract:
        function: clock_steps:extract
        inputs: {day: days}
        outputs: {rows: sales}
    """
)
STEPS = textwrap.dedent(
    """
    def extract(job, day):
        return [{"day": job, "hour": day.hour}]
    """
)


async def test_a_schedule_fills_an_s3_dataset_that_pyarrow_reads(
    tmp_path: Path,
    s3_server: S3Server,
    s3_shared_bucket: str,
    s3_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pyarrow: Any = pytest.importorskip("pyarrow")
    pytest.importorskip("pyarrow.dataset")
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    (tmp_path / "clock_steps.py").write_text(STEPS)
    settings = {
        "S3_ENDPOINT": s3_server.endpoint_url,
        "S3_KEY": s3_server.access_key,
        "S3_SECRET": s3_server.secret_key,
        "S3_BUCKET": s3_shared_bucket,
        "S3_PREFIX": s3_prefix,
    }
    monkeypatch.setenv("PYDATATASK_NOW", "2026-03-30T12:00:00Z")
    pipeline = pydatatask.load_pipeline(tmp_path / "pipeline.yaml", settings)
    sales: Any = pipeline.tasks["extract"].links["rows"].repo
    assert type(sales).__name__ == "S3HiveDatasetRepository"
    async with pipeline:
        report = await pydatatask.run(pipeline, timeout=60)
        assert (report.succeeded, report.failed) == (3, 0)
        assert await sales.ids() == {"2026-03-28", "2026-03-29", "2026-03-30"}
        assert await sales.latest() == "2026-03-30"
        # Downtime: two days later only the two missed days run.
        monkeypatch.setenv("PYDATATASK_NOW", "2026-04-01T12:00:00Z")
        await pipeline.scheduler.refresh()
        report = await pydatatask.run(pipeline, timeout=60)
        assert (report.succeeded, report.failed) == (2, 0)
        # 02:30 did not exist on 29 March in Berlin: that day's run fired at 03:00.
        assert (await sales.load("2026-03-29")).column("hour").to_pylist() == [3]
        client: Any = sales._client()
        response = await client.get_object(Bucket=sales.bucket, Key=sales.latest_key)
        async with response["Body"] as body:
            assert b"2026-04-01" in await body.read()
    assert sales.latest_key == f"{s3_prefix}latest/dataset=sales/data.csv"
    s3 = pyarrow.fs.S3FileSystem(
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        endpoint_override=s3_server.endpoint_url,
        region="us-east-1",
        allow_bucket_creation=False,
    )
    partitioning = pyarrow.dataset.partitioning(
        pyarrow.schema([("rundate", pyarrow.string())]), flavor="hive"
    )
    table = pyarrow.dataset.dataset(
        f"{s3_shared_bucket}/{s3_prefix}dataset=sales",
        filesystem=s3,
        format="csv",
        partitioning=partitioning,
    ).to_table()
    assert sorted(table.column("rundate").to_pylist()) == [
        "2026-03-28",
        "2026-03-29",
        "2026-03-30",
        "2026-03-31",
        "2026-04-01",
    ]
