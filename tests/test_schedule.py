"""ScheduleRepository: occurrences, cron, daylight saving, clock, catch-up in a pipeline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import pydatatask as pdt
from pydatatask import InProcessMetadataRepository as Memory
from pydatatask.errors import ConfigurationError, InvalidJobIdError, JobNotFoundError
from pydatatask.repository.schedule import MAX_OCCURRENCES, ScheduleRepository

BERLIN = ZoneInfo("Europe/Berlin")


def clock(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]


def at(*args: int) -> Callable[[], datetime]:
    return lambda: clock(*args)


def listed(repo: ScheduleRepository) -> list[str]:
    return [moment.isoformat() for moment in repo.occurrences()]


async def test_weekday_at_time() -> None:
    repo = ScheduleRepository(
        "monday at 15:00", start="2026-01-01", now=lambda: clock(2026, 1, 26, 15)
    )
    assert await repo.ids() == {
        "2026-01-05T1500",
        "2026-01-12T1500",
        "2026-01-19T1500",
        "2026-01-26T1500",
    }
    assert [job async for job in repo] == sorted(await repo.ids())
    assert ScheduleRepository("MON at 15:00", start="2026-01-01").cron is None


async def test_day_at_and_hour() -> None:
    daily = ScheduleRepository("day at 02:30", start="2026-01-01T03:00", now=at(2026, 1, 4))
    assert listed(daily) == ["2026-01-02T02:30:00+00:00", "2026-01-03T02:30:00+00:00"]
    hourly = ScheduleRepository("hour", start="2026-01-01T00:30", now=at(2026, 1, 1, 3))
    assert [job async for job in hourly] == [
        "2026-01-01T0100",
        "2026-01-01T0200",
        "2026-01-01T0300",
    ]


async def test_periods_count_from_start() -> None:
    seconds = ScheduleRepository("10m30s", start="2026-01-01T00:00", now=at(2026, 1, 1, 0, 31))
    assert listed(seconds) == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:10:30+00:00",
        "2026-01-01T00:21:00+00:00",
    ]
    daily = ScheduleRepository("1d", start="2026-01-01T08:00", now=at(2026, 1, 3, 8))
    assert await daily.ids() == {"2026-01-01T0800", "2026-01-02T0800", "2026-01-03T0800"}
    weekly = ScheduleRepository("1w", start="2026-01-01", now=at(2026, 1, 20))
    assert await weekly.ids() == {"2026-01-01T0000", "2026-01-08T0000", "2026-01-15T0000"}
    months = ScheduleRepository(
        "2M", start="2025-12-31T12:00", now=at(2026, 9, 1), id_format="%Y-%m-%d"
    )
    assert [job async for job in months] == [
        "2025-12-31",
        "2026-02-28",
        "2026-04-30",
        "2026-06-30",
        "2026-08-31",
    ]
    years = ScheduleRepository("1Y", start="2024-02-29", now=at(2027, 3, 1), id_format="%Y-%m-%d")
    assert [job async for job in years] == ["2024-02-29", "2025-02-28", "2026-02-28", "2027-02-28"]


async def test_elapsed_period_across_clock_change() -> None:
    repo = ScheduleRepository(
        "1h", tz="Europe/Berlin", start="2026-03-29T01:00", now=at(2026, 3, 29, 2)
    )
    assert listed(repo) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]


async def test_cron_equals_every() -> None:
    now = at(2026, 2, 1)
    every = ScheduleRepository("day at 02:30", start="2026-01-01", now=now, tz="Europe/Berlin")
    cron = ScheduleRepository(cron="30 2 * * *", start="2026-01-01", now=now, tz="Europe/Berlin")
    assert len(every.occurrences()) == 31
    assert every.occurrences() == cron.occurrences()
    weekly = ScheduleRepository("Monday at 15:00", start="2026-01-01", now=now)
    assert (
        weekly.occurrences()
        == ScheduleRepository(cron="0 15 * * 1", start="2026-01-01", now=now).occurrences()
    )
    quarter = ScheduleRepository(cron="*/15 9 * * *", start="2026-01-01", now=at(2026, 1, 1, 10))
    assert await quarter.ids() == {
        "2026-01-01T0900",
        "2026-01-01T0915",
        "2026-01-01T0930",
        "2026-01-01T0945",
    }


async def test_spring_forward_fires_at_next_valid_instant() -> None:
    repo = ScheduleRepository(
        "day at 02:30", tz="Europe/Berlin", start="2026-03-28", now=at(2026, 3, 30, 12)
    )
    assert listed(repo) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    assert await repo.contains("2026-03-29T0300")
    assert not await repo.contains("2026-03-29T0230")
    hourly = ScheduleRepository(
        "hour", tz="Europe/Berlin", start="2026-03-29T01:00", now=at(2026, 3, 29, 2)
    )
    assert await hourly.ids() == {"2026-03-29T0100", "2026-03-29T0300", "2026-03-29T0400"}


async def test_autumn_back_fires_once() -> None:
    repo = ScheduleRepository(
        "day at 02:30", tz="Europe/Berlin", start="2026-10-24", now=at(2026, 10, 26, 12)
    )
    assert listed(repo) == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    info = await repo.info("2026-10-25T0230")
    # Aware times in a repeated hour compare unequal across zones (PEP 495): use UTC.
    assert info.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert info.utcoffset() == timedelta(hours=2)
    assert info.tzinfo == BERLIN
    half_hours = ScheduleRepository(
        "30m", tz="Europe/Berlin", start="2026-10-25T02:00", now=at(2026, 10, 25, 1, 30)
    )
    assert len(half_hours.occurrences()) == 4  # 02:00, 02:30 twice each
    assert [job async for job in half_hours] == ["2026-10-25T0200", "2026-10-25T0230"]
    first = await half_hours.info("2026-10-25T0200")
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)


async def test_catchup_latest_and_end() -> None:
    latest = ScheduleRepository(
        "hour", start="2020-01-01", catchup="latest", now=at(2026, 1, 1, 5, 59)
    )
    assert await latest.ids() == {"2026-01-01T0500"}
    assert await latest.contains("2026-01-01T0500")
    assert not await latest.contains("2026-01-01T0400")
    many = ScheduleRepository("1s", start="2020-01-01", catchup="latest", now=at(2026, 1, 1))
    assert [job async for job in many] == ["2026-01-01T0000"]
    ended = ScheduleRepository("1d", start="2026-01-01", end="2026-01-03", now=at(2026, 2, 1))
    assert await ended.ids() == {"2026-01-01T0000", "2026-01-02T0000", "2026-01-03T0000"}
    assert not await ended.contains("2026-01-04T0000")
    assert ended.next_occurrence() is None
    early = ScheduleRepository("1d", start="2026-01-01", now=at(2025, 1, 1))
    assert await early.ids() == set()
    assert (
        await ScheduleRepository(
            "1d", start="2026-01-01", catchup="latest", now=at(2025, 1, 1)
        ).ids()
        == set()
    )


async def test_too_many_occurrences() -> None:
    repo = ScheduleRepository("1s", start="2020-01-01", now=at(2026, 1, 1))
    with pytest.raises(ConfigurationError, match=str(MAX_OCCURRENCES)):
        await repo.ids()


async def test_next_occurrence() -> None:
    repo = ScheduleRepository("day at 02:30", start="2026-01-01", now=at(2026, 1, 5, 2, 30))
    assert repo.next_occurrence() == clock(2026, 1, 6, 2, 30)
    assert repo.next_occurrence(clock(2026, 1, 6, 2, 29)) == clock(2026, 1, 6, 2, 30)
    assert repo.next_occurrence(clock(2025, 6, 1)) == clock(2026, 1, 1, 2, 30)
    assert await repo.contains("2026-01-05T0230")  # exactly at now is listed
    period = ScheduleRepository("1M", start="2026-01-31", now=at(2026, 1, 31))
    assert period.next_occurrence() == clock(2026, 2, 28)


async def test_clock_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = ScheduleRepository("1d", start="2026-01-01")
    monkeypatch.setenv("PYDATATASK_NOW", "2026-01-02T00:00")  # naive: UTC
    assert await repo.ids() == {"2026-01-01T0000", "2026-01-02T0000"}
    monkeypatch.setenv("PYDATATASK_NOW", "2026-01-03T00:30+01:00")
    assert await repo.ids() == {"2026-01-01T0000", "2026-01-02T0000"}
    monkeypatch.setenv("PYDATATASK_NOW", "yesterday")
    with pytest.raises(ConfigurationError, match="PYDATATASK_NOW"):
        await repo.ids()
    monkeypatch.delenv("PYDATATASK_NOW")
    assert len(await repo.ids()) > 100  # the system clock
    naive = ScheduleRepository("1d", start="2026-01-01", now=datetime.now)
    with pytest.raises(ConfigurationError, match="naive"):
        await naive.ids()


async def test_contains_info_and_bad_ids() -> None:
    repo = ScheduleRepository("hour", tz="Europe/Berlin", start="2026-01-01", now=at(2026, 1, 2))
    assert await repo.contains("2026-01-01T1300")
    assert not await repo.contains("2026-01-01T1330")
    assert not await repo.contains("2026-01-05T1300")  # after now
    assert not await repo.contains("2025-12-31T2300")  # before start
    assert not await repo.contains("not a time")
    assert await repo.info("2026-01-01T1300") == datetime(2026, 1, 1, 13, tzinfo=BERLIN)
    assert await repo.contains_many(["2026-01-01T1300", "x"]) == {"2026-01-01T1300"}
    with pytest.raises(JobNotFoundError):
        await repo.info("2026-01-01T1330")
    with pytest.raises(InvalidJobIdError):
        await repo.contains("a/b")
    await repo.delete("2026-01-01T1300")  # read-only: nothing happens
    assert await repo.contains("2026-01-01T1300")
    coarse = ScheduleRepository(
        "day at 02:30", start="2026-01-01", now=at(2026, 1, 3), id_format="%Y%m%d"
    )
    assert await coarse.info("20260102") == clock(2026, 1, 2, 2, 30)
    offset = ScheduleRepository(
        "1d",
        start="2026-01-01",
        now=at(2026, 1, 3),
        tz=timezone(timedelta(hours=1)),
        id_format="%Y-%m-%dT%H%M%z",
    )
    assert await offset.contains("2026-01-01T0000+0100")
    assert "every='1d'" in repr(offset)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": "fortnight"}, "'fortnight' is not a schedule: use"),
        ({"every": "funday at 15:00"}, "'funday' is not 'day' or a weekday"),
        ({"every": "day at 25:00"}, "not a time of day"),
        ({"every": "1d1d"}, "is not a schedule"),
        ({"every": "0s"}, "longer than zero"),
        ({"every": "10x"}, "units Y M w d h m s"),
        ({"cron": "61 * * * *"}, "'61 \\* \\* \\* \\*' is not a cron line"),
        ({"cron": "0 0 * * * *"}, "five fields"),
        ({"every": "1d", "cron": "0 0 * * *"}, "exactly one"),
        ({}, "exactly one"),
        ({"every": "1d", "tz": "Mars/Olympus"}, "Mars/Olympus"),
        ({"every": "1d", "catchup": "some"}, "catchup='some'"),
        ({"every": "1d", "id_format": "%Y/%m/%d"}, "not a job id"),
        ({"every": "1d", "start": "soon"}, "start='soon'"),
    ],
)
def test_bad_configuration(kwargs: dict[str, str], message: str) -> None:
    kwargs.setdefault("start", "2026-01-01")
    with pytest.raises(ConfigurationError, match=message):
        ScheduleRepository(**kwargs)  # type: ignore[arg-type]


async def test_pipeline_runs_each_occurrence_and_catches_up() -> None:
    now = [clock(2026, 1, 3, 12)]
    ticks = ScheduleRepository("day at 02:30", start="2026-01-01", now=lambda: now[0])
    out = Memory()

    @pdt.InProcessSyncTask("daily", Memory())
    async def daily(job: str, tick: ScheduleRepository, out: Memory) -> None:
        await out.dump(job, (await tick.info(job)).isoformat())

    daily.link("tick", ticks, is_input=True)
    daily.link("out", out, is_output=True)
    pipeline = pdt.Pipeline([daily])
    async with pipeline:
        report = await pdt.run(pipeline)
        assert report.launched == 3
        assert out.data["2026-01-01T0230"] == "2026-01-01T02:30:00+00:00"
        report = await pdt.run(pipeline)
        assert report.launched == 0
        now[0] = clock(2026, 1, 6, 3)  # the controller was down for three days
        await pipeline.scheduler.refresh()
        report = await pdt.run(pipeline)
        assert report.launched == 3
    assert sorted(out.data) == [f"2026-01-0{day}T0230" for day in range(1, 7)]


def test_an_id_format_without_the_date_is_refused() -> None:
    """Ids must name one occurrence each: '%H%M' would read back as 1 January 1900."""
    with pytest.raises(ConfigurationError, match="leaves out the date"):
        ScheduleRepository("hour", start="2026-03-01T00:00+00:00", id_format="%H%M")
