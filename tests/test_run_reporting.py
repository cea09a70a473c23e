"""What ``run`` tells its user: the failed jobs by name, logs with ``-v``, unknown ids."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PIPELINE = textwrap.dedent(
    """
    import sys
    import pydatatask

    inputs = pydatatask.FileRepository("inputs", ".txt")
    parsed = pydatatask.YamlMetadataFileRepository("parsed")
    sums = pydatatask.YamlMetadataFileRepository("sums")

    @pydatatask.InProcessSyncTask("parse", pydatatask.YamlMetadataFileRepository("done_parse"))
    async def parse(job, inputs, parsed):
        async with await inputs.open(job, "r") as reader:
            text = await reader.read()
        await parsed.dump(job, [int(word) for word in text.split()])

    @pydatatask.InProcessSyncTask("total", pydatatask.YamlMetadataFileRepository("done_total"))
    async def total(job, parsed, sums):
        await sums.dump(job, sum(await parsed.info(job)))

    @pydatatask.InProcessSyncTask(
        "publish", pydatatask.YamlMetadataFileRepository("done_publish"), retry=2
    )
    async def publish(job, sums):
        raise RuntimeError(f"the publishing server refused {job}")

    parse.link("inputs", inputs, is_input=True)
    parse.link("parsed", parsed, is_output=True)
    total.link("parsed", parsed, is_input=True)
    total.link("sums", sums, is_output=True)
    publish.link("sums", sums, is_input=True)
    pipeline = pydatatask.Pipeline([parse, total, publish])

    if __name__ == "__main__":
        pydatatask.main(pipeline)
    """
)


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "pipeline.py", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    (tmp_path / "inputs").mkdir()
    for number in range(3):
        (tmp_path / "inputs" / f"good{number}.txt").write_text("1 2 3\n")
    for number in range(7):
        (tmp_path / "inputs" / f"bad{number}.txt").write_text(f"1 two{number} 3\n")
    return tmp_path


def test_run_names_the_failed_jobs_and_their_errors(root: Path) -> None:
    result = run(root, "run")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    # 10 parse jobs, 3 total jobs, 3 publish jobs tried twice each
    summary = lines.index("launched 19 jobs: 6 succeeded, 10 failed")
    named = lines[summary + 1 :]
    expected = {
        f"  failed: parse bad{n}: ValueError: invalid literal for int() with base 10: 'two{n}'"
        for n in range(7)
    } | {
        f"  failed: publish good{n}: RuntimeError: the publishing server refused good{n}"
        for n in range(3)
    }
    assert len(set(named[:5])) == 5
    assert set(named[:5]) <= expected  # the first five, in the order they ended
    assert named[5] == "  ... and 5 more (failed); 'status --failed' lists them all"
    assert len(named) == 6

    failed = run(root, "status", "--failed")
    assert failed.returncode == 0
    rows = failed.stdout.splitlines()
    assert len(rows) == 10
    assert "parse bad3: ValueError: invalid literal for int() with base 10: 'two3'" in rows
    assert "publish good1: RuntimeError: the publishing server refused good1" in rows
    as_json = json.loads(run(root, "status", "--failed", "--json").stdout)
    assert {"task": "publish", "job": "good0", "error": as_json[7]["error"]} in as_json
    assert len(as_json) == 10


def test_a_job_whose_upstream_failed_is_blocked_not_waiting(root: Path) -> None:
    run(root, "run")
    status = json.loads(run(root, "status", "--json").stdout)
    assert status["parse"]["failed"] == 7
    # total's inputs for the bad ids never appeared: nothing to wait for there. Put one
    # in by hand: its upstream job failed, so it cannot run until someone acts.
    (root / "parsed" / "bad0.yaml").write_text("[1, 3]\n")
    status = json.loads(run(root, "status", "--json").stdout)
    assert status["total"]["blocked"] == 1
    assert status["total"]["waiting"] == 0
    why = run(root, "why", "total", "bad0").stdout
    assert why.startswith("blocked: upstream task 'parse' job 'bad0' failed (ValueError:")


def test_verbose_logs_launches_finishes_retries_and_listings(root: Path) -> None:
    quiet = run(root, "run")
    assert quiet.stderr == ""
    for path in root.glob("done_*"):
        for record in path.iterdir():
            record.unlink()
    verbose = run(root, "-v", "run")
    log = verbose.stderr
    assert "launching parse job 'good0' (attempt 1)" in log
    assert "parse job 'good0' succeeded in " in log
    assert "parse job 'bad0' failed: ValueError: invalid literal" in log
    assert "publish job 'good0' failed (RuntimeError: the publishing server refused good0)" in log
    assert "; retrying at " in log
    assert "launching publish job 'good0' (attempt 2)" in log
    assert "listed 6 repositories: " in log
    assert " 10 ids" in log
    assert " DEBUG " not in log
    more = run(root, "-vv", "run")
    assert " DEBUG pydatatask.scheduler: round: 0 running; ready {" in more.stderr


def test_trace_of_an_unknown_id_exits_1(root: Path) -> None:
    run(root, "run", "--launch-once")
    unknown = run(root, "trace", "nosuchjob")
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert unknown.stderr.startswith("error: job 'nosuchjob' not found in ")
    known = run(root, "trace", "good0")
    assert known.returncode == 0
    assert "success: true" in known.stdout
