"""Starting, waiting for and stopping the real servers the backend tests run against.

Every server fixture does the same things: pick free loopback ports, find the server's
command, start it with its output in a log file, poll until it answers (failing with the
log's tail if it dies or takes too long), and stop it by its PID afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

Process = subprocess.Popen[bytes]


def free_loopback_ports(count: int) -> list[int]:
    """Return ``count`` distinct loopback ports that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_loopback_port() -> int:
    """Return a loopback port that was free a moment ago."""
    return free_loopback_ports(1)[0]


def log_tail(path: Path, lines: int = 30) -> str:
    """Return the last ``lines`` lines of the log at ``path``, or ``(no log)``."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def find_command(name: str, missing: str, *, fallbacks: Sequence[str] = ()) -> str:
    """Return the path of ``name``: beside ``sys.executable``, on PATH, or a fallback.

    Skips the test with ``missing`` as the reason when it is in none of those places.
    """
    beside_python = Path(sys.executable).with_name(name)
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is not None:
        return found
    for candidate in fallbacks:
        if Path(candidate).exists():
            return candidate
    pytest.skip(missing)


def launch(command: Sequence[str], log_path: Path, cwd: Path | None = None) -> Process:
    """Start ``command`` with no input and its stdout and stderr both in ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
        )


def readiness_failure(
    ready: Callable[[], bool],
    process: Process,
    name: str,
    log_path: Path,
    *,
    timeout: float,
    errors: tuple[type[BaseException], ...] = (OSError,),
    interval: float = 0.05,
) -> str | None:
    """Poll ``ready()`` until it is true; return None, or why the server never got there.

    An exception of a type in ``errors`` counts as "not yet". The description ends with
    the tail of the server's log.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            failure = f"{name} exited with status {process.returncode} while starting"
            break
        try:
            if ready():
                return None
        except errors as exc:
            last_error = exc
        time.sleep(interval)
    else:
        failure = f"{name} was not ready within {timeout:g} s ({last_error})"
    return f"{failure}; log tail:\n{log_tail(log_path)}"


def stop_process(process: Process, timeout: float) -> None:
    """Stop a server we started, by its PID: SIGTERM, wait, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d ignored SIGTERM for %g s; killing it", process.pid, timeout)
        process.kill()
        process.wait(timeout=timeout)


@contextlib.contextmanager
def running_server(
    command: Sequence[str],
    log_path: Path,
    ready: Callable[[], bool],
    name: str,
    *,
    start_timeout: float,
    stop_timeout: float,
    cwd: Path | None = None,
    errors: tuple[type[BaseException], ...] = (OSError,),
) -> Iterator[Process]:
    """Start ``command``, wait until ``ready()``, yield the process and stop it afterwards.

    Fails the test if the server exits or is not ready within ``start_timeout`` seconds.
    """
    process = launch(command, log_path, cwd)
    try:
        failure = readiness_failure(
            ready, process, name, log_path, timeout=start_timeout, errors=errors
        )
        if failure is not None:
            pytest.fail(failure)
        yield process
    finally:
        stop_process(process, stop_timeout)
