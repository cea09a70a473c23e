"""Every example pipeline runs as its README says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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
    assert "it failed" in why.stdout

    status = run_example(script, "status", "--json")
    assert status.returncode == 0
    assert '"failed": 1' in status.stdout

    (work / "documents" / "empty.txt").write_text("now it has words\n")
    assert run_example(script, "rm", "-r", "count", "empty").returncode == 0
    fixed = run_example(script, "run")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (work / "reports" / "empty.txt").read_text().startswith("empty: 4 words")
