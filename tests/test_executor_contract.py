"""The executor contract, held against the in-memory engine and local process groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pydatatask.executor.linux import LinuxProcessManager
from pydatatask.executor.local import LocalLinuxManager
from pydatatask.executor.protocol import Executor
from pydatatask.repository.memory import InProcessMetadataRepository
from pydatatask.task.external import ExternalTask
from pydatatask.task.process import ProcessTask
from pydatatask.testing.executors import ExecutorContract, ExecutorHarness, Program, Wiring
from pydatatask.testing.fake import FakeEngine, FakeExecutor, FakeTask


def script(program: Program) -> str:
    """The shell script that runs ``program``."""
    return (
        f"sleep {program.seconds:g}\n"
        "printf 'hello %s\\n' {{ job | shquote }}\n"
        f"exit {program.exit_code}\n"
    )


class FakeHarness(ExecutorHarness):
    startup = 0.1
    patience = 10.0

    def __init__(self) -> None:
        self.engine = FakeEngine()

    def executor(self) -> FakeExecutor:
        return FakeExecutor(self.engine)

    def task(
        self, executor: Executor[Any, Any], name: str, program: Program, wiring: Wiring
    ) -> ExternalTask[Any, Any]:
        assert isinstance(executor, FakeExecutor)
        template = (
            f"seconds: {program.seconds}\nexit_code: {program.exit_code}\n"
            "stdout: 'hello {{ job }}\n\n'\n"
        )
        return FakeTask(
            name,
            executor,
            template,
            done=wiring.done,
            ready=wiring.ready,
            stdout=wiring.output,
            timeout=wiring.timeout,
            on_exit=wiring.on_exit,
        )


class LinuxHarness(ExecutorHarness):
    """Process tasks on a Linux process manager; ``pids`` outlive each controller."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.pids: dict[str, InProcessMetadataRepository] = {}

    def executor(self) -> LinuxProcessManager:
        made: LinuxProcessManager = self.manager()
        return made

    def task(
        self, executor: Executor[Any, Any], name: str, program: Program, wiring: Wiring
    ) -> ExternalTask[Any, Any]:
        assert isinstance(executor, LinuxProcessManager)
        return ProcessTask(
            name,
            executor,
            pids=self.pids.setdefault(name, InProcessMetadataRepository()),
            template=script(program),
            done=wiring.done,
            stdout=wiring.output,
            ready=wiring.ready,
            timeout=wiring.timeout,
            on_exit=wiring.on_exit,
            kill_grace=1,
        )


class TestFakeEngine(ExecutorContract):
    @pytest.fixture
    def harness(self) -> ExecutorHarness:
        return FakeHarness()


class TestLocalProcesses(ExecutorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> ExecutorHarness:
        return LinuxHarness(lambda: LocalLinuxManager("contract", tmp_path))


async def test_the_fake_engine_counts_every_start() -> None:
    engine = FakeEngine()
    task = FakeTask("nap", FakeExecutor(engine), "{seconds: 0, stdout: 'hi {{ job }}'}")
    async with task.rendered("a b", 1) as spec:
        handle = await FakeExecutor(engine).submit("nap", "a b", 1, spec)
    assert spec.stdout == b"hi a b"
    assert engine.submitted == [handle]
