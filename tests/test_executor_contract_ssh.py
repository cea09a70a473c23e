"""The executor contract, held against process groups on a real OpenSSH server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from pydatatask.executor.ssh import SSHLinuxManager, ssh_connection
from pydatatask.testing.executors import ExecutorContract, ExecutorHarness
from tests.servers.sshd import SSHServer
from tests.test_executor_contract import LinuxHarness

pytest.importorskip("asyncssh")
pytestmark = pytest.mark.backend


class TestSSHProcesses(ExecutorContract):
    @pytest_asyncio.fixture(loop_scope="function")
    async def harness(
        self, sshd_server: SSHServer, tmp_path: Path
    ) -> AsyncIterator[ExecutorHarness]:
        options = sshd_server.connect_options()
        async with ssh_connection(sshd_server.host, **options) as connection:
            yield LinuxHarness(
                lambda: SSHLinuxManager("contract", lambda: connection, str(tmp_path))
            )
