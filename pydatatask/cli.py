"""The command line of a pipeline script: ``python pipeline.py COMMAND ...``.

This module parses arguments and prints; the work is done by :mod:`pydatatask.admin`
and :func:`pydatatask.run`. Exit status: 0 success, 1 failure (a job failed, a job is
missing, a backend failed), 2 usage error (bad arguments, an unknown task or link, an
invalid job id, malformed input). User mistakes are reported as one ``error:`` line on
standard error, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from rich.console import Console
from rich.table import Table

from pydatatask import admin, arguments, progress
from pydatatask.errors import (
    ConfigurationError,
    InvalidJobIdError,
    JobFailedError,
    PydatataskError,
)
from pydatatask.overview import STATES
from pydatatask.report import RunReport
from pydatatask.running import run

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline
    from pydatatask.scheduler import Scheduler

__all__ = ["main", "run_cli"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Command = Callable[["Pipeline", argparse.Namespace, bytes], Awaitable[int]]


def main(pipeline: Pipeline, argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line for ``pipeline`` and end the process with its exit status.

    :param argv: the arguments, without the program name (default: ``sys.argv[1:]``).
    """
    sys.exit(run_cli(pipeline, sys.argv[1:] if argv is None else argv))


def run_cli(pipeline: Pipeline, argv: Sequence[str]) -> int:
    """Run one command for ``pipeline`` (opening and closing it) and return the exit status."""
    parser = arguments.parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse reports usage errors (and --help) this way
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        stdin = sys.stdin.buffer.read() if args.command == "inject" else b""
        with _logging_to_stderr(args.verbose):
            return asyncio.run(_open_and_run(pipeline, COMMANDS[args.command], args, stdin))
    except (InvalidJobIdError, ConfigurationError) as exc:
        return _error(exc, EXIT_USAGE)
    except (PydatataskError, OSError) as exc:
        return _error(exc, EXIT_FAILURE)
    except KeyboardInterrupt:
        return _error("interrupted", 130)


_LOG_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)


@contextlib.contextmanager
def _logging_to_stderr(verbosity: int) -> Iterator[None]:
    """Send pydatatask's log to standard error while a command runs.

    Warnings always; ``-v`` what happens (launches, finishes, retries, listings);
    ``-vv`` debug detail. The logger is left as it was afterwards.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        if verbosity
        else logging.Formatter("%(levelname)s: %(message)s")
    )
    library = logging.getLogger("pydatatask")
    level = library.level
    library.addHandler(handler)
    library.setLevel(_LOG_LEVELS[min(verbosity, len(_LOG_LEVELS) - 1)])
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(level)


def _error(problem: object, code: int) -> int:
    message = " ".join(str(problem).split())
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


async def _open_and_run(
    pipeline: Pipeline, command: Command, args: argparse.Namespace, stdin: bytes
) -> int:
    async with pipeline:
        return await command(pipeline, args, stdin)


PLAIN_WIDTH = 1000
"""The width tables may take when standard output is not a terminal: nothing is cut."""


def _console(stream: TextIO | None = None) -> Console:
    stream = sys.stdout if stream is None else stream
    width = None if stream.isatty() else PLAIN_WIDTH
    return Console(file=stream, highlight=False, soft_wrap=True, width=width)


def _write(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def _write_lines(lines: list[str]) -> None:
    for line in lines:
        _write(line)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return str(value)


# ------------------------------------------------------------------ running


async def _one_round(pipeline: Pipeline, rerun_stale: bool = False) -> RunReport:
    """Run one round, wait for the jobs it launched, and record their results."""
    scheduler: Scheduler = pipeline.scheduler
    before = scheduler.totals()
    if rerun_stale:
        await scheduler.rerun_stale()
    await pipeline.update()
    while scheduler.running_count or scheduler.completions:
        await scheduler.wait(None)
        await scheduler.round(launch=False)
    return scheduler.report_since(before, timed_out=False)


NAMED_FAILURES = 5
"""How many failed jobs the end of ``run`` names before it just counts the rest."""


def _report_line(report: RunReport) -> str:
    text = f"launched {report.launched} jobs: {report.succeeded} succeeded, {report.failed} failed"
    if report.handed_over:
        text += f", {report.handed_over} left to another controller (this one's lease expired)"
    return text + (" (stopped at the timeout)" if report.timed_out else "")


def _failure_lines(report: RunReport) -> list[str]:
    """Name the first few failed jobs and unreadable records, then count the rest."""
    lines: list[str] = []
    for title, items in (
        ("failed", report.failures),
        ("unreadable done record, left alone", report.unreadable),
    ):
        lines += [
            f"  {title}: {item.task} {item.job}: {item.error}" for item in items[:NAMED_FAILURES]
        ]
        if len(items) > NAMED_FAILURES:
            lines.append(
                f"  ... and {len(items) - NAMED_FAILURES} more ({title}); "
                "'status --failed' lists them all"
            )
    return lines


async def _run(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    if args.poll is not None:
        pipeline.poll_interval = args.poll
    if args.jobs is not None:
        pipeline.max_concurrent_jobs = args.jobs
    # With --json, standard output carries the one JSON object, so progress goes to stderr.
    console = _console(sys.stderr) if args.json else _console()
    async with contextlib.AsyncExitStack() as serving:
        if args.serve is not None:
            from pydatatask import web

            url = await serving.enter_async_context(web.serving(pipeline, args.serve))
            console.print(f"dashboard: {url}")
        return await _run_and_report(pipeline, args, console)


async def _run_and_report(pipeline: Pipeline, args: argparse.Namespace, console: Console) -> int:
    async with progress.display(pipeline.scheduler, console):
        if args.once:
            report = await _one_round(pipeline, args.rerun_stale)
        else:
            report = await run(
                pipeline,
                forever=args.forever,
                launch_once=args.launch_once,
                timeout=args.timeout,
                rerun_stale=args.rerun_stale,
            )
    if args.json:
        _write(json.dumps(report.as_json()))
    else:
        _write(_report_line(report))
        _write_lines(_failure_lines(report))
    if report.failed or report.unreadable or (report.timed_out and not args.forever):
        return EXIT_FAILURE
    return EXIT_OK


async def _update(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    report = await _one_round(pipeline)
    remains = pipeline.scheduler.has_work()
    _write(f"{_report_line(report)}; {'work remains' if remains else 'nothing left to do'}")
    _write_lines(_failure_lines(report))
    return EXIT_FAILURE if report.failed or report.unreadable else EXIT_OK


async def _launch(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    record = await admin.launch(pipeline, args.task, args.job, force=args.force)
    _write(admin.to_yaml(record))
    return EXIT_OK if record.get("success") else EXIT_FAILURE


# ---------------------------------------------------------------- inspecting


async def _failed(pipeline: Pipeline, args: argparse.Namespace) -> int:
    found = await admin.failures(pipeline)
    if args.json:
        rows = [{"task": task, "job": job, "error": error} for task, job, error in found]
        _write(json.dumps(rows, indent=2))
    else:
        _write_lines([f"{task} {job}: {error}" for task, job, error in found])
        if not found:
            _write("no failed jobs")
    return EXIT_OK


async def _status(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    if args.failed:
        return await _failed(pipeline, args)
    result = await admin.status(pipeline)
    if args.json:
        _write(json.dumps(result, indent=2, default=_json_default))
        return EXIT_OK
    states = STATES
    grid = Table(title="jobs")
    grid.add_column("task")
    for state in states:
        grid.add_column(state, justify="right")
    links = Table(title="ids per link")
    links.add_column("TASK.LINK")
    links.add_column("ids", justify="right")
    holders = Table(title="running in other controllers")
    holders.add_column("task")
    holders.add_column("controller (host:pid)")
    holders.add_column("jobs", justify="right")
    for name, counts in result.items():
        grid.add_row(name, *(str(counts[state]) for state in states))
        for link, count in counts["links"].items():
            links.add_row(f"{name}.{link}", str(count))
        for holder, count in counts.get("holders", {}).items():
            holders.add_row(name, holder, str(count))
    _console().print(grid, links, *([holders] if holders.row_count else []))
    return EXIT_OK


async def _trace(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    _write(admin.to_yaml(await admin.trace(pipeline, args.jobs)))
    return EXIT_OK


async def _ls(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    for job in await admin.ls(pipeline, args.expr):
        _write(job)
    return EXIT_OK


async def _cat(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    value = await admin.cat(pipeline, args.target, args.job)
    if isinstance(value, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(value)
    return EXIT_OK


async def _inject(pipeline: Pipeline, args: argparse.Namespace, stdin: bytes) -> int:
    await admin.inject(pipeline, args.target, args.job, stdin)
    _write(f"stored {len(stdin)} bytes as {args.target} {args.job}")
    return EXIT_OK


async def _rm(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    removed = await admin.rm(pipeline, args.target, args.jobs, recursive=args.recursive)
    for target, job in removed:
        _write(f"removed {target} {job}")
    if not removed:
        _write("nothing to remove")
    return EXIT_OK


async def _graph(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    _write(admin.graph(pipeline, args.format))
    return EXIT_OK


async def _materialize(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    try:
        result = await pipeline.materialize(args.task, args.job, rerun_failed=args.rerun_failed)
    except JobFailedError as failed:
        if args.json:
            _write(json.dumps(failed.result.as_json(), indent=2, default=_json_default))
        return _error(failed, EXIT_FAILURE)
    if args.json:
        _write(json.dumps(result.as_json(), indent=2, default=_json_default))
    else:
        verb = "ran" if result.ran else "was already done"
        _write(f"{result.task} job {result.job!r} {verb}")
        for link, info in result.target.items():
            _write(f"  {link}: {info}")
    return EXIT_OK


async def _serve(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    from pydatatask import web

    async with web.serving(pipeline, args.port, args.host) as url:
        _write(f"serving the dashboard at {url} (read-only; Ctrl-C stops)")
        sys.stdout.flush()
        await asyncio.Event().wait()  # until interrupted
    return EXIT_OK


async def _plan(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    planned = await admin.plan(pipeline, rerun_stale=args.rerun_stale)
    if args.json:
        _write(json.dumps([entry.as_json() for entry in planned], indent=2))
        return EXIT_OK
    _write_lines([f"{entry.task} {entry.job}: {entry}" for entry in planned])
    now = sum(entry.now for entry in planned)
    later = len(planned) - now
    _write(f"{now} jobs to launch now" + (f", {later} after them" if later else ""))
    return EXIT_OK


async def _why(pipeline: Pipeline, args: argparse.Namespace, _: bytes) -> int:
    for reason in await admin.why(pipeline, args.task, args.job):
        _write(reason)
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "run": _run,
    "update": _update,
    "status": _status,
    "trace": _trace,
    "ls": _ls,
    "cat": _cat,
    "inject": _inject,
    "rm": _rm,
    "launch": _launch,
    "graph": _graph,
    "why": _why,
    "plan": _plan,
    "serve": _serve,
    "materialize": _materialize,
}
