"""A real MongoDB-protocol server (SecantusDB) for the mongodb backend's tests.

The ``mongo_server`` fixture starts ``secantusd-py`` once per test session on a free
loopback port, or uses the server named by ``PYDATATASK_TEST_MONGO_URI``. pymongo is
imported only inside the fixture, so the core test environment needs no extras.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

URI_VARIABLE = "PYDATATASK_TEST_MONGO_URI"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class MongoServer:
    """Where the test server listens."""

    uri: str
    host: str
    port: int | None
    started_here: bool


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_command() -> list[str]:
    beside_python = Path(sys.executable).with_name("secantusd-py")
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which("secantusd-py")
    if found is None:
        pytest.skip("secantusd-py is not installed (the 'servers' dependency group)")
    return [found]


def _log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_until_ready(uri: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    import pymongo  # only the mongodb tests need it

    deadline = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"secantusd-py exited with status {process.returncode} while starting; "
                f"log tail:\n{_log_tail(log_path)}"
            )
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250
        )
        try:
            client.admin.command("ping")
        except pymongo.errors.PyMongoError as exc:
            last_error = exc
        else:
            return
        finally:
            client.close()
        time.sleep(0.1)
    pytest.fail(
        f"secantusd-py did not answer a ping at {uri} within {START_TIMEOUT:g} s "
        f"({last_error}); log tail:\n{_log_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """Yield a running MongoDB-protocol server on loopback, started once per session."""
    pytest.importorskip("pymongo")
    external = os.environ.get(URI_VARIABLE)
    if external:
        yield MongoServer(uri=external, host="", port=None, started_here=False)
        return

    workdir = tmp_path_factory.mktemp("mongodb")
    config = workdir / "secantusd.toml"
    config.write_text("")  # an explicit empty config turns off discovery of user configs
    log_path = workdir / "server.log"
    port = _free_loopback_port()
    command = [
        *_server_command(),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(workdir / "data"),
        "--log-level",
        "WARNING",
    ]
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
        )
    try:
        _wait_until_ready(uri, process, log_path)
        yield MongoServer(uri=uri, host="127.0.0.1", port=port, started_here=True)
    finally:
        _stop(process)
