"""The contract every executor of external jobs keeps, as tests that backends subclass.

Jobs that run elsewhere (processes, containers, pods, ...) share one lifecycle
(:class:`~pydatatask.task.external.ExternalTask`); an engine is an
:class:`~pydatatask.executor.protocol.Executor` plus a task that renders its spec. This
suite holds every engine to the same rules: exit statuses and outputs arrive, a
restarted controller re-adopts running jobs and reaps ended ones instead of starting
them again, timeouts, ``rm`` and ``on_exit="kill"`` stop jobs, ``on_exit="detach"``
leaves them running, and a finished job leaves no trace on the engine.

A backend's test module subclasses :class:`ExecutorContract` and provides a fixture
named ``harness`` returning an :class:`ExecutorHarness` for its engine::

    class TestMyEngine(ExecutorContract):
        @pytest.fixture
        def harness(self) -> ExecutorHarness:
            return MyEngineHarness()

It needs pytest and pytest-asyncio (``asyncio_mode = "auto"``, or mark the class).
"""

from __future__ import annotations

import abc
import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from pydatatask import admin
from pydatatask.errors import BackendError
from pydatatask.executor.protocol import Executor, JobHandle, Outputs
from pydatatask.pipeline import Pipeline
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.repository.memory import InProcessBlobRepository, InProcessMetadataRepository
from pydatatask.running import run
from pydatatask.streams import ByteWriter
from pydatatask.task.external import ExternalTask, OnExit

__all__ = ["ExecutorContract", "ExecutorHarness", "Program", "Wiring"]

JOB = "job-1"
"""The id of the contract's jobs."""


@dataclass(frozen=True)
class Program:
    """What a contract job does: wait ``seconds``, print ``hello JOB``, exit with ``exit_code``.

    The line goes to the job's standard output (or its log, on engines with one stream).
    """

    seconds: float = 0.0
    exit_code: int = 0

    def output(self, job: str) -> bytes:
        """Return what the job prints."""
        return f"hello {job}\n".encode()


@dataclass(frozen=True)
class Wiring:
    """How a contract task is wired: its repositories and options."""

    done: MetadataRepository
    output: BlobRepository
    """Receives the job's standard output (or its log)."""
    ready: Repository
    """The ids to run."""
    on_exit: OnExit = "detach"
    timeout: float | None = None


class ExecutorHarness(abc.ABC):
    """How the suite drives one engine."""

    startup: float = 1.0
    """Seconds within which the engine starts a submitted job."""
    patience: float = 30.0
    """Seconds within which anything the suite waits for must happen."""

    @abc.abstractmethod
    def executor(self) -> Executor[Any, Any]:
        """Return a new executor of the engine, as a restarted controller would make it."""

    @abc.abstractmethod
    def task(
        self, executor: Executor[Any, Any], name: str, program: Program, wiring: Wiring
    ) -> ExternalTask[Any, Any]:
        """Return a task named ``name`` that runs ``program`` as ``wiring`` says.

        Tasks of the same name share whatever the engine needs to find their jobs again
        (a claim store, for example), as a restarted controller would.
        """


def _counted(executor: Executor[Any, Any]) -> list[JobHandle]:
    """Record every job ``executor`` submits from now on; return the growing list."""
    submitted: list[JobHandle] = []
    submit = executor.submit

    async def counting(task: str, job: str, attempt: int, spec: Any) -> Any:
        handle = await submit(task, job, attempt, spec)
        submitted.append(handle)
        return handle

    executor.submit = counting  # type: ignore[method-assign]
    return submitted


class _Run:
    """One controller of one task, as the contract starts and stops it."""

    def __init__(
        self,
        harness: ExecutorHarness,
        name: str,
        program: Program,
        done: MetadataRepository,
        output: BlobRepository,
        **options: Any,
    ) -> None:
        self.harness = harness
        self.executor = harness.executor()
        self.submitted = _counted(self.executor)
        wiring = Wiring(done, output, InProcessMetadataRepository({JOB: 1}), **options)
        self.task = harness.task(self.executor, name, program, wiring)
        self.pipeline = Pipeline([self.task])

    async def started(self) -> JobHandle:
        """Launch the job and return its handle once the engine has started it."""
        await self.pipeline.update()
        for _ in range(round(self.harness.patience / 0.05)):
            if self.submitted:
                return self.submitted[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.task.name} job {JOB!r} did not start")


class ExecutorContract:
    """Behaviour every engine shows; subclasses provide the ``harness`` fixture."""

    @staticmethod
    def _name(kind: str) -> str:
        return f"{kind}-{uuid.uuid4().hex[:8]}"

    async def _succeeds(self, harness: ExecutorHarness, handle: JobHandle) -> bool:
        """Wait for the job to end, within the harness's patience; whether it succeeded."""
        async with asyncio.timeout(harness.patience):
            status = await harness.executor().wait(handle)
        return status.succeeded

    async def _still_runs(self, harness: ExecutorHarness, handle: JobHandle) -> bool:
        try:
            async with asyncio.timeout(0.5):
                await harness.executor().wait(handle)
        except TimeoutError:
            return True
        return False

    async def _gone(self, harness: ExecutorHarness, name: str) -> bool:
        executor = harness.executor()
        return await executor.find(name, JOB) is None and await executor.live(name) == []

    async def test_submit_wait_collect_forget(self, harness: ExecutorHarness) -> None:
        """The executor alone: submit, find, restore, wait, collect, forget."""
        executor, output = harness.executor(), InProcessBlobRepository()
        ready = InProcessMetadataRepository({JOB: 1})
        wiring = Wiring(InProcessMetadataRepository(), output, ready)
        task = harness.task(executor, self._name("protocol"), Program(), wiring)
        async with task.rendered(JOB, 1) as spec:
            handle = await executor.submit(task.name, JOB, 1, spec)
        assert (handle.task, handle.job, handle.attempt) == (task.name, JOB, 1)
        assert await executor.find(task.name, JOB) == handle
        assert [found.job for found in await executor.live(task.name)] == [JOB]
        restored = executor.restore(task.name, JOB, 1, handle.as_record())
        assert restored.as_record() == handle.as_record()
        async with asyncio.timeout(harness.patience):
            status = await executor.wait(handle)
        assert (status.succeeded, status.code) == (True, 0)

        async def writer() -> ByteWriter:
            return await output.open(JOB, "wb")

        outputs = Outputs({stream: ("out", writer) for stream in ("stdout", "log")})
        await executor.collect(handle, outputs)
        await outputs.close()
        assert output.data[JOB] == Program().output(JOB)
        await executor.forget(handle)
        assert await self._gone(harness, task.name)

    async def test_a_running_job_is_not_submitted_twice(self, harness: ExecutorHarness) -> None:
        """A second submission of a job that runs fails, and leaves the first one alone."""
        executor = harness.executor()
        ready = InProcessMetadataRepository({JOB: 1})
        wiring = Wiring(InProcessMetadataRepository(), InProcessBlobRepository(), ready)
        task = harness.task(executor, self._name("twice"), Program(seconds=600), wiring)
        async with task.rendered(JOB, 1) as spec:
            handle = await executor.submit(task.name, JOB, 1, spec)
        async with task.rendered(JOB, 2) as spec:
            with pytest.raises(BackendError):
                await executor.submit(task.name, JOB, 2, spec)
        assert await self._still_runs(harness, handle)
        assert await executor.find(task.name, JOB) == handle
        await executor.stop(handle, 0)
        assert not await self._succeeds(harness, handle)
        await executor.forget(handle)
        assert await self._gone(harness, task.name)

    async def test_exit_status_and_output_are_recorded(self, harness: ExecutorHarness) -> None:
        """Exit statuses, zero or not, and outputs reach the done record and the links."""
        done = {code: InProcessMetadataRepository() for code in (0, 3)}
        outputs = {code: InProcessBlobRepository() for code in (0, 3)}
        executor = harness.executor()
        tasks = [
            harness.task(
                executor,
                self._name(f"exit{code}"),
                Program(exit_code=code),
                Wiring(done[code], outputs[code], InProcessMetadataRepository({JOB: 1})),
            )
            for code in (0, 3)
        ]
        async with Pipeline(tasks) as pipeline:
            report = await run(pipeline, timeout=harness.patience)
        assert (report.succeeded, report.failed) == (1, 1)
        good, bad = done[0].data[JOB], done[3].data[JOB]
        assert (good["success"], good["exit_code"], good["attempt"]) == (True, 0, 1)
        assert (bad["success"], bad["exit_code"]) == (False, 3)
        assert "status 3" in bad["exception"]
        for code in (0, 3):  # a failed job's output is kept too
            assert outputs[code].data[JOB] == Program().output(JOB)
        for task in tasks:
            assert await self._gone(harness, task.name)

    async def test_a_restarted_controller_reattaches_to_a_running_job(
        self, harness: ExecutorHarness
    ) -> None:
        """A new controller follows a job the last one left running; it does not start it."""
        name, program = self._name("reattach"), Program(seconds=harness.startup + 2)
        done, output = InProcessMetadataRepository(), InProcessBlobRepository()
        first = _Run(harness, name, program, done, output)
        async with first.pipeline:
            handle = await first.started()
        assert await self._still_runs(harness, handle)  # the stopping controller detached
        second = _Run(harness, name, program, done, output)
        async with second.pipeline:
            report = await run(second.pipeline, timeout=harness.patience)
        assert second.submitted == []  # followed, not started again
        assert len(first.submitted) == 1
        assert report.succeeded == 1
        record = done.data[JOB]
        assert (record["success"], record["exit_code"], record["attempt"]) == (True, 0, 1)
        assert output.data[JOB] == program.output(JOB)
        assert await self._gone(harness, name)

    async def test_a_restarted_controller_reaps_a_job_that_ended_unwatched(
        self, harness: ExecutorHarness
    ) -> None:
        """A job that ended while no controller watched is recorded, not run again."""
        name, program = self._name("reap"), Program(seconds=0.5, exit_code=3)
        done, output = InProcessMetadataRepository(), InProcessBlobRepository()
        first = _Run(harness, name, program, done, output)
        async with first.pipeline:
            handle = await first.started()
        assert not await self._succeeds(harness, handle)  # it ends while no controller watches
        second = _Run(harness, name, program, done, output)
        async with second.pipeline:
            report = await run(second.pipeline, timeout=harness.patience)
        assert second.submitted == []
        assert report.failed == 1
        record = done.data[JOB]
        assert (record["success"], record["exit_code"], record["attempt"]) == (False, 3, 1)
        assert output.data[JOB] == program.output(JOB)
        assert await self._gone(harness, name)

    async def test_a_timeout_stops_the_job(self, harness: ExecutorHarness) -> None:
        """A job past its timeout is stopped, recorded as timed out, and forgotten."""
        name, done = self._name("timeout"), InProcessMetadataRepository()
        controller = _Run(
            harness,
            name,
            Program(seconds=600),
            done,
            InProcessBlobRepository(),
            timeout=harness.startup + 1,
        )
        async with controller.pipeline:
            handle = await controller.started()
            await run(controller.pipeline, timeout=harness.patience)
        record = done.data[JOB]
        assert (record["success"], record["timeout"]) == (False, True)
        assert not await self._succeeds(harness, handle)
        assert await self._gone(harness, name)

    async def test_rm_stops_a_running_job(self, harness: ExecutorHarness) -> None:
        """``rm`` of a running job stops it; it leaves no record and no trace."""
        name, done = self._name("removed"), InProcessMetadataRepository()
        controller = _Run(harness, name, Program(seconds=600), done, InProcessBlobRepository())
        async with controller.pipeline:
            handle = await controller.started()
            await admin.rm(controller.pipeline, name, [JOB])
            assert not controller.pipeline.scheduler.is_running(name, JOB)
            assert not await self._succeeds(harness, handle)
        assert JOB not in done.data
        assert await self._gone(harness, name)

    async def test_kill_stops_a_job_another_controller_left(self, harness: ExecutorHarness) -> None:
        """``kill`` stops a job no controller follows, and says whether there was one."""
        name, done = self._name("killed"), InProcessMetadataRepository()
        output = InProcessBlobRepository()
        first = _Run(harness, name, Program(seconds=600), done, output)
        async with first.pipeline:
            handle = await first.started()
        other = _Run(harness, name, Program(seconds=600), done, output)
        assert await other.task.kill(JOB) is True
        assert not await self._succeeds(harness, handle)
        assert await self._gone(harness, name)
        assert await other.task.kill(JOB) is False
        assert other.submitted == []

    async def test_on_exit_kill_stops_and_detach_leaves_running(
        self, harness: ExecutorHarness
    ) -> None:
        """A stopping controller stops its jobs with ``on_exit="kill"``, leaves them otherwise."""
        done, output = InProcessMetadataRepository(), InProcessBlobRepository()
        names = {mode: self._name(mode) for mode in ("detach", "kill")}
        runs = {
            mode: _Run(harness, names[mode], Program(seconds=600), done, output, on_exit=mode)
            for mode in ("detach", "kill")
        }
        handles = {}
        for mode, controller in runs.items():
            async with controller.pipeline:
                handles[mode] = await controller.started()
        assert not await self._succeeds(harness, handles["kill"])
        assert await self._gone(harness, names["kill"])
        assert await self._still_runs(harness, handles["detach"])
        leftover = _Run(harness, names["detach"], Program(seconds=600), done, output)
        assert await leftover.task.kill(JOB) is True
        assert done.data == {}

    async def test_a_finished_job_leaves_no_trace(self, harness: ExecutorHarness) -> None:
        """Once recorded, a job leaves nothing on the engine or in the claim store."""
        name, done = self._name("traces"), InProcessMetadataRepository()
        controller = _Run(harness, name, Program(), done, InProcessBlobRepository())
        async with controller.pipeline:
            report = await run(controller.pipeline, timeout=harness.patience)
        assert report.succeeded == 1
        assert await self._gone(harness, name)
        again = _Run(harness, name, Program(), done, InProcessBlobRepository())
        assert await again.task.live_jobs() == {}
