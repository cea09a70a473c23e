"""ProcessTask on SSHLinuxManager against a real OpenSSH server on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import pydatatask as pdt
from pydatatask.errors import BackendError, BackendUnavailableError
from pydatatask.executor.ssh import SSHLinuxManager, ssh_connection
from tests.servers.sshd import SSHServer, _free_port, _keygen, write_known_hosts
from tests.test_process_local import Memory, marked_processes, process_task, run_fifty, settle

pytest.importorskip("asyncssh")
pytestmark = pytest.mark.backend


def ssh_session(server: SSHServer, **overrides: Any) -> tuple[pdt.Session, Any]:
    session = pdt.Session()

    @session.resource
    async def ssh() -> AsyncIterator[Any]:
        async with ssh_connection(server.host, **server.connect_options(**overrides)) as conn:
            yield conn

    return session, ssh


async def test_fifty_jobs_over_one_connection(sshd_server: SSHServer, tmp_path: Path) -> None:
    session, ssh = ssh_session(sshd_server)
    logins = sshd_server.accepted_logins()
    async with session:
        await run_fifty(SSHLinuxManager("app", ssh, str(tmp_path)))
    if sshd_server.log_path is not None:
        assert sshd_server.accepted_logins() - logins == 1


async def test_timeout_kills_the_remote_group(sshd_server: SSHServer, tmp_path: Path) -> None:
    mark = f"PDT_MARK_{uuid.uuid4().hex}"
    session, ssh = ssh_session(sshd_server)
    task = process_task(
        SSHLinuxManager("app", ssh, str(tmp_path)),
        "sh -c 'sleep 1000 & sleep 1000; wait'\n",
        environ={"PDT_MARK": mark},
        ready=Memory({"slow": 1}),
        timeout=1.5,
        kill_grace=2,
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline)
    record = await task.done.info("slow")
    assert record["timeout"] is True
    if sshd_server.log_path is not None:  # the server is this machine
        assert marked_processes(mark) == []


async def test_a_dropped_connection_does_not_fail_a_running_job(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    import asyncssh

    holder: dict[str, Any] = {}

    async def connect() -> Any:
        return await asyncssh.connect(sshd_server.host, **sshd_server.connect_options())

    holder["conn"] = await connect()
    gate = tmp_path / "gate"
    stdout = pdt.InProcessBlobRepository()
    task = process_task(
        SSHLinuxManager("app", lambda: holder["conn"], str(tmp_path / "jobs")),
        f"while [ ! -e '{gate}' ]; do sleep 0.05; done\necho survived\n",
        stdout=stdout,
        ready=Memory({"k": 1}),
    )
    pipeline = pdt.Pipeline([task])
    try:
        async with pipeline:
            runner = asyncio.create_task(pdt.run(pipeline))
            for _ in range(200):
                if (
                    "handle" in await task.pids.info("k")
                    if await task.pids.contains("k")
                    else False
                ):
                    break
                await asyncio.sleep(0.02)
            holder["conn"].close()
            await asyncio.sleep(0.5)  # polls fail meanwhile; the job is not failed
            gate.touch()
            holder["conn"] = await connect()
            await runner
            await settle(task)
        record = await task.done.info("k")
        assert record["success"] is True
        assert stdout.data["k"] == b"survived\n"
    finally:
        holder["conn"].close()


async def test_wrong_key_fails_clearly(sshd_server: SSHServer, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    _keygen(other)
    session, _ = ssh_session(sshd_server, client_keys=[str(other)])
    started = time.monotonic()
    with pytest.raises(BackendError, match="authentication failed"):
        await session.open()
    assert time.monotonic() - started < 30  # bounded: it does not hang


async def test_unreachable_port_is_unavailable(sshd_server: SSHServer) -> None:
    session, _ = ssh_session(sshd_server, port=_free_port(), connect_timeout=3)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="cannot reach"):
        await session.open()
    assert time.monotonic() - started < 30  # bounded: it does not hang


async def test_host_key_mismatch_is_rejected(sshd_server: SSHServer, tmp_path: Path) -> None:
    impostor = tmp_path / "impostor_host_key"
    _keygen(impostor)
    known_hosts = tmp_path / "known_hosts"
    write_known_hosts(known_hosts, sshd_server.port, impostor.with_suffix(".pub"))
    session, _ = ssh_session(sshd_server, known_hosts=str(known_hosts))
    with pytest.raises(BackendError, match="host key"):
        await session.open()
