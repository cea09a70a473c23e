"""Slurm tasks through a real single-node Slurm cluster: pipelines, failures, timeouts,
a controller killed mid-run, and what following many jobs costs.

Every Slurm command the library runs goes through logging scripts first on ``PATH``
(:func:`counted`), so the tests count ``sbatch``, ``squeue`` and ``scontrol`` calls.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import pydatatask as pdt
from pydatatask.executor.slurm import SlurmManager, SlurmSpec
from tests.servers.slurm import CLIENTS, SlurmCluster

pytestmark = pytest.mark.backend

PATIENCE = 120.0
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Counted:
    """Slurm commands that log each call (``NAME ARGS...``, one line) before running."""

    environ: dict[str, str]
    log: Path

    def calls(self, name: str) -> list[list[str]]:
        """Return the arguments of every logged call of ``name``, in order."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line.split()[1:] for line in lines if line.split()[:1] == [name]]


@pytest.fixture
def counted(slurm_cluster: SlurmCluster, tmp_path: Path) -> Counted:
    """Put logging wrappers of the cluster's commands first on ``PATH``."""
    folder, log = tmp_path / "counted-bin", tmp_path / "slurm-calls.log"
    folder.mkdir()
    for name in CLIENTS:
        wrapper = folder / name
        wrapper.write_text(
            f"#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >> {log}\n"
            f'exec {slurm_cluster.bin_dir / name} "$@"\n'
        )
        wrapper.chmod(0o755)
    environ = dict(slurm_cluster.environ)
    environ["PATH"] = f"{folder}{os.pathsep}{environ['PATH']}"
    return Counted(environ, log)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait up to :data:`PATIENCE` seconds for ``condition()``."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.2)


def _option(args: list[str], name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in args if arg.startswith(f"--{name}="))


async def test_a_pipeline_of_slurm_jobs_records_successes_failures_and_output(
    counted: Counted, tmp_path: Path
) -> None:
    books = pdt.FileRepository(tmp_path / "books", ".txt")
    for job, text in {"zen": "simple is better\n", "tao": "the way\n", "bad": "x\n"}.items():
        await books.save(job, text)
    counts = pdt.FileRepository(tmp_path / "counts", ".txt")
    done = pdt.InProcessMetadataRepository()
    out, err = pdt.InProcessBlobRepository(), pdt.InProcessBlobRepository()
    manager = SlurmManager("books", tmp_path / "jobs", environ=counted.environ)
    words = pdt.SlurmTask(
        "words",
        "wc -w < {{ book | shquote }} > {{ count | shquote }}\n"
        "echo counted {{ job }}\necho noted {{ job }} >&2\n"
        "{% if job == 'bad' %}exit 3{% endif %}\n",
        partition="debug",
        sbatch_args=["--time=10"],
        manager=manager,
        done=done,
        stdout=out,
        stderr=err,
    )
    words.link("book", books, is_input=True)
    words.link("count", counts, is_output=True)
    shouted = pdt.FileRepository(tmp_path / "shouted", ".txt")
    shout = pdt.SlurmTask(  # its input and output travel through the job folder
        "shout",
        "tr -d ' '\n",
        manager=manager,
        stdin=counts,
        stdout=shouted,
        done=pdt.InProcessMetadataRepository(),
    )

    async with pdt.Pipeline([words, shout]) as pipeline:
        report = await pdt.run(pipeline, timeout=PATIENCE)

    assert (report.succeeded, report.failed) == (4, 1)
    for job in ("zen", "tao"):
        record = done.data[job]
        assert (record["success"], record["exit_code"]) == (True, 0)
        assert record["slurm_state"] == "COMPLETED"
        assert isinstance(record["slurm_job_id"], int)
        assert out.data[job] == f"counted {job}\n".encode()
        assert err.data[job] == f"noted {job}\n".encode()
    bad = done.data["bad"]
    assert (bad["success"], bad["exit_code"], bad["slurm_state"]) == (False, 3, "FAILED")
    assert "status 3" in bad["exception"]
    assert out.data["bad"] == b"counted bad\n"  # a failed job's output is kept
    assert await shouted.load("zen") == "3\n"
    assert not await shouted.contains("bad")  # its input's job failed
    submitted = counted.calls("sbatch")
    assert len(submitted) == 5
    assert all("--partition=debug" in args and "--time=10" in args for args in submitted[:3])
    assert not list((tmp_path / "jobs" / "books").glob("*/*/"))  # job folders are gone


async def test_a_timeout_cancels_the_slurm_job(
    counted: Counted, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    done = pdt.InProcessMetadataRepository()
    nap = pdt.SlurmTask(
        "nap",
        "sleep 600\n",
        manager=SlurmManager("timeouts", tmp_path / "jobs", environ=counted.environ),
        done=done,
        ready=pdt.InProcessMetadataRepository({"long": 1}),
        timeout=5,
    )
    async with pdt.Pipeline([nap]) as pipeline:
        await pdt.run(pipeline, timeout=PATIENCE)
    record = done.data["long"]
    assert (record["success"], record["timeout"]) == (False, True)
    cancelled = [args for args in counted.calls("scancel") if args and args[0].isdigit()]
    assert len(cancelled) == 1
    slurm_id = int(cancelled[0][0])
    await eventually(lambda: slurm_id not in slurm_cluster.queued(), "squeue drops the job")


CONTROLLER = """
import sys
from pathlib import Path

import pydatatask as pdt

base = Path(sys.argv[1])
books = pdt.FileRepository(base / "books", ".txt")
task = pdt.SlurmTask(
    "nap",
    "sleep 4\\nwc -c < {{ book | shquote }}\\n",
    manager=pdt.SlurmManager("restarts", base / "jobs"),
    done=pdt.YamlMetadataFileRepository(base / "done"),
    stdout=pdt.FileRepository(base / "sizes", ".txt"),
)
task.link("book", books, is_input=True)
pdt.main(pdt.Pipeline([task]), argv=sys.argv[2:])
"""


async def test_a_controller_killed_mid_run_is_followed_without_submitting_again(
    counted: Counted, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    script = tmp_path / "controller.py"
    script.write_text(textwrap.dedent(CONTROLLER))
    books = pdt.FileRepository(tmp_path / "books", ".txt")
    jobs = ["one", "two", "three"]
    for job in jobs:
        await books.save(job, job * 2)
    environ = {**os.environ, **counted.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, str(script), str(tmp_path), "run"]
    first = await asyncio.create_subprocess_exec(
        *command, env=environ, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        # Killed once Slurm holds every job: two run (the node has two CPUs), one waits.
        await eventually(lambda: len(slurm_cluster.queued()) == len(jobs), "all are queued")
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    held = slurm_cluster.queued()
    assert len(counted.calls("sbatch")) == len(jobs)

    second = await asyncio.create_subprocess_exec(*command, env=environ)
    assert await asyncio.wait_for(second.wait(), PATIENCE) == 0

    assert len(counted.calls("sbatch")) == len(jobs)  # followed, never submitted again
    done = pdt.YamlMetadataFileRepository(tmp_path / "done")
    sizes = pdt.FileRepository(tmp_path / "sizes", ".txt")
    for job in jobs:
        record = await done.info(job)
        assert (record["success"], record["attempt"]) == (True, 1)
        assert record["slurm_job_id"] in held
        assert await sizes.load(job) == f"{len(job) * 2}\n"
    assert not any(number in slurm_cluster.queued() for number in held)


async def test_one_squeue_call_follows_every_job(counted: Counted, tmp_path: Path) -> None:
    manager = SlurmManager("polls", tmp_path / "jobs", environ=counted.environ)
    handles = [
        await manager.submit("nap", f"job{index}", 1, SlurmSpec(script=f"sleep {index % 3}\n"))
        for index in range(6)
    ]
    counted.log.write_text("")
    async with asyncio.timeout(PATIENCE):
        statuses = await asyncio.gather(*(manager.wait(handle) for handle in handles))
    assert all(status.succeeded for status in statuses)
    numbers = {str(handle.slurm_id) for handle in handles}
    polls = [set(_option(args, "jobs").split(",")) for args in counted.calls("squeue")]
    assert polls[0] == numbers  # every job waited for, in one call
    for earlier, later in itertools.pairwise(polls):
        assert later <= earlier  # never a call per job: each poll asks about all that remain
    asked = sorted(args[-1] for args in counted.calls("scontrol"))
    assert asked == sorted(numbers)  # ended jobs only, once each
    for handle in handles:
        await manager.forget(handle)


async def test_a_pipeline_file_runs_slurm_tasks(
    counted: Counted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in counted.environ.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "pipeline.yaml").write_text(
        textwrap.dedent(
            """
            repositories:
              names: {kind: memory, data: {ada: 1, bob: 1}}
              greetings: {kind: file, path: greetings, extension: .txt}
            tasks:
              greet:
                slurm: "echo hello {{ job }}"
                partition: debug
                sbatch_args: ["--time=5"]
                ready: names
                stdout: greetings
            """
        )
    )
    pipeline = pdt.load_pipeline(tmp_path / "pipeline.yaml")
    async with pipeline:
        report = await pdt.run(pipeline, timeout=PATIENCE)
    assert report.succeeded == 2
    greetings = pdt.FileRepository(tmp_path / "greetings", ".txt")
    assert await greetings.load("ada") == "hello ada\n"
    assert len(counted.calls("sbatch")) == 2
