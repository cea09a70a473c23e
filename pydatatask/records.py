"""Reading done records: what a stored record says, even when it cannot be trusted.

A done record is the library's memory of a finished job. One record that cannot be read
(a truncated file, a value that is not a mapping) must not stop a run: it is reported
as :class:`Unreadable`, never counted as a success, and left untouched for a person to
look at (``status``, ``why``) and remove (``rm``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydatatask.errors import BackendError, BackendUnavailableError, JobNotFoundError
from pydatatask.repository.base import Repository

__all__ = [
    "Ended",
    "Held",
    "JobResult",
    "Outcome",
    "Recorded",
    "Unreadable",
    "Unrecorded",
    "error_line",
    "outcome",
    "read_record",
    "read_records",
]

logger = logging.getLogger(__name__)


_FIELDS = ("success", "attempt", "exception", "traceback", "timeout", "exit_code", "provenance")
_TIMES = ("start_time", "end_time", "duration", "retry_at")
_LEGACY_RESULT = "result"
"""What pydatatask 0.4 wrote instead of ``success``: ``"success"`` or ``"exception"``."""
_LEGACY_EXIT_CODE = "return_code"
"""What pydatatask 0.4 wrote instead of ``exit_code``."""
_LEGACY_FIELDS = (_LEGACY_RESULT, _LEGACY_EXIT_CODE)


def _succeeded(record: Mapping[str, Any]) -> bool:
    """Whether a stored record says its job succeeded, in today's words or in 0.4's.

    ``success`` decides when present. Otherwise a 0.4 ``result`` succeeded only when it
    is ``"success"``, and a 0.4 ``return_code`` only when it is 0; a record with none of
    these (written by hand to mark a job done) counts as a success.
    """
    if "success" in record:
        return record["success"] is not False
    if _LEGACY_RESULT in record:
        return bool(record[_LEGACY_RESULT] == "success")
    if _LEGACY_EXIT_CODE in record:
        return bool(record[_LEGACY_EXIT_CODE] == 0)
    return True


@dataclass(slots=True)
class JobResult:
    """One finished attempt of a job: what its done record says.

    :meth:`to_record` gives the stored shape (``success``, ``attempt``, ``exception`` and
    ``traceback`` or ``timeout`` on failure, ``exit_code`` for jobs that ran elsewhere,
    the kind's own fields, ``provenance``, ``start_time``, ``end_time``, ``duration``,
    and ``retry_at`` when another attempt is planned); :meth:`from_record` reads it back.
    """

    success: bool
    attempt: int = 1
    start_time: str = ""
    end_time: str = ""
    duration: float = 0.0
    exception: str | None = None
    traceback: str | None = None
    timeout: bool = False
    exit_code: int | None = None
    retry_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields a task kind adds (a pod's ``reason``, ...)."""
    provenance: dict[str, Any] | None = None
    """``{"code": TOKEN, "inputs": {LINK: TOKEN}}``: what the job ran with."""

    def to_record(self) -> dict[str, Any]:
        """Return the record to store: plain values, absent fields left out."""
        if (
            self.provenance is not None
            and self.exception is None
            and self.traceback is None
            and not self.timeout
            and self.exit_code is None
            and not self.extra
            and self.retry_at is None
        ):  # most records: built at their full size at once
            return {
                "success": self.success,
                "attempt": self.attempt,
                "provenance": self.provenance,
                "start_time": self.start_time,
                "end_time": self.end_time,
                "duration": self.duration,
            }
        record: dict[str, Any] = {"success": self.success, "attempt": self.attempt}
        if self.exception is not None:
            record["exception"] = self.exception
        if self.traceback is not None:
            record["traceback"] = self.traceback
        if self.timeout:
            record["timeout"] = True
        if self.exit_code is not None:
            record["exit_code"] = self.exit_code
        record.update(self.extra)
        if self.provenance is not None:
            record["provenance"] = self.provenance
        record.update(start_time=self.start_time, end_time=self.end_time, duration=self.duration)
        if self.retry_at is not None:
            record["retry_at"] = self.retry_at
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> JobResult:
        """Read a stored record (a record without ``success`` counts as a success).

        A record written by pydatatask 0.4 reads the same way: its ``result`` (anything
        but ``"success"`` is a failure) and ``return_code`` stand for ``success`` and
        ``exit_code``, and a traceback stored as a list of lines is joined.
        """
        # A record with ``success`` is today's: a ``result`` there is a field of its own.
        legacy = () if "success" in record else _LEGACY_FIELDS
        extra = {
            key: value for key, value in record.items() if key not in (*_FIELDS, *_TIMES, *legacy)
        }
        exit_code = record.get("exit_code", record.get(_LEGACY_EXIT_CODE) if legacy else None)
        traceback = record.get("traceback")
        if isinstance(traceback, list):
            traceback = "".join(str(line) for line in traceback)
        return cls(
            success=_succeeded(record),
            attempt=int(record.get("attempt", 1)),
            start_time=str(record.get("start_time", "")),
            end_time=str(record.get("end_time", "")),
            duration=float(record.get("duration", 0.0)),
            exception=record.get("exception"),
            traceback=traceback,
            timeout=bool(record.get("timeout", False)),
            exit_code=None if exit_code is None else int(exit_code),
            retry_at=record.get("retry_at"),
            extra=extra,
            provenance=provenance
            if isinstance(provenance := record.get("provenance"), dict)
            else None,
        )

    def update(self, fields: Mapping[str, Any]) -> None:
        """Set fields by their record names; names that are not fields go to :attr:`extra`."""
        for key, value in fields.items():
            if key in _FIELDS or key in _TIMES:
                setattr(self, key, value)
            else:
                self.extra[key] = value

    @property
    def error(self) -> str:
        """The error in one line."""
        return error_line(self.to_record())


@dataclass(frozen=True)
class Recorded:
    """A job ended and its done record was written."""

    result: JobResult


@dataclass(frozen=True)
class Unrecorded:
    """A job ended but its done record could not be written; it is not run again here."""

    result: JobResult
    problem: str


@dataclass(frozen=True)
class Held:
    """A job was not run here, or its result was refused: another controller holds it."""

    holder: str
    finished: bool = False
    """Whether the holder has recorded the job, so its done record is there to read."""
    lost: bool = False
    """Whether it ran here but this controller's lease on it expired first (no record)."""


Ended = Recorded | Unrecorded | Held
"""How a job launched by the scheduler came back."""


@dataclass(frozen=True)
class Unreadable:
    """Stands for a stored done record that cannot be used, and says why."""

    reason: str


class Outcome(enum.Enum):
    """What a done record says about its job."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNREADABLE = "unreadable"


def outcome(record: Any) -> Outcome:
    """Classify a done record (as read by :func:`read_record`).

    A mapping succeeded unless its ``success`` is false; a mapping without the flag (one
    written by hand to mark a job done) counts as a success. A record written by
    pydatatask 0.4 failed when its ``result`` is not ``"success"`` or its
    ``return_code`` is not 0. Anything else (an empty file, a string, a list, an
    :class:`Unreadable`) is unreadable, never a success.
    """
    if not isinstance(record, dict):
        return Outcome.UNREADABLE
    if not _succeeded(record):
        return Outcome.FAILED
    return Outcome.SUCCEEDED


def _checked(record: Any) -> Any:
    if isinstance(record, dict | Unreadable):
        return record
    return Unreadable(f"the record is a {type(record).__name__}, not a mapping")


async def read_record(repo: Repository, job: str) -> Any | None:
    """Return the done record of ``job``: a mapping, an :class:`Unreadable`, or None if absent.

    :raises BackendUnavailableError: when the repository cannot be reached.
    """
    try:
        return _checked(await repo.info(job))
    except JobNotFoundError:
        return None
    except BackendUnavailableError:
        raise
    except BackendError as exc:
        return Unreadable(" ".join(str(exc).split()))


async def read_records(repo: Repository) -> dict[str, Any]:
    """Return every done record of ``repo``, each a mapping or an :class:`Unreadable`.

    All records are read in one call when they all parse; when one does not, they are
    read one by one so that the others still count.

    :raises BackendUnavailableError: when the repository cannot be reached.
    """
    try:
        records = await repo.info_all()
    except BackendUnavailableError:
        raise
    except BackendError:
        records = {}
        for job in await repo.ids():
            record = await read_record(repo, job)
            if record is not None:
                records[job] = record
        return records
    if all(type(record) is dict for record in records.values()):
        return records  # the common case: nothing to stand in for
    return {job: _checked(record) for job, record in records.items()}


def error_line(record: Any) -> str:
    """Return a failed or unreadable record's error as one line of text."""
    if isinstance(record, Unreadable):
        return f"unreadable done record: {record.reason}"
    if not isinstance(record, dict):
        return f"unreadable done record: {_checked(record).reason}"
    legacy_code = None if "success" in record else record.get(_LEGACY_EXIT_CODE)
    exit_code = record.get("exit_code", legacy_code)
    text = record.get("exception") or (f"exit status {exit_code}" if exit_code else "failed")
    return " ".join(str(text).split())
