from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from pydatatask import (
    FileRepository,
    InProcessMetadataRepository,
    InProcessSyncTask,
    InvalidJobIdError,
    JobNotFoundError,
    Pipeline,
    RetryPolicy,
    YamlMetadataFileRepository,
    admin,
    run,
)
from pydatatask.errors import InputError, JobNotReadyError


class Stages:
    """count (books -> counts, fails for 'bad') then report (counts -> reports)."""

    def __init__(self, tmp_path: Path, books: dict[str, str] | None = None) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.books = FileRepository(tmp_path / "books", ".txt")
        self.counts = YamlMetadataFileRepository(tmp_path / "counts")
        self.reports = FileRepository(tmp_path / "reports", ".txt")
        self.skip = InProcessMetadataRepository()
        books_dir = tmp_path / "books"
        books_dir.mkdir()
        for job, text in (books or {"a": "one two", "b": "three", "bad": "x"}).items():
            (books_dir / f"{job}.txt").write_text(text)
        calls = self.calls

        @InProcessSyncTask("count", YamlMetadataFileRepository(tmp_path / "count_done"))
        async def count(
            job: str, books: FileRepository, counts: YamlMetadataFileRepository
        ) -> None:
            calls["count", job] += 1
            if job == "bad":
                raise ValueError("cannot count this book")
            async with await books.open(job, "r") as reader:
                text = await reader.read()
            await counts.dump(job, {"words": len(text.split())})

        count.link("books", self.books, is_input=True)
        count.link("counts", self.counts, is_output=True)
        count.link("skip", self.skip, inhibits_start=True)

        @InProcessSyncTask("report", InProcessMetadataRepository())
        async def report(
            job: str, counts: YamlMetadataFileRepository, reports: FileRepository
        ) -> None:
            calls["report", job] += 1
            info = await counts.info(job)
            async with await reports.open(job, "w") as writer:
                await writer.write(f"{job}: {info['words']} words\n")

        report.link("counts", self.counts, is_input=True)
        report.link("reports", self.reports, is_output=True)
        self.count = count
        self.report = report
        self.pipeline = Pipeline([count, report])


@pytest.fixture
def stages(tmp_path: Path) -> Stages:
    return Stages(tmp_path)


async def test_status_counts_each_state(stages: Stages, tmp_path: Path) -> None:
    (tmp_path / "books" / "c.txt").write_text("blocked one")
    await stages.skip.dump("c", True)
    async with stages.pipeline as pipeline:
        report = await run(pipeline)
        assert (report.succeeded, report.failed) == (4, 1)
        await stages.counts.dump("bad", {"words": 0})  # present, but its upstream failed
        result = await admin.status(pipeline)
    assert result["count"] == {
        "succeeded": 2,
        "stale": 0,
        "failed": 1,
        "unreadable": 0,
        "retrying": 0,
        "running": 0,
        "ready": 0,
        "waiting": 0,
        "blocked": 1,
        "links": {"done": 3, "books": 4, "counts": 3, "skip": 1},
    }
    assert result["report"]["succeeded"] == 2
    assert result["report"]["waiting"] == 0
    assert result["report"]["blocked"] == 1  # its upstream job failed: it cannot run
    assert result["report"]["links"] == {"done": 2, "counts": 3, "reports": 2}


async def test_status_shows_ready_and_retrying() -> None:
    books = InProcessMetadataRepository({"x": 1, "y": 2})

    @InProcessSyncTask("flaky", retry=RetryPolicy(max_attempts=3, backoff=600, jitter=0))
    async def flaky(job: str, books: InProcessMetadataRepository) -> None:
        raise RuntimeError("try later")

    flaky.link("books", books, is_input=True)
    async with Pipeline([flaky]) as pipeline:
        assert (await admin.status(pipeline))["flaky"]["ready"] == 2
        await pipeline.update()
        while pipeline.scheduler.running_count or pipeline.scheduler.completions:
            await pipeline.scheduler.wait(None)
            await pipeline.scheduler.round(launch=False)
        result = await admin.status(pipeline)
    assert result["flaky"]["retrying"] == 2
    assert result["flaky"]["failed"] == 0


async def test_trace_reports_records_and_links(stages: Stages) -> None:
    async with stages.pipeline as pipeline:
        await run(pipeline)
        result = await admin.trace(pipeline, ["a", "bad"])
        with pytest.raises(InvalidJobIdError):
            await admin.trace(pipeline, ["a/b"])
    assert result["a"]["count"]["done"]["success"] is True
    assert result["a"]["count"]["running"] is False
    assert result["a"]["report"]["links"] == {"done": True, "counts": True, "reports": True}
    assert result["bad"]["count"]["done"]["success"] is False
    assert "cannot count this book" in result["bad"]["count"]["done"]["exception"]
    assert result["bad"]["report"] == {
        "done": None,
        "running": False,
        "links": {"done": False, "counts": False, "reports": False},
    }


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("count.books", ["a", "b", "bad"]),
        ("count.books - count.counts", ["bad"]),
        ("count.counts & report.done", ["a"]),
        ("count.skip | report.done", ["a", "z"]),
        ("count.books ^ count.skip", ["a", "b", "bad", "z"]),
        # - binds tighter than &, & tighter than |
        ("count.books - count.counts & count.books", ["bad"]),
        ("count.skip | count.books & report.done", ["a", "z"]),
        ("(count.skip | count.books) & report.done", ["a"]),
        ("count.books - (count.counts - report.done)", ["a", "bad"]),
        ("count.books-count.counts", ["bad"]),
    ],
)
async def test_ls_evaluates_set_expressions(stages: Stages, expr: str, expected: list[str]) -> None:
    async with stages.pipeline as pipeline:
        await stages.counts.dump("a", {"words": 2})
        await stages.counts.dump("b", {"words": 1})
        await stages.report.done.dump("a", {"success": True})
        await stages.skip.dump("z", True)
        assert await admin.ls(pipeline, expr) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "empty"),
        ("count.books -", "expected TASK.LINK or '(' at the end"),
        ("(count.books", "expected ')'"),
        ("count.books count.counts", "expected an operator"),
        ("count.books + count.counts", "unexpected character at column 13"),
        ("nosuch.books", "unknown task 'nosuch'"),
        ("count.nosuch", "task 'count' has no link 'nosuch'"),
        ("count", "names no link"),
    ],
)
async def test_ls_rejects_bad_expressions(stages: Stages, expr: str, message: str) -> None:
    async with stages.pipeline as pipeline:
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            await admin.ls(pipeline, expr)


async def test_cat_and_inject_blob_and_yaml(stages: Stages) -> None:
    async with stages.pipeline as pipeline:
        await admin.inject(pipeline, "count.books", "new", b"four five six")
        assert await admin.cat(pipeline, "count.books", "new") == b"four five six"
        await admin.inject(pipeline, "count.counts", "new", b"words: 3\nnote: [x, y]\n")
        assert await stages.counts.info("new") == {"words": 3, "note": ["x", "y"]}
        assert yaml.safe_load(await admin.cat(pipeline, "count.counts", "new")) == {
            "words": 3,
            "note": ["x", "y"],
        }
        await admin.inject(pipeline, "count.skip", "new", b"true")
        assert await admin.cat(pipeline, "count.skip", "new") == "true\n"
        with pytest.raises(JobNotFoundError):
            await admin.cat(pipeline, "count.books", "missing")


async def test_inject_malformed_yaml_keeps_the_stored_value(stages: Stages) -> None:
    async with stages.pipeline as pipeline:
        await stages.counts.dump("a", {"words": 2})
        with pytest.raises(InputError, match=r"malformed YAML .* on line 2") as caught:
            await admin.inject(pipeline, "count.counts", "a", b"words: 3\n  bad: [\n")
        assert "\n" not in str(caught.value)
        assert await stages.counts.info("a") == {"words": 2}


async def test_rm_done_record_makes_the_job_rerun(stages: Stages) -> None:
    async with stages.pipeline as pipeline:
        await run(pipeline)
        assert await admin.rm(pipeline, "count", ["a"]) == [("count.done", "a")]
        await run(pipeline)
    assert stages.calls["count", "a"] == 2
    assert stages.calls["report", "a"] == 1  # its output did not go away


async def test_rm_recursive_removes_everything_derived(stages: Stages) -> None:
    async with stages.pipeline as pipeline:
        await run(pipeline)
        removed = await admin.rm(pipeline, "count", ["a"], recursive=True)
        assert set(removed) == {
            ("count.done", "a"),
            ("count.counts", "a"),
            ("report.done", "a"),
            ("report.reports", "a"),
        }
        assert removed[0] == ("report.done", "a")  # done records go first, downstream first
        assert not await stages.reports.contains("a")
        await run(pipeline)
    assert stages.calls["count", "a"] == 2
    assert stages.calls["report", "a"] == 2
    assert stages.calls["count", "b"] == 1


async def test_rm_recursive_output_link_reruns_producer_and_readers(stages: Stages) -> None:
    async with stages.pipeline as pipeline:
        await run(pipeline)
        removed = await admin.rm(pipeline, "count.counts", ["b"], recursive=True)
        assert set(removed) == {
            ("count.counts", "b"),
            ("count.done", "b"),
            ("report.done", "b"),
            ("report.reports", "b"),
        }
        assert await admin.rm(pipeline, "report.reports", ["a"]) == [("report.reports", "a")]
        assert await stages.report.done.contains("a")


async def test_rm_all_and_missing(stages: Stages) -> None:
    async with stages.pipeline as pipeline:
        await run(pipeline)
        removed = await admin.rm(pipeline, "count", ["__all__"])
        assert sorted(removed) == [("count.done", job) for job in ("a", "b", "bad")]
        assert await admin.rm(pipeline, "count", ["a"]) == []
        removed = await admin.rm(pipeline, "count", ["__all__"], recursive=True)
        assert ("report.reports", "b") in removed
        assert await stages.reports.ids() == set()
        with pytest.raises(InvalidJobIdError):
            await admin.rm(pipeline, "count", [".hidden"])
        with pytest.raises(InputError, match="unknown task"):
            await admin.rm(pipeline, "nosuch", ["a"])


async def test_why_explains_each_state(stages: Stages, tmp_path: Path) -> None:
    (tmp_path / "books" / "c.txt").write_text("held")
    async with stages.pipeline as pipeline:
        assert await admin.why(pipeline, "count", "a") == [admin.READY]
        await run(pipeline)
        await stages.skip.dump("c", True)
        done = await admin.why(pipeline, "count", "a")
        assert len(done) == 1
        assert done[0].startswith("already done (succeeded at ")
        failed = await admin.why(pipeline, "count", "bad")
        assert failed[0].startswith("failed at ")
        assert "cannot count this book" in failed[0]
        assert failed[0].endswith("'rm count bad' to run it again")
        assert await admin.why(pipeline, "count", "zzz") == ["input count.books has no 'zzz'"]
        assert "blocked by count.skip containing 'c'" in await admin.why(pipeline, "count", "c")
        await stages.counts.dump("bad", {"words": 0})
        assert await admin.why(pipeline, "report", "bad") == [
            "blocked: upstream task 'count' job 'bad' failed "
            "(ValueError: cannot count this book); 'rm count bad' to run it again"
        ]
        await stages.counts.dump("new", {"words": 0})
        assert await admin.why(pipeline, "report", "new") == [
            "waiting for upstream task 'count' job 'new' to succeed (it has not run)"
        ]


async def test_launch_runs_a_ready_job_and_refuses_otherwise(stages: Stages) -> None:
    async with stages.pipeline as pipeline:
        record: dict[str, Any] = await admin.launch(pipeline, "count", "a")
        assert record["success"] is True
        assert (await stages.count.done.info("a"))["success"] is True
        with pytest.raises(JobNotReadyError, match="already done"):
            await admin.launch(pipeline, "count", "a")
        record = await admin.launch(pipeline, "count", "a", force=True)
        assert record["success"] is True
        assert stages.calls["count", "a"] == 2
        with pytest.raises(JobNotReadyError, match="has no 'b'"):
            await admin.launch(pipeline, "report", "b")
        failed = await admin.launch(pipeline, "count", "bad")
        assert failed["success"] is False
        assert "cannot count this book" in failed["exception"]


async def test_graph_renders_mermaid_and_dot(stages: Stages) -> None:
    async with stages.pipeline as pipeline:
        mermaid = admin.graph(pipeline, "mermaid")
        dot = admin.graph(pipeline, "dot")
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart LR"
    assert '    task0["count"]' in lines
    assert '    task1["report"]' in lines
    assert '    repo0[("count.books")]' in lines
    assert '    repo1[("count.counts")]' in lines
    assert '    repo2[("count.skip")]' in lines
    assert '    repo3[("report.reports")]' in lines
    for edge in (
        "repo0 --> task0",
        "task0 --> repo1",
        "repo1 --> task1",
        "task1 --> repo3",
        "repo2 -.-> task0",
    ):
        assert f"    {edge}" in lines
    assert dot.startswith("digraph pipeline {\n")
    assert dot.rstrip().endswith("}")
    assert 'task0 [label="count", shape=box];' in dot
    assert 'repo3 [label="report.reports", shape=cylinder];' in dot
    assert "repo1 -> task1;" in dot
    assert "repo2 -> task0 [style=dashed];" in dot
    with pytest.raises(InputError):
        admin.graph(pipeline, "svg")  # type: ignore[arg-type]


async def test_running_jobs_are_shown_refused_and_cancelled_by_rm() -> None:
    books = InProcessMetadataRepository({"x": 1})
    started = asyncio.Event()

    @InProcessSyncTask("slow")
    async def slow(job: str, books: InProcessMetadataRepository) -> None:
        started.set()
        await asyncio.sleep(60)

    slow.link("books", books, is_input=True)
    async with Pipeline([slow]) as pipeline:
        await pipeline.update()
        await started.wait()
        assert (await admin.status(pipeline))["slow"]["running"] == 1
        assert (await admin.trace(pipeline, ["x"]))["x"]["slow"]["running"] is True
        assert await admin.why(pipeline, "slow", "x") == ["slow job 'x' is running now"]
        with pytest.raises(JobNotReadyError, match="running now"):
            await admin.launch(pipeline, "slow", "x", force=True)
        assert await admin.rm(pipeline, "slow", ["x"], recursive=True) == []
        assert not pipeline.scheduler.is_running("slow", "x")
        assert not await slow.done.contains("x")
