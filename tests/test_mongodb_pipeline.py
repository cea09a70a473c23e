"""A two-stage pipeline whose inputs, outputs and done records all live in MongoDB."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pymongo = pytest.importorskip("pymongo")

import pydatatask as pdt  # noqa: E402
from tests.servers.mongodb import MongoServer, collections  # noqa: E402

pytestmark = [
    pytest.mark.backend,
    # The driver can drop a monitor socket when a client closes mid-connect.
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]


def build(uri: str, database: str) -> tuple[pdt.Pipeline, dict[str, Any]]:
    names = ("samples", "scaled", "summary", "d1", "d2")
    session, repos = collections(uri, database, names)

    @pdt.InProcessSyncTask("scale", repos["d1"])
    async def scale(job: str, samples: Any, scaled: Any) -> None:
        value = await samples.info(job)
        if value["reading"] < 0:
            raise ValueError(f"negative reading in {job}")
        await scaled.dump(job, {"reading": value["reading"] * 10, "unit": "mV"})

    @pdt.InProcessSyncTask("summarise", repos["d2"])
    async def summarise(job: str, scaled: Any, summary: Any) -> None:
        value = await scaled.info(job)
        await summary.dump(job, [job, value["reading"], value["unit"]])

    scale.link("samples", repos["samples"], is_input=True)
    scale.link("scaled", repos["scaled"], is_output=True)
    summarise.link("scaled", repos["scaled"], is_input=True)
    summarise.link("summary", repos["summary"], is_output=True)
    return pdt.Pipeline([scale, summarise], session), repos


async def test_two_stage_pipeline_on_mongo(mongo_server: MongoServer) -> None:
    database = f"pipeline_{uuid.uuid4().hex[:10]}"
    pipeline, repos = build(mongo_server.uri, database)
    async with pipeline:
        for index in range(6):
            await repos["samples"].dump(f"s{index}", {"reading": index})
        await repos["samples"].dump("broken", {"reading": -1})
        report = await pdt.run(pipeline)
        assert (report.launched, report.succeeded, report.failed) == (13, 12, 1)
        assert not report.timed_out
        assert [(item.task, item.job) for item in report.failures] == [("scale", "broken")]
        assert await repos["summary"].info_all() == {
            f"s{index}": [f"s{index}", index * 10, "mV"] for index in range(6)
        }
        failure = await repos["d1"].info("broken")
        assert failure["success"] is False
        assert "negative reading" in failure["exception"]
        assert await repos["d2"].ids() == {f"s{index}" for index in range(6)}

    again, _ = build(mongo_server.uri, database)
    async with again:
        assert (await pdt.run(again)).launched == 0  # everything is done already

    client = pymongo.AsyncMongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000)
    try:
        await client.drop_database(database)
    finally:
        await client.close()
