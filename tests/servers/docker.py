"""A real Docker registry and Docker engine for the docker backend's tests.

``docker_registry`` starts Debian's ``docker-registry`` (distribution v2) once per test
session on a free loopback port, with filesystem storage and deletes enabled, or uses
the registry at ``PYDATATASK_TEST_REGISTRY_URL``. ``docker_auth_registry`` is a second
one that demands basic credentials (an htpasswd file).

``docker_engine`` starts ``dockerd`` on a private unix socket in a temporary folder
(overlay2, or vfs where overlay2 cannot work; no bridge, no iptables, so only the
``none`` and ``host`` networks exist), or uses ``PYDATATASK_TEST_DOCKER_HOST``.
``busybox_image`` imports ``busybox:local`` into it from the static ``/bin/busybox``.

Nothing here imports aiohttp or aiodocker at module level: the core test environment
has neither. :func:`push_image` pushes a small image over the registry API, no daemon
involved.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.client
import io
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urljoin

import pytest

from tests.servers.processes import (
    find_command,
    launch,
    readiness_failure,
    running_server,
    stop_process,
)

# Re-exported: tests that start registries and engines take their ports from here too.
from tests.servers.processes import free_loopback_port as free_loopback_port

REGISTRY_VARIABLE = "PYDATATASK_TEST_REGISTRY_URL"
DOCKER_HOST_VARIABLE = "PYDATATASK_TEST_DOCKER_HOST"
BUSYBOX = Path("/bin/busybox")
TEST_IMAGE = "busybox:local"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryServer:
    """Where a test registry listens, and the credentials it wants (if any)."""

    url: str
    username: str | None = None
    password: str | None = None

    @property
    def domain(self) -> str:
        """``host:port``, as in image names."""
        return self.url.split("://", 1)[-1].rstrip("/")


@dataclass(frozen=True)
class DockerEngine:
    """How to reach the test Docker engine: a ``unix://`` or ``tcp://`` address."""

    host: str


# --- registry ----------------------------------------------------------------------------


def _htpasswd_line(username: str, password: str) -> str | None:
    """Return a bcrypt htpasswd entry, from whatever this machine can make one with."""
    with contextlib.suppress(ImportError):
        import bcrypt  # type: ignore[import-not-found,unused-ignore]

        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        return f"{username}:{hashed}"
    if shutil.which("htpasswd"):
        result = subprocess.run(
            ["htpasswd", "-nbB", username, password], capture_output=True, text=True, check=True
        )
        return result.stdout.strip()
    with warnings.catch_warnings():  # the stdlib crypt module is deprecated, still present
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return None
        method = getattr(crypt, "METHOD_BLOWFISH", None)
        if method is None or method not in crypt.methods:
            return None
        return f"{username}:{crypt.crypt(password, crypt.mksalt(method, rounds=32))}"


def _start_registry(workdir: Path, auth: tuple[str, str] | None) -> Iterator[RegistryServer]:
    command = find_command(
        "docker-registry", "docker-registry is not installed (scripts/install-test-servers)"
    )
    port = free_loopback_port()
    config = [
        "version: 0.1",
        "log: {level: warn}",
        "storage:",
        f"  filesystem: {{rootdirectory: {workdir / 'data'}}}",
        "  delete: {enabled: true}",
        f"http: {{addr: 127.0.0.1:{port}, secret: {secrets.token_hex(16)}}}",
    ]
    if auth is not None:
        line = _htpasswd_line(*auth)
        if line is None:
            pytest.skip("no way to make a bcrypt htpasswd entry (bcrypt, htpasswd or crypt)")
        (workdir / "htpasswd").write_text(line + "\n")
        config.append(
            f"auth: {{htpasswd: {{realm: pydatatask-test, path: {workdir / 'htpasswd'}}}}}"
        )
    (workdir / "registry.yml").write_text("\n".join(config) + "\n")

    def ready() -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/v2/")
            return connection.getresponse().status in (200, 401)
        finally:
            connection.close()

    with running_server(
        [command, "serve", str(workdir / "registry.yml")],
        workdir / "registry.log",
        ready,
        "docker-registry",
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
    ):
        username, password = auth if auth is not None else (None, None)
        yield RegistryServer(f"http://127.0.0.1:{port}", username, password)


@pytest.fixture(scope="session")
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Yield an open registry (deletes enabled) on loopback, started once per session."""
    external = os.environ.get(REGISTRY_VARIABLE)
    if external:
        yield RegistryServer(external.rstrip("/"))
        return
    yield from _start_registry(tmp_path_factory.mktemp("registry"), None)


@pytest.fixture(scope="session")
def docker_auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Yield a registry that demands basic credentials (htpasswd), started once per session."""
    credentials = ("tester", secrets.token_hex(8))
    yield from _start_registry(tmp_path_factory.mktemp("auth-registry"), credentials)


# --- engine ------------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def engine_request(
    host: str, method: str, path: str, body: bytes | None = None, timeout: float = 60.0
) -> tuple[int, bytes]:
    """Send one Engine API request with the standard library; return status and body."""
    if host.startswith("unix://"):
        connection: http.client.HTTPConnection = _UnixConnection(host[len("unix://") :], timeout)
    else:
        address = host.split("://", 1)[-1]
        name, _, port = address.rpartition(":")
        connection = http.client.HTTPConnection(name, int(port), timeout=timeout)
    try:
        headers = {"Content-Type": "application/x-tar"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _start_dockerd(
    dockerd: str, workdir: Path, driver: str
) -> tuple[subprocess.Popen[bytes], str, str | None]:
    socket_path = workdir / "docker.sock"
    log_path = workdir / f"dockerd-{driver}.log"
    command = [
        dockerd,
        "--data-root",
        str(workdir / f"data-{driver}"),
        "--exec-root",
        str(workdir / "x"),
        "--pidfile",
        str(workdir / "dockerd.pid"),
        "-H",
        f"unix://{socket_path}",
        "--storage-driver",
        driver,
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--ip-forward=false",
        "--ip-masq=false",
        "--default-ulimit",
        "nofile=20000:20000",
    ]
    process = launch(command, log_path)

    def ready() -> bool:
        return socket_path.exists() and engine_request(
            f"unix://{socket_path}", "GET", "/_ping", timeout=2
        ) == (200, b"OK")

    failure = readiness_failure(
        ready, process, f"dockerd ({driver})", log_path, timeout=START_TIMEOUT
    )
    if failure is not None:
        stop_process(process, STOP_TIMEOUT)
    return process, f"unix://{socket_path}", failure


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """Yield a running Docker engine on a private socket, started once per session."""
    external = os.environ.get(DOCKER_HOST_VARIABLE)
    if external:
        yield DockerEngine(external)
        return
    dockerd = find_command("dockerd", "dockerd is not installed (scripts/install-test-servers)")
    workdir = tmp_path_factory.mktemp("dockerd")
    process, host, failure = _start_dockerd(dockerd, workdir, "overlay2")
    if failure is not None:
        logger.warning("dockerd could not start with overlay2, trying vfs: %s", failure)
        process, host, second = _start_dockerd(dockerd, workdir, "vfs")
        if second is not None:
            pytest.skip(f"dockerd cannot start here: {failure}\n--- with vfs: {second}")
    try:
        yield DockerEngine(host)
    finally:
        stop_process(process, STOP_TIMEOUT)
        _unmount_below(workdir)


def _unmount_below(folder: Path) -> None:
    """Unmount what dockerd left mounted in its folders (its network namespace file).

    Left mounted, it makes the folder impossible to delete, and pytest's clean-up of
    old temporary folders trips over it in later sessions.
    """
    prefix = str(folder.resolve()) + os.sep
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):  # the deepest first
        result = subprocess.run(
            ["umount", "-l", point], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            logger.warning("could not unmount %s: %s", point, result.stderr.strip())


@functools.cache
def busybox_rootfs_tar() -> bytes:
    """Return an uncompressed tar of a root filesystem: static busybox and its applets."""
    if not BUSYBOX.exists():
        pytest.skip("/bin/busybox is not installed (busybox-static)")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755)):
            entry = tarfile.TarInfo(folder)
            entry.type, entry.mode = tarfile.DIRTYPE, mode
            tar.addfile(entry)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def busybox_image(docker_engine: DockerEngine) -> str:
    """Import ``busybox:local`` into the test engine (POST /images/create?fromSrc=-)."""
    query = urlencode(
        {"fromSrc": "-", "repo": "busybox", "tag": "local", "changes": 'CMD ["/bin/sh"]'}
    )
    status, body = engine_request(
        docker_engine.host, "POST", f"/images/create?{query}", busybox_rootfs_tar()
    )
    if status != 200 or b'"error' in body:
        pytest.fail(f"importing {TEST_IMAGE} failed ({status}): {body[-500:]!r}")
    return TEST_IMAGE


# --- pushing images over the registry API ------------------------------------------------


def layer_of(files: dict[str, bytes], base: bytes | None = None) -> bytes:
    """Return an uncompressed layer tar: ``base`` (a tar) plus ``files`` (path -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if base is not None:
            with tarfile.open(fileobj=io.BytesIO(base)) as source:
                for member in source.getmembers():
                    tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        for path, content in files.items():
            entry = tarfile.TarInfo(path)
            entry.size, entry.mode = len(content), 0o644
            tar.addfile(entry, io.BytesIO(content))
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _upload_blob(client: Any, base_url: str, data: bytes) -> str:
    digest = _digest(data)
    head = await client.request("HEAD", f"{base_url}/blobs/{digest}")
    if head.status == 200:
        return digest
    started = await client.request("POST", f"{base_url}/blobs/uploads/")
    assert started.status == 202, started
    location = urljoin(base_url + "/", started.headers["Location"])
    separator = "&" if "?" in location else "?"
    done = await client.request(
        "PUT",
        f"{location}{separator}digest={quote(digest)}",
        headers={"Content-Type": "application/octet-stream"},
        data=data,
    )
    assert done.status == 201, done
    return digest


async def push_image(
    client: Any,
    base_url: str,
    tag: str,
    layers: list[bytes],
    *,
    labels: dict[str, str] | None = None,
    cmd: list[str] | None = None,
) -> str:
    """Push an image of uncompressed ``layers`` as ``tag``; return the manifest digest.

    ``client`` is a :class:`~pydatatask.repository.docker.DockerRegistryClient` and
    ``base_url`` the repository's API root (``DockerRepository.base_url``). The labels end
    up in the image config, so images with different labels have different digests.
    """
    compressed = [gzip.compress(layer, mtime=0) for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd or ["/bin/sh"], "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer) for layer in layers]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config_bytes),
            "digest": await _upload_blob(client, base_url, config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": len(blob),
                "digest": await _upload_blob(client, base_url, blob),
            }
            for blob in compressed
        ],
    }
    body = json.dumps(manifest).encode()
    response = await client.request(
        "PUT",
        f"{base_url}/manifests/{tag}",
        headers={"Content-Type": manifest["mediaType"]},
        data=body,
    )
    assert response.status == 201, response
    return _digest(body)
