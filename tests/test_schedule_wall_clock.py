"""Calendar periods keep the wall-clock time asked for, even from a start a clock change skipped."""

from __future__ import annotations

from datetime import UTC, datetime

from pydatatask.repository.schedule import ScheduleRepository


def listed(repo: ScheduleRepository) -> list[str]:
    return [moment.isoformat() for moment in repo.occurrences()]


def test_a_daily_period_from_a_skipped_start_keeps_its_wall_clock_time() -> None:
    # 02:30 did not exist in Berlin on 2026-03-29: that occurrence fires at 03:00, and
    # the next days are at 02:30 again, the time asked for.
    repo = ScheduleRepository(
        "1d",
        tz="Europe/Berlin",
        start="2026-03-29T02:30",
        now=lambda: datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert listed(repo) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert repo.next_occurrence() == datetime(2026, 4, 1, 0, 30, tzinfo=UTC)


def test_a_monthly_period_from_a_skipped_start_keeps_its_wall_clock_time() -> None:
    repo = ScheduleRepository(
        "1M",
        tz="Europe/Berlin",
        start=datetime(2026, 3, 29, 2, 30),
        id_format="%Y-%m-%dT%H%M",
        now=lambda: datetime(2026, 6, 1, tzinfo=UTC),
    )
    assert listed(repo) == [
        "2026-03-29T03:00:00+02:00",
        "2026-04-29T02:30:00+02:00",
        "2026-05-29T02:30:00+02:00",
    ]


def test_an_aware_start_keeps_its_own_wall_clock_time() -> None:
    repo = ScheduleRepository(
        "1d",
        tz="Europe/Berlin",
        start="2026-03-28T02:30+01:00",
        now=lambda: datetime(2026, 3, 31, tzinfo=UTC),
    )
    assert listed(repo) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_a_start_in_the_second_of_two_equal_hours_is_the_first_occurrence() -> None:
    # 02:30+01:00 on 2026-10-25 is the second 02:30 in Berlin: it is still the start.
    repo = ScheduleRepository(
        "1d",
        tz="Europe/Berlin",
        start="2026-10-25T02:30+01:00",
        now=lambda: datetime(2026, 10, 27, tzinfo=UTC),
    )
    assert listed(repo) == ["2026-10-25T02:30:00+01:00", "2026-10-26T02:30:00+01:00"]
