"""A read-only repository whose ids are the occurrences of a schedule up to now."""

from __future__ import annotations

import asyncio
import calendar
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from pydatatask.errors import ConfigurationError, InvalidJobIdError, JobNotFoundError
from pydatatask.repository.base import Repository, check_job_id

__all__ = ["MAX_OCCURRENCES", "NOW_ENV", "ScheduleRepository"]

MAX_OCCURRENCES = 100_000
"""The most occurrences one listing of a ``catchup="all"`` schedule may hold."""
NOW_ENV = "PYDATATASK_NOW"
"""The environment variable that sets the clock of schedules built without ``now=``."""

_WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_AT = re.compile(r"\s*([a-z]+)\s+at\s+(\d{1,2}):(\d{2})\s*")
_PERIOD_PART = re.compile(r"(\d+)([YMwdhms])")
_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_GRAMMAR = (
    "'WEEKDAY at HH:MM' (e.g. 'Monday at 15:00'), 'day at HH:MM', 'hour', or a period "
    "such as '10m30s', '1d', '1w', '2M', '1Y' (units Y M w d h m s)"
)
_AVERAGE_MONTH = timedelta(days=30.436875)


def _cron_for(every: str) -> str | None:
    """Return the cron line of a wall-clock ``every``, or None when it is not one."""
    text = every.strip().lower()
    if text == "hour":
        return "0 * * * *"
    match = _AT.fullmatch(text)
    if match is None:
        return None
    name, hour, minute = match.group(1), int(match.group(2)), int(match.group(3))
    if hour > 23 or minute > 59:
        raise ConfigurationError(f"every={every!r}: {hour:02}:{minute:02} is not a time of day")
    if name == "day":
        return f"{minute} {hour} * * *"
    days = [i for i, day in enumerate(_WEEKDAYS) if name in (day, day[:3])]
    if not days:
        raise ConfigurationError(f"every={every!r}: {name!r} is not 'day' or a weekday name")
    return f"{minute} {hour} * * {days[0]}"


def _period_for(every: str) -> tuple[int, timedelta]:
    """Return ``(months, rest)`` of a period such as ``"1M2d"``."""
    parts = _PERIOD_PART.findall(every.strip())
    units = [unit for _, unit in parts]
    if (
        not parts
        or "".join(n + u for n, u in parts) != every.strip()
        or len(set(units)) < len(units)
    ):
        raise ConfigurationError(f"every={every!r} is not a schedule: use {_GRAMMAR}")
    months = sum(int(n) * (12 if u == "Y" else 1) for n, u in parts if u in "YM")
    rest = timedelta(seconds=sum(int(n) * _SECONDS[u] for n, u in parts if u in _SECONDS))
    if months == 0 and rest <= timedelta(0):
        raise ConfigurationError(f"every={every!r}: a period must be longer than zero")
    return months, rest


def _add_months(moment: datetime, months: int) -> datetime:
    """Add ``months`` to a naive time, keeping the day of month (clamped to the month's end)."""
    year, month = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _resolve(naive: datetime, zone: tzinfo) -> datetime:
    """Return the instant of a wall-clock time in ``zone``.

    A time that exists twice is the first of them; a time that does not exist (skipped by
    a clock change) is the next instant that does, the moment the clock jumped. The
    instant is in UTC: aware times that share a zone compare and subtract as wall-clock
    times, which is wrong across a clock change.
    """
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first
    ends = sorted(naive.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    low, high = ends  # the wall time before the jump is below naive at low, past it at high
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return high


def _parse(value: datetime | str, what: str) -> datetime:
    """Return ``value`` as a datetime, reading a string as an ISO timestamp."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ConfigurationError(f"{what}={value!r} is not an ISO timestamp") from None
    return value


def _moment(value: datetime | str, zone: tzinfo, what: str) -> datetime:
    """Return ``value`` in UTC; a naive one is a wall-clock time in ``zone``."""
    value = _parse(value, what)
    if value.tzinfo is None:
        return _resolve(value, zone)
    return value.astimezone(UTC)


def _wall(value: datetime | str, zone: tzinfo, what: str) -> datetime:
    """Return the naive wall-clock time of ``value`` in ``zone``, as written when naive.

    A naive time that a clock change skipped stays as written (its instant is the next
    valid one, but later days keep the time asked for).
    """
    value = _parse(value, what)
    if value.tzinfo is None:
        return value.replace(fold=0)
    return value.astimezone(zone).replace(tzinfo=None, fold=0)


class ScheduleRepository(Repository):
    """The occurrences of a schedule from ``start`` up to now, as job ids.

    A task whose input is a schedule runs once per occurrence; occurrences missed while
    no controller ran are listed, so they run on the next start (``catchup="latest"``
    lists only the newest occurrence, so only it runs). Nothing is stored: each listing
    computes the occurrences from the clock.

    ``every`` is ``"Monday at 15:00"`` (a weekday's English name or its first three
    letters, any case), ``"day at 02:30"``, ``"hour"`` (on the hour), or a period such
    as ``"10m30s"``, ``"1d"``, ``"1w"``, ``"2M"`` (months) or ``"1Y"``. A period counts
    from ``start``, which is its first occurrence: a period in hours, minutes and
    seconds only is elapsed time; one with days, weeks, months or years keeps the
    wall-clock time of ``start`` in ``tz``, and months and years keep its day of month,
    clamped to the month's end (Jan 31, Feb 28, Mar 31). ``cron`` is a five-field cron
    line, read by ``cronsim``; its first occurrence is the first at or after ``start``.

    Daylight saving: wall-clock times follow ``tz``. A time that does not exist that day
    (the clock springs forward over it) fires at the next valid instant, the moment of
    the jump (02:30 in Europe/Berlin on 2026-03-29 fires at 03:00 CEST); a time that
    exists twice (the clock falls back) fires once, the first time. So ``"hour"`` skips
    the repeated hour, and an elapsed period whose ids repeat in it (the default
    ``id_format`` has no UTC offset) lists each id once; add ``%z`` to keep them apart.

    The clock is ``now()``, else the environment variable ``PYDATATASK_NOW`` (an ISO
    timestamp, read at every listing; one without an offset is UTC), else the system
    clock. An occurrence exactly at now is listed. ``start`` and ``end`` are aware
    datetimes or ISO strings; naive ones are wall-clock times in ``tz``.

    The repository is read-only: ``delete`` does nothing, as the ids are computed from
    the clock (``rm`` leaves them, as it leaves views that do not allow deletes).

    :param id_format: the ``strftime`` format of the ids, in ``tz``; it must be
        readable back by ``strptime``. Occurrences that format to the same id are
        listed once.
    :raises ConfigurationError: when not exactly one of ``every`` and ``cron`` is given,
        for a string they do not accept, an unknown ``tz``, a bad ``start``, ``end``,
        ``id_format`` or ``catchup``; at listing, when a ``catchup="all"`` listing would
        hold more than :data:`MAX_OCCURRENCES` occurrences (use a later ``start``).
    """

    def __init__(
        self,
        every: str | None = None,
        *,
        cron: str | None = None,
        tz: str | tzinfo = "UTC",
        start: datetime | str,
        end: datetime | str | None = None,
        id_format: str = "%Y-%m-%dT%H%M",
        catchup: Literal["all", "latest"] = "all",
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if (every is None) == (cron is None):
            raise ConfigurationError("ScheduleRepository takes exactly one of every= and cron=")
        try:
            self.tz: tzinfo = ZoneInfo(tz) if isinstance(tz, str) else tz
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"tz={tz!r} is not a known time zone") from None
        if catchup not in ("all", "latest"):
            raise ConfigurationError(f"catchup={catchup!r}: use 'all' or 'latest'")
        self.every, self.cron, self.catchup, self.id_format = every, cron, catchup, id_format
        self._start = _moment(start, self.tz, "start")
        self._start_wall = _wall(start, self.tz, "start")
        self._end = None if end is None else _moment(end, self.tz, "end")
        self._now = now
        self._months, self._period = 0, timedelta(0)
        self._cron = cron if every is None else _cron_for(every)
        if self._cron is None:
            self._months, self._period = _period_for(every or "")
        elif len(self._cron.split()) != 5:
            raise ConfigurationError(f"cron={cron!r}: a cron line has five fields")
        else:
            try:
                CronSim(self._cron, datetime(2000, 1, 1))
            except CronSimError as exc:
                raise ConfigurationError(f"cron={cron!r} is not a cron line: {exc}") from None
        self._check_id_format()

    def __repr__(self) -> str:
        what = f"every={self.every!r}" if self.every is not None else f"cron={self.cron!r}"
        return f"<{type(self).__name__} {what} tz={self.tz} from {self._start.isoformat()}>"

    def _check_id_format(self) -> None:
        sample = self._id(self._start)
        try:
            check_job_id(sample)
            parsed = datetime.strptime(sample, self.id_format)
        except (InvalidJobIdError, ValueError) as exc:
            raise ConfigurationError(
                f"id_format={self.id_format!r} gives {sample!r}, which is not a job id "
                f"that strptime reads back: {exc}"
            ) from None
        if parsed.date() != self._start.astimezone(self.tz).date():
            raise ConfigurationError(
                f"id_format={self.id_format!r} leaves out the date ({sample!r} reads back "
                f"as {parsed.date()}): an id must name one occurrence, so keep %Y, %m and %d"
            )

    def _id(self, moment: datetime) -> str:
        return moment.astimezone(self.tz).strftime(self.id_format)

    def now(self) -> datetime:
        """Return the schedule's clock: ``now()``, ``PYDATATASK_NOW`` or the system clock.

        :raises ConfigurationError: when ``now()`` is naive or the variable is not ISO.
        """
        if self._now is not None:
            moment = self._now()
            if moment.tzinfo is None:
                raise ConfigurationError(f"{self!r}: now() returned a naive datetime {moment}")
            return moment
        text = os.environ.get(NOW_ENV)
        if not text:
            return datetime.now(UTC)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigurationError(f"{NOW_ENV}={text!r} is not an ISO timestamp") from None
        return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    # ------------------------------------------------------------------ occurrences

    def _occurrences_from(self, moment: datetime) -> Iterator[datetime]:
        """Yield the occurrences at or after ``moment`` (and ``start``), increasing, in UTC."""
        moment = max(moment.astimezone(UTC), self._start)
        if self._cron is not None:
            found = self._cron_from(moment)
        elif self._months == 0 and self._period < timedelta(days=1):
            count = max(0, -((self._start - moment) // self._period))
            found = (self._start + k * self._period for k in range(count, 1 << 62))
        else:
            found = self._calendar_from(moment)
        last: datetime | None = None
        try:
            for occurrence in found:
                if occurrence >= moment and (last is None or occurrence > last):
                    last = occurrence
                    yield occurrence
        except (OverflowError, ValueError):
            return  # past year 9999

    def _cron_from(self, moment: datetime) -> Iterator[datetime]:
        local = moment.astimezone(self.tz)
        # Wall times skipped by a recent clock change fire at or after moment; start early.
        jump = (local.utcoffset() or timedelta(0)) - (
            (moment - timedelta(days=2)).astimezone(self.tz).utcoffset() or timedelta(0)
        )
        begin = local.replace(tzinfo=None, microsecond=0) - max(jump, timedelta(0))
        assert self._cron is not None
        for naive in CronSim(self._cron, begin - timedelta(seconds=1)):
            yield _resolve(naive, self.tz)

    def _calendar_at(self, index: int) -> datetime:
        if index == 0:
            return self._start  # the first occurrence, even in a repeated hour's second half
        wall = _add_months(self._start_wall, index * self._months) + index * self._period
        return _resolve(wall, self.tz)

    def _calendar_from(self, moment: datetime) -> Iterator[datetime]:
        index = max(0, (moment - self._start) // (self._months * _AVERAGE_MONTH + self._period))
        while index > 0 and self._calendar_at(index - 1) >= moment:
            index -= 1
        while True:
            yield self._calendar_at(index)
            index += 1

    def _upper(self) -> datetime:
        now = self.now().astimezone(UTC)
        return now if self._end is None else min(now, self._end)

    def _all(self, upper: datetime) -> list[datetime]:
        found: list[datetime] = []
        for occurrence in self._occurrences_from(self._start):
            if occurrence > upper:
                break
            if len(found) == MAX_OCCURRENCES:
                raise ConfigurationError(
                    f"{self!r} has more than {MAX_OCCURRENCES} occurrences up to "
                    f"{upper.isoformat()}: use a later start or catchup='latest'"
                )
            found.append(occurrence)
        return found

    def _latest(self, upper: datetime) -> datetime | None:
        """Return the last occurrence at or before ``upper``, searching back from it."""
        window = timedelta(minutes=1)
        while True:
            low = max(self._start, upper - window)
            last = None
            for occurrence in self._occurrences_from(low):
                if occurrence > upper:
                    break
                last = occurrence
            if last is not None or low <= self._start:
                return last
            window *= 2

    def occurrences(self) -> list[datetime]:
        """Return the occurrences listed now (one or none with ``catchup="latest"``)."""
        upper = self._upper()
        if self.catchup == "latest":
            latest = self._latest(upper)
            return [] if latest is None else [latest.astimezone(self.tz)]
        return [occurrence.astimezone(self.tz) for occurrence in self._all(upper)]

    def next_occurrence(self, after: datetime | None = None) -> datetime | None:
        """Return the first occurrence strictly after ``after`` (default: now), in ``tz``.

        A naive ``after`` is a wall-clock time in ``tz``. None when no occurrence is left
        (past ``end``).
        """
        after = self.now().astimezone(UTC) if after is None else _moment(after, self.tz, "after")
        for occurrence in self._occurrences_from(after):
            if occurrence > after:
                if self._end is not None and occurrence > self._end:
                    return None
                return occurrence.astimezone(self.tz)
        return None

    def _find(self, job: str) -> datetime | None:
        """Return the listed occurrence whose id is ``job``, without listing them all."""
        try:
            parsed = datetime.strptime(job, self.id_format)
        except ValueError:
            return None
        if parsed.tzinfo is not None:
            candidates = [parsed.astimezone(UTC)]
        else:
            candidates = [_resolve(parsed.replace(fold=fold), self.tz) for fold in (0, 1)]
        upper = self._upper()
        for candidate in candidates:
            # A coarse id_format drops finer fields: the occurrence is at or after it.
            found = next(self._occurrences_from(candidate), None)
            if found is None or found > upper or self._id(found) != job:
                continue
            if self.catchup == "latest" and found != self._latest(upper):
                return None
            return found
        return None

    # ------------------------------------------------------------------ repository

    async def _iter_ids(self) -> AsyncIterator[str]:
        listed = self.occurrences()
        if len(listed) > 1000:
            ids = await asyncio.to_thread(self._format_all, listed)
        else:
            ids = self._format_all(listed)
        for job in ids:
            yield job

    def _format_all(self, listed: list[datetime]) -> list[str]:
        return list(dict.fromkeys(self._id(moment) for moment in listed))

    async def _contains(self, job: str) -> bool:
        return self._find(job) is not None

    async def _delete(self, job: str) -> None:
        """Do nothing: a schedule's ids come from the clock."""

    async def _info(self, job: str) -> Any:
        found = self._find(job)
        if found is None:
            raise JobNotFoundError(job, self)
        return found.astimezone(self.tz)
