"""The executor contract, held against batch jobs on a real single-node Slurm cluster."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pydatatask.executor.protocol import Executor
from pydatatask.executor.slurm import SlurmManager
from pydatatask.task.external import ExternalTask
from pydatatask.task.slurm import SlurmTask
from pydatatask.testing.executors import ExecutorContract, ExecutorHarness, Program, Wiring
from tests.servers.slurm import SlurmCluster
from tests.test_executor_contract import script

pytestmark = pytest.mark.backend


class SlurmHarness(ExecutorHarness):
    """Slurm tasks whose job folders, shared by every controller, are under ``root``."""

    startup = 5.0
    patience = 90.0

    def __init__(self, cluster: SlurmCluster, root: Path) -> None:
        self.cluster = cluster
        self.root = root
        self.app = f"contract-{uuid.uuid4().hex[:8]}"

    def executor(self) -> SlurmManager:
        return SlurmManager(
            self.app, self.root, environ=self.cluster.environ, max_poll_interval=1.0
        )

    def task(
        self, executor: Executor[Any, Any], name: str, program: Program, wiring: Wiring
    ) -> ExternalTask[Any, Any]:
        assert isinstance(executor, SlurmManager)
        return SlurmTask(
            name,
            script(program),
            manager=executor,
            done=wiring.done,
            stdout=wiring.output,
            ready=wiring.ready,
            timeout=wiring.timeout,
            on_exit=wiring.on_exit,
        )


class TestSlurmJobs(ExecutorContract):
    @pytest.fixture
    def harness(self, slurm_cluster: SlurmCluster, tmp_path: Path) -> ExecutorHarness:
        return SlurmHarness(slurm_cluster, tmp_path)
