"""The ``pydatatask`` command: run and inspect a pipeline described in ``pipeline.yaml``.

``pydatatask [-f FILE] [--set NAME=VALUE]... COMMAND ...`` loads ``FILE`` (default
``pipeline.yaml``) with :func:`pydatatask.config.load_pipeline` and runs any command of
:func:`pydatatask.main` on it, plus two of its own: ``validate`` (check the file, print
nothing, exit 0 or 2) and ``schema`` (print the file format's JSON Schema). Also
``python -m pydatatask``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydatatask import arguments
from pydatatask.cli import EXIT_OK, EXIT_USAGE, run_cli
from pydatatask.config import json_schema, load_pipeline, validate_file
from pydatatask.errors import ConfigurationError, MissingDependencyError

__all__ = ["main", "run_command"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pydatatask",
        usage="pydatatask [-f FILE] [--set NAME=VALUE]... COMMAND ...",
        description="Run and inspect the pipeline a pipeline.yaml describes.",
        epilog="COMMAND is any command of a pipeline script (run, status, why, ...; "
        "'pydatatask COMMAND --help' describes it), or validate (check the file), or "
        "schema (print the file format's JSON Schema).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "-f", "--file", default="pipeline.yaml", help="the pipeline file (default pipeline.yaml)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for ${NAME} in the file; wins over the environment",
    )
    return parser


_OWN_OPTIONS = ("-f", "--file", "--set")


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into this command's options and the pipeline command after them."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in _OWN_OPTIONS:
            index += 2
        elif word.startswith(("--file=", "--set=")) or word in ("-h", "--help"):
            index += 1
        else:
            break
    return argv[:index], argv[index:]


def _settings(pairs: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            parser.error(f"--set takes NAME=VALUE, not {pair!r}")
        settings[name] = value
    return settings


_OWN_COMMANDS = {
    "validate": "Check the pipeline file, connecting to nothing: print nothing and exit 0, "
    "or print one line naming the file, line and key and exit 2.",
    "schema": "Print the JSON Schema of pipeline files.",
}


_COMMANDS = arguments.command_names() | _OWN_COMMANDS.keys()


def _command(rest: list[str]) -> str | None:
    """Return the command word of ``rest``, after options such as ``-v``."""
    return next((word for word in rest if not word.startswith("-")), None)


def _parse_alone(rest: list[str]) -> int:
    """Parse a command line without reading the pipeline file.

    For help, or to refuse an unknown command with the list of every known one.
    """
    try:
        arguments.parser(_OWN_COMMANDS).parse_args(rest)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return EXIT_OK


def run_command(argv: Sequence[str] | None = None) -> int:
    """Run ``pydatatask`` with ``argv`` (default: the process's); return its exit status."""
    parser = _parser()
    own, rest = _split(sys.argv[1:] if argv is None else list(argv))
    try:
        options = parser.parse_args(own)
        settings = _settings(options.set, parser)
        if not rest:
            parser.error("give a COMMAND")
    except SystemExit as exc:  # usage errors and --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command = _command(rest)
    if "-h" in rest or "--help" in rest or command not in _COMMANDS:
        return _parse_alone(rest)
    if command == "schema":
        sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
        return EXIT_OK
    try:
        if command == "validate":
            validate_file(options.file, settings)
            return EXIT_OK
        pipeline = load_pipeline(options.file, settings)
    except (ConfigurationError, OSError) as exc:
        sys.stderr.write("error: " + " ".join(str(exc).split()) + "\n")
        return EXIT_USAGE
    except MissingDependencyError as exc:  # the file needs a package that is not installed
        sys.stderr.write(f"error: {options.file}: " + " ".join(str(exc).split()) + "\n")
        return EXIT_USAGE
    return run_cli(pipeline, rest)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``pydatatask`` and end the process with the command's exit status."""
    sys.exit(run_command(argv))
