"""Pipeline files over a Kubernetes API server and a Docker registry, from settings."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jsonschema")

import pydatatask
from pydatatask.config import load_pipeline
from tests.servers.docker import RegistryServer, layer_of, push_image
from tests.servers.kubeapi import FakeKubeServer

pytestmark = pytest.mark.backend


async def test_kube_task_with_a_kubernetes_resource_from_a_kubeconfig(
    tmp_path: Path, kube_api: FakeKubeServer, busybox_image: str
) -> None:
    pytest.importorskip("kubernetes_asyncio")
    (tmp_path / "kube").mkdir()
    (tmp_path / "kube" / "config").write_text(
        textwrap.dedent(
            """
            apiVersion: v1
            kind: Config
            clusters: [{name: fake, cluster: {server: "${SERVER}"}}]
            users: [{name: tester, user: {token: unused}}]
            contexts: [{name: test, context: {cluster: fake, user: tester}}]
            current-context: test
            """
        ).replace("${SERVER}", kube_api.url)
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        textwrap.dedent(
            """
            app: "${APP}"
            resources:
              cluster: {kind: kubernetes, kubeconfig: kube/config, context: test}
            repositories:
              names: {kind: memory, data: {ada: 1, bob: 2}}
              logs: {kind: memory-blob, codec: text}
            tasks:
              greet:
                kube:
                  apiVersion: v1
                  kind: Pod
                  spec:
                    containers:
                      - name: main
                        image: "${IMAGE}"
                        command: [/bin/sh, -c, "echo hello {{ job }}"]
                resource: cluster
                ready: names
                logs: logs
            """
        )
    )
    settings = {"APP": f"k{uuid.uuid4().hex[:8]}", "IMAGE": busybox_image}
    pipeline = load_pipeline(path, settings)
    async with pipeline:
        report = await pydatatask.run(pipeline, timeout=90)
        assert (report.launched, report.failed) == (2, 0)
        logs: Any = pipeline.tasks["greet"].links["logs"].repo
        assert await logs.load("ada") == "hello ada\n"
        assert await logs.load("bob") == "hello bob\n"


async def test_docker_repository_with_a_registry_resource(
    tmp_path: Path, docker_registry: RegistryServer
) -> None:
    pytest.importorskip("aiohttp")
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        textwrap.dedent(
            """
            resources:
              registry: {kind: docker-registry, timeout: 30}
            repositories:
              images: {kind: docker, resource: registry, domain: "${DOMAIN}", repository: "${NAME}"}
              names: {kind: file, path: names, extension: .txt}
            tasks:
              note:
                process: "echo {{ image }} > {{ out }}"
                inputs: {image: images}
                outputs: {out: names}
            """
        )
    )
    name = f"config/{uuid.uuid4().hex[:8]}"
    pipeline = load_pipeline(path, {"DOMAIN": docker_registry.url, "NAME": name})
    async with pipeline:
        images: Any = pipeline.tasks["note"].links["image"].repo
        layer = layer_of({"hello.txt": b"hello\n"})
        await push_image(images.client(), images.base_url, "v1", [layer])
        report = await pydatatask.run(pipeline, timeout=60)
        assert (report.launched, report.failed) == (1, 0)
    expected = f"{docker_registry.domain}/{name}:v1\n"
    assert (tmp_path / "names" / "v1.txt").read_text() == expected
