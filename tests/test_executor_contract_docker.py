"""The executor contract, held against containers on a real Docker engine."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("aiodocker")

from pydatatask.executor.docker import DockerContainerManager
from pydatatask.executor.protocol import Executor
from pydatatask.quota import Resources
from pydatatask.task.container import ContainerTask
from pydatatask.task.external import ExternalTask
from pydatatask.testing.executors import ExecutorContract, ExecutorHarness, Program, Wiring
from tests.servers.docker import DockerEngine
from tests.test_executor_contract import script

pytestmark = pytest.mark.backend


class DockerHarness(ExecutorHarness):
    startup = 3.0

    def __init__(self, client: Any, image: str) -> None:
        self.client = client
        self.image = image
        self.app = f"contract-{uuid.uuid4().hex[:8]}"

    def executor(self) -> DockerContainerManager:
        return DockerContainerManager(self.app, lambda: self.client)

    def task(
        self, executor: Executor[Any, Any], name: str, program: Program, wiring: Wiring
    ) -> ExternalTask[Any, Any]:
        assert isinstance(executor, DockerContainerManager)
        return ContainerTask(
            name,
            executor,
            None,
            Resources(),
            image=self.image,
            template=script(program),
            done=wiring.done,
            stdout=wiring.output,
            ready=wiring.ready,
            timeout=wiring.timeout,
            on_exit=wiring.on_exit,
        )


class TestDockerContainers(ExecutorContract):
    @pytest_asyncio.fixture(loop_scope="function")
    async def harness(
        self, docker_engine: DockerEngine, busybox_image: str
    ) -> AsyncIterator[ExecutorHarness]:
        import aiodocker

        async with aiodocker.Docker(url=docker_engine.host) as client:
            yield DockerHarness(client, busybox_image)
