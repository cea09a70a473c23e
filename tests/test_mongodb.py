"""MongoMetadataRepository against a real MongoDB-protocol server, with both drivers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

pytest.importorskip("pymongo")

import pymongo.monitoring
import pytest_asyncio
from bson import ObjectId

import pydatatask
from pydatatask import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    JobNotFoundError,
    LifecycleError,
    UnstorableValueError,
)
from pydatatask.repository import mongodb
from pydatatask.repository.mongodb import MAX_DOCUMENT_SIZE, MongoMetadataRepository
from pydatatask.testing.repositories import MetadataRepositoryContract, assert_warned_about
from tests.servers.mongodb import MongoServer

# PyMongo's async client leaves a socket unclosed when it is closed while a monitor task
# is still connecting (the cancellation skips the socket's cleanup). The pending task is
# only collected after its test's event loop has closed, so the warning may come later.
_DRIVER_SOCKET_LEAK = "unclosed <socket.socket"
pytestmark = [
    pytest.mark.backend,
    pytest.mark.filterwarnings(f"ignore:{_DRIVER_SOCKET_LEAK}:ResourceWarning"),
]

DATABASE = "pydatatask_tests"
DRIVERS = ["pymongo", "motor"]
# Bounded failures: every test client gives up on an unreachable server within seconds.
CLIENT_TIMEOUTS: dict[str, Any] = {
    "serverSelectionTimeoutMS": 5000,
    "connectTimeoutMS": 5000,
    "timeoutMS": 30000,
}


@dataclass(frozen=True)
class CommandRecord:
    name: str
    collection: object
    filter: object
    projection: object
    limit: object


class CommandRecorder(pymongo.monitoring.CommandListener):
    """Remember a summary of every command the client sends (motor sends from threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[CommandRecord] = []

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        command = event.command
        name = event.command_name
        record = CommandRecord(
            name=name,
            collection=command.get("collection") if name == "getMore" else command.get(name),
            filter=command.get("filter"),
            projection=command.get("projection"),
            limit=command.get("limit"),
        )
        with self._lock:
            self.records.append(record)

    def succeeded(self, event: pymongo.monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: pymongo.monitoring.CommandFailedEvent) -> None:
        pass

    def clear(self) -> None:
        with self._lock:
            self.records.clear()

    def on(self, collection: str, name: str) -> list[CommandRecord]:
        with self._lock:
            return [r for r in self.records if r.name == name and r.collection == collection]


def make_client(driver: str, uri: str, **options: Any) -> Any:
    """Create an async client of ``driver``; call it inside the loop that will use it."""
    if driver == "pymongo":
        return pymongo.AsyncMongoClient(uri, **options)
    with warnings.catch_warnings():
        # Motor is deprecated in favour of PyMongo's async client; newer releases say so.
        warnings.simplefilter("ignore", DeprecationWarning)
        motor_asyncio = pytest.importorskip("motor.motor_asyncio")
        return motor_asyncio.AsyncIOMotorClient(uri, **options)


async def close_client(client: Any) -> None:
    result = client.close()  # a coroutine for pymongo, None for motor
    if inspect.isawaitable(result):
        await result


@pytest.fixture(scope="module", autouse=True)
def _finalise_driver_sockets() -> Iterator[None]:
    """Collect the sockets the driver dropped, once every test loop here has closed."""
    yield
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _DRIVER_SOCKET_LEAK, ResourceWarning)
        gc.collect()


@dataclass
class Mongo:
    """One test's session, client and fresh collection."""

    driver: str
    name: str
    session: pydatatask.Session
    client: pydatatask.Resource[Any]
    collection: pydatatask.Resource[Any]
    recorder: CommandRecorder = field(default_factory=CommandRecorder)

    def raw(self, suffix: str = "") -> Any:
        """The collection as the driver sees it, bypassing the repository."""
        return self.client()[DATABASE][self.name + suffix]


@pytest_asyncio.fixture(loop_scope="function", params=DRIVERS)
async def mongo(request: pytest.FixtureRequest, mongo_server: MongoServer) -> AsyncIterator[Mongo]:
    driver: str = request.param
    name = f"jobs_{uuid.uuid4().hex[:12]}"
    recorder = CommandRecorder()
    session = pydatatask.Session()

    @session.resource
    async def client() -> AsyncIterator[Any]:
        live = make_client(driver, mongo_server.uri, event_listeners=[recorder], **CLIENT_TIMEOUTS)
        try:
            yield live
        finally:
            await close_client(live)

    @session.resource
    async def collection() -> AsyncIterator[Any]:
        yield client()[DATABASE][name]

    harness = Mongo(driver, name, session, client, collection, recorder)
    async with session:
        try:
            yield harness
        finally:
            for suffix in ("", ".results"):
                await harness.raw(suffix).drop()


class TestMongoMetadataRepository(MetadataRepositoryContract):
    @pytest.fixture
    def repo(self, mongo: Mongo) -> MongoMetadataRepository:
        return MongoMetadataRepository(mongo.collection)


async def test_exact_round_trip(mongo: Mongo) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    values: dict[str, Any] = {
        "list": [1, "two", None, [3.5, {"four": 4}]],
        "int": 7,
        "big-int": 2**62,
        "negative": -(2**40),
        "str": "héllo 😀",
        "empty-str": "",
        "none": None,
        "true": True,
        "float": 0.1,
        "empty-dict": {},
        "empty-list": [],
        "ordered": {"z": 1, "a": 2, "m": {"y": [], "b": None}},
        "dotted-keys": {"a.b": 1, "c.d": {"e.f": 2}},
        "bytes": b"\x00\xffraw",
    }
    for job, value in values.items():
        await repo.dump(job, value)
    for job, value in values.items():
        got = await repo.info(job)
        assert got == value
        assert type(got) is type(value), job
    everything = await repo.info_all()
    assert everything == values
    assert type(everything["big-int"]) is int
    assert list(everything["ordered"]) == ["z", "a", "m"]
    assert await mongo.raw().find_one({"_id": "int"}) == {"_id": "int", "value": 7}


async def test_value_larger_than_a_document_fails_and_keeps_old_value(mongo: Mongo) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    await repo.dump("huge", {"old": True})
    mongo.recorder.clear()
    with pytest.raises(BackendError, match=r"'huge'.*16777216") as caught:
        await repo.dump("huge", "x" * MAX_DOCUMENT_SIZE)
    assert not isinstance(caught.value, BackendUnavailableError)
    assert mongo.recorder.on(mongo.name, "update") == []  # refused before sending
    assert await repo.info("huge") == {"old": True}


async def test_server_rejection_of_a_large_document_is_translated(
    mongo: Mongo, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    await repo.dump("huge", [1, 2, 3])
    monkeypatch.setattr(mongodb, "MAX_DOCUMENT_SIZE", 4 * MAX_DOCUMENT_SIZE)
    with pytest.raises(BackendError, match="'huge'") as caught:
        await repo.dump("huge", "y" * (MAX_DOCUMENT_SIZE + 100))
    assert caught.value.__cause__ is not None
    assert await repo.info("huge") == [1, 2, 3]


@pytest.mark.parametrize(
    "value",
    [{1: "int key"}, {"a": {2, 3}}, [object()], 2**70],
    ids=["int-key", "set", "object", "int-too-big"],
)
async def test_unencodable_value_is_a_type_error_and_keeps_old_value(
    mongo: Mongo, value: Any
) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    await repo.dump("job", "old")
    with pytest.raises(TypeError, match="'job'") as caught:
        await repo.dump("job", value)
    assert isinstance(caught.value, UnstorableValueError)
    assert (caught.value.job, caught.value.codec) == ("job", "bson")
    assert await repo.info("job") == "old"


async def test_subcollection(mongo: Mongo) -> None:
    top = MongoMetadataRepository(mongo.collection)
    sub = MongoMetadataRepository(mongo.collection, "results")
    await sub.dump("job", {"in": "sub"})
    await top.dump("other", 1)
    assert await sub.ids() == {"job"}
    assert await top.ids() == {"other"}
    assert await mongo.raw(".results").find_one({"_id": "job"}) == {
        "_id": "job",
        "value": {"in": "sub"},
    }
    assert await mongo.raw().find_one({"_id": "job"}) is None
    assert "results" in repr(sub)


RACERS = 20


async def test_concurrent_creates_from_separate_clients_have_one_winner(
    mongo: Mongo, mongo_server: MongoServer
) -> None:
    assert MongoMetadataRepository.atomic_create is True
    # One client per racer, each with its own connections: as if they were separate hosts.
    clients = [
        make_client(mongo.driver, mongo_server.uri, **CLIENT_TIMEOUTS) for _ in range(RACERS)
    ]

    def accessor(client: Any) -> Callable[[], Any]:
        return lambda: client[DATABASE][mongo.name]

    try:
        repos = [MongoMetadataRepository(accessor(client)) for client in clients]
        results = await asyncio.gather(
            *(repo.create("claim", {"owner": index}) for index, repo in enumerate(repos))
        )
    finally:
        for client in clients:
            await close_client(client)
    assert results.count(True) == 1, results
    winner = results.index(True)
    assert await MongoMetadataRepository(mongo.collection).info("claim") == {"owner": winner}
    assert await mongo.raw().find_one({"_id": "claim"}) == {
        "_id": "claim",
        "value": {"owner": winner},
    }


async def test_create_on_an_existing_id_keeps_the_value(mongo: Mongo) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    await repo.dump("job", {"first": 1})
    mongo.recorder.clear()
    assert await repo.create("job", {"second": 2}) is False
    assert [r.name for r in mongo.recorder.records] == ["insert"]  # one round trip
    assert await repo.info("job") == {"first": 1}
    assert await repo.create("new", 2**40) is True
    assert await mongo.raw().find_one({"_id": "new"}) == {"_id": "new", "value": 2**40}
    assert type(await repo.info("new")) is int


async def test_create_in_a_subcollection_and_errors_are_translated(mongo: Mongo) -> None:
    top = MongoMetadataRepository(mongo.collection)
    sub = MongoMetadataRepository(mongo.collection, "results")
    assert await sub.create("job", {"in": "sub"}) is True
    assert await top.create("job", {"in": "top"}) is True  # another collection
    assert await sub.create("job", {"in": "again"}) is False
    assert await mongo.raw(".results").find_one({"_id": "job"}) == {
        "_id": "job",
        "value": {"in": "sub"},
    }
    assert await top.info("job") == {"in": "top"}
    with pytest.raises(TypeError, match="'bad'"):
        await sub.create("bad", {1: "integer keys are not BSON"})
    with pytest.raises(BackendError, match=r"'huge'.*16777216"):
        await sub.create("huge", "x" * MAX_DOCUMENT_SIZE)
    assert await sub.ids() == {"job"}


async def test_listing_fetches_ids_only_and_info_all_is_one_query(mongo: Mongo) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    jobs = {f"job{index}" for index in range(30)}
    for job in jobs:
        await repo.dump(job, {"payload": "p" * 100})

    mongo.recorder.clear()
    assert {job async for job in repo} == jobs
    finds = mongo.recorder.on(mongo.name, "find")
    assert len(finds) == 1
    assert finds[0].projection == {"_id": 1}
    assert finds[0].filter == {}

    mongo.recorder.clear()
    everything = await repo.info_all()
    assert set(everything) == jobs
    finds = mongo.recorder.on(mongo.name, "find")
    assert len(finds) == 1
    assert finds[0].projection is None  # whole documents: 0.4's layout has no 'value' field

    mongo.recorder.clear()
    assert await repo.contains("job3")
    finds = mongo.recorder.on(mongo.name, "find")
    assert len(finds) == 1
    assert finds[0].projection == {"_id": 1}
    assert finds[0].filter == {"_id": "job3"}
    assert finds[0].limit == 1


async def test_contains_agrees_with_listing(mongo: Mongo, caplog: pytest.LogCaptureFixture) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    for job in ("a", "b", "c d"):
        await repo.dump(job, job)
    await mongo.raw().insert_many(
        [
            {"_id": ObjectId(), "value": "object id"},
            {"_id": 5, "value": "int id"},
            {"_id": "bad/id", "value": "slash"},
            {"_id": "", "value": "empty"},
        ]
    )
    await repo.delete("b")
    with caplog.at_level(logging.WARNING):
        listed = [job async for job in repo]
    assert sorted(listed) == ["a", "c d"]
    assert_warned_about(caplog, "skipped 2 entries")
    assert_warned_about(caplog, "skipped 2 documents whose _id is not a string")
    for job in listed:
        assert await repo.contains(job)
    for job in ("b", "missing"):
        assert not await repo.contains(job)
        with pytest.raises(JobNotFoundError):
            await repo.info(job)
    assert await repo.info_all() == {"a": "a", "c d": "c d"}


async def test_a_document_without_value_reads_as_its_fields(mongo: Mongo) -> None:
    """pydatatask 0.4 stored ``{_id, **value}``: such a document is its own value."""
    repo = MongoMetadataRepository(mongo.collection)
    await mongo.raw().insert_one({"_id": "foreign", "other": 1})
    assert await repo.contains("foreign")
    assert await repo.info("foreign") == {"other": 1}
    assert await repo.info_all() == {"foreign": {"other": 1}}


async def test_two_thousand_documents_list_completely(mongo: Mongo) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    count = 2000
    await mongo.raw().insert_many(
        [{"_id": f"job{index:04d}", "value": index} for index in range(count)]
    )
    mongo.recorder.clear()
    listed = [job async for job in repo]
    assert len(listed) == count
    assert set(listed) == {f"job{index:04d}" for index in range(count)}
    assert len(mongo.recorder.on(mongo.name, "getMore")) >= 1  # streamed in batches
    everything = await repo.info_all()
    assert everything == {f"job{index:04d}": index for index in range(count)}


async def test_early_break_closes_the_cursor(mongo: Mongo) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    await mongo.raw().insert_many([{"_id": f"job{index}", "value": index} for index in range(300)])
    mongo.recorder.clear()
    ids = cast("AsyncGenerator[str, None]", repo._iter_ids())
    async with contextlib.aclosing(ids) as iterator:
        first = await anext(iterator)
    assert first.startswith("job")
    assert len(mongo.recorder.on(mongo.name, "getMore")) == 0
    assert mongo.recorder.on(mongo.name, "killCursors")


async def test_validate_pings_a_live_server(mongo: Mongo) -> None:
    repo = MongoMetadataRepository(mongo.collection)
    mongo.recorder.clear()
    await repo.validate()
    assert [r.name for r in mongo.recorder.records] == ["ping"]


def _closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _session_for(
    driver: str, uri: str, **options: Any
) -> tuple[pydatatask.Session, Callable[[], Any]]:
    session = pydatatask.Session()

    @session.resource
    async def collection() -> AsyncIterator[Any]:
        client = make_client(driver, uri, **options)
        try:
            yield client[DATABASE]["jobs"]
        finally:
            await close_client(client)

    return session, collection


@pytest.mark.parametrize("driver", DRIVERS)
async def test_unreachable_server_fails_fast_naming_it(driver: str) -> None:
    port = _closed_loopback_port()
    session, collection = _session_for(
        driver,
        f"mongodb://127.0.0.1:{port}/",
        serverSelectionTimeoutMS=500,
        connectTimeoutMS=500,
    )
    repo = MongoMetadataRepository(collection)
    async with session:
        for operation in (repo.validate, lambda: repo.contains("job"), repo.ids):
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}") as caught:
                await operation()
            assert time.monotonic() - started < 25  # below the 30 s default
            assert isinstance(caught.value, ConnectionError)
            assert caught.value.__cause__ is not None


async def test_validate_is_bounded_even_without_client_timeouts() -> None:
    port = _closed_loopback_port()
    session, collection = _session_for("pymongo", f"mongodb://127.0.0.1:{port}/")
    repo = MongoMetadataRepository(collection, validate_timeout=0.5)
    async with session:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
            await repo.validate()
        assert time.monotonic() - started < 25  # below the 30 s default


async def test_closed_session_is_a_lifecycle_error() -> None:
    _session, collection = _session_for("pymongo", "mongodb://127.0.0.1:1/")
    repo = MongoMetadataRepository(collection)
    with pytest.raises(LifecycleError):
        await repo.contains("job")


@pytest.mark.parametrize("name", ["", "a$b", "nul\0"])
def test_bad_subcollection_name_is_rejected(name: str) -> None:
    with pytest.raises(ConfigurationError, match="subcollection"):
        MongoMetadataRepository(lambda: None, name)


def test_missing_driver_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['bson'] = None\n"
        "sys.modules['pymongo'] = None\n"
        "from pydatatask import MissingDependencyError\n"
        "try:\n"
        "    import pydatatask.repository.mongodb\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc.install_hint)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "pip install 'pydatatask[mongodb]'"
