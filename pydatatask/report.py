"""What a run did: per-task counters while it runs, and the report when it ends."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Failure", "RunReport", "TaskCounters"]


@dataclass
class TaskCounters:
    """What one task's jobs did since the scheduler started."""

    launched: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    handed_over: int = 0
    """Jobs this controller stopped following because its lease on them expired."""
    started_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Failure:
    """A job that failed for good (no retry pending), or whose done record is unreadable."""

    task: str
    job: str
    error: str
    """The error in one line."""


@dataclass(frozen=True)
class RunReport:
    """What one :func:`~pydatatask.run` did."""

    launched: int
    succeeded: int
    failed: int
    timed_out: bool
    """Whether ``run`` stopped because its ``timeout`` passed."""
    failures: tuple[Failure, ...] = ()
    """The jobs that failed for good during this run, with their errors."""
    unreadable: tuple[Failure, ...] = ()
    """The done records found unreadable; their jobs were left alone."""
    handed_over: int = 0
    """Jobs launched here and left to another controller, as this one's lease on them
    expired (with leases only); they are neither succeeded nor failed here."""

    def as_json(self) -> dict[str, object]:
        """Return the report as plain values: what ``run --json`` prints.

        ``launched``, ``succeeded``, ``failed``, ``handed_over`` and ``timed_out``;
        ``failed_jobs`` and
        ``unreadable_jobs`` as ``[task, job]`` pairs; ``errors`` as
        ``{"task job": error}``.
        """
        return {
            "launched": self.launched,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "handed_over": self.handed_over,
            "timed_out": self.timed_out,
            "failed_jobs": [[item.task, item.job] for item in self.failures],
            "unreadable_jobs": [[item.task, item.job] for item in self.unreadable],
            "errors": {f"{item.task} {item.job}": item.error for item in self.failures},
        }
