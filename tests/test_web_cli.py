"""The dashboard from the command line: ``serve`` and ``run --serve``, as a user starts them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.backend  # the web extra

SCRIPT = Path(__file__).with_name("stale_pipeline.py")
PATIENCE = 60.0


def _start(base: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start the pipeline script; return it and the dashboard URL it printed."""
    controller = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        env=dict(os.environ, STALE_BASE=str(base), STALE_SLEEP="0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert controller.stdout is not None
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        line = controller.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if found:
            return controller, found.group(0)
        assert line or controller.poll() is None, (
            controller.stderr.read() if controller.stderr else ""
        )
    raise AssertionError("no dashboard URL was printed")


def _stop(controller: subprocess.Popen[str]) -> int:
    controller.send_signal(signal.SIGINT)
    try:
        controller.communicate(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        controller.kill()
        controller.communicate()
        raise AssertionError("Ctrl-C did not stop the dashboard") from None
    return controller.returncode


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=PATIENCE) as response:
        return str(response.read().decode())


def test_serve_shows_what_status_counts_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("one two")
    env = dict(os.environ, STALE_BASE=str(tmp_path))
    subprocess.run([sys.executable, str(SCRIPT), "run"], env=env, check=True, capture_output=True)
    status = subprocess.run(
        [sys.executable, str(SCRIPT), "status", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    controller, url = _start(tmp_path, "serve", "--port", "0")
    try:
        assert json.loads(_get(url + "api/status")) == json.loads(status)
        assert "shout" in _get(url)
        request = urllib.request.Request(url + "api/status", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=PATIENCE)
        assert refused.value.code == 405
        refused.value.close()
    finally:
        assert _stop(controller) == 130


def test_run_serve_shows_the_counts_rise_while_it_runs(tmp_path: Path) -> None:
    (tmp_path / "books").mkdir()
    for number in range(20):
        (tmp_path / "books" / f"b{number:02d}.txt").write_text(f"book {number}")
    controller, url = _start(tmp_path, "run", "--forever", "--serve", "0")
    try:
        seen: list[int] = []
        deadline = time.monotonic() + PATIENCE
        while not seen or seen[-1] < 20:
            assert time.monotonic() < deadline, f"succeeded counts seen: {seen}"
            seen.append(json.loads(_get(url + "api/status"))["count"]["succeeded"])
            time.sleep(0.2)
        assert len(set(seen)) > 1  # read while jobs were still running
    finally:
        _stop(controller)
    effects = (tmp_path / "effects.log").read_text().splitlines()
    assert len(effects) == 40  # each of the 40 jobs ran once, however often it was read
