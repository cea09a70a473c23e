"""Every example pipeline runs as its README says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )


def test_quickstart_tour_then_commands(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    shutil.copy(EXAMPLES / "quickstart.py", script)

    tour = run_example(script)
    assert tour.returncode == 0, tour.stderr
    assert "6 succeeded, 1 failed" in tour.stdout
    work = tmp_path / "work"
    assert sorted(path.name for path in (work / "reports").iterdir()) == [
        "lorem.txt",
        "poem.txt",
        "zen.txt",
    ]
    assert "10 words on 2 lines" in (work / "reports" / "zen.txt").read_text()

    rerun = run_example(script, "run")
    assert rerun.returncode == 0, rerun.stderr
    assert "launched 0 jobs" in rerun.stdout

    why = run_example(script, "why", "report", "empty")
    assert "upstream task 'count' job 'empty'" in why.stdout
    assert "failed" in why.stdout

    status = run_example(script, "status", "--json")
    assert status.returncode == 0
    assert '"failed": 1' in status.stdout

    (work / "documents" / "empty.txt").write_text("now it has words\n")
    assert run_example(script, "rm", "-r", "count", "empty").returncode == 0
    fixed = run_example(script, "run")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (work / "reports" / "empty.txt").read_text().startswith("empty: 4 words")


def test_uppercase_process_pipeline(tmp_path: Path) -> None:
    script = tmp_path / "uppercase.py"
    shutil.copy(EXAMPLES / "uppercase.py", script)
    work = tmp_path / "work" / "uppercase"

    tour = run_example(script)
    assert tour.returncode == 0, tour.stdout + tour.stderr
    assert "6 succeeded, 0 failed" in tour.stdout
    sources = sorted(path.name for path in (work / "inputs").iterdir())
    assert sources == ["greeting.txt", "poem.txt", "shopping list.txt"]
    assert sorted(path.name for path in (work / "outputs").iterdir()) == sources
    for name in sources:
        text = (work / "inputs" / name).read_text()
        assert (work / "outputs" / name).read_text() == text.upper()
    counted = yaml.safe_load((work / "line_counts" / "shopping list.yaml").read_text())
    assert counted == {"lines": 3, "characters": len("apples\nbread\ncheese\n")}

    rerun = run_example(script, "run")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "launched 0 jobs" in rerun.stdout

    status = run_example(script, "status", "--json")
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert counts["upper"]["succeeded"] == 3
    assert counts["count"]["succeeded"] == 3
    assert counts["upper"]["failed"] == counts["count"]["failed"] == 0

    # Paths full of shell syntax reach the shell as single quoted words: were any of it
    # interpreted, the output would land elsewhere or the script would not parse.
    tricky = "it's $(echo elsewhere) `echo elsewhere` ; a  b"
    (work / "inputs" / f"{tricky}.txt").write_text("quoted, not run\n")
    added = run_example(script, "run")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "launched 2 jobs: 2 succeeded, 0 failed" in added.stdout
    assert (work / "outputs" / f"{tricky}.txt").read_text() == "QUOTED, NOT RUN\n"
    written = {path.name for path in (work / "outputs").iterdir()}
    assert written == {*sources, f"{tricky}.txt"}


def test_shared_example_split_between_three_controllers(tmp_path: Path) -> None:
    """Three copies of the shared example started at once write each report once."""
    script = tmp_path / "shared.py"
    shutil.copy(EXAMPLES / "shared.py", script)
    run_example(script, "ls", "report.text")  # seeds the inputs once, before the race
    controllers = [
        subprocess.Popen(
            [sys.executable, str(script), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    launched = 0
    for controller in controllers:
        out, err = controller.communicate(timeout=120)
        assert controller.returncode == 0, err
        launched += int((out + err).rsplit("launched ", 1)[1].split()[0])
    assert launched == 40
    reports = sorted((tmp_path / "work" / "shared" / "reports").glob("*.txt"))
    assert len(reports) == 40
    assert (
        "text07: 8 words" in (tmp_path / "work" / "shared" / "reports" / "text07.txt").read_text()
    )
    status = run_example(script, "status", "--json")
    assert json.loads(status.stdout)["report"]["succeeded"] == 40


def test_run_json_is_what_another_orchestrator_reads(tmp_path: Path) -> None:
    """A caller (Prefect's ShellOperation, Airflow's BashOperator, cron) parses stdout."""
    script = tmp_path / "quickstart.py"
    shutil.copy(EXAMPLES / "quickstart.py", script)
    run_example(script, "ls", "count.document")  # seeds the documents
    done = run_example(script, "run", "--json")
    assert done.returncode == 1  # the empty document fails
    outcome = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert outcome["launched"] == 7
    assert (outcome["succeeded"], outcome["failed"]) == (6, 1)
    assert outcome["failed_jobs"] == [["count", "empty"]]
    assert "has no words" in outcome["errors"]["count empty"]
    assert outcome["timed_out"] is False
    again = run_example(script, "run", "--json")
    assert again.returncode == 0, again.stderr  # this run launched nothing, so failed nothing
    assert json.loads(again.stdout) == {
        "launched": 0,
        "succeeded": 0,
        "failed": 0,
        "handed_over": 0,
        "timed_out": False,
        "failed_jobs": [],
        "unreadable_jobs": [],
        "errors": {},
    }


@pytest.mark.backend  # pipeline files need the yaml-pipelines extra
def test_the_yaml_quick_start_matches_the_python_one(tmp_path: Path) -> None:
    """The same documents through quickstart.py and through the pydatatask command."""
    for name in ("quickstart.py", "quickstart.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    tour = run_example(tmp_path / "quickstart.py")  # seeds work/documents, then runs
    assert tour.returncode == 0, tour.stderr
    shutil.copytree(tmp_path / "work" / "documents", tmp_path / "yaml-work" / "documents")
    command = [
        str(Path(sys.executable).with_name("pydatatask")),
        "-f",
        str(tmp_path / "quickstart.yaml"),
        "--set",
        "WORK=yaml-work",
    ]
    assert subprocess.run([*command, "validate"], capture_output=True, timeout=120).returncode == 0
    done = subprocess.run(
        [*command, "run", "--json"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr  # the empty document fails, as in Python
    assert json.loads(done.stdout)["failed_jobs"] == [["count", "empty"]]
    for folder in ("reports", "word_counts"):
        python_side = {p.name: p.read_bytes() for p in (tmp_path / "work" / folder).iterdir()}
        yaml_side = {p.name: p.read_bytes() for p in (tmp_path / "yaml-work" / folder).iterdir()}
        assert yaml_side == python_side, folder
    module = subprocess.run(
        [
            sys.executable,
            "-m",
            "pydatatask",
            "-f",
            str(tmp_path / "quickstart.yaml"),
            "--set",
            "WORK=yaml-work",
            "status",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(module.stdout)["report"]["succeeded"] == 3
