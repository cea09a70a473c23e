"""The executor contract, held against pods of the test API server (run on Docker)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytest.importorskip("kubernetes_asyncio")
pytest.importorskip("aiodocker")

from pydatatask.executor.kubernetes import PodManager
from pydatatask.executor.protocol import Executor
from pydatatask.task.external import ExternalTask
from pydatatask.task.kubernetes import KubeTask
from pydatatask.testing.executors import ExecutorContract, ExecutorHarness, Program, Wiring
from tests.test_executor_contract import script
from tests.test_kubernetes import pod_template

pytestmark = pytest.mark.backend


class PodHarness(ExecutorHarness):
    startup = 3.0

    def __init__(self, client: Any) -> None:
        self.client = client
        self.app = f"contract-{uuid.uuid4().hex[:8]}"

    def executor(self) -> PodManager:
        return PodManager(
            self.app, "default", lambda: self.client, poll_interval=0.1, max_poll_interval=0.4
        )

    def task(
        self, executor: Executor[Any, Any], name: str, program: Program, wiring: Wiring
    ) -> ExternalTask[Any, Any]:
        assert isinstance(executor, PodManager)
        return KubeTask(
            name,
            executor,
            None,
            pod_template(script(program)),
            logs=wiring.output,
            done=wiring.done,
            ready=wiring.ready,
            timeout=wiring.timeout,
            on_exit=wiring.on_exit,
        )


class TestKubernetesPods(ExecutorContract):
    @pytest.fixture
    def harness(self, kube_api_client: Any) -> ExecutorHarness:
        return PodHarness(kube_api_client)
