"""A real OpenSSH server for the SSH process manager's tests.

``sshd_server`` starts ``/usr/sbin/sshd -D -e`` once per test session on a free loopback
port, with throwaway ed25519 host and client keys, public-key login for the current
user only, and a known_hosts file that pins the host key. Or it uses the server named by
``PYDATATASK_TEST_SSH_HOST`` (with ``..._PORT``, ``..._USER``, ``..._KEY`` and
``..._KNOWN_HOSTS``). asyncssh is imported only inside helpers, so the core test
environment needs no extras.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pydatatask-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until_ready(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"sshd exited with status {process.returncode} while starting; "
                f"log tail:\n{_log_tail(log_path)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"sshd did not answer within {START_TIMEOUT:g} s; log tail:\n{_log_tail(log_path)}")


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
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH (sshd and ssh-keygen) is not installed")
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
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_ready(port, process, log_path)
        yield SSHServer(
            host="127.0.0.1",
            port=port,
            username=getpass.getuser(),
            client_key=str(client_key),
            known_hosts=str(known_hosts),
            log_path=log_path,
        )
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
