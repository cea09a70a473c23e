"""The benchmark command keeps working (figures are reported, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmarks_run_and_launch_each_job_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "w1-memory,noop,chain"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "W1 in-memory" in result.stdout
    json_run = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "w1-memory", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures = json.loads(json_run.stdout)["results"]["w1-memory"]["pydatatask"]
    assert figures["launched"] == figures["jobs"]
    assert figures["extra_launches"] == 0
