"""The command line's arguments: one subcommand per operation of :mod:`pydatatask.cli`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

__all__ = ["parser"]


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535: {text!r}")
    return value


def parser(extra: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Return the parser of ``python pipeline.py [-v] COMMAND ...``.

    :param extra: more commands without options, by name, with their help (the
        ``pydatatask`` command's own ``validate`` and ``schema``).
    """
    return _build(extra)[0]


def command_names() -> frozenset[str]:
    """Return the names of the commands :func:`parser` knows."""
    return frozenset(_build(None)[1].choices)


def _build(
    extra: Mapping[str, str] | None,
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(description="Run and inspect this pipeline.")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log launches, finishes, retries and listings on stderr (-vv: more detail)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (extra or {}).items():
        commands.add_parser(name, help=text, description=text)

    command = commands.add_parser("run", help="run jobs until no work remains")
    mode = command.add_mutually_exclusive_group()
    mode.add_argument("--forever", action="store_true", help="keep running when idle")
    mode.add_argument(
        "--once", action="store_true", help="one round: launch what is ready and wait for it"
    )
    mode.add_argument(
        "--launch-once",
        action="store_true",
        help="launch only in the first round, then wait for those jobs and their retries",
    )
    command.add_argument("--timeout", type=_positive, metavar="S", help="stop after S seconds")
    command.add_argument(
        "--poll", type=_positive, metavar="S", help="re-read every repository every S seconds"
    )
    command.add_argument(
        "--jobs", type=_count, metavar="N", help="run at most N jobs at once (all tasks)"
    )
    command.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object when done (launched, succeeded, failed, failed_jobs); "
        "progress goes to stderr",
    )
    command.add_argument(
        "--rerun-stale",
        action="store_true",
        help="run stale jobs again (their code or inputs changed), then what they make stale",
    )
    command.add_argument(
        "--serve",
        type=_port,
        metavar="PORT",
        help="serve the live dashboard on 127.0.0.1:PORT while running (extra 'web')",
    )

    commands.add_parser("update", help="one scheduler round; wait for the jobs it launched")
    command = commands.add_parser("status", help="count jobs by state for every task")
    command.add_argument("--json", action="store_true", help="print JSON")
    command.add_argument(
        "--failed", action="store_true", help="list every failed job with its error instead"
    )
    command = commands.add_parser("trace", help="show every task's state for some jobs")
    command.add_argument("jobs", nargs="+", metavar="JOB")
    command = commands.add_parser("ls", help="list ids: a set expression over TASK.LINK")
    command.add_argument("expr", metavar="EXPR", help="for example 'a.input - a.done'")
    command = commands.add_parser("cat", help="print one value")
    command.add_argument("target", metavar="TASK.LINK")
    command.add_argument("job", metavar="JOB")
    command = commands.add_parser("inject", help="store standard input as one value")
    command.add_argument("target", metavar="TASK.LINK")
    command.add_argument("job", metavar="JOB")
    command = commands.add_parser("rm", help="remove values or done records so jobs rerun")
    command.add_argument(
        "-r", "--recursive", action="store_true", help="also remove what was derived from them"
    )
    command.add_argument("target", metavar="TASK[.LINK]")
    command.add_argument("jobs", nargs="+", metavar="JOB", help="ids, or __all__")
    command = commands.add_parser("launch", help="run one job now, in this process")
    command.add_argument("task", metavar="TASK")
    command.add_argument("job", metavar="JOB")
    command.add_argument("--force", action="store_true", help="run it even if it is not ready")
    command.add_argument(
        "--sync", action="store_true", help="wait for it (always so for in-process jobs)"
    )
    command = commands.add_parser("graph", help="draw the pipeline")
    command.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    command = commands.add_parser(
        "materialize", help="run one job and the upstream jobs it needs; print its Result"
    )
    command.add_argument("task", metavar="TASK")
    command.add_argument("job", metavar="JOB")
    command.add_argument("--json", action="store_true", help="print the Result as JSON")
    command.add_argument(
        "--rerun-failed", action="store_true", help="run jobs that failed before again"
    )
    command = commands.add_parser(
        "serve", help="serve a read-only web dashboard of the pipeline (extra 'web')"
    )
    command.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: loopback)"
    )
    command.add_argument(
        "--port", type=_port, default=8765, help="the TCP port (default 8765; 0: any free one)"
    )
    command = commands.add_parser(
        "plan", help="list the jobs 'run' would launch now, and why (launches nothing)"
    )
    command.add_argument("--rerun-stale", action="store_true", help="plan for 'run --rerun-stale'")
    command.add_argument("--json", action="store_true", help="print JSON")
    command = commands.add_parser("why", help="explain why a job is or is not ready")
    command.add_argument("task", metavar="TASK")
    command.add_argument("job", metavar="JOB")
    return parser, commands
