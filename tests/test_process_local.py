"""ProcessTask on LocalLinuxManager: streams, failures, timeouts, restarts, quotas, quoting."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import pydatatask as pdt
from pydatatask import admin
from pydatatask.executor.linux import LinuxProcessManager, ProcessHandle
from pydatatask.executor.local import LocalLinuxManager
from pydatatask.quota import ResourceManager, Resources
from pydatatask.task.process import STDOUT, ProcessTask

Memory = pdt.InProcessMetadataRepository
Blobs = pdt.InProcessBlobRepository
ONE = Resources.parse(1, "1Mi")


def process_task(manager: LinuxProcessManager, template: str, **options: Any) -> ProcessTask:
    quota = options.pop("quota", ResourceManager(Resources.parse(8, "1Gi")))
    resources = options.pop("resources", ONE)
    pids = options.pop("pids", Memory())
    name = options.pop("name", "proc")
    return ProcessTask(name, manager, quota, resources, pids, template, **options)


def marked_processes(mark: str) -> list[int]:
    """PIDs of live (not zombie) processes whose environment holds ``mark``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if mark.encode() in environ and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


async def settle(task: ProcessTask) -> None:
    """Wait for the cleanups a finished job schedules."""
    for _ in range(200):
        if not task._cleanups and not await task.pids.ids():
            return
        await asyncio.sleep(0.01)


async def run_fifty(manager: LinuxProcessManager, count: int = 50) -> None:
    stdin = Blobs({f"job{index}": f"line {index}\n" for index in range(count)})
    stdout, stderr = Blobs(), Blobs()
    task = process_task(
        manager,
        "tr a-z A-Z\necho {{ job | shquote }} >&2\n",
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        quota=ResourceManager(Resources.parse(16, "1Gi")),
    )
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        report = await pdt.run(pipeline)
        await settle(task)
    assert report.succeeded == count
    assert report.failed == 0
    for index in range(count):
        job = f"job{index}"
        assert stdout.data[job] == f"LINE {index}\n".encode()
        assert stderr.data[job] == f"{job}\n".encode()
        record = await task.done.info(job)
        assert record["success"] is True
        assert record["exit_code"] == 0
    assert await task.pids.ids() == set()
    assert await manager.live("proc") == []


def test_the_shared_options_and_an_unknown_one(tmp_path: Path) -> None:
    manager = LocalLinuxManager("app", tmp_path)
    task = process_task(manager, "true\n", timeout=5, retry=2, max_concurrent=3)
    assert (task.timeout, task.retry.max_attempts, task.max_concurrent) == (5.0, 2, 3)
    positional = ProcessTask(
        "proc", manager, None, None, Memory(), "true\n", 60, None, None, None, None, None, None, 7
    )
    assert positional.timeout == 7.0  # the 0.4 position of timeout
    with pytest.raises(TypeError, match="tiemout"):
        process_task(manager, "true\n", tiemout=5)


async def test_fifty_jobs_with_streams(tmp_path: Path) -> None:
    await run_fifty(LocalLinuxManager("app", tmp_path))


async def test_stderr_merges_into_stdout(tmp_path: Path) -> None:
    stdout = pdt.FileRepository(tmp_path / "out", ".txt")
    task = process_task(
        LocalLinuxManager("app", tmp_path / "jobs"),
        "echo one\necho two >&2\necho three\n",
        stdout=stdout,
        stderr=STDOUT,
        ready=Memory({"k": 1}),
    )
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        await pdt.run(pipeline)
    assert (tmp_path / "out" / "k.txt").read_text() == "one\ntwo\nthree\n"


async def test_nonzero_exit_is_a_failure_with_its_code(tmp_path: Path) -> None:
    stdout = Blobs()
    task = process_task(
        LocalLinuxManager("app", tmp_path),
        "echo partial\nexit 7\n",
        stdout=stdout,
        ready=Memory({"bad": 1}),
    )
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        report = await pdt.run(pipeline)
    assert report.failed == 1
    record = await task.done.info("bad")
    assert record["success"] is False
    assert record["exit_code"] == 7
    assert "exited with status 7" in record["exception"]
    assert stdout.data["bad"] == b"partial\n"  # the log of a failed job is kept


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    mark = f"PDT_MARK_{uuid.uuid4().hex}"
    task = process_task(
        LocalLinuxManager("app", tmp_path),
        "sh -c 'sleep 1000 & sleep 1000; wait'\n",
        environ={"PDT_MARK": mark},
        ready=Memory({"slow": 1}),
        timeout=1.5,
        kill_grace=2,
    )
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        runner = asyncio.create_task(pdt.run(pipeline))
        for _ in range(100):
            if len(marked_processes(mark)) >= 3:
                break
            await asyncio.sleep(0.02)
        assert len(marked_processes(mark)) >= 3  # the scan does see the job's processes
        await runner
    record = await task.done.info("slow")
    assert record["timeout"] is True
    assert record["success"] is False
    assert marked_processes(mark) == []
    assert await task.pids.ids() == set()


def start_bystander() -> tuple[subprocess.Popen[bytes], str, int]:
    """Start an unrelated process; return it, the boot id and its start time."""
    bystander = subprocess.Popen(["sleep", "30"])
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    stat = Path(f"/proc/{bystander.pid}/stat").read_text()
    return bystander, boot, int(stat.rsplit(")", 1)[1].split()[19])


async def test_a_reused_pid_is_not_alive(tmp_path: Path) -> None:
    manager = LocalLinuxManager("app", tmp_path)
    bystander, boot, real_start = start_bystander()
    try:
        impostor = ProcessHandle("proc", "old", 1, bystander.pid, real_start + 1, boot)
        real = ProcessHandle("proc", "old", 1, bystander.pid, real_start, boot)
        ended = await manager.probe([impostor, real])
        assert impostor in ended  # not alive: the start time differs
        assert real not in ended
        pids = Memory({"old": {"handle": impostor.as_record(), "attempt": 1}})
        task = process_task(manager, "true\n", pids=pids, kill_grace=0.2)
        pipeline = pdt.Pipeline([task])
        async with pipeline:
            await pdt.run(pipeline)
            await settle(task)
        record = await task.done.info("old")
        assert record["success"] is False
        assert "without recording an exit status" in record["exception"]
        await task.kill("old")  # nothing left to kill; the bystander is not touched
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


async def test_quota_limits_concurrency_and_refuses_oversized_jobs(tmp_path: Path) -> None:
    log = tmp_path / "log"
    task = process_task(
        LocalLinuxManager("app", tmp_path / "jobs"),
        f'echo "start {{{{ job }}}}" >> {_quoted(log)}\nsleep 0.3\n'
        f'echo "end {{{{ job }}}}" >> {_quoted(log)}\n',
        quota=ResourceManager(Resources.parse(2, "1Gi")),
        ready=Memory({f"j{index}": 1 for index in range(4)}),
    )
    huge = process_task(
        LocalLinuxManager("app", tmp_path / "jobs"),
        "true\n",
        resources=Resources.parse(3, "1Mi"),
        quota=task.resource_manager,
        ready=Memory({"big": 1}),
        name="huge",
    )
    pipeline = pdt.Pipeline([task, huge])
    async with pipeline:
        await pdt.run(pipeline)
    running = peak = 0
    for line in log.read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    assert peak <= 2
    assert Counter(line.split()[0] for line in log.read_text().splitlines()) == {
        "start": 4,
        "end": 4,
    }
    record = await huge.done.info("big")
    assert record["success"] is False
    assert "QuotaExceededError" in record["exception"]
    assert "cpu=3" in record["exception"]


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))


async def test_launches_per_window(tmp_path: Path) -> None:
    log = tmp_path / "log"
    task = process_task(
        LocalLinuxManager("app", tmp_path / "jobs"),
        f"date +%s.%N >> {_quoted(log)}\n",
        quota=ResourceManager(Resources.parse(8, "1Gi", launches=2)),
        window=0.6,
        ready=Memory({f"j{index}": 1 for index in range(4)}),
    )
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        for _ in range(400):
            if not await pipeline.update():
                break
            await asyncio.sleep(0.02)
    starts = sorted(float(line) for line in log.read_text().split())
    assert len(starts) == 4
    assert starts[2] - starts[0] >= 0.5  # the third launch waited for the window


HOSTILE_IDS = ['a\'; touch "$PWNED" #', '$(touch "$PWNED")', '`touch "$PWNED"`', 'x y "z"']


async def test_hostile_ids_and_values_execute_nothing(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    values = {
        job: f'v\'; touch "$PWNED"; echo \'$(touch "$PWNED") {index}'
        for index, job in enumerate(HOSTILE_IDS)
    }
    stdout = Blobs()
    task = process_task(
        LocalLinuxManager("app", tmp_path / "jobs"),
        "printf '%s|%s' {{ job | shquote }} {{ meta | shquote }}\n",
        environ={"PWNED": str(pwned)},
        stdout=stdout,
    )
    task.link("meta", Memory(dict(values)), is_input=True)
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        report = await pdt.run(pipeline)
    assert report.succeeded == len(HOSTILE_IDS)
    for job in HOSTILE_IDS:
        assert stdout.data[job].decode() == f"{job}|{values[job]}"
    assert not pwned.exists()


async def test_kill_at_shutdown_and_task_kill(tmp_path: Path) -> None:
    mark = f"PDT_MARK_{uuid.uuid4().hex}"
    task = process_task(
        LocalLinuxManager("app", tmp_path),
        "sleep 1000\n",
        environ={"PDT_MARK": mark},
        ready=Memory({"k": 1}),
        on_exit="kill",
        kill_grace=1,
    )
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        await pdt.run(pipeline, timeout=0.5)
    assert marked_processes(mark) == []
    assert await task.pids.ids() == set()
    assert not await task.done.contains("k")

    detached = process_task(
        LocalLinuxManager("app", tmp_path),
        "sleep 1000\n",
        environ={"PDT_MARK": mark},
        ready=Memory({"k": 1}),
        kill_grace=1,
    )
    pipeline = pdt.Pipeline([detached])
    async with pipeline:
        await pdt.run(pipeline, timeout=0.5)
    assert marked_processes(mark)
    assert await detached.kill("k") is True
    assert marked_processes(mark) == []
    assert await detached.pids.ids() == set()


async def test_closing_the_pipeline_finishes_the_cleanup(tmp_path: Path) -> None:
    manager = LocalLinuxManager("app", tmp_path)
    task = process_task(manager, "echo {{ job | shquote }}\n", stdout=Blobs())
    task.link("source", Memory({f"job{index}": index for index in range(3)}), is_input=True)
    async with pdt.Pipeline([task]) as pipeline:
        report = await pdt.run(pipeline)
    assert report.succeeded == 3
    assert await task.pids.ids() == set()  # no settle(): closing waited for the clean-up
    assert not task._cleanups


async def test_status_leaves_another_controllers_job_and_rm_stops_it(tmp_path: Path) -> None:
    mark = f"PDT_MARK_{uuid.uuid4().hex}"
    pids, done = Memory(), Memory()

    def pipeline(on_exit: str) -> pdt.Pipeline:
        task = process_task(
            LocalLinuxManager("app", tmp_path),
            "sleep 1000\n",
            environ={"PDT_MARK": mark},
            pids=pids,
            done=done,
            ready=Memory({"k": 1}),
            on_exit=on_exit,
            kill_grace=1,
        )
        return pdt.Pipeline([task])

    running = pipeline("detach")
    async with running:
        await pdt.run(running, timeout=0.5)  # the controller stops; the job runs on
    assert marked_processes(mark)

    # Another process only looks: even with on_exit="kill" it must not take the job over.
    looker = pipeline("kill")
    async with looker:
        status = await admin.status(looker)
    assert status["proc"]["succeeded"] == 0
    assert (status["proc"]["running"], status["proc"]["blocked"]) == (1, 0)
    assert marked_processes(mark)

    remover = pipeline("kill")
    async with remover:
        await admin.rm(remover, "proc", ["k"])
    assert marked_processes(mark) == []
    assert await pids.ids() == set()


async def test_launch_force_runs_a_done_process_job_again(tmp_path: Path) -> None:
    """A forced launch over a record runs as the next attempt, which no record covers."""
    runs = tmp_path / "runs.log"
    task = process_task(
        LocalLinuxManager("app", tmp_path / "jobs"),
        f"echo {{{{ job }}}} >> {runs}\n",
        ready=Memory({"a": 1}),
    )
    async with pdt.Pipeline([task]) as pipeline:
        await pdt.run(pipeline)
        record = await admin.launch(pipeline, "proc", "a", force=True)
    assert record["success"] is True
    assert record["attempt"] == 2
    assert runs.read_text() == "a\na\n"
