"""KubeTask and KubeFunctionTask against a small API server whose pods run on a real engine."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("kubernetes_asyncio")
pytest.importorskip("aiodocker")

import pydatatask as pdt
from pydatatask import admin
from pydatatask.executor.kubernetes import PodManager
from pydatatask.executor.pods import ANNOTATION_JOB, PodReport, label_value
from pydatatask.quota import ResourceManager, Resources
from pydatatask.task.kubernetes import IN_POD_VARIABLE, KubeFunctionTask, KubeTask
from tests.servers.kubeapi import NODE, FakeKubeServer, kube_client, parse_selector

pytestmark = pytest.mark.backend

NAMESPACE = "default"
Memory = pdt.InProcessMetadataRepository
Blobs = pdt.InProcessBlobRepository
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def pod_template(script: str, *, image: str = "busybox:local", container: str = "main") -> str:
    """A pod manifest template running ``script`` (itself jinja) with /bin/sh."""
    body = "\n".join("        " + line for line in script.strip().splitlines())
    return (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {purpose: test}\nspec:\n"
        f"  containers:\n  - name: {container}\n    image: {image}\n"
        "    resources: {requests: {cpu: {{ cpu | default('100m') }}, memory: 16Mi}}\n"
        "    command:\n    - /bin/sh\n    - -c\n    - |\n"
        f"{body}\n"
    )


def kube_session(server: FakeKubeServer) -> tuple[pdt.Session, Callable[[], Any]]:
    session = pdt.Session()

    @session.resource
    async def kube() -> AsyncIterator[Any]:
        async with kube_client(server) as client:
            yield client

    return session, kube


def new_podman(kube: Callable[[], Any] | None, server: FakeKubeServer | None = None) -> PodManager:
    return PodManager(
        f"t{uuid.uuid4().hex[:8]}", NAMESPACE, kube, poll_interval=0.1, max_poll_interval=0.4
    )


def pods_of(server: FakeKubeServer, podman: PodManager) -> list[dict[str, Any]]:
    return [
        pod.body
        for pod in list(server.pods.values())
        if pod.body["metadata"]["labels"].get("pydatatask.app") == podman.app
    ]


async def eventually(check: Callable[[], Any], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


async def running_pod(podman: PodManager, task: str, job: str) -> dict[str, Any]:
    for _ in range(200):
        pod = await podman.get(podman.pod_name(task, job))
        if pod is not None and pod["status"].get("phase") == "Running":
            return pod
        await asyncio.sleep(0.05)
    pytest.fail(f"the pod of {job!r} never ran")


async def test_twenty_pods_with_logs_and_records(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    jobs = [f"job-{index:02d}" for index in range(20)]
    labels = Memory({job: f"label of {job}" for job in jobs})
    logs = Blobs()
    task = KubeTask(
        "echoer",
        podman,
        None,
        pod_template(
            """
            echo {{ labels | shquote }} {{ job | shquote }}
            echo "on stderr" >&2
            case {{ job | shquote }} in job-07) exit 3;; esac
            """
        ),
        logs=logs,
    )
    task.link("labels", labels, is_input=True)
    pipeline = pdt.Pipeline([task], session)
    before = len(kube_api.list_requests)
    started = time.monotonic()
    async with pipeline:
        report = await pdt.run(pipeline, timeout=60)
        await eventually(lambda: not pods_of(kube_api, podman))
    elapsed = time.monotonic() - started
    assert report.launched == 20
    # Following 20 pods costs one list request per poll, not one per pod.
    lists = len(kube_api.list_requests) - before
    assert lists <= elapsed / podman.poll_interval + 5, lists
    records = task.done.data  # type: ignore[attr-defined]
    assert set(records) == set(jobs)
    for job in jobs:
        record = records[job]
        assert f"label of {job} {job}\n" in logs.data[job].decode()
        assert "on stderr\n" in logs.data[job].decode()
        assert record["node"] == NODE
        assert record["image"] == "busybox:local"
        assert record["pod"] == podman.pod_name("echoer", job)
        assert record["pod_created"]
        assert record["pod_finished"]
        assert record["attempt"] == 1
        if job == "job-07":
            assert (record["success"], record["reason"], record["exit_code"]) == (
                False,
                "Failed",
                3,
            )
            assert "exit status 3" in record["exception"]
        else:
            assert (record["success"], record["reason"], record["exit_code"]) == (
                True,
                "Succeeded",
                0,
            )


async def test_timeout_deletes_the_pod(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    task = KubeTask(
        "sleeper", podman, None, pod_template("sleep 60"), ready=Memory({"slow": 1}), timeout=1.5
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline, timeout=30)
        assert not pods_of(kube_api, podman)
    record = task.done.data["slow"]  # type: ignore[attr-defined]
    assert (record["success"], record["timeout"], record["reason"]) == (False, True, "Timeout")


async def test_kill_deletes_a_live_pod(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    task = KubeTask("victim", podman, None, pod_template("sleep 60"), ready=Memory({"doomed": 1}))
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        running = asyncio.create_task(pdt.run(pipeline, timeout=30))
        await running_pod(podman, "victim", "doomed")
        assert await task.kill("doomed") is True
        assert await podman.get(podman.pod_name("victim", "doomed")) is None
        assert await task.kill("doomed") is False
        await running
    record = task.done.data["doomed"]  # type: ignore[attr-defined]
    assert (record["success"], record["reason"]) == (False, "Deleted")


async def test_rm_of_a_running_job_deletes_its_pod(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    task = KubeTask("removed", podman, None, pod_template("sleep 60"), ready=Memory({"gone": 1}))
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pipeline.update()
        first = await running_pod(podman, "removed", "gone")
        await admin.rm(pipeline, "removed", ["gone"])
        assert not pipeline.scheduler.is_running("removed", "gone")
        assert all(
            pod["metadata"]["uid"] != first["metadata"]["uid"] for pod in pods_of(kube_api, podman)
        )
    assert "gone" not in task.done.data  # type: ignore[attr-defined]


async def test_image_failures_are_reported_promptly(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    logs = Blobs()
    task = KubeTask(
        "pull",
        podman,
        None,
        pod_template("true", image="{{ image }}"),
        logs=logs,
        timeout=30,
    )
    task.link(
        "image",
        Memory({"absent": "registry.invalid/nothing:1", "bad": "Not A Name"}),
        is_input=True,
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        report = await pdt.run(pipeline, timeout=30)
        await eventually(lambda: not pods_of(kube_api, podman))
    assert report.failed == 2
    records = task.done.data  # type: ignore[attr-defined]
    assert records["absent"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "registry.invalid/nothing:1" in records["absent"]["exception"]
    assert records["bad"]["reason"] == "InvalidImageName"
    assert all(
        record["success"] is False and record.get("exit_code") is None
        for record in records.values()
    )
    assert logs.data["absent"] == b""


async def test_evicted_pod_is_a_failure(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    task = KubeTask("evicted", podman, None, pod_template("sleep 60"), ready=Memory({"e": 1}))
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        running = asyncio.create_task(pdt.run(pipeline, timeout=30))
        pod = await running_pod(podman, "evicted", "e")
        await asyncio.to_thread(kube_api.evict, NAMESPACE, pod["metadata"]["name"])
        await running
    record = task.done.data["e"]  # type: ignore[attr-defined]
    assert (record["success"], record["reason"]) == (False, "Evicted")
    assert "low on resource" in record["message"]


async def test_cpu_requests_limit_concurrency(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    quota = ResourceManager(Resources.parse(cpu="1", mem="1Gi"))
    task = KubeTask(
        "limited",
        new_podman(kube),
        quota,
        pod_template("sleep 0.6"),
        ready=Memory({f"q{index}": 1 for index in range(6)}),
        env={"HELLO": "world"},
    )
    task.link("cpu", Memory({f"q{index}": "500m" for index in range(6)}), is_input=True)
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline, timeout=60)
    records = task.done.data  # type: ignore[attr-defined]
    assert len(records) == 6
    assert all(record["success"] for record in records.values())
    spans = [(record["start_time"], record["end_time"]) for record in records.values()]
    most = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert most == 2
    assert quota.used.cpu == 0


async def test_a_pod_larger_than_the_quota_fails(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    quota = ResourceManager(Resources.parse(cpu="1", mem="1Gi"))
    template = pod_template("true").replace("{{ cpu | default('100m') }}", "{{ cpu }}")
    # The request is known from the template alone: the scheduler refuses the job.
    task = KubeTask(
        "huge", podman, quota, template.replace("{{ cpu }}", "'4'"), ready=Memory({"fixed": 1})
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline, timeout=20)
    records = task.done.data  # type: ignore[attr-defined]
    assert all("QuotaExceededError" in record["exception"] for record in records.values())
    assert not [name for _, name in kube_api.created if name.startswith(podman.app)]

    # The request is known only once the job's manifest is rendered: the job fails then.
    per_job = KubeTask("per-job", podman, quota, template, ready=Memory({"big": 1}))
    per_job.link("cpu", Memory({"big": "3"}), is_input=True)
    pipeline = pdt.Pipeline([per_job], session)
    async with pipeline:
        await pdt.run(pipeline, timeout=20)
    assert "QuotaExceededError" in per_job.done.data["big"]["exception"]  # type: ignore[attr-defined]
    assert quota.used == Resources()


HOSTILE = [
    "UPPER lower",
    "ünïcödé-日本語",
    "-leading-dash",
    "a b $(touch /tmp/x) `id` ' \"",
    "dots...and__under",
    "x" * 200,
    "x" * 201,
    "Upper",
    "upper",
    "%",
    "ends-with-dash-",
]


def test_pod_names_are_valid_and_unique() -> None:
    podman = PodManager("my.app_1", NAMESPACE, None)
    names = {podman.pod_name(task, job) for task in ("t", "_Task-") for job in HOSTILE}
    assert len(names) == 2 * len(HOSTILE)
    assert all(DNS_LABEL.fullmatch(name) and len(name) <= 63 for name in names), names
    assert podman.pod_name("t", "plain") == podman.pod_name("t", "plain")
    for text in ("_Task-", "x" * 80, "ok", "a.b-c_d"):
        value = label_value(text)
        assert len(value) <= 63
        assert re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value)
    assert label_value("ok") == "ok"
    with pytest.raises(pdt.ConfigurationError):
        PodManager("bad app!", NAMESPACE, None)
    with pytest.raises(pdt.ConfigurationError):
        PodManager("app", "Bad_Namespace", None)


async def test_hostile_ids_run_with_exact_ids(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    jobs = ["ünïcödé-日本語", "-leading-dash", "a b $(echo no) `id`", "y" * 150]
    logs = Blobs()
    task = KubeTask(
        "hostile",
        podman,
        None,
        pod_template("printf '%s' {{ job | shquote }}"),
        logs=logs,
        ready=Memory(dict.fromkeys(jobs, 1)),
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline, timeout=30)
    names = {podman.pod_name("hostile", job) for job in jobs}
    annotated = {kube_api.annotations[name][ANNOTATION_JOB] for name in names}
    assert annotated == set(jobs)
    assert {job: logs.data[job].decode() for job in jobs} == {job: job for job in jobs}
    assert all(record["success"] for record in task.done.data.values())  # type: ignore[attr-defined]


async def test_invalid_manifests_are_clear_errors(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    task = KubeTask(
        "invalid",
        podman,
        None,
        pod_template("true", container="{{ container | raw }}"),
        ready=Memory({"bad-name": 1, "not-yaml": 1}),
    )
    task.link(
        "container",
        Memory({"bad-name": "Not_A_Label", "not-yaml": "x\nkind: Service"}),
        is_input=True,
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline, timeout=20)
        records = task.done.data  # type: ignore[attr-defined]
        assert records["bad-name"]["exception"].startswith(
            "ConfigurationError: the Kubernetes API rejected"
        )
        assert (
            'spec.containers[0].name: Invalid value: "Not_A_Label"'
            in records["bad-name"]["exception"]
        )
        assert (
            "job 'not-yaml': the rendered manifest is not YAML" in records["not-yaml"]["exception"]
        )
        with pytest.raises(pdt.ConfigurationError, match="must render a Pod manifest"):
            podman.complete({"kind": "Service", "spec": {}}, "invalid", "job", 1, {})
        with pytest.raises(pdt.ConfigurationError, match="is invalid"):
            await podman.create({"metadata": {"name": "UPPER"}, "spec": {"containers": []}})


RESHAPING_NOTES = {
    "override": "x\n    command: [/bin/sh, -c, 'echo hijacked']",
    "append": "y\n    - {name: EVIL, value: injected}",
    "a}, {name: EVIL, value: pwned": "plain",
    "k: v": "{evil: 1}",
    "- dash": "- item",
    "#hash": "&anchor *alias",
    "12": "true",
}


async def test_ids_and_values_cannot_reshape_the_pod(kube_api: FakeKubeServer) -> None:
    session, kube = kube_session(kube_api)
    logs = Blobs()
    template = """
apiVersion: v1
kind: Pod
metadata:
  labels: {purpose: test}
spec:
  containers:
  - name: main
    image: busybox:local
    command: [/bin/sh, -c, 'printf "%s|%s|%s" "$JOB" "$NOTE" "$EVIL"']
    env:
    - {name: JOB, value: {{ job }}}
    - name: NOTE
      value: {{ note }}
"""
    task = KubeTask("reshape", new_podman(kube), None, template, logs=logs)
    task.link("note", Memory(RESHAPING_NOTES), is_input=True)
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        report = await pdt.run(pipeline, timeout=60)
    assert report.succeeded == len(RESHAPING_NOTES)
    assert {job: logs.data[job].decode() for job in RESHAPING_NOTES} == {
        job: f"{job}|{note}|" for job, note in RESHAPING_NOTES.items()
    }


async def test_api_errors_translate(kube_api: FakeKubeServer, kube_api_client: Any) -> None:
    podman = PodManager("errors", NAMESPACE, lambda: kube_api_client)
    assert await podman.get("nothing-here") is None
    assert await podman.delete("nothing-here") is False
    manifest = podman.complete(
        {"spec": {"containers": [{"name": "main", "image": "busybox:local", "command": ["true"]}]}},
        "t",
        "j",
        1,
        {},
    )
    assert await podman.create(manifest) is not None
    assert await podman.create(manifest) is None  # 409: the job's pod exists, no double launch
    assert await podman.delete(manifest["metadata"]["name"]) is True
    from kubernetes_asyncio.client import ApiClient, Configuration

    from tests.servers.docker import free_loopback_port

    async with ApiClient(Configuration(host=f"http://127.0.0.1:{free_loopback_port()}")) as client:
        unreachable = PodManager("errors", NAMESPACE, lambda: client)
        with pytest.raises(pdt.BackendUnavailableError) as caught:
            await unreachable.list_pods("t")
    assert caught.value.__cause__ is not None


async def test_live_jobs_cost_one_list_request(
    kube_api: FakeKubeServer, kube_api_client: Any
) -> None:
    podman = PodManager(f"t{uuid.uuid4().hex[:8]}", NAMESPACE, lambda: kube_api_client)
    task = KubeTask("found", podman, None, pod_template("sleep 30"))
    for job in ("a", "b", "c"):
        async with task.rendered(job, 2) as spec:
            await podman.submit("found", job, 2, spec)
    before = len(kube_api.list_requests)
    assert await task.live_jobs() == {"a": 2, "b": 2, "c": 2}
    assert kube_api.list_requests[before:] == [podman.selector("found")]
    for job in ("a", "b", "c"):
        assert await task.kill(job)


async def test_without_a_client_the_kubeconfig_is_used(
    tmp_path: Path, kube_api: FakeKubeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": kube_api.url}}],
        "users": [{"name": "tester", "user": {}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "tester"}}],
        "current-context": "test",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    podman = PodManager("from-kubeconfig", NAMESPACE)
    assert await podman.list_pods("nothing") == []
    assert kube_api.list_requests[-1] == podman.selector("nothing")


def test_selectors_of_the_test_server() -> None:
    labels = {"app": "x", "task": "t1", "tier": "db"}
    assert parse_selector("app=x,task==t1")(labels)
    assert parse_selector("task in (t1, t2),tier notin (web)")(labels)
    assert not parse_selector("app!=x")(labels)
    assert parse_selector("tier,!missing")(labels)
    assert not parse_selector("missing")(labels)


def test_pod_report_reads_statuses() -> None:
    pod = {
        "metadata": {"name": "p", "annotations": {ANNOTATION_JOB: "j"}, "labels": {}},
        "spec": {"containers": [{"name": "a", "image": "i"}], "nodeName": "n"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}],
        },
    }
    assert not PodReport.of(pod).ended
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ImagePullBackOff"}}
    assert PodReport.of(pod).reason == "ImagePullBackOff"
    pod["status"] = {
        "phase": "Failed",
        "containerStatuses": [
            {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "t"}}}
        ],
    }
    report = PodReport.of(pod)
    assert (report.reason, report.exit_code, report.job, report.node) == ("Failed", 137, "j", "n")


async def test_function_task_runs_the_body_directly_inside_its_pod(
    kube_api: FakeKubeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, kube = kube_session(kube_api)
    podman = new_podman(kube)
    done = Memory()
    outputs = Memory()

    @KubeFunctionTask("inside", podman, None, "{{ command }}", done=done)
    async def inside(job: str, outputs: Memory) -> None:
        await outputs.dump(job, f"ran {job}")

    inside.link("outputs", outputs, is_output=True)
    assert inside.argv("j")[2:] == ["launch", "inside", "j", "--sync", "--force"]
    assert inside.argv("-j")[-3:] == ["--", "inside", "-j"]
    monkeypatch.setenv(IN_POD_VARIABLE, "inside")
    created = len(kube_api.created)
    pipeline = pdt.Pipeline([inside], session)
    async with pipeline:
        record = await admin.launch(pipeline, "inside", "j", force=True)
    assert record["success"] is True
    assert outputs.data == {"j": "ran j"}
    assert done.data == {}  # the controller writes the one record, from the pod
    assert len(kube_api.created) == created


FUNCTION_PIPELINE = """
import json, os, sys
import pydatatask as pdt
from kubernetes_asyncio.client import ApiClient, Configuration
from pydatatask.executor.kubernetes import PodManager
from pydatatask.task.kubernetes import KubeFunctionTask

BASE = os.path.dirname(os.path.abspath(__file__))
session = pdt.Session()

@session.resource
async def kube():
    async with ApiClient(Configuration(host=URL)) as client:
        yield client

TEMPLATE = '''
apiVersion: v1
kind: Pod
spec:
  hostNetwork: true
  containers:
  - name: main
    image: busybox:local
    command: {{ command }}
    volumeMounts:
    {%- for path in python_paths if path not in OWN %}
    - {name: python{{ loop.index }}, mountPath: {{ path }}, readOnly: true}
    {%- endfor %}
    {%- for mount in MOUNTS %}
    - {{ mount }}
    {%- endfor %}
  volumes:
  {%- for path in python_paths if path not in OWN %}
  - {name: python{{ loop.index }}, hostPath: {path: {{ path }}}}
  {%- endfor %}
  {%- for volume in VOLUMES %}
  - {{ volume }}
  {%- endfor %}
'''
podman = PodManager(APP, "default", kube, poll_interval=0.1, max_poll_interval=0.4)
results = pdt.FileRepository(BASE + "/results", ".json")

@KubeFunctionTask(
    "compute",
    podman,
    None,
    TEMPLATE,
    logs=pdt.FileRepository(BASE + "/logs", ".txt"),
    done=pdt.YamlMetadataFileRepository(BASE + "/done"),
    python=PYTHON,
)
async def compute(job, numbers, results):
    value = await numbers.info(job)
    if value < 0:
        raise ValueError(f"negative: {value}")
    with open("/proc/self/cmdline", "rb") as handle:
        argv = [part.decode() for part in handle.read().split(b"\\0")[:-1]]
    async with await results.open(job, "w") as writer:
        await writer.write(json.dumps(
            {"square": value * value, "pid": os.getpid(), "argv": argv,
             "in_pod": os.environ.get("PYDATATASK_IN_POD")}
        ))

compute.link("numbers", pdt.YamlMetadataFileRepository(BASE + "/numbers"), is_input=True)
compute.link("results", results, is_output=True)

@pdt.InProcessSyncTask("report", pdt.YamlMetadataFileRepository(BASE + "/report-done"))
async def report(job, results, summary):
    async with await results.open(job, "r") as reader:
        data = json.loads(await reader.read())
    await summary.dump(job, {"seen": data["square"]})

report.link("results", results, is_input=True)
report.link("summary", pdt.YamlMetadataFileRepository(BASE + "/summary"), is_output=True)
pipeline = pdt.Pipeline([compute, report], session)

if __name__ == "__main__":
    pdt.main(pipeline)
"""


def host_mounts(*paths: str) -> list[str]:
    """The host folders among ``paths`` and the /lib links, without nested ones."""
    wanted = sorted({os.path.realpath(path) for path in paths if os.path.exists(path)})
    outer = [path for path in wanted if not any(path.startswith(other + "/") for other in wanted)]
    return [*outer, *(link for link in ("/lib", "/lib64") if os.path.islink(link))]


async def test_function_task_runs_its_body_in_a_pod(
    tmp_path: Path, kube_api: FakeKubeServer
) -> None:
    # The pod sees the interpreter's environment through `python_paths`, wherever it
    # lives; the test adds the system libraries (busybox has none) and its own folder.
    scratch = await asyncio.to_thread(os.path.realpath, tmp_path)
    mounts = await asyncio.to_thread(host_mounts, "/usr", scratch)
    volumes = [
        {"name": f"v{index}", "hostPath": {"path": path}} for index, path in enumerate(mounts)
    ]
    volume_mounts = [
        {"name": f"v{index}", "mountPath": path, "readOnly": path != scratch}
        for index, path in enumerate(mounts)
    ]
    app = f"fn-{uuid.uuid4().hex[:8]}"
    text = FUNCTION_PIPELINE.replace("MOUNTS", json.dumps(volume_mounts))
    text = text.replace("VOLUMES", json.dumps(volumes)).replace("OWN", json.dumps(mounts))
    text = text.replace("URL)", f"{kube_api.url!r})").replace("APP,", f"{app!r},")
    text = text.replace("PYTHON,", f"{sys.executable!r},")
    script = tmp_path / "pipeline.py"
    script.write_text(text)
    (tmp_path / "numbers").mkdir()
    for job, value in {"seven": 7, "twelve": 12, "minus": -1}.items():
        (tmp_path / "numbers" / f"{job}.yaml").write_text(str(value))

    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stderr  # the job 'minus' fails
    for job, value in {"seven": 7, "twelve": 12}.items():
        result = json.loads((tmp_path / "results" / f"{job}.json").read_text())
        assert result["square"] == value * value
        assert result["pid"] == 1  # the body ran as the pod's own process
        assert result["argv"] == [
            sys.executable,
            str(script),
            "launch",
            "compute",
            job,
            "--sync",
            "--force",
        ]
        assert result["in_pod"] == "compute"
        assert yaml.safe_load((tmp_path / "summary" / f"{job}.yaml").read_text()) == {
            "seen": value * value
        }
        record = yaml.safe_load((tmp_path / "done" / f"{job}.yaml").read_text())
        assert (record["success"], record["reason"], record["exit_code"]) == (True, "Succeeded", 0)
        assert record["node"] == NODE
    failed = yaml.safe_load((tmp_path / "done" / "minus.yaml").read_text())
    assert (failed["success"], failed["reason"], failed["exit_code"]) == (False, "Failed", 1)
    assert "ValueError: negative: -1" in (tmp_path / "logs" / "minus.txt").read_text()
    assert not (tmp_path / "results" / "minus.json").exists()
    assert not [name for (_, name) in kube_api.pods if name.startswith(app)]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, pdt.BackendError),
        (403, pdt.BackendError),
        (422, pdt.ConfigurationError),
        (503, pdt.BackendUnavailableError),
        (500, pdt.BackendError),
    ],
)
def test_api_statuses_map_to_errors(status: int, error: type[Exception]) -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    from pydatatask.executor.kubernetes import _translate

    failure = ApiException(status=status, reason="Reason")
    failure.body = json.dumps({"kind": "Status", "message": f"the server says {status}"})
    with pytest.raises(error, match=f"the server says {status}") as caught, _translate("act"):
        raise failure
    assert caught.value.__cause__ is failure
    if status != 503:
        assert not isinstance(caught.value, pdt.BackendUnavailableError)
