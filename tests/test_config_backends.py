"""Pipeline files over real servers: S3 and MongoDB, and a Docker engine."""

from __future__ import annotations

import shutil
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jsonschema")

import pydatatask
from pydatatask.config import load_pipeline
from tests.servers.docker import DockerEngine
from tests.servers.mongodb import MongoServer
from tests.servers.s3 import S3Server
from tests.servers.sshd import SSHServer

pytestmark = [
    pytest.mark.backend,
    # The driver can drop a monitor socket when a client closes mid-connect.
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]

GOOD = Path(__file__).resolve().parent / "config_files" / "good"

S3_STEPS = textwrap.dedent(
    """
    def count(text):
        return {"words": len(text.split())}


    async def shout(job, text, counts):
        return f"{job}: {text.upper()} ({counts['words']} words)"
    """
)


async def test_s3_and_mongodb_repositories_from_settings(
    tmp_path: Path,
    s3_server: S3Server,
    s3_shared_bucket: str,
    s3_prefix: str,
    mongo_server: MongoServer,
) -> None:
    pytest.importorskip("pymongo")
    shutil.copy(GOOD / "s3_mongodb.yaml", tmp_path / "pipeline.yaml")
    (tmp_path / "s3_steps.py").write_text(S3_STEPS)
    settings = {
        "S3_ENDPOINT": s3_server.endpoint_url,
        "S3_KEY": s3_server.access_key,
        "S3_SECRET": s3_server.secret_key,
        "S3_BUCKET": s3_shared_bucket,
        "S3_PREFIX": s3_prefix,
        "MONGO_URI": mongo_server.uri,
        "MONGO_DATABASE": f"config_{uuid.uuid4().hex[:12]}",
    }
    pipeline = load_pipeline(tmp_path / "pipeline.yaml", settings)
    count, shout = pipeline.tasks["count"], pipeline.tasks["shout"]
    texts: Any = count.links["text"].repo
    assert type(pipeline.leases).__name__ == "MongoMetadataRepository"
    async with pipeline:
        await texts.save("zen", "beautiful is better")
        await texts.save("rain", "the rain in spain")
        report = await pydatatask.run(pipeline, timeout=60)
        assert (report.launched, report.failed) == (4, 0)
        shouted: Any = shout.links["shouted"].repo
        assert await shouted.load("zen") == "zen: BEAUTIFUL IS BETTER (3 words)"
        counts: Any = count.links["counts"].repo
        assert await counts.info("rain") == {"words": 4}
        record = await count.done.info("zen")
        assert record["success"] is True
        assert sorted([job async for job in count.done]) == ["rain", "zen"]
    assert (tmp_path / ".pydatatask" / "done" / "shout" / "zen.yaml").exists()


async def test_container_task_from_a_file(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str
) -> None:
    pytest.importorskip("aiodocker")
    shutil.copy(GOOD / "container.yaml", tmp_path / "pipeline.yaml")
    pipeline = load_pipeline(
        tmp_path / "pipeline.yaml", {"DOCKER_URL": docker_engine.host, "IMAGE": busybox_image}
    )
    async with pipeline:
        report = await pydatatask.run(pipeline, timeout=90)
    assert (report.launched, report.failed) == (2, 0)
    assert (tmp_path / "shouted" / "first.txt").read_text() == "HELLO\nfirst\n"
    assert (tmp_path / "shouted" / "second.txt").read_text() == "WORLD\nsecond\n"


async def test_process_task_over_ssh_from_a_file(tmp_path: Path, sshd_server: SSHServer) -> None:
    pytest.importorskip("asyncssh")
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        textwrap.dedent(
            """
            resources:
              host:
                kind: ssh
                host: "${SSH_HOST}"
                port: ${SSH_PORT}
                username: "${SSH_USER}"
                client_keys: ["${SSH_KEY}"]
                known_hosts: "${SSH_KNOWN_HOSTS}"
                agent: false
            repositories:
              words: {kind: memory-blob, data: {first: "hello\\n", second: "world\\n"}}
              shouted: {kind: memory-blob}
            tasks:
              shout:
                process: "tr a-z A-Z"
                manager: host
                remote_path: "${REMOTE_PATH}"
                stdin: words
                stdout: shouted
            """
        )
    )
    settings = {
        "SSH_HOST": sshd_server.host,
        "SSH_PORT": str(sshd_server.port),
        "SSH_USER": sshd_server.username,
        "SSH_KEY": sshd_server.client_key,
        "SSH_KNOWN_HOSTS": sshd_server.known_hosts,
        "REMOTE_PATH": str(tmp_path / "remote"),
    }
    pipeline = load_pipeline(path, settings)
    async with pipeline:
        report = await pydatatask.run(pipeline, timeout=60)
    assert (report.launched, report.failed) == (2, 0)
    shouted: Any = pipeline.tasks["shout"].links["stdout"].repo
    assert shouted.data == {"first": b"HELLO\n", "second": b"WORLD\n"}
