"""A small Kubernetes API server whose pods really run, as containers on the test Docker engine.

It speaks the wire format of the core ``v1`` API for what pydatatask uses: discovery
(``/api``, ``/api/v1``, ``/version``), pods created, read, listed (with equality- and
set-based ``labelSelector``), deleted, and their logs; errors are ``Status`` objects with
the real codes and reasons (404 NotFound, 409 AlreadyExists, 422 Invalid, 400
BadRequest). A pod goes Pending -> Running -> Succeeded/Failed, with ``nodeName``,
``containerStatuses[].state`` and exit codes from its real containers. An image the
engine does not hold cannot be pulled (nothing is fetched from outside): the pod stays
Pending with ``ErrImagePull`` and then ``ImagePullBackOff``, as on a cluster.

What a container gets: the image, ``command`` as the entrypoint and ``args``, ``env``
(plain values), ``workingDir``, ``hostNetwork`` (else the ``none`` network),
``hostPath`` and ``emptyDir`` volumes through ``volumeMounts``, and CPU and memory
limits. Init containers, probes, secrets and watches are not supported.

The server runs in a thread with its own event loop on a free loopback port; the
``kube_api`` fixture starts it once per session on the ``docker_engine`` fixture's
engine, and ``kube_api_client`` yields a kubernetes-asyncio ``ApiClient`` for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from tests.servers.docker import DockerEngine
from tests.servers.processes import free_loopback_port

NODE = "kind-worker-1"
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_IMAGE = re.compile(r"[a-z0-9]+(?:[._/:@-][a-z0-9A-Z_.-]+)*")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
    }
    body.update(message=message, reason=reason, code=code)
    if details:
        body["details"] = details
    return body


# --- label selectors ----------------------------------------------------------------------


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [term.strip() for term in [*terms, current] if term.strip()]


LabelTest = Callable[[dict[str, str]], bool]


def _membership(key: str, values: set[str], inside: bool) -> LabelTest:
    return lambda labels: (labels.get(key) in values) == inside


def _equality(key: str, value: str, equal: bool) -> LabelTest:
    return lambda labels: (labels.get(key) == value) == equal


def _existence(key: str, present: bool) -> LabelTest:
    return lambda labels: (key in labels) == present


def parse_selector(selector: str) -> LabelTest:
    """Compile ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``."""
    tests: list[LabelTest] = []
    for term in _split_terms(selector):
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^()]*)\)", term):
            values = {value.strip() for value in match[3].split(",")}
            tests.append(_membership(match[1], values, inside=match[2] == "in"))
        elif match := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)", term):
            tests.append(_equality(match[1], match[3], equal=match[2] != "!="))
        elif match := re.fullmatch(r"(!?)([^=!\s(),]+)", term):
            tests.append(_existence(match[2], present=not match[1]))
        else:
            raise ValueError(f"unable to parse requirement: {term!r}")
    return lambda labels: all(test(labels) for test in tests)


# --- validation ---------------------------------------------------------------------------


def _invalid(pod: dict[str, Any]) -> list[dict[str, str]]:
    """Return the causes that make a pod invalid, as the API server words them."""
    causes: list[dict[str, str]] = []

    def cause(where: str, message: str) -> None:
        causes.append({"reason": "FieldValueInvalid", "message": message, "field": where})

    metadata, spec = pod.get("metadata") or {}, pod.get("spec")
    name = metadata.get("name")
    if not name:
        cause("metadata.name", "Required value: name or generateName is required")
    elif len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        cause(
            "metadata.name",
            f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
            "case alphanumeric characters, '-' or '.', and must start and end with an "
            "alphanumeric character",
        )
    for key, value in (metadata.get("labels") or {}).items():
        if not _LABEL_NAME.fullmatch(key.rpartition("/")[2]) or len(key.rpartition("/")[2]) > 63:
            cause("metadata.labels", f'Invalid value: "{key}": name part must be valid')
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            cause("metadata.labels", f'Invalid value: "{value}": a valid label must be ...')
    if not isinstance(spec, dict) or not spec.get("containers"):
        cause("spec.containers", "Required value")
        return causes
    if spec.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
        cause("spec.restartPolicy", f'Unsupported value: "{spec["restartPolicy"]}"')
    _invalid_containers(spec["containers"], cause)
    return causes


def _invalid_containers(containers: list[Any], cause: Callable[[str, str], None]) -> None:
    seen: set[str] = set()
    for index, container in enumerate(containers):
        where = f"spec.containers[{index}]"
        container_name = container.get("name") if isinstance(container, dict) else None
        if not container_name or not re.fullmatch(_DNS_LABEL, str(container_name)):
            cause(f"{where}.name", f'Invalid value: "{container_name}": a lowercase RFC 1123 label')
        elif container_name in seen:
            cause(f"{where}.name", f'Duplicate value: "{container_name}"')
        seen.add(str(container_name))
        if not isinstance(container, dict) or not container.get("image"):
            cause(f"{where}.image", "Required value")


# --- the server ---------------------------------------------------------------------------


@dataclass
class _Pod:
    body: dict[str, Any]
    runner: asyncio.Task[None] | None = None
    containers: dict[str, str] = field(default_factory=dict)
    scratch: list[str] = field(default_factory=list)


class FakeKubeServer:
    """The server; its public counters let tests check what clients asked for."""

    def __init__(self, docker_host: str) -> None:
        self.docker_host = docker_host
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.created: list[tuple[str, str]] = []
        """Every (namespace, name) created, in order: duplicates show double launches."""
        self.annotations: dict[str, dict[str, str]] = {}
        """The annotations of every pod created, by name."""
        self.list_requests: list[str] = []
        """The label selector of every list request."""
        self._versions = itertools.count(1000)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._docker: Any = None
        self._runner: Any = None

    # ---- life cycle, called from the test thread

    def start(self) -> None:
        self._thread.start()
        self.call(self._start())

    def stop(self) -> None:
        try:
            self.call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        """Run ``coroutine`` on the server's loop and return its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def evict(self, namespace: str, name: str) -> None:
        """Fail a running pod as the kubelet does under node pressure."""
        self.call(self._evict(namespace, name))

    async def _start(self) -> None:
        import aiodocker
        from aiohttp import web

        self._docker = aiodocker.Docker(url=self.docker_host)
        app = web.Application()
        base = "/api/v1/namespaces/{ns}/pods"
        app.router.add_get("/api", self._api)
        app.router.add_get("/api/v1", self._resources)
        app.router.add_get("/version", self._version)
        app.router.add_post(base, self._create)
        app.router.add_get(base, self._list)
        app.router.add_get(base + "/{name}", self._get)
        app.router.add_delete(base + "/{name}", self._delete)
        app.router.add_get(base + "/{name}/log", self._log)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        for pod in list(self.pods.values()):
            await self._destroy(pod)
        self.pods.clear()
        await self._runner.cleanup()
        await self._docker.close()

    # ---- handlers

    def _json(self, body: dict[str, Any], status: int = 200) -> Any:
        from aiohttp import web

        return web.json_response(body, status=status)

    def _fail(self, code: int, reason: str, message: str, **details: Any) -> Any:
        return self._json(_status(code, reason, message, **details), code)

    async def _api(self, request: Any) -> Any:
        address = {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
        body = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [address]}
        return self._json(body)

    async def _resources(self, request: Any) -> Any:
        verbs = ["create", "delete", "get", "list"]
        resources = [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": verbs,
            },
            {
                "name": "pods/log",
                "singularName": "",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get"],
            },
        ]
        return self._json({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})

    async def _version(self, request: Any) -> Any:
        return self._json({"major": "1", "minor": "31", "gitVersion": "v1.31.0-pydatatask-test"})

    async def _create(self, request: Any) -> Any:
        namespace = request.match_info["ns"]
        try:
            pod = await request.json()
        except ValueError:
            return self._fail(400, "BadRequest", "the body is not JSON")
        if not isinstance(pod, dict) or pod.get("kind", "Pod") != "Pod":
            return self._fail(400, "BadRequest", "the body is not a Pod")
        metadata = pod.setdefault("metadata", {})
        if metadata.get("namespace", namespace) != namespace:
            return self._fail(
                400,
                "BadRequest",
                "the namespace of the provided object does "
                "not match the namespace sent on the request",
            )
        name = str(metadata.get("name") or "")
        causes = _invalid(pod)
        if causes:
            text = ", ".join(f"{item['field']}: {item['message']}" for item in causes)
            return self._fail(
                422,
                "Invalid",
                f'Pod "{name}" is invalid: {text}',
                name=name,
                kind="pods",
                causes=causes,
            )
        if (namespace, name) in self.pods:
            return self._fail(
                409, "AlreadyExists", f'pods "{name}" already exists', name=name, kind="pods"
            )
        metadata.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_now())
        metadata["resourceVersion"] = str(next(self._versions))
        spec = pod["spec"]
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        for container in spec["containers"]:
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("imagePullPolicy", "IfNotPresent")
        pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        state = _Pod(pod)
        self.pods[(namespace, name)] = state
        self.created.append((namespace, name))
        self.annotations[name] = dict(metadata.get("annotations") or {})
        state.runner = asyncio.get_running_loop().create_task(self._run(state))
        return self._json(pod, 201)

    async def _list(self, request: Any) -> Any:
        if request.query.get("watch") in ("true", "1"):
            return self._fail(400, "BadRequest", "this test server does not support watch")
        selector = request.query.get("labelSelector", "")
        self.list_requests.append(selector)
        try:
            matches = parse_selector(selector)
        except ValueError as exc:
            return self._fail(400, "BadRequest", str(exc))
        items = [
            pod.body
            for (namespace, _), pod in sorted(self.pods.items())
            if namespace == request.match_info["ns"]
            and matches(pod.body["metadata"].get("labels") or {})
        ]
        metadata = {"resourceVersion": str(next(self._versions))}
        return self._json(
            {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": items}
        )

    def _find(self, request: Any) -> _Pod | None:
        return self.pods.get((request.match_info["ns"], request.match_info["name"]))

    def _missing(self, request: Any) -> Any:
        name = request.match_info["name"]
        return self._fail(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")

    async def _get(self, request: Any) -> Any:
        pod = self._find(request)
        return self._missing(request) if pod is None else self._json(pod.body)

    async def _delete(self, request: Any) -> Any:
        pod = self._find(request)
        if pod is None:
            return self._missing(request)
        del self.pods[(request.match_info["ns"], request.match_info["name"])]
        pod.body["metadata"]["deletionTimestamp"] = _now()
        pod.body["metadata"]["deletionGracePeriodSeconds"] = 0
        await self._destroy(pod)
        return self._json(pod.body)

    async def _log(self, request: Any) -> Any:
        from aiohttp import web

        pod = self._find(request)
        if pod is None:
            return self._missing(request)
        names = [container["name"] for container in pod.body["spec"]["containers"]]
        wanted = request.query.get("container") or (names[0] if len(names) == 1 else None)
        if wanted is None or wanted not in names:
            choices = " ".join(names)
            return self._fail(
                400,
                "BadRequest",
                f"a container name must be specified for pod "
                f"{request.match_info['name']}, choose one of: [{choices}]",
            )
        container = pod.containers.get(wanted)
        if container is None:
            return self._fail(
                400,
                "BadRequest",
                f'container "{wanted}" in pod "{request.match_info["name"]}" is waiting to start',
            )
        lines = await self._docker.containers.container(container).log(stdout=True, stderr=True)
        return web.Response(text="".join(lines), content_type="text/plain")

    # ---- running pods

    def _touch(self, pod: _Pod) -> None:
        pod.body["metadata"]["resourceVersion"] = str(next(self._versions))

    async def _run(self, pod: _Pod) -> None:
        body, spec = pod.body, pod.body["spec"]
        await asyncio.sleep(0.02)
        spec["nodeName"] = NODE
        body["status"].update(hostIP="127.0.0.1", startTime=_now())
        body["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        statuses = [
            {
                "name": item["name"],
                "image": item["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
            for item in spec["containers"]
        ]
        body["status"]["containerStatuses"] = statuses
        self._touch(pod)
        for status in statuses:
            if not _IMAGE.fullmatch(status["image"]):
                status["state"] = {
                    "waiting": {
                        "reason": "InvalidImageName",
                        "message": f'Failed to apply default image tag "{status["image"]}"',
                    }
                }
                self._touch(pod)
                return
        import aiodocker

        for status in statuses:
            try:
                await self._docker.images.inspect(status["image"])
            except aiodocker.DockerError:
                await self._cannot_pull(pod, status)
                return
        for item, status in zip(spec["containers"], statuses, strict=True):
            config = self._container_config(pod, item)
            created = await self._docker.containers.create(config)
            pod.containers[item["name"]] = created.id
            await created.start()
            status.update(
                ready=True,
                containerID=f"docker://{created.id}",
                state={"running": {"startedAt": _now()}},
            )
        body["status"]["phase"] = "Running"
        body["status"]["podIP"] = "127.0.0.1"
        self._touch(pod)
        codes = await asyncio.gather(*(self._finish(pod, status) for status in statuses))
        body["status"]["phase"] = "Succeeded" if not any(codes) else "Failed"
        self._touch(pod)

    async def _cannot_pull(self, pod: _Pod, status: dict[str, Any]) -> None:
        message = f'failed to pull image "{status["image"]}": no registry can be reached'
        status["state"] = {"waiting": {"reason": "ErrImagePull", "message": message}}
        self._touch(pod)
        await asyncio.sleep(0.5)
        message = f'Back-off pulling image "{status["image"]}"'
        status["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": message}}
        self._touch(pod)

    async def _finish(self, pod: _Pod, status: dict[str, Any]) -> int:
        container = self._docker.containers.container(pod.containers[status["name"]])
        result = await container.wait(timeout=None)
        details = await container.show()
        code = int(result.get("StatusCode", 1))
        reason = (
            "OOMKilled"
            if details["State"].get("OOMKilled")
            else ("Completed" if code == 0 else "Error")
        )
        started = status["state"]["running"]["startedAt"]
        status.update(
            ready=False,
            state={
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": started,
                    "finishedAt": _now(),
                    "containerID": status["containerID"],
                }
            },
        )
        self._touch(pod)
        return code

    def _container_config(self, pod: _Pod, item: dict[str, Any]) -> dict[str, Any]:
        spec = pod.body["spec"]
        volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
        binds = []
        for mount in item.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            if "hostPath" in volume:
                source = volume["hostPath"]["path"]
            else:  # an emptyDir: a scratch folder for this pod
                source = tempfile.mkdtemp(prefix="kubeapi-")
                pod.scratch.append(source)
            binds.append(
                f"{source}:{mount['mountPath']}" + (":ro" if mount.get("readOnly") else "")
            )
        host: dict[str, Any] = {
            "NetworkMode": "host" if spec.get("hostNetwork") else "none",
            "Binds": binds,
        }
        limits = (item.get("resources") or {}).get("limits") or {}
        from pydatatask.quota import Resources

        wanted = Resources.parse(limits.get("cpu", 0), limits.get("memory", 0))
        if wanted.cpu:
            host["NanoCpus"] = round(wanted.cpu * 1e9)
        if wanted.memory:
            host["Memory"] = wanted.memory
        config: dict[str, Any] = {
            "Image": item["image"],
            "Env": [f"{env['name']}={env.get('value', '')}" for env in item.get("env") or []],
            "Labels": {"pydatatask-test.kube-pod": pod.body["metadata"]["uid"]},
            "HostConfig": host,
        }
        if item.get("command"):
            config["Entrypoint"] = list(item["command"])
        if item.get("args"):
            config["Cmd"] = list(item["args"])
        if item.get("workingDir"):
            config["WorkingDir"] = item["workingDir"]
        return config

    async def _destroy(self, pod: _Pod) -> None:
        if pod.runner is not None:
            pod.runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pod.runner
        for container in pod.containers.values():
            with contextlib.suppress(Exception):
                await self._docker.containers.container(container).delete(force=True)
        for folder in pod.scratch:
            shutil.rmtree(folder, ignore_errors=True)

    async def _evict(self, namespace: str, name: str) -> None:
        pod = self.pods[(namespace, name)]
        if pod.runner is not None:
            pod.runner.cancel()
        for container in pod.containers.values():
            with contextlib.suppress(Exception):
                await self._docker.containers.container(container).kill()
        pod.body["status"].update(
            phase="Failed", reason="Evicted", message="The node was low on resource: memory."
        )
        self._touch(pod)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube_api(docker_engine: DockerEngine, busybox_image: str) -> Iterator[FakeKubeServer]:
    """Start the fake API server once per session; its pods run on the test engine."""
    pytest.importorskip("aiohttp")
    pytest.importorskip("aiodocker")
    server = FakeKubeServer(docker_engine.host)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def kube_configuration(server: FakeKubeServer) -> Any:
    """Return a kubernetes-asyncio ``Configuration`` for the fake server."""
    from kubernetes_asyncio.client import Configuration

    return Configuration(host=server.url)


@contextlib.asynccontextmanager
async def kube_client(server: FakeKubeServer) -> AsyncIterator[Any]:
    """Open a kubernetes-asyncio ``ApiClient`` for the fake server."""
    from kubernetes_asyncio.client import ApiClient

    async with ApiClient(kube_configuration(server)) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="function")
async def kube_api_client(kube_api: FakeKubeServer) -> AsyncIterator[Any]:
    """Yield an ``ApiClient`` for the fake server, in the test's own event loop."""
    pytest.importorskip("kubernetes_asyncio")
    async with kube_client(kube_api) as client:
        yield client


__all__ = ["FakeKubeServer", "kube_api", "kube_api_client", "kube_client", "parse_selector"]
