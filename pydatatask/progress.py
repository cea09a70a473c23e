"""Show a running pipeline's progress: a live table on a terminal, plain lines elsewhere.

The figures come from the scheduler's counters and job sets, read in the controller's
event loop while :func:`pydatatask.run` works; nothing here touches a repository.

A task's *remaining* jobs are its own running and pending jobs plus the jobs still
pending or running in the tasks upstream of it, which will flow into it (a job counts
once however many paths lead to it). Its total is what it finished plus what remains,
so a downstream task shows its share of the work before that work reaches it.

The estimated time left divides the remaining jobs by the slowest finishing rate among
the task and the upstream tasks that still have work: jobs still upstream cannot reach
the task faster than the slowest of them. Until every one of those tasks has finished a
job there is no rate to go by, and no estimate is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, ConsoleOptions
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pydatatask.jobstate import State

if TYPE_CHECKING:
    from pydatatask.scheduler import Scheduler

__all__ = [
    "ALL_TASKS",
    "LIVE_INTERVAL",
    "PLAIN_INTERVAL",
    "PipelineProgress",
    "TaskProgress",
    "display",
    "snapshot",
]

LIVE_INTERVAL = 0.5
"""Seconds between refreshes of the live table."""
PLAIN_INTERVAL = 5.0
"""Seconds between plain progress lines when the output is not a terminal."""
ALL_TASKS = "all tasks"
"""The label of the line that sums up every task (no task name has a space)."""


@dataclass(frozen=True)
class TaskProgress:
    """One task's jobs since the scheduler started, and what is left for it."""

    task: str
    succeeded: int
    failed: int
    retried: int
    running: int
    pending: int
    """Jobs ready to launch or waiting for a retry."""
    upstream: int
    """Jobs pending or running in the tasks upstream that have yet to reach this task."""
    rate: float
    """Finished jobs per second since the scheduler started."""
    eta: float | None
    """Seconds until the remaining jobs are done; None when nothing remains or no rate
    is measured yet."""

    @property
    def finished(self) -> int:
        """Jobs that succeeded or failed for good."""
        return self.succeeded + self.failed

    @property
    def remaining(self) -> int:
        """Jobs running, pending, or still upstream."""
        return self.running + self.pending + self.upstream

    @property
    def total(self) -> int:
        """Jobs finished plus jobs remaining, all the work known so far."""
        return self.finished + self.remaining

    @property
    def percent(self) -> str:
        """The finished share of the total, rounded down; ``-`` when nothing is known."""
        return f"{self.finished * 100 // self.total}%" if self.total else "-"

    @property
    def status(self) -> str:
        """``done`` when all known work is finished, the time left if known, else ``-``."""
        if self.total and not self.remaining:
            return "done"
        return "-" if self.eta is None else _duration(math.ceil(self.eta))

    def line(self) -> str:
        """Describe the task in one line of plain text."""
        text = (
            f"{self.task}: {self.succeeded} succeeded, {self.failed} failed, "
            f"{self.running} running, {self.pending} pending"
        )
        if self.upstream:
            text += f", {self.upstream} upstream"
        if self.retried:
            text += f", {self.retried} retried"
        text += f"; {self.finished}/{self.total} done"
        if self.total:
            text += f" ({self.percent}), {self.rate:.2f}/s"
        status = self.status
        if status == "done":
            text += ", done"
        elif status != "-":
            text += f", eta {status}"
        return text


@dataclass(frozen=True)
class PipelineProgress:
    """Every task's progress, upstream tasks first, and their sum.

    It is a rich renderable: printed, it draws :meth:`table` at the console's width.
    """

    tasks: tuple[TaskProgress, ...]
    total: TaskProgress
    """The sum over all tasks, labelled :data:`ALL_TASKS`; its ETA is the latest task's."""
    elapsed: float
    """Seconds since the scheduler started."""

    def lines(self) -> list[str]:
        """Describe every task, then the sum, one line each, without any width limit."""
        summary = f"{self.total.line()}; {_duration(int(self.elapsed))} elapsed"
        return [*(item.line() for item in self.tasks), summary]

    def table(self, width: int) -> Table:
        """Lay the progress out as a table at most ``width`` columns wide.

        Columns that do not fit are left out, least useful first (the bar, the rate, the
        counts of upstream, pending, running and failed jobs). Task names that still do
        not fit are shortened in the middle when that keeps them distinct, and folded
        onto several lines otherwise.
        """
        rows = [*self.tasks, self.total]
        cells = {key: [cell(row) for row in rows] for key, (_, cell) in _COLUMNS.items()}
        widths = {
            key: max(len(header), *(len(text) for text in cells[key]))
            for key, (header, _) in _COLUMNS.items()
        }
        longest = max(len(row.task) for row in rows)
        shown = list(_COLUMNS)
        for key in _DROP_ORDER:
            if _width(shown, widths, min(longest, _NAME_FIT)) <= width:
                break
            shown.remove(key)
        spare = width - _width(shown, widths, longest) - _GAP
        bar = min(spare, _BAR_MAX) if spare >= _BAR_MIN else 0
        names = _labels([row.task for row in self.tasks], width - _width(shown, widths, 0))
        return _render(self, shown, cells, bar, names)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Table]:
        yield self.table(options.max_width)


_Cell = Callable[[TaskProgress], str]
_COLUMNS: dict[str, tuple[str, _Cell]] = {
    "done": ("done", lambda item: f"{item.finished}/{item.total}"),
    "percent": ("%", lambda item: item.percent),
    "running": ("running", lambda item: str(item.running)),
    "pending": ("pending", lambda item: str(item.pending)),
    "upstream": ("upstream", lambda item: str(item.upstream)),
    "failed": ("failed", lambda item: str(item.failed)),
    "rate": ("rate", lambda item: f"{item.rate:.2f}/s"),
    "eta": ("eta", lambda item: item.status),
}
_DROP_ORDER = ("rate", "upstream", "pending", "running", "failed")
_GAP = 3
"""Columns between two cells: a divider with a space on either side."""
_NAME_FIT = 16
"""Task name columns kept whole before columns are left out for them."""
_NAME_MIN = 5
"""The shortest a task name is cut to; below it, names are folded instead."""
_BAR_MIN, _BAR_MAX = 8, 24


def _width(shown: list[str], widths: dict[str, int], names: int) -> int:
    """Return how wide a table of the task names and the ``shown`` columns is."""
    return names + sum(widths[key] + _GAP for key in shown)


def _labels(names: list[str], room: int) -> list[str] | None:
    """Shorten names longer than ``room`` in the middle; None if they would clash."""
    if room < _NAME_MIN:
        return None if max(map(len, names)) > room else names
    head = room - 1 - (room - 1) // 2
    tail = (room - 1) // 2
    labels = [name if len(name) <= room else f"{name[:head]}…{name[-tail:]}" for name in names]
    return labels if len(set(labels)) == len(labels) else None


def _render(
    progress: PipelineProgress,
    shown: list[str],
    cells: dict[str, list[str]],
    bar: int,
    names: list[str] | None,
) -> Table:
    grid = Table(
        title=f"elapsed {_duration(int(progress.elapsed))}",
        title_justify="left",
        box=box.SIMPLE,
        show_edge=False,
        pad_edge=False,
        show_footer=True,
    )
    grid.add_column("task", footer=ALL_TASKS, overflow="fold")
    if bar:
        grid.add_column("", footer=_bar(progress.total, bar), width=bar, no_wrap=True)
    for key in shown:
        header, _ = _COLUMNS[key]
        grid.add_column(header, footer=cells[key][-1], justify="right", no_wrap=True)
    for index, item in enumerate(progress.tasks):
        row: list[Text | ProgressBar | str] = [names[index] if names else item.task]
        if bar:
            row.append(_bar(item, bar))
        for key in shown:
            text = cells[key][index]
            row.append(Text(text, style="red") if key == "failed" and item.failed else text)
        grid.add_row(*row)
    return grid


def _bar(item: TaskProgress, width: int) -> ProgressBar | str:
    if not item.total:
        return ""
    return ProgressBar(total=item.total, completed=item.finished, width=width)


def snapshot(scheduler: Scheduler, now: float | None = None) -> PipelineProgress:
    """Read every task's progress from the scheduler.

    It takes time in proportion to the jobs running or pending, not to the jobs done.

    :param now: the :func:`time.monotonic` time to measure rates at (default: now).
    """
    now = time.monotonic() if now is None else now
    waiting: dict[str, set[str]] = {}  # the jobs running or pending in it or upstream
    slowest: dict[str, float] = {}  # the slowest rate of it and the upstream with work left
    tasks = []
    for name in reversed(scheduler.plans):  # upstream first
        upstream = scheduler.plans[name].upstream
        running = scheduler.jobs(name, State.RUNNING)
        pending = {*scheduler.jobs(name, State.READY), *scheduler.jobs(name, State.RETRYING)}
        own = pending | running
        waiting[name] = own.union(*(waiting[up] for up in upstream))
        counters = scheduler.counters[name]
        finished = counters.succeeded + counters.failed
        rate = finished / max(now - counters.started_at, 1e-9)
        slowest[name] = min([rate, *(slowest[up] for up in upstream if waiting[up])])
        remaining = len(waiting[name])
        tasks.append(
            TaskProgress(
                task=name,
                succeeded=counters.succeeded,
                failed=counters.failed,
                retried=counters.retried,
                running=len(running),
                pending=len(pending),
                upstream=remaining - len(own),
                rate=rate,
                eta=remaining / slowest[name] if remaining and slowest[name] > 0 else None,
            )
        )
    started = min((counters.started_at for counters in scheduler.counters.values()), default=now)
    elapsed = max(now - started, 0.0)
    return PipelineProgress(tasks=tuple(tasks), total=_sum(tasks, elapsed), elapsed=elapsed)


def _sum(tasks: list[TaskProgress], elapsed: float) -> TaskProgress:
    """Add the tasks up; the pipeline is done when its last task is."""
    etas = [item.eta for item in tasks if item.remaining]
    known = [eta for eta in etas if eta is not None]
    finished = sum(item.finished for item in tasks)
    return TaskProgress(
        task=ALL_TASKS,
        succeeded=sum(item.succeeded for item in tasks),
        failed=sum(item.failed for item in tasks),
        retried=sum(item.retried for item in tasks),
        running=sum(item.running for item in tasks),
        pending=sum(item.pending for item in tasks),
        upstream=sum(item.upstream for item in tasks),
        rate=finished / elapsed if elapsed > 0 else 0.0,
        eta=max(known) if known and len(known) == len(etas) else None,
    )


def _duration(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _print_lines(console: Console, scheduler: Scheduler) -> None:
    for text in snapshot(scheduler).lines():
        console.print(text, markup=False, highlight=False, soft_wrap=True)


async def _refresh_live(live: Live, scheduler: Scheduler) -> None:
    while True:
        await asyncio.sleep(LIVE_INTERVAL)
        live.update(snapshot(scheduler), refresh=True)


async def _print_periodically(console: Console, scheduler: Scheduler) -> None:
    while True:
        await asyncio.sleep(PLAIN_INTERVAL)
        _print_lines(console, scheduler)


@contextlib.asynccontextmanager
async def display(scheduler: Scheduler, console: Console) -> AsyncIterator[None]:
    """Show progress while the body runs.

    On a terminal a table, fitted to the terminal's width, is redrawn every
    :data:`LIVE_INTERVAL` seconds and stays on screen at the end. Otherwise a line per
    task and one for all of them are printed every :data:`PLAIN_INTERVAL` seconds, and
    once more at the end; lines are never wrapped or cut.
    """
    # The snapshot is taken here, in the event loop: the live display may redraw from
    # another thread (when a job prints), which must not read the scheduler's sets.
    if console.is_terminal:
        with Live(snapshot(scheduler), console=console, auto_refresh=False) as live:
            refresher = asyncio.create_task(_refresh_live(live, scheduler))
            try:
                yield
            finally:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
                live.update(snapshot(scheduler), refresh=True)
        return
    printer = asyncio.create_task(_print_periodically(console, scheduler))
    try:
        yield
    finally:
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
    _print_lines(console, scheduler)
