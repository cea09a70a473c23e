"""Run jobs as Kubernetes pods through the API server (kubernetes-asyncio), and find them again.

Every pod a :class:`PodManager` creates is named from the app, the task and a readable
form of the job id followed by a hash of all three (a valid DNS-1123 label for any id),
so one (app, task, job) has at most one pod: a second launch of a running job is refused
by the API server (409) instead of running it twice. Pods carry the labels
``pydatatask.app``, ``pydatatask.task``, ``pydatatask.job-hash`` and
``pydatatask.attempt``, and the exact job id in the annotation ``pydatatask.job``
(label values are limited to 63 characters of a small alphabet).

Following pods costs one list request per task per poll, whatever the number of pods:
:meth:`PodManager.wait` registers with a per-task poller that lists the task's pods by
label, hands finished pods to their waiters, and polls less often (up to
``max_poll_interval``) while nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pydatatask._optional import import_optional
from pydatatask.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    PydatataskError,
)
from pydatatask.quota import Resources
from pydatatask.streams import DEFAULT_CHUNK, ByteWriter

__all__ = [
    "ANNOTATION_JOB",
    "IMAGE_FAILURES",
    "LABEL_APP",
    "LABEL_ATTEMPT",
    "LABEL_JOB_HASH",
    "LABEL_TASK",
    "PodManager",
    "PodReport",
    "label_value",
    "pod_requests",
]

logger = logging.getLogger(__name__)

LABEL_APP = "pydatatask.app"
LABEL_TASK = "pydatatask.task"
LABEL_JOB_HASH = "pydatatask.job-hash"
LABEL_ATTEMPT = "pydatatask.attempt"
ANNOTATION_JOB = "pydatatask.job"

IMAGE_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
"""Waiting reasons that end a job at once: its image will not come by waiting."""

_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?")
_NOT_DNS = re.compile(r"[^a-z0-9]+")
_FAILED_LISTS = 5  # consecutive failed polls before the waiters are told


def _kube() -> ModuleType:
    return import_optional("kubernetes_asyncio", "kubernetes")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def label_value(text: str) -> str:
    """Return ``text`` if it is a valid label value, else a valid form of it with a hash."""
    if len(text) <= 63 and _LABEL_VALUE.fullmatch(text):
        return text
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("_.-")[:50].strip("_.-")
    return f"{readable}-{_digest(text)[:10]}" if readable else _digest(text)[:12]


def pod_requests(manifest: Mapping[str, Any]) -> Resources:
    """Return the CPU and memory a pod manifest requests, as the scheduler counts them.

    That is the sum over the containers, or the largest init container if that is more.

    :raises ConfigurationError: for a request that is not a quantity.
    """
    spec = manifest.get("spec") or {}

    def requests(container: Any) -> Resources:
        wanted = ((container or {}).get("resources") or {}).get("requests") or {}
        return Resources.parse(wanted.get("cpu", 0), wanted.get("memory", 0))

    total = Resources()
    for container in spec.get("containers") or []:
        total = total + requests(container)
    for container in spec.get("initContainers") or []:
        one = requests(container)
        total = Resources(max(total.cpu, one.cpu), max(total.memory, one.memory))
    return total


@dataclass(frozen=True)
class PodReport:
    """What a pod's status says about its job; ``reason`` is set once the job has ended."""

    name: str
    job: str | None
    attempt: int
    phase: str
    reason: str | None
    """``Succeeded``, ``Failed``, ``Evicted``, an image failure, ...; None while it runs."""
    exit_code: int | None
    message: str
    node: str | None
    image: str | None
    created: str | None
    started: str | None
    finished: str | None
    terminating: bool
    containers: list[str] = field(default_factory=list)
    requests: Resources = field(default_factory=Resources)

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodReport:
        """Read a pod object (in the API's JSON form)."""
        metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        status = pod.get("status") or {}
        labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
        statuses = [*(status.get("initContainerStatuses") or [])]
        statuses += status.get("containerStatuses") or []
        phase = str(status.get("phase") or "Pending")
        terminated = [
            (item.get("state") or {}).get("terminated") or {}
            for item in statuses
            if (item.get("state") or {}).get("terminated")
        ]
        failing = [state for state in terminated if state.get("exitCode")]
        last = (failing or terminated or [{}])[0]
        reason, message = None, str(status.get("message") or last.get("message") or "")
        if phase == "Succeeded":
            reason = "Succeeded"
        elif phase == "Failed":
            reason = str(status.get("reason") or "Failed")
        else:
            for item in statuses:
                waiting = (item.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in IMAGE_FAILURES:
                    reason, message = str(waiting["reason"]), str(waiting.get("message") or "")
                    break
        try:
            attempt = int(labels.get(LABEL_ATTEMPT, "1"))
        except ValueError:
            attempt = 1
        containers = [str(item.get("name")) for item in spec.get("containers") or []]
        images = [str(item.get("image")) for item in spec.get("containers") or []]
        exit_code = last.get("exitCode")
        return cls(
            name=str(metadata.get("name")),
            job=annotations.get(ANNOTATION_JOB),
            attempt=attempt,
            phase=phase,
            reason=reason,
            exit_code=int(exit_code)
            if exit_code is not None
            else (0 if phase == "Succeeded" else None),
            message=message,
            node=spec.get("nodeName"),
            image=", ".join(images) or None,
            created=metadata.get("creationTimestamp"),
            started=status.get("startTime"),
            finished=max((str(state.get("finishedAt")) for state in terminated), default=None),
            terminating=metadata.get("deletionTimestamp") is not None,
            containers=containers,
            requests=_requests_or_zero(pod),
        )

    @property
    def ended(self) -> bool:
        """Whether the job in this pod has ended, one way or another."""
        return self.reason is not None


def _requests_or_zero(pod: Mapping[str, Any]) -> Resources:
    try:
        return pod_requests(pod)
    except ConfigurationError:
        return Resources()


def _failure(status: int, reason: str, body: Any, action: str) -> PydatataskError:
    """Choose the pydatatask error for an API server's answer, with its own message."""
    message = reason
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        message = str(json.loads(body).get("message") or reason)
    if status == 422:
        return ConfigurationError(f"the Kubernetes API rejected {action}: {message}")
    if status in (401, 403):
        return BackendError(f"not allowed to {action} ({status}): {message}")
    if status in (0, 502, 503, 504):
        return BackendUnavailableError(f"could not reach the Kubernetes API to {action}: {message}")
    return BackendError(f"the Kubernetes API failed to {action} ({status}): {message}")


@contextlib.contextmanager
def _translate(action: str) -> Iterator[None]:
    """Turn kubernetes-asyncio and aiohttp errors raised inside the block into ours."""
    exceptions = import_optional("kubernetes_asyncio.client.exceptions", "kubernetes")
    aiohttp = import_optional("aiohttp", "kubernetes")
    try:
        yield
    except exceptions.ApiException as exc:
        raise _failure(int(exc.status or 0), str(exc.reason), exc.body, action) from exc
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:  # the client's own timeouts
        raise BackendUnavailableError(
            f"could not reach the Kubernetes API to {action}: {exc}"
        ) from exc
    except aiohttp.ClientError as exc:
        raise BackendError(f"the Kubernetes API failed to {action}: {exc}") from exc


def status_of(error: BaseException) -> int | None:
    """Return the HTTP status behind an error :func:`_translate` raised, if any."""
    return getattr(error.__cause__, "status", None)


class PodManager:
    """Create, list, follow, read the logs of and delete the pods of one app's jobs.

    :param app: the application name in every pod's labels and name (a valid label
        value: letters, digits, ``-``, ``_`` and ``.``, at most 63).
    :param namespace: the namespace the pods run in.
    :param config: a session accessor returning a kubernetes-asyncio ``ApiClient``;
        None loads the in-cluster configuration inside a pod or else the kubeconfig,
        and opens a client per request.
    :param poll_interval: the shortest time between two list requests for a task.
    :param max_poll_interval: the longest, reached while nothing changes.
    :param request_timeout: seconds before one request counts as failed.
    :param delete_grace_period: seconds a deleted pod's containers get between SIGTERM
        and SIGKILL.
    :raises ConfigurationError: for an invalid app or namespace name.
    """

    def __init__(
        self,
        app: str,
        namespace: str,
        config: Callable[[], Any] | None = None,
        *,
        poll_interval: float = 0.5,
        max_poll_interval: float = 5.0,
        request_timeout: float = 60.0,
        delete_grace_period: int = 5,
    ) -> None:
        if not isinstance(app, str) or not app or label_value(app) != app:
            raise ConfigurationError(
                f"invalid app name {app!r}: use at most 63 letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit"
            )
        if (
            not isinstance(namespace, str)
            or re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace) is None
        ):
            raise ConfigurationError(f"invalid namespace {namespace!r}: not a DNS-1123 label")
        if not 0 < poll_interval <= max_poll_interval:
            raise ConfigurationError("need 0 < poll_interval <= max_poll_interval")
        self.app = app
        self.namespace = namespace
        self._config = config
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.request_timeout = request_timeout
        self.delete_grace_period = delete_grace_period
        self._configuration: Any = None
        self._pollers: dict[str, _Poller] = {}

    def __repr__(self) -> str:
        return f"<PodManager {self.app} in {self.namespace}>"

    # ------------------------------------------------------------------ names

    def pod_name(self, task: str, job: str) -> str:
        """Return the one pod name ``job`` of ``task`` may have: a DNS-1123 label."""
        digest = _digest(self.app, task, job)[:10]
        readable = _NOT_DNS.sub("-", f"{self.app}-{task}-{job}".lower()).strip("-")
        readable = readable[: 63 - len(digest) - 1].strip("-")
        return f"{readable or 'pdt'}-{digest}"

    def selector(self, task: str) -> str:
        """Return the label selector of every pod of ``task`` in this app."""
        return f"{LABEL_APP}={self.app},{LABEL_TASK}={label_value(task)}"

    def complete(
        self, manifest: Mapping[str, Any], task: str, job: str, attempt: int, env: Mapping[str, str]
    ) -> dict[str, Any]:
        """Return ``manifest`` as the pod of this job: name, labels, ``restartPolicy: Never``.

        ``env`` is added to every container that does not set the same variable.

        :raises ConfigurationError: for a manifest that is not a pod.
        """
        if not isinstance(manifest, Mapping) or manifest.get("kind", "Pod") != "Pod":
            raise ConfigurationError(f"task {task!r}: the template must render a Pod manifest")
        pod = json.loads(json.dumps(manifest, default=str))  # a deep, plain copy
        pod.update(apiVersion="v1", kind="Pod")
        metadata = pod.setdefault("metadata", None) or {}
        spec = pod.get("spec")
        if not isinstance(metadata, dict) or not isinstance(spec, dict):
            raise ConfigurationError(f"task {task!r}: the pod needs 'metadata' and 'spec' mappings")
        pod["metadata"] = metadata
        metadata.update(name=self.pod_name(task, job), namespace=self.namespace)
        metadata.pop("generateName", None)
        metadata["labels"] = {
            **(metadata.get("labels") or {}),
            LABEL_APP: self.app,
            LABEL_TASK: label_value(task),
            LABEL_JOB_HASH: _digest(self.app, task, job)[:40],
            LABEL_ATTEMPT: str(attempt),
        }
        metadata["annotations"] = {**(metadata.get("annotations") or {}), ANNOTATION_JOB: job}
        spec["restartPolicy"] = "Never"
        for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
            if isinstance(container, dict) and env:
                variables = container.setdefault("env", None) or []
                present = {item.get("name") for item in variables if isinstance(item, dict)}
                variables += [
                    {"name": k, "value": str(v)} for k, v in env.items() if k not in present
                ]
                container["env"] = variables
        return dict(pod)

    # ------------------------------------------------------------------ requests

    @contextlib.asynccontextmanager
    async def _core(self) -> AsyncIterator[Any]:
        kube = _kube()
        if self._config is not None:
            yield kube.client.CoreV1Api(self._config())
            return
        if self._configuration is None:
            configuration = kube.client.Configuration()
            with _translate("load the cluster configuration"):
                if os.environ.get("KUBERNETES_SERVICE_HOST"):
                    kube.config.load_incluster_config(client_configuration=configuration)
                else:
                    await kube.config.load_kube_config(
                        config_file=os.environ.get("KUBECONFIG") or None,
                        client_configuration=configuration,
                    )
            self._configuration = configuration
        async with kube.client.ApiClient(self._configuration) as client:
            yield kube.client.CoreV1Api(client)

    async def _call(
        self, action: str, method: str, *args: Any, absent: int = 0, **options: Any
    ) -> Any:
        """Call ``CoreV1Api.method`` and return the answer as JSON data.

        Returns :data:`None` when the server answers with the status ``absent``.
        """
        try:
            async with self._core() as core:
                with _translate(action):
                    answer = await getattr(core, method)(
                        *args, _request_timeout=self.request_timeout, **options
                    )
                    return core.api_client.sanitize_for_serialization(answer)
        except BackendError as error:
            if absent and status_of(error) == absent:
                return None
            raise

    async def create(self, pod: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create the pod; return it as the server has it, or None when the name is taken.

        :raises ConfigurationError: when the server refuses the manifest (422).
        :raises BackendError: when it fails otherwise; :class:`BackendUnavailableError`
            when it cannot be reached.
        """
        action = f"create the pod {pod['metadata']['name']}"
        created = await self._call(action, "create_namespaced_pod", self.namespace, pod, absent=409)
        return None if created is None else dict(created)

    async def get(self, name: str) -> dict[str, Any] | None:
        """Return the pod called ``name``, or None when there is none.

        :raises BackendError: when the API fails.
        """
        pod = await self._call(
            f"read the pod {name}", "read_namespaced_pod", name, self.namespace, absent=404
        )
        return None if pod is None else dict(pod)

    async def list_pods(self, task: str) -> list[dict[str, Any]]:
        """Return every pod of ``task`` in this app, in one request.

        :raises BackendError: when the API fails.
        """
        found = await self._call(
            f"list the pods of task {task!r}",
            "list_namespaced_pod",
            self.namespace,
            label_selector=self.selector(task),
        )
        return [dict(pod) for pod in found.get("items") or []]

    async def delete(self, name: str, grace_period: int | None = None) -> bool:
        """Delete the pod called ``name``, stopping it if it runs; False when there was none.

        :raises BackendError: when the API fails.
        """
        grace = self.delete_grace_period if grace_period is None else grace_period
        action = f"delete the pod {name}"
        answer = await self._call(
            action,
            "delete_namespaced_pod",
            name,
            self.namespace,
            absent=404,
            grace_period_seconds=grace,
        )
        return answer is not None

    async def wait_gone(self, name: str, seconds: float = 60.0) -> None:
        """Wait until a deleted pod has disappeared (its name can then be used again).

        :raises BackendError: when it is still there after ``seconds``.
        """
        delay, deadline = 0.05, asyncio.get_running_loop().time() + seconds
        while await self.get(name) is not None:
            if asyncio.get_running_loop().time() > deadline:
                raise BackendError(f"the pod {name} was still being deleted after {seconds:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_poll_interval)

    async def copy_log(self, name: str, containers: list[str], writer: ByteWriter) -> None:
        """Write the logs of the pod's containers, one after the other, to ``writer``.

        A container that never started has no log and adds nothing.
        """
        for container in containers:
            async with self._core() as core:
                with _translate(f"read the log of the pod {name}"):
                    response = await core.read_namespaced_pod_log(
                        name,
                        self.namespace,
                        container=container,
                        _preload_content=False,
                        _request_timeout=(self.request_timeout, self.request_timeout),
                    )
                    try:
                        if response.status in (400, 404):  # never started, or gone
                            continue
                        if response.status >= 300:
                            raise _failure(
                                response.status,
                                str(response.reason),
                                await response.read(),
                                f"read the log of the pod {name}",
                            )
                        while chunk := await response.content.read(DEFAULT_CHUNK):
                            await writer.write(chunk)
                    finally:
                        response.release()

    # ------------------------------------------------------------------ following

    async def wait(self, task: str, name: str) -> dict[str, Any] | None:
        """Wait until the pod ``name`` of ``task`` has ended; return it, or None if it vanished.

        :raises BackendUnavailableError: when the API cannot be listed for several polls.
        """
        poller = self._pollers.get(task)
        if poller is None or poller.closed:
            poller = self._pollers[task] = _Poller(self, task)
        return await poller.wait(name)


class _Poller:
    """Lists one task's pods for all the coroutines waiting for them, with a backoff."""

    def __init__(self, manager: PodManager, task: str) -> None:
        self.manager = manager
        self.task = task
        self.waiters: dict[str, list[tuple[int, asyncio.Future[dict[str, Any] | None]]]] = {}
        self.lists = 0
        self.closed = False
        self.wake = asyncio.Event()
        self.runner: asyncio.Task[None] | None = None

    async def wait(self, name: str) -> dict[str, Any] | None:
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        entry = (self.lists, future)
        self.waiters.setdefault(name, []).append(entry)
        if self.runner is None:
            self.runner = asyncio.get_running_loop().create_task(self._run())
        self.wake.set()
        try:
            return await future
        finally:
            entries = self.waiters.get(name, [])
            if entry in entries:
                entries.remove(entry)
            if not entries:
                self.waiters.pop(name, None)
            if not self.waiters:
                self._close()

    def _close(self) -> None:
        self.closed = True
        if self.runner is not None and self.runner is not asyncio.current_task():
            self.runner.cancel()

    async def _run(self) -> None:
        """List at most once per ``poll_interval``, less often while nothing changes."""
        loop = asyncio.get_running_loop()
        shortest = self.manager.poll_interval
        delay, failures, last = shortest, 0, -math.inf
        try:
            while self.waiters:
                pause = last + delay - loop.time()
                if pause > 0:
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(pause):
                            await self.wake.wait()
                    if self.wake.is_set():  # a new pod to follow: look again soon
                        delay = shortest
                    continue
                last = loop.time()
                self.lists += 1
                number = self.lists
                try:
                    pods = await self.manager.list_pods(self.task)
                except BackendError as error:
                    failures += 1
                    logger.warning(
                        "%r: listing the pods of %s failed: %s", self.manager, self.task, error
                    )
                    if failures >= _FAILED_LISTS:
                        self._fail(error)
                        return
                    delay = min(delay * 2, self.manager.max_poll_interval)
                    continue
                failures = 0
                changed = self._settle(pods, number)
                delay = shortest if changed else min(delay * 2, self.manager.max_poll_interval)
        except Exception as error:  # noqa: BLE001 - every waiter must hear of it
            self._fail(error)
        finally:
            self.closed = True

    def _settle(self, pods: list[dict[str, Any]], number: int) -> bool:
        """Resolve the waiters whose pods ended or vanished; True if any did."""
        by_name = {str((pod.get("metadata") or {}).get("name")): pod for pod in pods}
        settled = False
        for name, entries in list(self.waiters.items()):
            pod = by_name.get(name)
            report = None if pod is None else PodReport.of(pod)
            if report is not None and report.terminating and not report.ended:
                pod = None  # deleted while it ran: it will not end by itself
            ended = pod is None or (report is not None and report.ended)
            for since, future in entries:
                # A list that began before the waiter came may predate its pod.
                if ended and since < number and not future.done():
                    future.set_result(pod)
                    settled = True
        return settled

    def _fail(self, error: BaseException) -> None:
        for entries in self.waiters.values():
            for _, future in entries:
                if not future.done():
                    future.set_exception(error)
