"""Pipeline wiring: edges, validation, binding and lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

import pydatatask as pdt
from pydatatask import InProcessMetadataRepository as Memory


def noop(job: str) -> None:
    return None


def test_edges_follow_shared_repositories() -> None:
    shared = Memory()
    producer = pdt.InProcessSyncTask("producer", Memory(), func=noop)
    producer.link("out", shared, is_output=True)
    consumer = pdt.InProcessSyncTask("consumer", Memory(), func=noop)
    consumer.link("inp", shared, is_input=True)
    pipeline = pdt.Pipeline([consumer, producer])
    assert [(e.upstream, e.downstream, e.links) for e in pipeline.edges] == [
        ("producer", "consumer", (("out", "inp"),))
    ]
    assert [task.name for task in pipeline.topological_order()] == ["producer", "consumer"]


def test_reading_a_done_repository_is_a_dependency() -> None:
    first = pdt.InProcessSyncTask("first", Memory(), func=noop)
    second = pdt.InProcessSyncTask("second", Memory(), func=noop)
    second.link("after", first.done, is_input=True)
    assert [e.upstream for e in pdt.Pipeline([first, second]).edges] == ["first"]


async def test_cycle_is_rejected_on_open() -> None:
    left, right = Memory(), Memory()
    a = pdt.InProcessSyncTask("a", Memory(), func=noop)
    a.link("inp", left, is_input=True)
    a.link("out", right, is_output=True)
    b = pdt.InProcessSyncTask("b", Memory(), func=noop)
    b.link("inp", right, is_input=True)
    b.link("out", left, is_output=True)
    pipeline = pdt.Pipeline([a, b])
    with pytest.raises(pdt.PipelineValidationError, match="cycle"):
        await pipeline.open()
    assert not pipeline.session.is_open


async def test_unproduced_empty_input_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    task = pdt.InProcessSyncTask("lonely", Memory(), func=noop)
    task.link("inp", Memory(), is_input=True)
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        with caplog.at_level(logging.WARNING):
            warnings = await pipeline.validate()
    assert warnings == [
        "input lonely.inp is produced by no task and holds nothing, so lonely has nothing to do"
    ]
    assert pipeline.sources() == [("lonely", "inp")]


async def test_unknown_parameter_is_named() -> None:
    @pdt.InProcessSyncTask("typo", Memory())
    async def typo(job: str, bookz: Memory) -> None:
        return None

    typo.link("books", Memory({"a": 1}), is_input=True)
    with pytest.raises(pdt.ConfigurationError, match=r"parameter 'bookz'.*links are books, done"):
        await pdt.Pipeline([typo]).open()


async def test_body_without_job_parameter() -> None:
    task = pdt.InProcessSyncTask("nojob", Memory(), func=lambda: None)
    with pytest.raises(pdt.ConfigurationError, match="first parameter must take the job id"):
        await pdt.Pipeline([task]).open()


async def test_body_with_kwargs_receives_every_link() -> None:
    seen: dict[str, object] = {}
    source = Memory({"k": 1})

    @pdt.InProcessSyncTask("everything", Memory())
    async def everything(job: str, **links: object) -> None:
        seen.update(links)

    everything.link("source", source, is_input=True)
    async with pdt.Pipeline([everything]) as pipeline:
        await pdt.run(pipeline)
    assert set(seen) == {"source", "done"}
    assert seen["source"] is source


@pytest.mark.parametrize("name", ["", "a.b", "has space", "1abc", None])
def test_bad_task_names(name: object) -> None:
    with pytest.raises(pdt.ConfigurationError, match="task name"):
        pdt.InProcessSyncTask(name, Memory())  # type: ignore[arg-type]


def test_bad_links() -> None:
    task = pdt.InProcessSyncTask("t", Memory(), func=noop)
    with pytest.raises(pdt.ConfigurationError, match="already has a link"):
        task.link("done", Memory())
    with pytest.raises(pdt.ConfigurationError, match="identifier"):
        task.link("not-ok", Memory())
    with pytest.raises(pdt.ConfigurationError, match="reserved"):
        task.link("job", Memory())
    with pytest.raises(pdt.ConfigurationError, match="needs a Repository"):
        task.link("x", {})  # type: ignore[arg-type]


def test_duplicate_task_names() -> None:
    with pytest.raises(pdt.ConfigurationError, match="two tasks"):
        pdt.Pipeline([pdt.InProcessSyncTask("x", func=noop), pdt.InProcessSyncTask("x", func=noop)])


def test_link_defaults() -> None:
    link = pdt.Link(Memory(), is_input=True)
    assert link.required_for_start is True
    assert link.required_for_output is False
    output = pdt.Link(Memory(), is_output=True, required_for_output=False)
    assert output.required_for_output is False


async def test_pipeline_opens_and_closes_its_session() -> None:
    session = pdt.Session()
    events: list[str] = []

    @session.resource
    async def client() -> AsyncIterator[str]:
        events.append("open")
        yield "live"
        events.append("close")

    task = pdt.InProcessSyncTask("t", Memory(), func=lambda job: events.append(client()))
    task.link("source", Memory({"k": 1}), is_input=True)
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline)
    assert events == ["open", "live", "close"]
    with pytest.raises(pdt.LifecycleError, match="not open"):
        await pipeline.update()


async def test_validate_creates_folders(tmp_path: pytest.TempPathFactory) -> None:
    folder = tmp_path / "made" / "here"  # type: ignore[operator]
    task = pdt.InProcessSyncTask("t", pdt.YamlMetadataFileRepository(folder), func=noop)
    async with pdt.Pipeline([task]):
        assert folder.is_dir()


def test_bad_retry_and_timeout_values() -> None:
    with pytest.raises(pdt.ConfigurationError, match="max_attempts"):
        pdt.RetryPolicy(max_attempts=0)
    with pytest.raises(pdt.ConfigurationError, match="timeout"):
        pdt.InProcessSyncTask("t", timeout=-1)
    with pytest.raises(pdt.ConfigurationError, match="retry"):
        pdt.InProcessSyncTask("t", retry="often")  # type: ignore[arg-type]
