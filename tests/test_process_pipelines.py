"""Process-task pipelines written as the docs show them, run through their command line.

They use the short form (no quota, no job resources, no ``pids``), template paths for
output files, a session accessor as the manager, a controller killed mid-run, and two
controllers started on one pipeline at once.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

PIPELINE = textwrap.dedent(
    """
    import os
    import pydatatask

    base = os.path.dirname(os.path.abspath(__file__))
    texts = pydatatask.FileRepository(os.path.join(base, "texts"), ".txt")
    upper = pydatatask.FileRepository(os.path.join(base, "upper"), ".txt")
    done = pydatatask.YamlMetadataFileRepository(os.path.join(base, "done"))
    session = pydatatask.Session()

    @session.resource
    async def processes():
        yield pydatatask.LocalLinuxManager("shout", local_path=os.path.join(base, "jobs"))

    shout = pydatatask.ProcessTask(
        "shout",
        processes if os.environ.get("VIA_ACCESSOR") else processes.__wrapped__,
        template=(
            "echo {{ job | shquote }} >> {{ env.LOG | shquote }}\\n"
            "while [ ! -e {{ env.GO | shquote }} ]; do sleep 0.05; done\\n"
            "tr a-z A-Z < {{ src | shquote }} > {{ dst | shquote }}\\n"
        ),
        environ={},
        done=done,
    )
    shout.environ.update(LOG=os.path.join(base, "executions.log"), GO=os.path.join(base, "go"))
    shout.link("src", texts, is_input=True)
    shout.link("dst", upper, is_output=True)
    pipeline = pydatatask.Pipeline([shout], session, poll_interval=0.5)

    if __name__ == "__main__":
        pydatatask.main(pipeline)
    """
)


class Project:
    def __init__(self, root: Path, count: int) -> None:
        self.root = root
        source = PIPELINE.replace(
            "processes.__wrapped__",
            'pydatatask.LocalLinuxManager("shout", local_path=os.path.join(base, "jobs"))',
        )
        (root / "pipeline.py").write_text(source)
        (root / "texts").mkdir()
        self.jobs = [f"text {number}" for number in range(count)]  # ids with a space
        for job in self.jobs:
            (root / "texts" / f"{job}.txt").write_text(f"hello from {job}\n")

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "pipeline.py", *args]

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **env},
        )

    def go(self) -> None:
        (self.root / "go").touch()

    def executions(self) -> collections.Counter[str]:
        log = self.root / "executions.log"
        return collections.Counter(log.read_text().splitlines() if log.exists() else [])

    def wait_for(self, what: str, condition: object, seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
            time.sleep(0.05)

    def records(self) -> dict[str, dict[str, object]]:
        return {
            path.stem: yaml.safe_load(path.read_text())
            for path in (self.root / "done").glob("*.yaml")
        }

    def pids_entries(self) -> list[str]:
        return sorted(path.stem for path in (self.root / "done" / ".pids").glob("*.yaml"))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path, count=6)


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


@pytest.mark.parametrize("accessor", ["", "1"])
def test_short_form_writes_output_files_through_template_paths(
    project: Project, accessor: str
) -> None:
    project.go()
    result = project("run", VIA_ACCESSOR=accessor)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "launched 6 jobs: 6 succeeded, 0 failed" in result.stdout
    for job in project.jobs:
        assert (project.root / "upper" / f"{job}.txt").read_text() == f"HELLO FROM {job.upper()}\n"
    assert all(record["exit_code"] == 0 for record in project.records().values())
    assert project.pids_entries() == []  # cleaned up after each done record
    again = project("run", VIA_ACCESSOR=accessor)
    assert "launched 0 jobs" in again.stdout


def test_killed_controller_is_followed_by_one_that_reattaches(project: Project) -> None:
    first = project.start("run")
    project.wait_for("every job to start", lambda: len(project.executions()) == 6)
    project.wait_for("every pid to be recorded", lambda: len(project.pids_entries()) == 6)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)

    second = project.start("run")
    project.go()
    code, out, err = finish(second)
    assert code == 0, out + err
    assert "launched 6 jobs: 6 succeeded, 0 failed" in out  # re-attached, not relaunched
    assert project.executions() == dict.fromkeys(project.jobs, 1)
    assert all(record["success"] for record in project.records().values())
    assert project.pids_entries() == []


def test_a_second_controller_leaves_the_first_ones_jobs_alone(project: Project) -> None:
    first = project.start("run")
    project.wait_for("every job to start", lambda: len(project.executions()) == 6)
    project.wait_for("every pid to be recorded", lambda: len(project.pids_entries()) == 6)
    second = project("run")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "another controller is running this pipeline" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert "launched 0 jobs" in second.stdout
    status = project("status", "--json")
    assert '"failed": 0' in status.stdout
    project.go()
    code, out, err = finish(first)
    assert code == 0, out + err
    assert "launched 6 jobs: 6 succeeded, 0 failed" in out
    assert project.executions() == dict.fromkeys(project.jobs, 1)
    assert all(record["success"] for record in project.records().values())
    assert project.pids_entries() == []


def test_two_controllers_started_at_once_run_each_job_once(tmp_path: Path) -> None:
    project = Project(tmp_path, count=30)
    project.go()
    runs = [project.start("run", "--jobs", "3") for _ in range(2)]
    outcomes = [finish(process) for process in runs]
    for code, out, err in outcomes:
        assert code == 0, out + err
    assert project.executions() == dict.fromkeys(project.jobs, 1)
    records = project.records()
    assert sorted(records) == sorted(project.jobs)
    assert all(record["success"] and record["exit_code"] == 0 for record in records.values())
    assert project.pids_entries() == []
    launched = [int(out.split("launched ")[1].split(" jobs")[0]) for _, out, _ in outcomes]
    assert sum(launched) == 30
    for job in project.jobs:
        assert (project.root / "upper" / f"{job}.txt").read_text() == f"HELLO FROM {job.upper()}\n"
