"""The benchmark command keeps working (figures are reported, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pydatatask.watching import watching_available

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmarks_run_and_launch_each_job_once() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--only",
            "w1-memory,noop,chain,stale,newkeys",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "W1 in-memory" in result.stdout
    assert "status over 2,000 done keys in memory" in result.stdout
    assert "100 new keys with 2,000 done" in result.stdout or not watching_available()
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
