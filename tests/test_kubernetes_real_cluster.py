"""A small pipeline on a real Kubernetes cluster: the one ``KUBECONFIG`` names.

Set ``PYDATATASK_TEST_KUBE_NAMESPACE`` (default ``default``) and
``PYDATATASK_TEST_KUBE_IMAGE`` (default ``busybox:1.36``, which the cluster must be able
to pull) to choose where and what runs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import pydatatask as pdt

pytestmark = [
    pytest.mark.backend,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG is not set: no real Kubernetes cluster to run pods on",
    ),
]

NAMESPACE = os.environ.get("PYDATATASK_TEST_KUBE_NAMESPACE", "default")
IMAGE = os.environ.get("PYDATATASK_TEST_KUBE_IMAGE", "busybox:1.36")

TEMPLATE = f"""
apiVersion: v1
kind: Pod
spec:
  containers:
  - name: main
    image: {IMAGE}
    resources: {{requests: {{cpu: 50m, memory: 16Mi}}}}
    command:
    - /bin/sh
    - -c
    - |
      echo hello {{{{ job | shquote }}}} {{{{ words | shquote }}}}
      [ {{{{ job | shquote }}}} != fails ] || exit 4
"""


async def test_a_small_pipeline_on_a_real_cluster() -> None:
    pytest.importorskip("kubernetes_asyncio")
    from kubernetes_asyncio import config
    from kubernetes_asyncio.client import ApiClient, Configuration

    from pydatatask.executor.kubernetes import PodManager
    from pydatatask.task.kubernetes import KubeTask

    session = pdt.Session()

    @session.resource
    async def kube() -> AsyncIterator[Any]:
        configuration = Configuration()
        await config.load_kube_config(
            config_file=os.environ["KUBECONFIG"], client_configuration=configuration
        )
        async with ApiClient(configuration) as client:
            yield client

    podman = PodManager(f"pdt-test-{uuid.uuid4().hex[:8]}", NAMESPACE, kube, poll_interval=1.0)
    words = pdt.InProcessMetadataRepository({"first": "one two", "second": "three", "fails": "x"})
    logs = pdt.InProcessBlobRepository()
    quota = pdt.ResourceManager(pdt.Resources.parse(cpu="100m", mem="1Gi"))
    task = KubeTask("hello", podman, quota, TEMPLATE, logs=logs, timeout=300)
    task.link("words", words, is_input=True)
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        report = await pdt.run(pipeline, timeout=600)
        assert await podman.list_pods("hello") == []
    assert (report.launched, report.failed) == (3, 1)
    records = task.done.data  # type: ignore[attr-defined]
    assert logs.data["first"] == b"hello first one two\n"
    assert logs.data["second"] == b"hello second three\n"
    assert (records["first"]["reason"], records["first"]["exit_code"]) == ("Succeeded", 0)
    assert (records["fails"]["reason"], records["fails"]["exit_code"]) == ("Failed", 4)
    assert records["first"]["node"]
