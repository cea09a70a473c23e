"""A controller that runs forever takes in new files at once, without listing again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pydatatask
from pydatatask.watching import watching_available
from tests.forever import NEVER, PATIENCE, running_forever, until

pytestmark = pytest.mark.skipif(not watching_available(), reason="needs the 'watch' extra")


def _pipeline(base: Path) -> tuple[pydatatask.Pipeline, pydatatask.Task]:
    books = pydatatask.FileRepository(base / "books", ".txt")
    shouts = pydatatask.FileRepository(base / "shouts", ".txt")

    @pydatatask.task(
        done=pydatatask.YamlMetadataFileRepository(base / "done"),
        inputs={"book": books},
        outputs={"shout": shouts},
    )
    async def shout(book: str) -> str:
        return book.upper()

    pipeline = pydatatask.Pipeline([shout])
    pipeline.poll_interval = NEVER
    return pipeline, shout


def _shouts(base: Path) -> set[str]:
    folder = base / "shouts"
    return {path.stem for path in folder.glob("*.txt")} if folder.exists() else set()


async def test_new_files_are_taken_in_without_a_listing(tmp_path: Path) -> None:
    (tmp_path / "books").mkdir()
    for number in range(50):
        (tmp_path / "books" / f"old{number}.txt").write_text(f"old book {number}")
    pipeline, _ = _pipeline(tmp_path)
    async with pipeline, running_forever(pipeline):
        await until(lambda: len(_shouts(tmp_path)) == 50, "the first 50 jobs")
        listed_at = pipeline.scheduler.last_refresh
        for number in range(10):  # written as a user would: a temporary name, then rename
            temporary = tmp_path / "books" / f".new{number}.tmp"
            temporary.write_text(f"new book {number}")
            temporary.rename(tmp_path / "books" / f"new{number}.txt")
        await until(lambda: len(_shouts(tmp_path)) == 60, "the 10 new jobs")
        assert pipeline.scheduler.last_refresh == listed_at  # no full listing since
    assert (tmp_path / "shouts" / "new3.txt").read_text() == "NEW BOOK 3"


async def test_a_done_record_removed_from_outside_runs_the_job_again(tmp_path: Path) -> None:
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("first")
    pipeline, shout = _pipeline(tmp_path)
    async with pipeline, running_forever(pipeline):
        await until(lambda: (tmp_path / "done" / "a.yaml").exists(), "the job")
        (tmp_path / "books" / "a.txt").write_text("second")
        (tmp_path / "done" / "a.yaml").unlink()  # as `rm shout a` from another shell
        await until(lambda: (tmp_path / "shouts" / "a.txt").read_text() == "SECOND", "the rerun")
    record = await shout.done.info("a")
    assert record["success"] is True


def test_run_forever_on_the_command_line_takes_in_new_files(tmp_path: Path) -> None:
    """``run --forever`` with a poll interval of an hour still runs what lands in its inputs."""
    script = Path(__file__).with_name("stale_pipeline.py")
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "first.txt").write_text("one")
    env = dict(os.environ, STALE_BASE=str(tmp_path))
    controller = subprocess.Popen(
        [sys.executable, str(script), "run", "--forever", "--poll", str(NEVER)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        counts = tmp_path / "counts"
        deadline = time.monotonic() + PATIENCE
        while not (counts / "first.yaml").exists():
            assert time.monotonic() < deadline, "the first job did not run"
            assert controller.poll() is None, controller.stderr.read() if controller.stderr else ""
            time.sleep(0.1)
        (tmp_path / "books" / "second.txt").write_text("two words")
        while not (counts / "second.yaml").exists():
            assert time.monotonic() < deadline, "the new book was not taken in"
            time.sleep(0.1)
    finally:
        controller.send_signal(signal.SIGINT)
        try:
            controller.communicate(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.communicate()
