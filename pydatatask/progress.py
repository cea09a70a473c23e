"""Show a running pipeline's progress: a live table on a terminal, plain lines elsewhere.

The figures come from the scheduler's counters and job sets, read in the controller's
event loop while :func:`pydatatask.run` works; nothing here touches a repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from pydatatask.scheduler import Scheduler

__all__ = ["LIVE_INTERVAL", "PLAIN_INTERVAL", "TaskProgress", "display", "snapshot"]

LIVE_INTERVAL = 0.5
"""Seconds between refreshes of the live table."""
PLAIN_INTERVAL = 5.0
"""Seconds between plain progress lines when the output is not a terminal."""


@dataclass(frozen=True)
class TaskProgress:
    """One task's progress since the scheduler started."""

    task: str
    launched: int
    succeeded: int
    failed: int
    retried: int
    running: int
    pending: int
    """Jobs ready to launch or waiting for a retry."""
    rate: float
    """Finished jobs per second."""

    @property
    def eta(self) -> float | None:
        """Seconds until the running and pending jobs are done at the current rate."""
        remaining = self.running + self.pending
        if remaining == 0:
            return 0.0
        return remaining / self.rate if self.rate > 0 else None

    def line(self) -> str:
        """Describe the task in one line of plain text."""
        text = (
            f"{self.task}: {self.succeeded} succeeded, {self.failed} failed, "
            f"{self.running} running, {self.pending} pending"
        )
        if self.retried:
            text += f", {self.retried} retried"
        return text + f" ({self.rate:.2f}/s, eta {_duration(self.eta)})"


def snapshot(scheduler: Scheduler) -> list[TaskProgress]:
    """Read every task's progress from the scheduler."""
    now = time.monotonic()
    result = []
    for name in scheduler.pipeline.tasks:
        counters = scheduler.counters[name]
        finished = counters.succeeded + counters.failed
        elapsed = max(now - counters.started_at, 1e-9)
        result.append(
            TaskProgress(
                task=name,
                launched=counters.launched,
                succeeded=counters.succeeded,
                failed=counters.failed,
                retried=counters.retried,
                running=len(scheduler.running[name]),
                pending=len(scheduler.ready[name]) + len(scheduler.retry_at[name]),
                rate=finished / elapsed,
            )
        )
    return result


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def table(scheduler: Scheduler) -> Table:
    """Render the progress of every task as a table."""
    grid = Table(title="pipeline progress")
    for column in ("task", "done", "running", "failed", "pending", "rate", "eta"):
        grid.add_column(column, justify="left" if column == "task" else "right")
    for item in snapshot(scheduler):
        grid.add_row(
            item.task,
            str(item.succeeded),
            str(item.running),
            f"[red]{item.failed}[/red]" if item.failed else "0",
            str(item.pending),
            f"{item.rate:.2f}/s",
            _duration(item.eta),
        )
    return grid


async def _refresh_live(live: Live, scheduler: Scheduler) -> None:
    while True:
        await asyncio.sleep(LIVE_INTERVAL)
        live.update(table(scheduler), refresh=True)


async def _print_lines(console: Console, scheduler: Scheduler) -> None:
    while True:
        await asyncio.sleep(PLAIN_INTERVAL)
        for item in snapshot(scheduler):
            console.print(item.line(), markup=False, highlight=False)


@contextlib.asynccontextmanager
async def display(scheduler: Scheduler, console: Console) -> AsyncIterator[None]:
    """Show progress while the body runs.

    On a terminal a table is redrawn every :data:`LIVE_INTERVAL` seconds and stays on
    screen at the end. Otherwise a line per task is printed every
    :data:`PLAIN_INTERVAL` seconds, and once more at the end.
    """
    if console.is_terminal:
        with Live(table(scheduler), console=console, auto_refresh=False) as live:
            refresher = asyncio.create_task(_refresh_live(live, scheduler))
            try:
                yield
            finally:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
                live.update(table(scheduler), refresh=True)
        return
    printer = asyncio.create_task(_print_lines(console, scheduler))
    try:
        yield
    finally:
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
    for item in snapshot(scheduler):
        console.print(item.line(), markup=False, highlight=False)
