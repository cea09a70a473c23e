# Longer than 400 lines on purpose: one class speaks the pod API (requests, errors, logs,
# the executor); what a pod object says is read apart, in pods.py.
"""Run jobs as Kubernetes pods through the API server (kubernetes-asyncio), and find them again.

Every pod a :class:`PodManager` creates is named from the app, the task and a readable
form of the job id followed by a hash of all three (a valid DNS-1123 label for any id),
so one (app, task, job) has at most one pod: a second launch of a running job is refused
by the API server (409) instead of running it twice. Pods carry the labels
``pydatatask.app``, ``pydatatask.task``, ``pydatatask.job-hash`` and
``pydatatask.attempt``, and the exact job id in the annotation ``pydatatask.job``
(label values are limited to 63 characters of a small alphabet);
:mod:`pydatatask.executor.pods` reads them, and the pods' statuses, without a client.

:class:`PodManager` is the :class:`~pydatatask.executor.protocol.Executor` of pods.
Following them costs one list request per task per poll, whatever the number of pods:
every :meth:`PodManager.wait` joins one :class:`~pydatatask.executor.polling.BatchPoller`
that lists the tasks' pods by label, hands finished pods to their waiters, and polls
less often (up to ``max_poll_interval``) while nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from pydatatask._optional import import_optional
from pydatatask.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    PydatataskError,
)
from pydatatask.executor.pods import (
    ANNOTATION_JOB,
    LABEL_APP,
    LABEL_ATTEMPT,
    LABEL_JOB_HASH,
    LABEL_TASK,
    PodHandle,
    PodReport,
    PodSpec,
    deleted,
    digest,
    exit_status,
    label_value,
)
from pydatatask.executor.polling import BatchPoller
from pydatatask.executor.protocol import Executor, ExitStatus, Outputs
from pydatatask.streams import DEFAULT_CHUNK, ByteWriter

if TYPE_CHECKING:
    import aiohttp
    from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
    from kubernetes_asyncio.client.exceptions import ApiException
    from kubernetes_asyncio.config import load_kube_config

__all__ = ["PodManager"]

logger = logging.getLogger(__name__)

_NOT_DNS = re.compile(r"[^a-z0-9]+")


def _kube() -> ModuleType:
    return import_optional("kubernetes_asyncio", "kubernetes")


def _failure(status: int, reason: str, body: str | bytes | None, action: str) -> PydatataskError:
    """Choose the pydatatask error for an API server's answer, with its own message."""
    message = reason
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        message = str(json.loads(body or b"").get("message") or reason)
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
    aiohttp_module = import_optional("aiohttp", "kubernetes")
    api_error: type[ApiException] = exceptions.ApiException
    connection_error: type[aiohttp.ClientConnectionError] = aiohttp_module.ClientConnectionError
    client_error: type[aiohttp.ClientError] = aiohttp_module.ClientError
    try:
        yield
    except api_error as exc:
        raise _failure(int(exc.status or 0), str(exc.reason), exc.body, action) from exc
    except (connection_error, TimeoutError) as exc:  # the client's own timeouts
        raise BackendUnavailableError(
            f"could not reach the Kubernetes API to {action}: {exc}"
        ) from exc
    except client_error as exc:
        raise BackendError(f"the Kubernetes API failed to {action}: {exc}") from exc


def status_of(error: BaseException) -> int | None:
    """Return the HTTP status behind an error :func:`_translate` raised, if any."""
    return getattr(error.__cause__, "status", None)


class PodManager(Executor[PodSpec, PodHandle]):
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
        config: Callable[[], ApiClient] | None = None,
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
        self._configuration: Configuration | None = None
        self._poller = BatchPoller(
            self._ended, repr(self), shortest=poll_interval, longest=max_poll_interval
        )

    def __repr__(self) -> str:
        return f"<PodManager {self.app} in {self.namespace}>"

    # ------------------------------------------------------------------ names

    def pod_name(self, task: str, job: str) -> str:
        """Return the one pod name ``job`` of ``task`` may have: a DNS-1123 label."""
        hashed = digest(self.app, task, job)[:10]
        readable = _NOT_DNS.sub("-", f"{self.app}-{task}-{job}".lower()).strip("-")
        readable = readable[: 63 - len(hashed) - 1].strip("-")
        return f"{readable or 'pdt'}-{hashed}"

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
            LABEL_JOB_HASH: digest(self.app, task, job)[:40],
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
    async def _core(self) -> AsyncIterator[tuple[ApiClient, CoreV1Api]]:
        """Yield an API client and its ``CoreV1Api``."""
        kube = _kube()
        core_api: type[CoreV1Api] = kube.client.CoreV1Api
        if self._config is not None:
            given = self._config()
            yield given, core_api(given)
            return
        if self._configuration is None:
            configuration_type: type[Configuration] = kube.client.Configuration
            configuration = configuration_type()
            if TYPE_CHECKING:  # checked against the package's own signature
                load_kubeconfig = load_kube_config
            else:
                load_kubeconfig = kube.config.load_kube_config
            with _translate("load the cluster configuration"):
                if os.environ.get("KUBERNETES_SERVICE_HOST"):
                    # The one call left unchecked: load_incluster_config has no
                    # annotations, so it is called through the untyped module object.
                    kube.config.load_incluster_config(client_configuration=configuration)
                else:
                    await load_kubeconfig(
                        config_file=os.environ.get("KUBECONFIG") or None,
                        client_configuration=configuration,
                    )
            self._configuration = configuration
        api_client: type[ApiClient] = kube.client.ApiClient
        # Entered without ``as``: the stubs leave ApiClient.__aenter__ (which returns the
        # client itself) unannotated.
        client = api_client(self._configuration)
        async with client:
            yield client, core_api(client)

    async def _call(
        self,
        action: str,
        request: Callable[[CoreV1Api], Awaitable[object]],
        *,
        absent: int = 0,
    ) -> dict[str, Any] | None:
        """Make ``request`` of the API and return the answer as JSON data.

        Returns :data:`None` when the server answers with the status ``absent``.
        """
        try:
            async with self._core() as (client, core):
                with _translate(action):
                    answer = await request(core)
                    data: dict[str, Any] = client.sanitize_for_serialization(answer)
                    return data
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
        created = await self._call(
            action,
            lambda core: core.create_namespaced_pod(
                self.namespace,
                # The stubs ask for a V1Pod; the client serializes a plain manifest alike.
                pod,  # type: ignore[arg-type]
                _request_timeout=self.request_timeout,
            ),
            absent=409,
        )
        return None if created is None else dict(created)

    async def get(self, name: str) -> dict[str, Any] | None:
        """Return the pod called ``name``, or None when there is none.

        :raises BackendError: when the API fails.
        """
        pod = await self._call(
            f"read the pod {name}",
            lambda core: core.read_namespaced_pod(
                name, self.namespace, _request_timeout=self.request_timeout
            ),
            absent=404,
        )
        return None if pod is None else dict(pod)

    async def list_pods(self, task: str) -> list[dict[str, Any]]:
        """Return every pod of ``task`` in this app, in one request.

        :raises BackendError: when the API fails.
        """
        found = await self._call(
            f"list the pods of task {task!r}",
            lambda core: core.list_namespaced_pod(
                self.namespace,
                label_selector=self.selector(task),
                _request_timeout=self.request_timeout,
            ),
        )
        assert found is not None  # only an ``absent`` status answers None
        return [dict(pod) for pod in found.get("items") or []]

    async def delete(self, name: str, grace_period: int | None = None) -> bool:
        """Delete the pod called ``name``, stopping it if it runs; False when there was none.

        :raises BackendError: when the API fails.
        """
        grace = self.delete_grace_period if grace_period is None else grace_period
        action = f"delete the pod {name}"
        answer = await self._call(
            action,
            lambda core: core.delete_namespaced_pod(
                name,
                self.namespace,
                grace_period_seconds=grace,
                _request_timeout=self.request_timeout,
            ),
            absent=404,
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
            async with self._core() as (_, core):
                with _translate(f"read the log of the pod {name}"):
                    # The stubs give the preloaded answer's type (str); without preloading
                    # the client returns the aiohttp response itself.
                    response = cast(
                        "aiohttp.ClientResponse",
                        await core.read_namespaced_pod_log(
                            name,
                            self.namespace,
                            container=container,
                            _preload_content=False,
                            _request_timeout=(self.request_timeout, self.request_timeout),
                        ),
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

    # ------------------------------------------------------------------ the executor

    async def submit(self, task: str, job: str, attempt: int, spec: PodSpec) -> PodHandle:
        """Create the job's pod from ``spec`` (see :meth:`complete`).

        A leftover pod of the job that ended is removed first; a live one is refused.

        :raises ConfigurationError: when the manifest is not a pod, or is refused (422).
        :raises BackendError: when the job's pod already runs, or the API fails.
        """
        pod = self.complete(spec.manifest, task, job, attempt, spec.env)
        name = pod["metadata"]["name"]
        for _ in range(3):
            created = await self.create(pod)
            if created is not None:
                return PodHandle.of(task, job, created)
            existing = await self.get(name)
            if existing is None:
                continue
            report = PodReport.of(existing)
            if not (report.terminating or report.ended):
                raise BackendError(
                    f"the pod {name} of job {job!r} is already running; "
                    "another controller may be running this pipeline"
                )
            logger.warning("%r: replacing the leftover pod %s", self, name)
            if not report.terminating:
                await self.delete(name, grace_period=0)
            await self.wait_gone(name)
        raise BackendError(f"could not create the pod {name} of job {job!r}")

    async def live(self, task: str) -> list[PodHandle]:
        """Return ``task``'s pods that are not being deleted, in one list request."""
        handles = []
        for pod in await self.list_pods(task):
            report = PodReport.of(pod)
            if report.job is not None and not report.terminating:
                handles.append(PodHandle.of(task, report.job, pod))
        return handles

    async def find(self, task: str, job: str) -> PodHandle | None:
        """Return the pod of ``job``, or None when it has none."""
        pod = await self.get(self.pod_name(task, job))
        return None if pod is None else PodHandle.of(task, job, pod)

    def restore(self, task: str, job: str, attempt: int, record: Mapping[str, Any]) -> PodHandle:
        """Rebuild a handle from its pod's name, uid and containers.

        :raises BackendError: when the record names no pod.
        """
        if not isinstance(record.get("pod"), str):
            raise BackendError(f"not a pod handle: {dict(record)!r}")
        containers = tuple(str(name) for name in record.get("containers") or ())
        return PodHandle(task, job, attempt, record["pod"], str(record.get("uid", "")), containers)

    async def wait(self, handle: PodHandle) -> ExitStatus:
        """Wait until the pod has ended, checked with every pod waited for.

        A pod that disappeared, or is being deleted while it ran, ended as ``Deleted``.

        :raises BackendError: when the pods cannot be listed, several polls in a row.
        """
        return await self._poller.wait(handle)

    async def _ended(self, handles: Sequence[PodHandle]) -> dict[PodHandle, ExitStatus]:
        """List the tasks' pods (one request per task); return how each ended pod went."""
        tasks = sorted({handle.task for handle in handles})
        listed = await asyncio.gather(*(self.list_pods(task) for task in tasks))
        pods = {
            (task, str((pod.get("metadata") or {}).get("name"))): pod
            for task, found in zip(tasks, listed, strict=True)
            for pod in found
        }
        ended = {}
        for handle in handles:
            pod = pods.get((handle.task, handle.name))
            uid = None if pod is None else (pod.get("metadata") or {}).get("uid")
            report = (
                None if pod is None or (handle.uid and uid != handle.uid) else PodReport.of(pod)
            )
            if report is None or (report.terminating and not report.ended):
                ended[handle] = deleted(handle.name)  # it will not end by itself
            elif report.ended:
                ended[handle] = exit_status(report)
        return ended

    async def stop(self, handle: PodHandle, grace: float | None = None) -> None:
        """Delete the pod; its containers get ``grace`` seconds from SIGTERM to SIGKILL.

        Without a ``grace``, they get ``delete_grace_period``.
        """
        await self.delete(handle.name, None if grace is None else round(grace))

    async def collect(self, handle: PodHandle, outputs: Outputs) -> None:
        """Copy the logs of the pod's containers, one after the other, to ``log``."""
        if outputs.wants("log"):
            await self.copy_log(handle.name, list(handle.containers), await outputs.writer("log"))

    async def forget(self, handle: PodHandle) -> None:
        """Delete the pod."""
        await self.delete(handle.name)
