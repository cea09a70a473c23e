"""A real OpenSSH server for the SSH process manager's tests.

``sshd_server`` starts ``/usr/sbin/sshd -D -e`` once per test session on a free loopback
port, with throwaway ed25519 host and client keys, public-key login for the current
user only, and a known_hosts file that pins the host key. Or it uses the server named by
``PYDATATASK_TEST_SSH_HOST`` (with ``..._PORT``, ``..._USER``, ``..._KEY`` and
``..._KNOWN_HOSTS``). asyncssh is imported only inside helpers, so the core test
environment needs no extras.
"""

from __future__ import annotations

import functools
import getpass
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.processes import find_command, running_server
from tests.servers.processes import free_loopback_port as _free_port

HOST_VARIABLE = "PYDATATASK_TEST_SSH_HOST"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class SSHServer:
    """Where the test server listens and how to log in."""

    host: str
    port: int
    username: str
    client_key: str
    known_hosts: str
    log_path: Path | None = None

    def connect_options(self, **overrides: Any) -> dict[str, Any]:
        """Return keyword arguments for ``asyncssh.connect`` / ``ssh_connection``."""
        options: dict[str, Any] = {
            "port": self.port,
            "username": self.username,
            "client_keys": [self.client_key],
            "known_hosts": self.known_hosts,
            "agent_path": None,
            "config": None,
            "connect_timeout": 5,
        }
        options.update(overrides)
        return options

    def accepted_logins(self) -> int:
        """Count the logins the server accepted so far (0 when its log is unknown)."""
        if self.log_path is None:
            return 0
        return self.log_path.read_text(errors="replace").count("Accepted publickey")


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pydatatask-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _greets(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        return sock.recv(4).startswith(b"SSH-")


def write_known_hosts(path: Path, port: int, public_key_file: Path) -> None:
    """Pin ``public_key_file`` for ``[127.0.0.1]:port`` in a known_hosts file."""
    key = " ".join(public_key_file.read_text().split()[:2])
    path.write_text(f"[127.0.0.1]:{port} {key}\n")


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """Yield a running OpenSSH server on loopback, started once per session."""
    external = os.environ.get(HOST_VARIABLE)
    if external:
        yield SSHServer(
            host=external,
            port=int(os.environ.get("PYDATATASK_TEST_SSH_PORT", "22")),
            username=os.environ.get("PYDATATASK_TEST_SSH_USER", getpass.getuser()),
            client_key=os.environ["PYDATATASK_TEST_SSH_KEY"],
            known_hosts=os.environ["PYDATATASK_TEST_SSH_KNOWN_HOSTS"],
        )
        return
    missing = "OpenSSH (sshd and ssh-keygen) is not installed"
    sshd = find_command("sshd", missing, fallbacks=["/usr/sbin/sshd"])
    find_command("ssh-keygen", missing)
    workdir = tmp_path_factory.mktemp("sshd")
    host_key, client_key = workdir / "host_ed25519", workdir / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    authorized = workdir / "authorized_keys"
    shutil.copy(client_key.with_suffix(".pub"), authorized)
    port = _free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "LogLevel INFO",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    known_hosts = workdir / "known_hosts"
    write_known_hosts(known_hosts, port, host_key.with_suffix(".pub"))
    os.makedirs("/run/sshd", exist_ok=True)
    log_path = workdir / "sshd.log"
    with running_server(
        [sshd, "-D", "-e", "-f", str(config)],
        log_path,
        functools.partial(_greets, port),
        "sshd",
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
    ):
        yield SSHServer(
            host="127.0.0.1",
            port=port,
            username=getpass.getuser(),
            client_key=str(client_key),
            known_hosts=str(known_hosts),
            log_path=log_path,
        )
