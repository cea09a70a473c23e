"""The benchmark command keeps working (figures are reported, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
    assert "100 new keys with 300 done, run --forever on S3" in result.stdout or (
        "New keys on S3, SeaweedFS" in result.stdout and "skipped" in result.stdout
    )
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


def _quick_json(*options: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    payload: dict[str, Any] = json.loads(done.stdout)
    return payload


def test_tmpfs_memory_1m_and_noop_curve_run_quickly() -> None:
    payload = _quick_json(
        "--only",
        "tmpfs,memory-1m,noop-curve",
        "--n",
        "200",
        "--memory-1m-n",
        "300",
        "--noop-k",
        "50,150",
    )
    results = payload["results"]
    labels = [row["name"] for row in payload["rows"]]
    tmpfs = results["w1-files-tmpfs"]
    if "skipped" not in tmpfs:
        assert tmpfs["pydatatask"]["launched"] == 400
        assert tmpfs["lower_bound"]["jobs"] == 400
        assert "W1 tmpfs (/dev/shm), plain files (400 jobs)" in labels
    big = results["w1-memory-1m"]
    assert big["pydatatask"]["n"] == big["lower_bound"]["n"] == 300
    assert big["pydatatask"]["extra_launches"] == 0
    assert "W1 in-memory, N=300 (600 jobs)" in labels
    assert payload["sizes"]["noop_memory"] == payload["sizes"]["noop_files"] == [50, 150]
    curve = results["noop-curve"]
    for where in ("memory", "files"):
        assert [point["keys"] for point in curve[where]] == [50, 150]
        for point in curve[where]:
            assert point["launched"] == 0
            assert point["floor_seconds"] > 0
            assert point["per_1k_keys"] == pytest.approx(point["seconds"] / point["keys"] * 1000)
    assert {"input", "upper", "done_a", "done_b"} <= set(curve["files"][0]["listed"])
    assert "No-op re-run on files, 150 done keys (300 jobs)" in labels
    assert "No-op re-run in memory, 50 done keys (100 jobs)" in labels


@pytest.mark.backend
def test_peers_run_next_to_dask() -> None:
    pytest.importorskip("dask")
    payload = _quick_json("--only", "peers", "--peers-n", "100")
    peers = payload["results"]["peers"]
    for where in ("memory", "files"):
        assert peers[where]["pydatatask"]["n"] == peers[where]["dask"]["n"] == 100
        assert peers[where]["dask"]["jobs_per_second"] > 0
    labels = [row["name"] for row in payload["rows"]]
    assert "Peers: W1 in-memory, N=100, pydatatask" in labels
    assert any(row["ratio"].endswith("x Dask") for row in payload["rows"])


def test_missing_dask_and_tmpfs_are_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import _common, peers, run

    monkeypatch.setattr(peers, "missing", lambda: "dask is not installed")
    monkeypatch.setattr(_common, "tmpfs_missing", lambda: "/dev/shm does not exist")
    results, rows = run.measure_all(["w1-files-tmpfs", "peers"], 10)
    assert results == {
        "w1-files-tmpfs": {"skipped": "/dev/shm does not exist"},
        "peers": {"skipped": "dask is not installed"},
    }
    assert [row.value for row in rows] == ["skipped", "skipped"]


def test_fixed_sizes_follow_quick_and_their_options() -> None:
    from benchmarks import run

    quick = run._sizes(run._parse(["--quick"]))
    assert quick.memory_1m == 20_000
    assert quick.noop_memory == (2_000, 20_000)
    assert quick.noop_files == (500, 2_000)
    assert quick.peers == 1_000
    full = run._sizes(run._parse(["--n", "10"]))
    assert full.memory_1m == 1_000_000
    assert full.noop_memory == (10_000, 100_000, 1_000_000)
    assert full.noop_files == (2_000, 20_000, 200_000)
    chosen = run._sizes(run._parse(["--noop-k", "7,8", "--memory-1m-n", "9", "--peers-n", "5"]))
    assert (chosen.noop_memory, chosen.noop_files) == ((7, 8), (7, 8))
    assert (chosen.memory_1m, chosen.peers) == (9, 5)
    with pytest.raises(SystemExit):
        run._parse(["--noop-k", "0"])
    with pytest.raises(SystemExit):
        run._parse(["--memory-1m-n", "0"])
