"""Done records that cannot be trusted, seen from the command line of a pipeline script.

One unreadable record (a truncated file, an empty one, a bare string) must neither stop
a run nor count as a success: that job is reported and left as it is, every other job
goes on, and a person can look at it (``status``, ``why``, ``trace``) and remove it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PIPELINE = textwrap.dedent(
    """
    import pydatatask

    books = pydatatask.FileRepository("books", ".txt")
    counts = pydatatask.YamlMetadataFileRepository("counts")
    reports = pydatatask.FileRepository("reports", ".txt")

    @pydatatask.InProcessSyncTask("count", pydatatask.YamlMetadataFileRepository("done_count"))
    async def count(job, books, counts):
        async with await books.open(job, "r") as reader:
            text = await reader.read()
        if not text.strip():
            raise ValueError(f"book {job} is empty")
        await counts.dump(job, {"words": len(text.split())})

    @pydatatask.InProcessSyncTask("report", pydatatask.YamlMetadataFileRepository("done_report"))
    async def report(job, counts, reports):
        words = (await counts.info(job))["words"]
        async with await reports.open(job, "w") as writer:
            await writer.write(f"{job}: {words} words\\n")

    count.link("books", books, is_input=True)
    count.link("counts", counts, is_output=True)
    report.link("counts", counts, is_input=True)
    report.link("reports", reports, is_output=True)
    pipeline = pydatatask.Pipeline([count, report])

    if __name__ == "__main__":
        pydatatask.main(pipeline)
    """
)


class Project:
    """A pipeline script in a folder, run as its user would run it."""

    def __init__(self, root: Path, books: int) -> None:
        self.root = root
        (root / "pipeline.py").write_text(PIPELINE)
        (root / "books").mkdir()
        for number in range(books):
            (root / "books" / f"k{number}.txt").write_text(f"book {number} has words\n")

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "pipeline.py", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path, books=8)


def test_a_truncated_done_record_is_reported_and_the_rest_runs(project: Project) -> None:
    assert project("run", "--launch-once").returncode == 0  # count only
    record = project.root / "done_count" / "k4.yaml"
    record.write_text(record.read_text()[:9] + '"unterminated\n  : [')
    truncated = record.read_bytes()

    result = project("run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "launched 7 jobs: 7 succeeded, 0 failed" in result.stdout
    assert "unreadable done record, left alone: count k4" in result.stdout
    assert "count job 'k4'" in result.stderr  # the warning as it happens
    reports = sorted(path.name for path in (project.root / "reports").iterdir())
    assert reports == [f"k{n}.txt" for n in range(8) if n != 4]
    assert record.read_bytes() == truncated  # never rewritten

    status = project("status")
    assert status.returncode == 0
    assert "unreadable" in status.stdout
    failed = project("status", "--failed")
    assert failed.stdout.startswith("count k4: unreadable done record: ")
    assert "is not valid YAML" in failed.stdout
    why = project("why", "count", "k4")
    assert why.stdout.startswith("its done record is unreadable (")
    assert "'rm count k4' to run it again" in why.stdout
    assert "blocked: upstream task 'count' job 'k4'" in project("why", "report", "k4").stdout
    trace = project("trace", "k4")
    assert trace.returncode == 0
    assert "unreadable: " in trace.stdout

    assert project("rm", "count", "k4").returncode == 0
    again = project("run")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "launched 2 jobs: 2 succeeded, 0 failed" in again.stdout


@pytest.mark.parametrize("content", ["", "just a string\n", "- a\n- list\n", "null\n"])
def test_a_done_record_that_is_not_a_mapping_never_counts_as_success(
    project: Project, content: str
) -> None:
    # The job's output is there, but its done record is not a record.
    done = project.root / "done_count"
    done.mkdir()
    (done / "k1.yaml").write_text(content)
    (project.root / "counts").mkdir()
    (project.root / "counts" / "k1.yaml").write_text("words: 4\n")
    result = project("run")
    assert result.returncode == 1
    assert "unreadable done record, left alone: count k1: " in result.stdout
    assert "not a mapping" in result.stdout
    assert not (project.root / "reports" / "k1.txt").exists()  # downstream never ran
    assert (done / "k1.yaml").read_text() == content
    status = project("status", "--json")
    assert '"unreadable": 1' in status.stdout
    assert project("why", "report", "k1").stdout.startswith("blocked: upstream task 'count'")


def test_tracebacks_read_as_block_text(project: Project) -> None:
    (project.root / "books" / "empty.txt").write_text("")
    assert project("run").returncode == 1
    stored = (project.root / "done_count" / "empty.yaml").read_text()
    assert "traceback: |" in stored
    assert '\n      raise ValueError(f"book {job} is empty")\n' in stored
    trace = project("trace", "empty")
    assert "traceback: |" in trace.stdout
    assert "ValueError: book empty is empty\n" in trace.stdout
    assert "\\n" not in trace.stdout  # nothing folded into escaped one-liners
    cat = project("cat", "count.done", "empty")
    assert "Traceback (most recent call last):\n" in cat.stdout
