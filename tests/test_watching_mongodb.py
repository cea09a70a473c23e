"""A controller running forever takes in documents inserted into MongoDB from outside at once.

The collection's change stream tells it which ids changed; the poll interval of an hour
means nothing here is found by a listing.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pymongo = pytest.importorskip("pymongo")

import pydatatask  # noqa: E402
from tests.forever import NEVER, PATIENCE, running_forever, until  # noqa: E402
from tests.servers.mongodb import MongoServer, collections  # noqa: E402

pytestmark = [
    pytest.mark.backend,
    # The driver can drop a monitor socket when a client closes mid-connect.
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]


def _pipeline(uri: str, database: str) -> tuple[pydatatask.Pipeline, dict[str, Any]]:
    session, repos = collections(uri, database, ("readings", "scaled", "done"))

    @pydatatask.task(
        done=repos["done"],
        inputs={"reading": repos["readings"]},
        outputs={"scaled": repos["scaled"]},
    )
    async def scale(reading: int) -> int:
        return reading * 10

    pipeline = pydatatask.Pipeline([scale], session)
    pipeline.poll_interval = NEVER
    return pipeline, repos


async def test_documents_inserted_from_outside_are_run_without_a_listing(
    mongo_server: MongoServer,
) -> None:
    database = f"watch_{uuid.uuid4().hex[:10]}"
    pipeline, repos = _pipeline(mongo_server.uri, database)
    outside: Any = pymongo.AsyncMongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000)
    readings = outside[database]["readings"]
    try:
        await readings.insert_one({"_id": "first", "value": 1})
        async with pipeline, running_forever(pipeline):

            async def scaled(count: int) -> bool:
                return len(await repos["scaled"].ids()) == count

            await until(lambda: scaled(1), "the first job")
            listed_at = pipeline.scheduler.last_refresh
            # As another program would: plain documents through its own client.
            await readings.insert_many([{"_id": f"new{n}", "value": n} for n in range(10)])
            await until(lambda: scaled(11), "the 10 inserted documents")
            await readings.replace_one({"_id": "first"}, {"_id": "first", "value": 7})
            await repos["done"].delete("first")  # as `rm scale first` would
            await until(lambda: _equals(repos["scaled"], "first", 70), "the rerun of 'first'")
            assert pipeline.scheduler.last_refresh == listed_at  # no full listing since
            assert await repos["scaled"].info("new4") == 40
    finally:
        await outside.drop_database(database)
        await outside.close()


async def test_two_controllers_with_leases_run_each_inserted_document_once(
    mongo_server: MongoServer,
) -> None:
    """Both controllers hear of every insert; the leases let only one of them run it."""
    database = f"watch_{uuid.uuid4().hex[:10]}"
    ran: list[str] = []

    def controller() -> tuple[pydatatask.Pipeline, dict[str, Any]]:
        names = ("readings", "scaled", "done", "claims")
        session, repos = collections(mongo_server.uri, database, names)

        @pydatatask.task(
            done=repos["done"],
            inputs={"reading": repos["readings"]},
            outputs={"scaled": repos["scaled"]},
        )
        async def scale(job: str, reading: int) -> int:
            ran.append(job)
            await asyncio.sleep(0.01)  # long enough for the other controller to try too
            return reading * 10

        pipeline = pydatatask.Pipeline([scale], session, leases=repos["claims"], lease_seconds=3)
        pipeline.poll_interval = NEVER
        return pipeline, repos

    (first, repos), (second, _) = controller(), controller()
    async with first, second, running_forever(first), running_forever(second):
        for number in range(30):
            await repos["readings"].dump(f"r{number}", number)

        async def all_scaled() -> bool:
            return len(await repos["scaled"].ids()) == 30

        await until(all_scaled, "the 30 inserted documents")
        await until(lambda: not first.scheduler.has_work(), "the first controller to settle")
        await until(lambda: not second.scheduler.has_work(), "the second controller to settle")
        assert await repos["scaled"].info("r7") == 70
    assert sorted(ran) == sorted(f"r{number}" for number in range(30))  # each exactly once


async def _equals(repo: pydatatask.MetadataRepository, job: str, value: Any) -> bool:
    return job in await repo.ids() and await repo.info(job) == value


async def test_a_dropped_collection_ends_its_stream_with_an_error_naming_it(
    mongo_server: MongoServer,
) -> None:
    database = f"watch_{uuid.uuid4().hex[:10]}"
    pipeline, repos = _pipeline(mongo_server.uri, database)
    async with pipeline:
        await repos["readings"].dump("a", 1)
        stop = asyncio.Event()
        follow = repos["readings"]._changes()
        assert follow is not None
        changes = follow(stop)
        assert await asyncio.wait_for(anext(changes), PATIENCE) == set()  # the stream is open
        await repos["readings"].dump("b", 2)
        assert await asyncio.wait_for(anext(changes), PATIENCE) == {"b"}
        await repos["readings"].collection().drop()
        with pytest.raises(pydatatask.BackendError, match="change stream ended with 'drop'"):
            await asyncio.wait_for(anext(changes), PATIENCE)


PIPELINE_FILE = textwrap.dedent(
    """
    resources:
      db: {kind: mongodb, uri: "${MONGO_URI}", server_selection_timeout: 5}
    repositories:
      readings: {kind: mongodb, resource: db, database: "${MONGO_DATABASE}", collection: readings}
      scaled: {kind: mongodb, resource: db, database: "${MONGO_DATABASE}", collection: scaled}
      done: {kind: mongodb, resource: db, database: "${MONGO_DATABASE}", collection: done}
    tasks:
      scale:
        function: steps:scale
        inputs: {reading: readings}
        outputs: {scaled: scaled}
        done: done
    """
)


def test_run_forever_from_a_pipeline_file_takes_in_inserted_documents(
    tmp_path: Path, mongo_server: MongoServer
) -> None:
    """``pydatatask -f pipeline.yaml run --forever --poll 3600`` runs what is inserted."""
    (tmp_path / "pipeline.yaml").write_text(PIPELINE_FILE)
    (tmp_path / "steps.py").write_text("def scale(reading):\n    return reading * 10\n")
    database = f"watch_{uuid.uuid4().hex[:10]}"
    client: Any = pymongo.MongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000)
    readings, scaled = client[database]["readings"], client[database]["scaled"]
    readings.insert_one({"_id": "first", "value": 1})
    command = [sys.executable, "-m", "pydatatask", "-f", str(tmp_path / "pipeline.yaml")]
    settings = ["--set", f"MONGO_URI={mongo_server.uri}", "--set", f"MONGO_DATABASE={database}"]
    controller = subprocess.Popen(
        [*command, *settings, "run", "--forever", "--poll", str(NEVER)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + PATIENCE
        while scaled.find_one({"_id": "first"}) is None:
            assert time.monotonic() < deadline, "the first job did not run"
            assert controller.poll() is None, controller.stderr.read() if controller.stderr else ""
            time.sleep(0.1)
        readings.insert_one({"_id": "second", "value": 2})
        while scaled.find_one({"_id": "second"}) is None:
            assert time.monotonic() < deadline, "the inserted document was not taken in"
            assert controller.poll() is None, controller.stderr.read() if controller.stderr else ""
            time.sleep(0.1)
        assert scaled.find_one({"_id": "second"})["value"] == 20
    finally:
        controller.send_signal(signal.SIGINT)
        try:
            _, errors = controller.communicate(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            controller.kill()
            _, errors = controller.communicate()
        client.drop_database(database)
        client.close()
    assert "Traceback" not in errors
