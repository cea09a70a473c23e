"""How to run SeaweedFS's ``weed mini`` as a private S3 server on loopback.

Shared by the test fixtures and the benchmarks, so it imports nothing from pytest.
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

__all__ = ["PORT_FLAGS", "free_loopback_ports", "mini_command"]

# Every listener weed mini opens; left to their defaults some would collide between runs.
PORT_FLAGS = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
]


def free_loopback_ports(count: int) -> list[int]:
    """Return ``count`` distinct loopback ports that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]


def mini_command(
    weed: str, workdir: Path, access_key: str, secret_key: str
) -> tuple[list[str], int]:
    """Prepare ``workdir`` and return the ``weed mini`` command line and its S3 port.

    The server listens on loopback only, checks SigV4 signatures against one identity,
    refuses to delete non-empty buckets or create buckets implicitly (as AWS does), and
    sends no telemetry.
    """
    identities = {
        "identities": [
            {
                "name": "pydatatask",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    config = workdir / "s3.json"
    config.write_text(json.dumps(identities))
    (workdir / "data").mkdir(exist_ok=True)
    ports = dict(zip(PORT_FLAGS, free_loopback_ports(len(PORT_FLAGS)), strict=True))
    command = [
        weed,
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",  # it would otherwise report to a public address
        f"-s3.config={config}",
        "-s3.allowDeleteBucketNotEmpty=false",
        "-s3.autoCreateBucket=false",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        f"-s3.localSocket={workdir / 's3.sock'}",
    ]
    return command, ports["s3.port"]
