"""A real MongoDB-protocol server (SecantusDB) for the mongodb backend's tests.

The ``mongo_server`` fixture starts ``secantusd-py`` once per test session on a free
loopback port, or uses the server named by ``PYDATATASK_TEST_MONGO_URI``. pymongo is
imported only inside the fixture, so the core test environment needs no extras.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import pydatatask
from tests.servers.processes import find_command, free_loopback_port, running_server

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


def _answers_ping(uri: str) -> bool:
    import pymongo  # only the mongodb tests need it

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()
    return True


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """Yield a running MongoDB-protocol server on loopback, started once per session."""
    pymongo = pytest.importorskip("pymongo")
    external = os.environ.get(URI_VARIABLE)
    if external:
        yield MongoServer(uri=external, host="", port=None, started_here=False)
        return

    workdir = tmp_path_factory.mktemp("mongodb")
    config = workdir / "secantusd.toml"
    config.write_text("")  # an explicit empty config turns off discovery of user configs
    port = free_loopback_port()
    command = [
        find_command(
            "secantusd-py", "secantusd-py is not installed (the 'servers' dependency group)"
        ),
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
    with running_server(
        command,
        workdir / "server.log",
        functools.partial(_answers_ping, uri),
        f"secantusd-py ({uri})",
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
        cwd=workdir,
        errors=(pymongo.errors.PyMongoError,),
    ):
        yield MongoServer(uri=uri, host="127.0.0.1", port=port, started_here=True)


def collections(
    uri: str, database: str, names: Iterable[str]
) -> tuple[pydatatask.Session, dict[str, pydatatask.MongoMetadataRepository]]:
    """Return a session with a client of ``database``, and a repository per collection name."""
    import pymongo  # only the mongodb tests need it

    session = pydatatask.Session()

    @session.resource
    async def db() -> AsyncIterator[Any]:
        client: Any = pymongo.AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            yield client[database]
        finally:
            await client.close()

    def collection(name: str) -> pydatatask.MongoMetadataRepository:
        return pydatatask.MongoMetadataRepository(lambda: db()[name])

    return session, {name: collection(name) for name in names}
