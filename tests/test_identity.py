"""Jobs that run as another account (``user=``) and in a chosen folder (``workdir=``).

Local process jobs switch to a real unprivileged account, which the ``account`` fixture
creates with ``useradd`` (and removes) when it is missing and the tests run as root.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import pydatatask as pdt
from tests.servers.sshd import SSHServer

ACCOUNT = "pdt-job-runner"
PATIENCE = 60.0


@pytest.fixture(scope="module")
def account() -> Iterator[pwd.struct_passwd]:
    """Yield an unprivileged account, made for the tests if the machine lacks one."""
    if os.geteuid() != 0:
        pytest.skip("switching a job to another account needs root")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    try:
        existing = pwd.getpwnam(ACCOUNT)
    except KeyError:
        existing = None
    if existing is not None:
        yield existing
        return
    if shutil.which("useradd") is None:
        pytest.skip(f"no account {ACCOUNT!r} and no useradd to make one")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", ACCOUNT],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(ACCOUNT)
    finally:
        subprocess.run(["userdel", ACCOUNT], check=False, capture_output=True)


def _task(tmp_path: Path, template: str, **options: Any) -> tuple[pdt.ProcessTask, Any, Any]:
    done, out = pdt.InProcessMetadataRepository(), pdt.InProcessBlobRepository()
    task = pdt.ProcessTask(
        "whoami",
        # The job folders are in pytest's private folder, which the account cannot enter.
        pdt.LocalLinuxManager("identity", tmp_path / "jobs"),
        template=template,
        done=done,
        stdout=out,
        ready=pdt.InProcessMetadataRepository({"one": 1}),
        pids=pdt.InProcessMetadataRepository(),
        **options,
    )
    return task, done, out


async def test_a_job_runs_as_the_account_in_its_workdir(
    account: pwd.struct_passwd, tmp_path: Path
) -> None:
    workdir = tmp_path / "shared"
    workdir.mkdir()
    os.chown(workdir, account.pw_uid, account.pw_gid)
    task, done, out = _task(
        tmp_path,
        'echo made > made.txt\npwd\nid -u\nid -g\necho "$USER"\n',
        user=ACCOUNT,
        workdir=str(workdir),
    )
    async with pdt.Pipeline([task]) as pipeline:
        await pdt.run(pipeline, timeout=PATIENCE)
    assert done.data["one"]["success"], done.data["one"]
    made = workdir / "made.txt"
    assert (made.stat().st_uid, made.stat().st_gid) == (account.pw_uid, account.pw_gid)
    assert out.data["one"].decode().split() == [
        str(workdir),
        str(account.pw_uid),
        str(account.pw_gid),
        ACCOUNT,
    ]


async def test_a_script_with_an_interpreter_line_runs_as_the_account(
    account: pwd.struct_passwd, tmp_path: Path
) -> None:
    task, done, out = _task(tmp_path, "#!/bin/sh\nid -un\n", user=str(account.pw_uid))
    async with pdt.Pipeline([task]) as pipeline:
        await pdt.run(pipeline, timeout=PATIENCE)
    assert done.data["one"]["success"], done.data["one"]
    assert out.data["one"] == f"{ACCOUNT}\n".encode()


async def test_a_workdir_alone_changes_only_the_folder(tmp_path: Path) -> None:
    workdir = tmp_path / "here"
    workdir.mkdir()
    task, done, out = _task(tmp_path, "pwd\nid -u\ntouch mine\n", workdir=str(workdir))
    async with pdt.Pipeline([task]) as pipeline:
        await pdt.run(pipeline, timeout=PATIENCE)
    assert done.data["one"]["success"], done.data["one"]
    assert out.data["one"].decode().split() == [str(workdir), str(os.geteuid())]
    assert (workdir / "mine").stat().st_uid == os.geteuid()


async def test_a_missing_workdir_fails_the_job(tmp_path: Path) -> None:
    task, done, _ = _task(tmp_path, "true\n", workdir=str(tmp_path / "absent"))
    async with pdt.Pipeline([task]) as pipeline:
        await pdt.run(pipeline, timeout=PATIENCE)
    assert done.data["one"]["success"] is False
    assert done.data["one"]["exit_code"] != 0


async def test_an_account_the_host_lacks_is_refused_when_the_pipeline_opens(
    tmp_path: Path,
) -> None:
    missing = f"nobody-{uuid.uuid4().hex[:8]}"
    task, done, _ = _task(tmp_path, "true\n", user=missing)
    with pytest.raises(pdt.ConfigurationError, match=f"whoami.*no user account '{missing}'"):
        async with pdt.Pipeline([task]):
            pass
    assert done.data == {}


@pytest_asyncio.fixture(loop_scope="function")
async def ssh_manager(sshd_server: SSHServer, tmp_path: Path) -> AsyncIterator[Any]:
    pytest.importorskip("asyncssh")
    from pydatatask.executor.ssh import ssh_connection

    options = sshd_server.connect_options()
    async with ssh_connection(sshd_server.host, **options) as connection:
        yield pdt.SSHLinuxManager("identity", lambda: connection, str(tmp_path / "remote"))


@pytest.mark.backend
async def test_over_ssh_only_the_login_account_is_accepted(
    ssh_manager: Any, sshd_server: SSHServer, tmp_path: Path
) -> None:
    def task(user: str) -> tuple[pdt.ProcessTask, pdt.InProcessBlobRepository]:
        out = pdt.InProcessBlobRepository()
        made = pdt.ProcessTask(
            "remote",
            ssh_manager,
            template="id -un\n",
            done=pdt.InProcessMetadataRepository(),
            stdout=out,
            ready=pdt.InProcessMetadataRepository({"one": 1}),
            pids=pdt.InProcessMetadataRepository(),
            user=user,
        )
        return made, out

    other, _ = task(f"someone-{uuid.uuid4().hex[:6]}")
    with pytest.raises(pdt.ConfigurationError, match="logged in as") as refused:
        async with pdt.Pipeline([other]):
            pass
    assert "\n" not in str(refused.value)
    assert sshd_server.username in str(refused.value)

    same, out = task(sshd_server.username)
    async with pdt.Pipeline([same]) as pipeline:
        report = await pdt.run(pipeline, timeout=PATIENCE)
    assert report.succeeded == 1
    assert out.data["one"] == f"{getpass.getuser()}\n".encode()


@pytest.mark.backend
async def test_a_container_runs_as_its_user_in_its_workdir(
    docker_engine: Any, busybox_image: str
) -> None:
    aiodocker = pytest.importorskip("aiodocker")
    done, out = pdt.InProcessMetadataRepository(), pdt.InProcessBlobRepository()
    async with aiodocker.Docker(url=docker_engine.host) as client:
        task = pdt.ContainerTask(
            "contained",
            pdt.DockerContainerManager(f"identity-{uuid.uuid4().hex[:8]}", lambda: client),
            None,
            pdt.Resources(),
            image=busybox_image,
            template="id -u; id -g; pwd; touch made; stat -c %u made",
            done=done,
            stdout=out,
            ready=pdt.InProcessMetadataRepository({"one": 1}),
            user="4321:4321",
            workdir="/tmp",
        )
        async with pdt.Pipeline([task]) as pipeline:
            await pdt.run(pipeline, timeout=PATIENCE)
    assert done.data["one"]["success"], done.data["one"]
    assert out.data["one"].decode().split() == ["4321", "4321", "/tmp", "4321"]
