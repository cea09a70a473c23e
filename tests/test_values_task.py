"""Functions over values: ``@pydatatask.task`` in the loop, on threads, processes and Dask."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import pydatatask
from pydatatask.errors import ConfigurationError
from tests.servers.processes import free_loopback_port, running_server


def _write_texts(folder: Path, texts: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text)


def _records(folder: Path) -> dict[str, Any]:
    return {path.stem: yaml.safe_load(path.read_text()) for path in folder.glob("*.yaml")}


async def test_sync_and_async_bodies_chain_through_values(tmp_path: Path) -> None:
    _write_texts(tmp_path / "books", {"zen": "simple is better than complex", "one": "word"})
    books = pydatatask.FileRepository(tmp_path / "books", ".txt")
    counts = pydatatask.YamlMetadataFileRepository(tmp_path / "counts")
    reports = pydatatask.FileRepository(tmp_path / "reports", ".txt")

    @pydatatask.task(
        done=pydatatask.YamlMetadataFileRepository(tmp_path / "done_count"),
        inputs={"book": books},
        outputs={"words": counts},
    )
    def count(book: str) -> int:  # a plain def: on a thread
        return len(book.split())

    @pydatatask.task("report", inputs={"words": counts}, outputs={"report": reports}, version="2")
    async def summary(job: str, words: int) -> str:
        return f"{job}: {words} words\n"

    assert count.name == "count"
    assert summary.name == "report"
    pipeline = pydatatask.Pipeline([count, summary])
    async with pipeline:
        report = await pydatatask.run(pipeline)
        assert await counts.load("zen") == 5
        assert await reports.load("zen") == "zen: 5 words\n"
        record = await summary.done.info("zen")
    assert report.succeeded == 4
    assert record["version"] == "2"
    assert (tmp_path / "reports" / "one.txt").read_text() == "one: 1 words\n"


async def test_several_outputs_and_a_body_that_returns_the_wrong_keys(tmp_path: Path) -> None:
    source = pydatatask.InProcessMetadataRepository({"a": 3, "b": -1})
    halves = pydatatask.InProcessMetadataRepository()
    doubles = pydatatask.InProcessMetadataRepository()

    @pydatatask.task(inputs={"number": source}, outputs={"half": halves, "double": doubles})
    def split(number: int) -> dict[str, float]:
        if number < 0:
            return {"half": number / 2, "triple": number * 3}
        return {"half": number / 2, "double": number * 2}

    pipeline = pydatatask.Pipeline([split])
    async with pipeline:
        report = await pydatatask.run(pipeline)
        assert await halves.load("a") == 1.5
        assert await doubles.load("a") == 6
        failed = await split.done.info("b")
    assert (report.succeeded, report.failed) == (1, 1)
    assert "no double" in failed["exception"]
    assert "unknown triple" in failed["exception"]


async def test_an_output_its_codec_refuses_saves_no_output_of_the_job(tmp_path: Path) -> None:
    source = pydatatask.InProcessMetadataRepository({"a": 1, "b": 2})
    tables = pydatatask.FileRepository(tmp_path / "tables", ".json")
    notes = pydatatask.FileRepository(tmp_path / "notes", ".txt")
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "a.json").write_text('{"from": "an earlier run"}\n')

    @pydatatask.task(inputs={"number": source}, outputs={"table": tables, "note": notes})
    def describe(number: int) -> dict[str, Any]:
        return {"table": {"number": number}, "note": number if number == 1 else f"{number}"}

    pipeline = pydatatask.Pipeline([describe])
    async with pipeline:
        report = await pydatatask.run(pipeline)
        failed = await describe.done.info("a")
    assert (report.succeeded, report.failed) == (1, 1)
    assert "CodecError" in failed["exception"]
    assert "'a'" in failed["exception"]
    assert "'text' codec" in failed["exception"]
    assert sorted(os.listdir(tmp_path / "tables")) == ["b.json"]
    assert sorted(os.listdir(tmp_path / "notes")) == ["b.txt"]


async def test_one_failing_job_leaves_the_others_alone(tmp_path: Path) -> None:
    source = pydatatask.InProcessMetadataRepository({f"n{index}": index for index in range(6)})
    out = pydatatask.InProcessMetadataRepository()

    @pydatatask.task(inputs={"value": source}, outputs={"out": out})
    async def invert(value: int) -> float:
        return 1 / value

    pipeline = pydatatask.Pipeline([invert])
    async with pipeline:
        report = await pydatatask.run(pipeline)
        record = await invert.done.info("n0")
    assert (report.succeeded, report.failed) == (5, 1)
    assert "ZeroDivisionError" in record["exception"]
    assert await out.ids() == {f"n{index}" for index in range(1, 6)}


def test_wrong_wiring_is_reported_at_decoration() -> None:
    numbers = pydatatask.InProcessMetadataRepository()
    with pytest.raises(ConfigurationError, match=r"parameter 'nmber' .* is no input"):

        @pydatatask.task(inputs={"number": numbers})
        def typo(nmber: int) -> None: ...

    with pytest.raises(ConfigurationError, match="no parameter takes the input number"):

        @pydatatask.task(inputs={"number": numbers})
        def forgets(job: str) -> None: ...

    with pytest.raises(ConfigurationError, match=r"parameter 'number' .* is positional-only"):

        @pydatatask.task(inputs={"number": numbers})
        def positional(number: int, /) -> None: ...

    with pytest.raises(ConfigurationError, match="async def body runs in the controller"):

        @pydatatask.task(
            inputs={"number": numbers}, executor=concurrent.futures.ThreadPoolExecutor()
        )
        async def both(number: int) -> None: ...

    with pytest.raises(ConfigurationError, match="must be a repository of values"):
        pydatatask.task("joined", outputs={"number": pydatatask.AggregateAndRepository(a=numbers)})(
            lambda number: number
        )


@pytest.fixture
def bodies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The importable bodies module, its repositories under ``tmp_path``."""
    monkeypatch.setenv("VALUES_TEST_WORK", str(tmp_path))
    import tests.values_bodies

    module = importlib.reload(tests.values_bodies)
    _write_texts(tmp_path / "texts", {f"t{index}": "w " * index for index in range(1, 9)})
    return module


async def _run_counting(bodies: ModuleType, task: pydatatask.Task) -> pydatatask.RunReport:
    pipeline = pydatatask.Pipeline([task])
    async with pipeline:
        return await pydatatask.run(pipeline)


async def test_a_module_level_body_runs_in_a_process_pool(bodies: ModuleType) -> None:
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        bodies.module_count.executor = pool
        report = await _run_counting(bodies, bodies.module_count)
    assert report.succeeded == 8
    found = {
        path.stem: json.loads(path.read_text()) for path in (bodies.WORK / "counts").glob("*.json")
    }
    assert found["t3"]["words"] == 3
    assert {entry["pid"] for entry in found.values()}.isdisjoint({os.getpid()})


@pytest.mark.backend  # dask[distributed]
async def test_a_body_runs_unchanged_on_a_dask_cluster(bodies: ModuleType) -> None:
    distributed = pytest.importorskip("distributed")
    (bodies.WORK / "texts" / "bad.txt").write_text("poison")
    cluster = await distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        asynchronous=True,
    )
    try:
        async with distributed.Client(cluster, asynchronous=True) as client:
            report = await _run_counting(bodies, bodies.make_count(client.get_executor()))
    finally:
        await cluster.close()
    assert (report.succeeded, report.failed) == (8, 1)
    records = _records(bodies.WORK / "done")
    assert "bad is poisoned" in records["bad"]["exception"]
    found = [json.loads(path.read_text()) for path in (bodies.WORK / "counts").glob("*.json")]
    assert len(found) == 8
    assert asyncio.get_running_loop() is not None


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@pytest.mark.backend  # dask[distributed]
async def test_a_dask_cluster_from_the_command_line_survives_a_killed_worker(
    bodies: ModuleType, tmp_path: Path
) -> None:
    """Scheduler and two workers started with ``dask``; kill -9 one worker mid-run."""
    distributed = pytest.importorskip("distributed")
    dask = str(Path(sys.executable).with_name("dask"))
    port = free_loopback_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    worker = [dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
    with contextlib.ExitStack() as servers:
        servers.enter_context(
            running_server(
                scheduler,
                tmp_path / "scheduler.log",
                functools.partial(_accepts, port),
                "dask scheduler",
                start_timeout=60,
                stop_timeout=20,
            )
        )
        for index in range(2):
            servers.enter_context(
                running_server(
                    worker,
                    tmp_path / f"worker{index}.log",
                    lambda: True,
                    "dask worker",
                    start_timeout=60,
                    stop_timeout=20,
                )
            )
        async with distributed.Client(address, asynchronous=True) as client:
            await client.wait_for_workers(2, timeout=120)
            task = bodies.make_count(client.get_executor(), pause=0.5)
            running = asyncio.ensure_future(_run_counting(bodies, task))
            deadline = time.monotonic() + 120
            while len(list((bodies.WORK / "done").glob("*.yaml"))) < 2:
                assert time.monotonic() < deadline, "no job finished on the cluster"
                await asyncio.sleep(0.05)
            pids = await client.run(os.getpid)
            os.kill(next(iter(pids.values())), signal.SIGKILL)
            report = await asyncio.wait_for(running, timeout=300)
    assert report.succeeded == 8
    records = _records(bodies.WORK / "done")
    assert set(records) == {f"t{index}" for index in range(1, 9)}
    assert all(record["success"] for record in records.values())
