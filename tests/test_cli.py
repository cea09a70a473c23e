from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pydatatask.cli import run_cli
from tests.test_admin import Stages


@pytest.fixture
def stages(tmp_path: Path) -> Stages:
    return Stages(tmp_path)


def feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_run_exits_1_when_a_job_fails_and_status_json(
    stages: Stages, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(stages.pipeline, ["run"]) == 1
    out = capsys.readouterr().out
    assert "launched 5 jobs: 4 succeeded, 1 failed" in out
    assert "count: 2 succeeded, 1 failed" in out
    assert run_cli(stages.pipeline, ["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["count"]["succeeded"] == 2
    assert status["count"]["failed"] == 1
    assert status["count"]["links"]["books"] == 3
    assert status["report"]["succeeded"] == 2
    assert status["report"]["links"] == {"done": 2, "counts": 2, "reports": 2}


def test_run_twice_does_only_missing_work(
    stages: Stages, capsys: pytest.CaptureFixture[str]
) -> None:
    # --launch-once launches what is ready at first (count) and waits for it
    assert run_cli(stages.pipeline, ["run", "--launch-once"]) == 1
    assert "launched 3 jobs: 2 succeeded, 1 failed" in capsys.readouterr().out
    assert stages.calls["report", "a"] == 0
    (stages.books.basedir / "c.txt").write_text("more words here")
    # --once: one round, which now finds count c and report a, b ready
    assert run_cli(stages.pipeline, ["run", "--once"]) == 0
    assert "launched 3 jobs: 3 succeeded, 0 failed" in capsys.readouterr().out
    assert stages.calls["count", "c"] == 1
    assert stages.calls["report", "c"] == 0
    assert stages.calls["count", "a"] == 1
    assert stages.calls["count", "bad"] == 1
    assert run_cli(stages.pipeline, ["run"]) == 0
    assert stages.calls["report", "c"] == 1
    assert stages.calls["report", "a"] == 1


def test_run_options_are_checked(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(stages.pipeline, ["run", "--once", "--forever"]) == 2
    assert run_cli(stages.pipeline, ["run", "--timeout", "-1"]) == 2
    assert run_cli(stages.pipeline, ["nosuch"]) == 2
    assert run_cli(stages.pipeline, []) == 2
    assert run_cli(stages.pipeline, ["--help"]) == 0
    assert run_cli(stages.pipeline, ["run", "--jobs", "0"]) == 2
    assert run_cli(stages.pipeline, ["run", "--poll", "soon"]) == 2
    assert stages.calls == {}


def test_run_takes_concurrency_and_poll_interval(
    stages: Stages, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(stages.pipeline, ["run", "--jobs", "1", "--poll", "0.5"]) == 1  # 'bad' fails
    assert stages.pipeline.max_concurrent_jobs == 1
    assert stages.pipeline.poll_interval == 0.5
    assert "launched 5 jobs: 4 succeeded, 1 failed" in capsys.readouterr().out


def test_update_runs_one_round(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(stages.pipeline, ["update"]) == 1  # 'bad' failed
    out = capsys.readouterr().out
    assert "launched 3 jobs: 2 succeeded, 1 failed; work remains" in out
    assert stages.calls["report", "a"] == 0


def test_status_table(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(stages.pipeline, ["status"]) == 0
    out = capsys.readouterr().out
    assert "count" in out
    assert "report" in out
    books = next(line for line in out.splitlines() if "count.books" in line)
    assert books.split() == ["│", "count.books", "│", "3", "│"]


def test_trace(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(stages.pipeline, ["run"])
    capsys.readouterr()
    assert run_cli(stages.pipeline, ["trace", "a", "bad"]) == 0
    result = yaml.safe_load(capsys.readouterr().out)
    assert result["a"]["count"]["done"]["success"] is True
    assert result["bad"]["count"]["done"]["success"] is False
    assert result["bad"]["count"]["links"]["counts"] is False
    assert run_cli(stages.pipeline, ["trace", "a/b"]) == 2
    assert "invalid job id" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("count.books - count.counts", ["bad"]),
        ("count.books & count.counts", ["a", "b"]),
        ("count.counts | count.skip", ["a", "b", "z"]),
        ("count.books ^ count.counts", ["bad"]),
        ("count.skip | count.books - count.counts", ["bad", "z"]),
        ("(count.skip | count.books) - count.counts", ["bad", "z"]),
    ],
)
def test_ls(
    stages: Stages, capsys: pytest.CaptureFixture[str], expr: str, expected: list[str]
) -> None:
    run_cli(stages.pipeline, ["run"])
    stages.skip.data["z"] = True
    capsys.readouterr()
    assert run_cli(stages.pipeline, ["ls", expr]) == 0
    assert capsys.readouterr().out.splitlines() == expected


def test_ls_bad_expression(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(stages.pipeline, ["ls", "count.books &"]) == 2
    assert "invalid expression" in one_error_line(capsys.readouterr().err)
    assert run_cli(stages.pipeline, ["ls", "count.nope"]) == 2
    assert "has no link 'nope'" in one_error_line(capsys.readouterr().err)


def test_cat_blob_and_yaml(stages: Stages, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run_cli(stages.pipeline, ["run"])
    capsysbinary.readouterr()
    assert run_cli(stages.pipeline, ["cat", "count.books", "a"]) == 0
    assert capsysbinary.readouterr().out == b"one two"
    assert run_cli(stages.pipeline, ["cat", "count.counts", "a"]) == 0
    assert yaml.safe_load(capsysbinary.readouterr().out) == {"words": 2}
    assert run_cli(stages.pipeline, ["cat", "count.done", "bad"]) == 0
    assert yaml.safe_load(capsysbinary.readouterr().out)["success"] is False
    assert run_cli(stages.pipeline, ["cat", "count.books", "missing"]) == 1
    err = capsysbinary.readouterr().err.decode()
    assert err.startswith("error: job 'missing' not found")
    assert len(err.splitlines()) == 1


def test_inject_blob_and_yaml(
    stages: Stages, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_stdin(monkeypatch, b"new book text\xff")
    assert run_cli(stages.pipeline, ["inject", "count.books", "new"]) == 0
    assert (stages.books.basedir / "new.txt").read_bytes() == b"new book text\xff"
    feed_stdin(monkeypatch, b"words: 7\n")
    assert run_cli(stages.pipeline, ["inject", "count.counts", "new"]) == 0
    assert yaml.safe_load((stages.counts.basedir / "new.yaml").read_text()) == {"words": 7}
    feed_stdin(monkeypatch, b"x")
    assert run_cli(stages.pipeline, ["inject", "count.books", ".hidden"]) == 2
    assert "invalid job id" in one_error_line(capsys.readouterr().err)


def test_inject_malformed_yaml_is_a_usage_error(
    stages: Stages, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (stages.counts.basedir).mkdir(exist_ok=True)
    stored = stages.counts.basedir / "a.yaml"
    stored.write_text("words: 2\n")
    feed_stdin(monkeypatch, b"words: 3\nbad: [unclosed\n")
    assert run_cli(stages.pipeline, ["inject", "count.counts", "a"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "malformed YAML" in line
    assert "line 3" in line
    assert stored.read_text() == "words: 2\n"


def test_rm_done_record_reruns_the_job(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(stages.pipeline, ["run"])
    capsys.readouterr()
    assert run_cli(stages.pipeline, ["rm", "count", "a"]) == 0
    assert capsys.readouterr().out == "removed count.done a\n"
    run_cli(stages.pipeline, ["run"])
    assert stages.calls["count", "a"] == 2
    assert stages.calls["count", "b"] == 1


def test_rm_recursive_reruns_both_stages(
    stages: Stages, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli(stages.pipeline, ["run"])
    capsys.readouterr()
    assert run_cli(stages.pipeline, ["rm", "-r", "count", "a"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert set(out) == {
        "removed count.done a",
        "removed count.counts a",
        "removed report.done a",
        "removed report.reports a",
    }
    assert not (stages.reports.basedir / "a.txt").exists()
    run_cli(stages.pipeline, ["run"])
    assert stages.calls["count", "a"] == 2
    assert stages.calls["report", "a"] == 2


def test_rm_all(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(stages.pipeline, ["run"])
    capsys.readouterr()
    assert run_cli(stages.pipeline, ["rm", "count.counts", "__all__"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == [
        "removed count.counts a",
        "removed count.counts b",
    ]
    assert run_cli(stages.pipeline, ["rm", "count.counts", "a"]) == 0
    assert capsys.readouterr().out == "nothing to remove\n"
    assert run_cli(stages.pipeline, ["rm", "nosuch", "a"]) == 2
    assert "unknown task 'nosuch'" in one_error_line(capsys.readouterr().err)


def test_launch_with_and_without_force(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(stages.pipeline, ["launch", "count", "a", "--sync"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["success"] is True
    assert run_cli(stages.pipeline, ["launch", "count", "a"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "already done" in line
    assert "--force" in line
    assert run_cli(stages.pipeline, ["launch", "count", "a", "--force"]) == 0
    assert stages.calls["count", "a"] == 2
    capsys.readouterr()
    assert run_cli(stages.pipeline, ["launch", "count", "bad"]) == 1
    assert "cannot count this book" in yaml.safe_load(capsys.readouterr().out)["exception"]


def test_why(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(stages.pipeline, ["why", "count", "a"]) == 0
    assert capsys.readouterr().out == "ready to run\n"
    run_cli(stages.pipeline, ["run"])
    capsys.readouterr()
    run_cli(stages.pipeline, ["why", "count", "bad"])
    assert "'rm count bad' to run it again" in capsys.readouterr().out
    run_cli(stages.pipeline, ["why", "report", "zzz"])
    out = capsys.readouterr().out
    assert "input report.counts has no 'zzz'" in out
    assert "waiting for upstream task 'count' job 'zzz' to succeed (it has not run)" in out
    assert run_cli(stages.pipeline, ["why", "nosuch", "a"]) == 2
    assert "unknown task 'nosuch'" in one_error_line(capsys.readouterr().err)


def test_graph(stages: Stages, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(stages.pipeline, ["graph"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR\n")
    assert "repo1 --> task1" in mermaid
    assert run_cli(stages.pipeline, ["graph", "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph pipeline {")
    for name in ("count", "report", "count.books", "count.counts", "report.reports"):
        assert f'label="{name}"' in dot
    assert run_cli(stages.pipeline, ["graph", "--format", "svg"]) == 2


SCRIPT = """
import os
import pydatatask
from pydatatask.cli import main

books = pydatatask.InProcessMetadataRepository({"a": 1, "b": 2})

@pydatatask.InProcessSyncTask("check")
async def check(job, books):
    if job == os.environ.get("FAIL_JOB"):
        raise RuntimeError("failed on purpose")

check.link("books", books, is_input=True)

if __name__ == "__main__":
    main(pydatatask.Pipeline([check]))
"""


@pytest.mark.parametrize(("fail_job", "code"), [("", 0), ("b", 1)])
def test_main_exits_with_the_status(tmp_path: Path, fail_job: str, code: int) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent(SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script), "run"],
        env={"FAIL_JOB": fail_job, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == code, result.stderr
    assert "launched 2 jobs" in result.stdout
    assert "Traceback" not in result.stderr
