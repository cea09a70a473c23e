"""Pipelines on a clock: schedules driving tasks through the command line, into datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import pydatatask

EXTRACT = textwrap.dedent(
    """
    repositories:
      days: {kind: schedule, every: "day at 02:30", tz: Europe/Berlin, start: "2026-03-27",
             id_format: "%Y-%m-%d"}
      extracts: {kind: dataset, path: warehouse, dataset: sales}
    tasks:
      extract:
        function: steps:extract
        inputs: {day: days}
        outputs: {rows: extracts}
    """
)
STEPS = textwrap.dedent(
    """
    def extract(job, day):
        return [{"day": job, "hour": day.hour, "sold": len(job)}]
    """
)


def _command(folder: Path, now: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("pydatatask")), "-f", "pipeline.yaml", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
        env={**os.environ, "PYDATATASK_NOW": now},
    )


@pytest.mark.backend  # pipeline files need the yaml-pipelines extra, datasets the tables one
def test_a_daily_extract_catches_up_only_what_it_missed(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(EXTRACT)
    (tmp_path / "steps.py").write_text(STEPS)
    first = _command(tmp_path, "2026-03-30T12:00:00Z", "run", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["succeeded"] == 4  # 27, 28, 29 (clocks changed), 30
    sales = tmp_path / "warehouse" / "dataset=sales"
    assert sorted(path.name for path in sales.iterdir()) == [
        "rundate=2026-03-27",
        "rundate=2026-03-28",
        "rundate=2026-03-29",
        "rundate=2026-03-30",
    ]
    # 02:30 did not exist on 29 March in Berlin: that day's run fired at 03:00.
    assert '"2026-03-29",3,' in (sales / "rundate=2026-03-29" / "data.csv").read_text()
    latest = tmp_path / "warehouse" / "latest" / "dataset=sales" / "data.csv"
    assert "2026-03-30" in latest.read_text()
    # Down for two days: the next run does the two missed days and nothing else.
    again = _command(tmp_path, "2026-04-01T12:00:00Z", "run", "--json")
    assert json.loads(again.stdout)["succeeded"] == 2, again.stderr
    assert "2026-04-01" in latest.read_text()
    # A backfill (rm the record, run again) leaves latest/ alone.
    before = latest.read_bytes()
    removed = _command(tmp_path, "2026-04-01T12:00:00Z", "rm", "extract", "2026-03-28")
    assert removed.returncode == 0, removed.stderr
    backfill = _command(tmp_path, "2026-04-01T12:00:00Z", "run", "--json")
    assert json.loads(backfill.stdout)["succeeded"] == 1, backfill.stderr
    assert latest.read_bytes() == before
    pyarrow_dataset = pytest.importorskip("pyarrow.dataset")
    pa = pytest.importorskip("pyarrow")
    table = pyarrow_dataset.dataset(
        sales,
        format="csv",
        partitioning=pyarrow_dataset.partitioning(
            pa.schema([("rundate", pa.string())]), flavor="hive"
        ),
    ).to_table()
    assert table.num_rows == 6
    assert sorted(set(table.column("rundate").to_pylist()))[0] == "2026-03-27"


async def test_run_forever_wakes_at_each_occurrence_not_at_the_poll(tmp_path: Path) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    ticks = pydatatask.ScheduleRepository("1s", start=start, id_format="%Y%m%dT%H%M%S")
    seen: list[str] = []

    @pydatatask.task(inputs={"tick": ticks})
    async def note(job: str, tick: datetime) -> None:
        seen.append(job)

    pipeline = pydatatask.Pipeline([note], poll_interval=600)
    assert pipeline.poll_interval == 600
    async with pipeline:
        assert not pipeline.scheduler.polls  # only a schedule comes from outside
        began = time.monotonic()
        await pydatatask.run(pipeline, forever=True, timeout=4.5)
    assert time.monotonic() - began < 60
    assert len(seen) >= 3, seen  # at 1, 2, 3 and 4 s, never waiting for the 600 s poll


async def test_a_schedule_behind_a_combinator_still_wakes_the_run(tmp_path: Path) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    ticks = pydatatask.ScheduleRepository("1s", start=start, id_format="%Y%m%dT%H%M%S")
    skipped = pydatatask.InProcessMetadataRepository()
    source = pydatatask.BlockingRepository(pydatatask.AggregateOrRepository(tick=ticks), skipped)
    seen: list[str] = []

    @pydatatask.InProcessSyncTask("note", pydatatask.InProcessMetadataRepository())
    async def note(job: str) -> None:
        seen.append(job)

    note.link("tick", source, is_input=True)
    pipeline = pydatatask.Pipeline([note], poll_interval=600)
    async with pipeline:
        assert pipeline.scheduler.schedules == [ticks]
        await pydatatask.run(pipeline, forever=True, timeout=4.5)
    assert len(seen) >= 3, seen  # woken at each occurrence, not at the 600 s poll
