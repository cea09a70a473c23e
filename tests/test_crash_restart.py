"""Killing the controller with SIGKILL mid-run loses nothing and redoes nothing finished."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import yaml

import pydatatask as pdt

JOBS = 60

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    import pydatatask as pdt

    base = sys.argv[1]
    source = pdt.FileRepository(os.path.join(base, "source"), ".txt")
    middle = pdt.FileRepository(os.path.join(base, "middle"), ".txt")
    final = pdt.FileRepository(os.path.join(base, "final"), ".txt")
    log = os.path.join(base, "executions.log")

    def note(task, job):
        with open(log, "a") as handle:
            handle.write(f"{task} {job}\\n")

    @pdt.InProcessSyncTask("first", pdt.YamlMetadataFileRepository(os.path.join(base, "done1")))
    async def first(job, source, middle):
        await asyncio.sleep(0.02)
        async with await source.open(job, "r") as reader:
            text = await reader.read()
        async with await middle.open(job, "w") as writer:
            await writer.write(text.upper())
        note("first", job)

    @pdt.InProcessSyncTask("second", pdt.YamlMetadataFileRepository(os.path.join(base, "done2")))
    async def second(job, middle, final):
        await asyncio.sleep(0.02)
        async with await middle.open(job, "r") as reader:
            text = await reader.read()
        async with await final.open(job, "w") as writer:
            await writer.write(str(len(text)))
        note("second", job)

    first.link("source", source, is_input=True)
    first.link("middle", middle, is_output=True)
    second.link("middle", middle, is_input=True)
    second.link("final", final, is_output=True)
    pipeline = pdt.Pipeline([first, second], max_concurrent_jobs=4)

    async def main():
        async with pipeline:
            report = await pdt.run(pipeline)
        print(report)

    asyncio.run(main())
    """
)


def done_ids(folder: Path) -> set[str]:
    return {path.stem for path in folder.glob("*.yaml")}


def test_kill_minus_nine_then_rerun(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    (tmp_path / "source").mkdir()
    for index in range(JOBS):
        (tmp_path / "source" / f"item{index}.txt").write_text("x" * index)

    controller = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    deadline = time.monotonic() + 60
    while len(done_ids(tmp_path / "done2")) < 10:
        assert controller.poll() is None, "the controller ended before it was killed"
        assert time.monotonic() < deadline, "no progress before the kill"
        time.sleep(0.01)
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait()
    finished_before = {
        "first": done_ids(tmp_path / "done1"),
        "second": done_ids(tmp_path / "done2"),
    }
    assert len(finished_before["second"]) < JOBS, "the kill came too late to test anything"

    rerun = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr

    everything = {f"item{index}" for index in range(JOBS)}
    for task, folder in (("first", "done1"), ("second", "done2")):
        assert done_ids(tmp_path / folder) == everything
        for job in everything:
            record = yaml.safe_load((tmp_path / folder / f"{job}.yaml").read_text())
            assert record["success"] is True, (task, job, record)
    for index in range(JOBS):
        assert (tmp_path / "final" / f"item{index}.txt").read_text() == str(index)
    executions = Counter(
        tuple(line.split()) for line in (tmp_path / "executions.log").read_text().splitlines()
    )
    for task, jobs in finished_before.items():
        for job in jobs:
            assert executions[(task, job)] == 1, f"{task} {job} ran again after it was done"
    for folder in ("middle", "final"):
        listed = asyncio.run(pdt.FileRepository(tmp_path / folder, ".txt").ids())
        assert listed == everything  # interrupted writes left nothing that looks like a job


def hidden(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_kill_minus_nine_mid_write_leaves_nothing_after_the_rerun(tmp_path: Path) -> None:
    """Writes cut by SIGKILL leave temporaries in a folder the scheduler lists; the rerun
    clears them and finishes the jobs."""
    slow = SCRIPT.replace(
        "        await writer.write(text.upper())\n",
        "        await writer.write(text.upper())\n"
        "        await writer.write('y' * 100_000)  # past what a writer keeps in memory\n"
        "        note('writing', job)\n"
        "        await asyncio.sleep(30)  # killed here, mid-write\n",
    )
    assert slow != SCRIPT
    script = tmp_path / "pipeline.py"
    script.write_text(slow)
    (tmp_path / "source").mkdir()
    for index in range(3):
        (tmp_path / "source" / f"item{index}.txt").write_text("x" * index)
    controller = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    log = tmp_path / "executions.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text().count("writing") == 3):
        assert controller.poll() is None, "the controller ended before it was killed"
        assert time.monotonic() < deadline, "the writes did not start"
        time.sleep(0.01)
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait()
    cut_writes = hidden(tmp_path / "middle")
    assert len(cut_writes) == 3  # one temporary per cut write
    an_hour_ago = time.time() - 3600
    for name in cut_writes:  # the rerun comes later: younger ones are spared on purpose
        os.utime(tmp_path / "middle" / name, (an_hour_ago, an_hour_ago))

    fixed = tmp_path / "fixed.py"
    fixed.write_text(SCRIPT)
    rerun = subprocess.run(
        [sys.executable, str(fixed), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr
    for folder in ("middle", "final", "done1", "done2"):
        assert hidden(tmp_path / folder) == [], folder
    for index in range(3):
        assert (tmp_path / "final" / f"item{index}.txt").read_text() == str(index)
