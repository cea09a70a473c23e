"""Reading done records: what a stored record says, even when it cannot be trusted.

A done record is the library's memory of a finished job. One record that cannot be read
(a truncated file, a value that is not a mapping) must not stop a run: it is reported
as :class:`Unreadable`, never counted as a success, and left untouched for a person to
look at (``status``, ``why``) and remove (``rm``).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from pydatatask.errors import BackendError, BackendUnavailableError, JobNotFoundError
from pydatatask.repository.base import Repository

__all__ = ["Outcome", "Unreadable", "error_line", "outcome", "read_record", "read_records"]

logger = logging.getLogger(__name__)


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
    written by hand to mark a job done) counts as a success. Anything else (an empty
    file, a string, a list, an :class:`Unreadable`) is unreadable, never a success.
    """
    if not isinstance(record, dict):
        return Outcome.UNREADABLE
    if record.get("success", True) is False:
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
    return {job: _checked(record) for job, record in records.items()}


def error_line(record: Any) -> str:
    """Return a failed or unreadable record's error as one line of text."""
    if isinstance(record, Unreadable):
        return f"unreadable done record: {record.reason}"
    if not isinstance(record, dict):
        return f"unreadable done record: {_checked(record).reason}"
    text = record.get("exception") or (
        f"exit status {record['exit_code']}" if record.get("exit_code") else "failed"
    )
    return " ".join(str(text).split())
