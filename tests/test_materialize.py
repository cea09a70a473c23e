"""One target and its Result: ``materialize`` runs a job and only the jobs it needs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

import pydatatask
from pydatatask.errors import JobFailedError, JobNotReadyError

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import pydatatask

    base = sys.argv.pop(1)
    books = pydatatask.FileRepository(os.path.join(base, "books"), ".txt")
    words = pydatatask.FileRepository(os.path.join(base, "words"), ".txt")
    reports = pydatatask.FileRepository(os.path.join(base, "reports"), ".txt")
    log = os.path.join(base, "ran.log")

    def note(task, job):
        with open(log, "a") as handle:
            handle.write(f"{task} {job}\\n")

    @pydatatask.InProcessSyncTask(
        "count", pydatatask.YamlMetadataFileRepository(os.path.join(base, "done_count"))
    )
    async def count(job, book, out):
        note("count", job)
        async with await book.open(job, "r") as reader:
            text = await reader.read()
        if "poison" in text:
            raise ValueError("a poisoned book")
        async with await out.open(job, "w") as writer:
            await writer.write(str(len(text.split())))

    @pydatatask.InProcessSyncTask(
        "report", pydatatask.YamlMetadataFileRepository(os.path.join(base, "done_report"))
    )
    async def report(job, counted, out):
        note("report", job)
        async with await counted.open(job, "r") as reader:
            number = await reader.read()
        async with await out.open(job, "w") as writer:
            await writer.write(f"{job}: {number} words")

    count.link("book", books, is_input=True)
    count.link("out", words, is_output=True)
    report.link("counted", words, is_input=True)
    report.link("out", reports, is_output=True)
    pipeline = pydatatask.Pipeline([count, report])

    if __name__ == "__main__":
        pydatatask.main(pipeline)
    """
)


def _load_pipeline(base: Path) -> pydatatask.Pipeline:
    script = base / "pipeline.py"
    namespace: dict[str, object] = {"__name__": "pipeline_under_test"}
    saved = sys.argv
    sys.argv = ["pipeline.py", str(base)]  # the script takes its folder from argv[1]
    try:
        exec(compile(script.read_text(), str(script), "exec"), namespace)
    finally:
        sys.argv = saved
    pipeline = namespace["pipeline"]
    assert isinstance(pipeline, pydatatask.Pipeline)
    return pipeline


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(SCRIPT)
    (tmp_path / "books").mkdir()
    for name, text in {"zen": "simple is better", "poem": "roses are red", "bad": "poison"}.items():
        (tmp_path / "books" / f"{name}.txt").write_text(text)
    return tmp_path


def _ran(base: Path) -> Counter[tuple[str, str]]:
    log = base / "ran.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(tuple(line.split()) for line in lines)  # type: ignore[misc]


async def test_only_the_jobs_the_target_needs_run_and_only_once(base: Path) -> None:
    pipeline = _load_pipeline(base)
    async with pipeline:
        result = await pipeline.materialize("report", "zen")
    assert (result.task, result.job, result.ran) == ("report", "zen", True)
    assert result.record["success"] is True
    assert set(result.deps) == {"count"}
    assert result.deps["count"].ran
    assert result.target == {"out": str(base / "reports" / "zen.txt")}
    assert _ran(base) == Counter({("count", "zen"): 1, ("report", "zen"): 1})  # no other id

    async with pipeline:  # a second call reads what is stored
        again = await pipeline.materialize("report", "zen")
        assert await again.load() == "zen: 3 words"
        assert await again.deps["count"].load() == "3"
    assert not again.ran
    assert not again.deps["count"].ran
    assert again.record == result.record
    assert _ran(base) == Counter({("count", "zen"): 1, ("report", "zen"): 1})


async def test_a_failure_upstream_raises_with_the_records(base: Path) -> None:
    pipeline = _load_pipeline(base)
    async with pipeline:
        with pytest.raises(JobFailedError, match="upstream count job 'bad' failed") as failed:
            await pipeline.materialize("report", "bad")
        result = failed.value.result
        assert result.record is None
        assert result.deps["count"].record["success"] is False
        assert "poisoned" in result.deps["count"].record["exception"]
        with pytest.raises(JobFailedError):  # it failed before: not run again
            await pipeline.materialize("report", "bad")
        assert _ran(base)[("count", "bad")] == 1
        with pytest.raises(JobFailedError):
            await pipeline.materialize("report", "bad", rerun_failed=True)
        assert _ran(base)[("count", "bad")] == 2
        assert ("report", "bad") not in _ran(base)


async def test_a_missing_input_and_an_unknown_task_are_refused(base: Path) -> None:
    pipeline = _load_pipeline(base)
    async with pipeline:
        with pytest.raises(JobNotReadyError, match=r"input count\.book has no .nothing."):
            await pipeline.materialize("report", "nothing")
        with pytest.raises(pydatatask.InputError, match="unknown task 'nope'"):
            await pipeline.materialize("nope", "zen")
    assert not _ran(base)


def test_the_synchronous_call_opens_and_closes_the_pipeline(base: Path) -> None:
    result = pydatatask.materialize(_load_pipeline(base), "report", "poem")
    assert result.ran
    assert (base / "reports" / "poem.txt").read_text() == "poem: 3 words"


def test_the_command_line_prints_the_result_as_json(base: Path) -> None:
    def materialize(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(base / "pipeline.py"), str(base), "materialize", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = materialize("report", "zen", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["task"] == "report"
    assert shown["ran"] is True
    assert shown["target"] == {"out": str(base / "reports" / "zen.txt")}
    assert shown["deps"]["count"]["record"]["success"] is True
    assert json.loads(materialize("report", "zen", "--json").stdout)["ran"] is False
    failed = materialize("report", "bad")
    assert failed.returncode == 1
    assert "error: report job 'bad' failed: upstream count job 'bad' failed" in failed.stderr
    failed = materialize("report", "bad", "--json", "--rerun-failed")
    assert failed.returncode == 1
    assert "error: report job 'bad' failed" in failed.stderr
    shown = json.loads(failed.stdout)  # the Result so far
    assert (shown["job"], shown["ran"], shown["record"]) == ("bad", False, None)
    assert shown["deps"]["count"]["ran"] is True
    assert "poisoned" in shown["deps"]["count"]["record"]["exception"]
    assert _ran(base)[("count", "bad")] == 2
    assert materialize("report").returncode == 2
    assert materialize("nope", "zen").returncode == 2


async def test_exactly_the_jobs_upstream_of_the_target_run() -> None:
    """A diamond upstream, a sibling and a downstream task: only the diamond runs, once."""
    ran: list[tuple[str, str]] = []
    source = pydatatask.InProcessMetadataRepository({"x": 2, "y": 3})
    repos = {name: pydatatask.InProcessMetadataRepository() for name in "abcdef"}

    def stage(name: str, **inputs: pydatatask.Repository) -> pydatatask.ValueTask:
        async def body(job: str, **values: int) -> int:
            ran.append((name, job))
            return sum(values.values())

        return pydatatask.task(name, inputs=inputs, outputs={"out": repos[name]})(body)

    tasks = [
        stage("a", value=source),
        stage("b", value=repos["a"]),
        stage("c", value=repos["a"]),
        stage("d", left=repos["b"], right=repos["c"]),
        stage("e", value=repos["a"]),  # beside the target: not needed
        stage("f", value=repos["d"]),  # after the target: not needed
    ]
    pipeline = pydatatask.Pipeline(tasks)
    async with pipeline:
        result = await pipeline.materialize("d", "x")
        assert await result.load() == 4
        assert sorted(ran) == [("a", "x"), ("b", "x"), ("c", "x"), ("d", "x")]
        assert set(result.deps) == {"b", "c"}
        assert result.deps["b"].deps["a"].record == result.deps["c"].deps["a"].record
        assert await repos["e"].ids() == set()
        assert await repos["a"].ids() == {"x"}
        again = await pipeline.materialize("d", "x")
        assert not again.ran
        assert len(ran) == 4


async def test_a_failed_job_whose_output_is_a_metadata_repository(tmp_path: Path) -> None:
    """Its Result names no target value, and the error names the job."""
    numbers = pydatatask.InProcessMetadataRepository({"zero": 0, "two": 2})
    inverses = pydatatask.YamlMetadataFileRepository(tmp_path / "inverses")

    @pydatatask.task(inputs={"number": numbers}, outputs={"inverse": inverses})
    def invert(number: int) -> float:
        return 1 / number

    pipeline = pydatatask.Pipeline([invert])
    async with pipeline:
        with pytest.raises(JobFailedError, match="invert job 'zero' failed: ZeroDivisionError"):
            await pipeline.materialize("invert", "zero")
        result = await pipeline.materialize("invert", "two")
        assert result.target == {"inverse": 0.5}
        assert await result.load() == 0.5
