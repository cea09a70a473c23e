"""Tasks whose jobs run as Kubernetes pods.

A :class:`KubeTask` renders its jinja2 pod manifest for a job, completes it (name,
labels, ``restartPolicy: Never``, see :meth:`PodManager.complete`), creates the pod,
waits for it to end, copies its log into the ``logs`` repository, deletes the pod and
writes a done record with ``reason``, ``exit_code``, ``node``, ``image`` and the pod's
timings. Pods are the memory of what runs: a
restarted controller lists them by label, waits for the running ones and reaps the ones
that ended while no controller watched, so no job runs twice.

Manifests are rendered with :func:`~pydatatask.templating.render_manifest`: ids and
values are put into the parsed manifest, so none can add keys or change its structure.

A :class:`KubeFunctionTask` runs a Python function in a pod by running the pipeline
script there: ``python SCRIPT launch TASK JOB --sync --force``. Its manifests can mount
:func:`python_paths`, the host folders of the running interpreter's environment.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import site
import sys
import sysconfig
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

import jinja2

from pydatatask.errors import (
    BackendError,
    ConfigurationError,
    ProcessExitError,
    PydatataskError,
    QuotaExceededError,
)
from pydatatask.executor.kubernetes import PodManager, PodReport, pod_requests
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.repository.memory import InProcessMetadataRepository
from pydatatask.task.external import ExternalTask, OnExit
from pydatatask.task.function import InProcessSyncTask, JobFunction
from pydatatask.task.retry import RetryPolicy
from pydatatask.templating import render_manifest

__all__ = ["IN_POD_VARIABLE", "KubeFunctionTask", "KubeTask", "python_paths"]

logger = logging.getLogger(__name__)

IN_POD_VARIABLE = "PYDATATASK_IN_POD"
"""Set to the task name in the pods of a :class:`KubeFunctionTask`: run the body here."""


class _Blank:
    """Stands for a link's value when the manifest is rendered without a job."""

    def __getattr__(self, name: str) -> _Blank:
        return self

    def __getitem__(self, key: object) -> _Blank:
        return self

    def __str__(self) -> str:
        return ""

    def __iter__(self) -> Any:
        return iter(())


class KubeTask(ExternalTask):
    """Run a templated pod per job on a Kubernetes cluster.

    :param name: the task name.
    :param podman: the :class:`~pydatatask.PodManager` that creates and follows pods.
    :param resources: the quota the pods draw from (None: no quota). A pod holds the sum
        of its containers' ``resources.requests`` (CPU and memory) while it runs.
    :param template: a jinja2 pod manifest (YAML); it sees ``job``, ``task``, ``env`` and
        every link by name (its ``info`` for the job, computed only when used). Values
        cannot change the manifest's structure: a scalar that is exactly one
        ``{{ ... }}`` takes the value itself, and within longer text the value's string
        is spliced in (see :func:`~pydatatask.templating.render_manifest`).
    :param logs: a blob repository receiving the pod's log.
    :param done: the done repository.
    :param window: the period over which the quota's ``launches`` are counted.
    :param timeout: delete the pod after this long and record a timeout.
    :param env: environment variables added to every container (and seen as ``env``).
    :param ready: as for every task.
    :param retry: a :class:`RetryPolicy` or a number of attempts.
    :param on_exit: what a stopping controller does with running pods: ``"detach"`` (the
        default) leaves them for the next controller; ``"kill"`` deletes them, and their
        jobs run again next time.
    :raises ConfigurationError: for arguments of the wrong kind or a template that does
        not parse.
    """

    def __init__(
        self,
        name: str,
        podman: PodManager,
        resources: ResourceManager | None,
        template: str,
        logs: BlobRepository | None = None,
        done: MetadataRepository | None = None,
        window: timedelta | float = timedelta(minutes=1),
        timeout: timedelta | float | None = None,
        env: Mapping[str, str] | None = None,
        ready: Repository | None = None,
        retry: RetryPolicy | int | None = None,
        *,
        on_exit: OnExit = "detach",
        max_concurrent: int | None = None,
    ) -> None:
        if not isinstance(podman, PodManager):
            raise ConfigurationError(f"task {name!r}: podman must be a PodManager")
        if resources is not None and not isinstance(resources, ResourceManager):
            raise ConfigurationError(f"task {name!r}: resources must be a ResourceManager")
        super().__init__(
            name,
            template,
            window,
            done,
            ready,
            timeout,
            retry,
            on_exit=on_exit,
            max_concurrent=max_concurrent,
        )
        self.podman = podman
        self.resources = resources
        self.env = dict(env or {})
        if logs is not None:
            if not isinstance(logs, BlobRepository):
                raise ConfigurationError(f"task {name!r}: logs must be a BlobRepository")
            self.link("logs", logs, is_output=True)
        self._estimate: Resources | None = None
        self._held: dict[str, Resources] = {}
        self._found: dict[str, str] = {}
        self._reattaching: dict[str, Resources] = {}
        self._details: dict[str, dict[str, Any]] = {}

    async def bind(self) -> None:
        """Check that no link hides a template name, and estimate what one pod requests.

        :raises ConfigurationError: for a link named ``task`` or ``env``.
        """
        await super().bind()
        context: dict[str, Any] = {name: _Blank() for name in self.links}
        context.update(self._context("job", 1), job="job")
        try:
            self._estimate = pod_requests(await render_manifest(self.template, context))
        except (
            jinja2.TemplateError,
            PydatataskError,
            TypeError,
            ValueError,
            AttributeError,
        ) as exc:
            logger.debug("%s: no estimate of a pod's requests before a job: %s", self.name, exc)

    # ---------------------------------------------------------------- quota

    def reserve(self, job: str) -> bool:
        """Charge what the task's pods request for ``job``; False when the quota is full.

        That is what the template requests when it renders without a job, else what the
        last rendered pod requested. Until one is known, one job runs at a time; a pod
        that requests more than was charged waits in :meth:`execute` for the rest.

        :raises QuotaExceededError: when one pod needs more than the whole quota.
        """
        if self.resources is None:
            return True
        key = (self.name, job)
        if job in self._reattaching:  # it runs already: account for it, count no launch
            self._held[job] = self._reattaching[job]
            self.resources.claim(key, self._held[job])
            return True
        if self._estimate is None and self._held:
            return False  # the first pod tells what the next ones need
        estimate = self._estimate or Resources()
        if not self.resources.try_reserve(key, estimate, window=self.window):
            return False
        self._held[job] = estimate
        return True

    async def _hold(self, job: str, requests: Resources) -> None:
        """Hold exactly what the rendered pod requests, waiting for room if it is more."""
        self._estimate = requests
        if self.resources is None or self._held.get(job) == requests:
            return
        key = (self.name, job)
        self.resources.release(key)
        self._held.pop(job, None)
        if not requests.fits_within(self.resources.quota):
            raise QuotaExceededError(
                f"the pod of job {job!r} requests ({requests}), more than the whole quota "
                f"({self.resources.quota})"
            )
        delay = 0.05
        while not (self.resources.used + requests).fits_within(self.resources.quota):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        self.resources.claim(key, requests)
        self._held[job] = requests

    def release(self, job: str) -> None:
        """Give back the job's resources."""
        if self.resources is not None:
            self.resources.release((self.name, job))
        self._held.pop(job, None)
        self._reattaching.pop(job, None)

    async def _delete(self, job: str, name: str) -> None:
        try:
            await self.podman.delete(name)
        except (OSError, PydatataskError) as exc:
            logger.warning("%s: could not delete the pod of job %r: %s", self.name, job, exc)

    # ---------------------------------------------------------------- running

    def _context(self, job: str, attempt: int) -> dict[str, Any]:
        """Return the template names besides the links (subclasses add their own)."""
        return {"job": job, "task": self.name, "env": self.env}

    def _pod_env(self) -> dict[str, str]:
        return dict(self.env)

    async def _manifest(self, job: str, attempt: int) -> dict[str, Any]:
        context = self._link_context(job)
        context.update(self._context(job, attempt))
        try:
            manifest = await render_manifest(self.template, context)
        except ConfigurationError as exc:
            raise ConfigurationError(f"task {self.name!r}, job {job!r}: {exc}") from exc
        return self.podman.complete(manifest, self.name, job, attempt, self._pod_env())

    async def execute(self, job: str, attempt: int) -> dict[str, Any]:
        """Render and create the job's pod, then follow it to its end.

        :raises ProcessExitError: when the pod fails, is evicted, or its image cannot
            be pulled.
        :raises ConfigurationError: when the manifest is refused (422) or invalid.
        :raises QuotaExceededError: when the pod requests more than the whole quota.
        :raises BackendError: when the job's pod already runs, or the API fails.
        """
        began = asyncio.get_running_loop().time()
        manifest = await self._manifest(job, attempt)
        await self._hold(job, pod_requests(manifest))
        name = manifest["metadata"]["name"]
        try:
            await self._create(job, name, manifest)
        except asyncio.CancelledError:
            await asyncio.shield(self._delete(job, name))
            raise
        return await self._follow(job, name, began)

    async def _create(self, job: str, name: str, manifest: dict[str, Any]) -> None:
        """Create the pod; a leftover pod of this job is removed first, a live one refused."""
        for _ in range(3):
            if await self.podman.create(manifest) is not None:
                return
            existing = await self.podman.get(name)
            if existing is None:
                continue
            report = PodReport.of(existing)
            if report.terminating or report.ended:
                logger.warning("%s: replacing the leftover pod %s", self.name, name)
                if not report.terminating:
                    await self.podman.delete(name, grace_period=0)
                await self.podman.wait_gone(name)
                continue
            raise BackendError(
                f"the pod {name} of job {job!r} is already running; "
                "another controller may be running this pipeline"
            )
        raise BackendError(f"could not create the pod {name} of job {job!r}")

    async def live_jobs(self) -> dict[str, int]:
        """Return the jobs whose pods an earlier controller left, running or ended.

        Pods of jobs whose done record is already written are deleted. Inside a pod
        started by a :class:`KubeFunctionTask`, nothing is listed: that process must
        not adopt pods.
        """
        if os.environ.get(IN_POD_VARIABLE):
            return {}
        live: dict[str, int] = {}
        for pod in await self.podman.list_pods(self.name):
            report = PodReport.of(pod)
            if report.job is None or report.terminating:
                continue
            if report.ended and await self._recorded(report.job, report.attempt):
                await self._delete(report.job, report.name)
                continue
            live[report.job] = report.attempt
            self._found[report.job] = report.name
            self._reattaching[report.job] = report.requests
            if self._estimate is None:
                self._estimate = report.requests
        return live

    async def attach(self, job: str, attempt: int) -> dict[str, Any]:
        """Wait for a pod an earlier controller created, then reap it like :meth:`execute`.

        :raises ProcessExitError: when the pod failed or disappeared.
        """
        began = asyncio.get_running_loop().time()
        name = self._found.pop(job, None) or self.podman.pod_name(self.name, job)
        return await self._follow(job, name, began)

    async def _follow(self, job: str, name: str, began: float) -> dict[str, Any]:
        try:
            pod = await self.podman.wait(self.name, name)
            report = None if pod is None else PodReport.of(pod)
            if report is not None:
                await self._copy_log(job, report)
        except asyncio.CancelledError:
            if self._should_stop(began):
                await asyncio.shield(self._delete(job, name))
            raise
        except Exception:
            # It cannot be followed to its end: stop it rather than leave it unwatched.
            await asyncio.shield(self._delete(job, name))
            raise
        if report is None:
            self._details[job] = {"pod": name, "reason": "Deleted"}
            raise ProcessExitError(
                f"the pod {name} of job {job!r} was deleted before it ended", None
            )
        # Reaped: its log is copied and its outcome read, so the pod has served. A crash
        # before the record is written runs the job again; nothing is lost or left.
        await asyncio.shield(self._delete(job, name))
        self._details[job] = _details(report)
        if report.reason == "Succeeded":
            return {}
        status = "" if report.exit_code is None else f", exit status {report.exit_code}"
        message = f": {report.message}" if report.message else ""
        raise ProcessExitError(
            f"the pod {name} of job {job!r} ended with {report.reason}{status}{message}",
            report.exit_code,
        )

    async def _copy_log(self, job: str, report: PodReport) -> None:
        link = self.links.get("logs")
        if link is None:
            return
        assert isinstance(link.repo, BlobRepository)
        writer = await link.repo.open(job, "wb")
        try:
            await self.podman.copy_log(report.name, report.containers, writer)
        except BaseException:
            await asyncio.shield(writer.abort())
            raise
        await writer.close()

    async def run_attempt(
        self, job: str, attempt: int, reattach: bool = False
    ) -> tuple[dict[str, Any], BaseException | None]:
        """Run one attempt; the pod's outcome (reason, exit code, node, ...) joins the record."""
        self._details.pop(job, None)
        record, error = await super().run_attempt(job, attempt, reattach)
        record.update(self._details.pop(job, {}))
        if record.get("timeout"):
            record["reason"] = "Timeout"
        elif "reason" not in record and error is not None:
            record["reason"] = "Error"
        return record, error

    async def kill(self, job: str) -> bool:
        """Delete ``job``'s pod if it has one (``rm`` uses this); True if it had.

        :raises BackendError: when the API cannot be reached.
        """
        return await self.podman.delete(self.podman.pod_name(self.name, job))


def _details(report: PodReport) -> dict[str, Any]:
    details: dict[str, Any] = {
        "pod": report.name,
        "reason": report.reason,
        "exit_code": report.exit_code,
        "node": report.node,
        "image": report.image,
        "pod_created": report.created,
        "pod_started": report.started,
        "pod_finished": report.finished,
    }
    if report.message:
        details["message"] = report.message
    return details


class KubeFunctionTask(KubeTask):
    """Run an ``async def body(job, **links)`` in a pod, by running the pipeline script there.

    The pod's command is ``python SCRIPT launch TASK JOB --sync --force``; the manifest
    places it with ``command: {{ command }}`` (``command`` and ``argv`` are that list).
    The manifest also sees ``python_paths``, the host folders of this interpreter's
    environment (see :func:`python_paths`), for pods that run on this machine with
    ``hostPath`` volumes, for example on a one-node cluster:

    .. code-block:: jinja

        volumeMounts:
        {%- for path in python_paths %}
        - {name: python{{ loop.index }}, mountPath: {{ path }}, readOnly: true}
        {%- endfor %}

    Every container gets ``PYDATATASK_IN_POD=TASK``; a process that sees it runs the
    body itself instead of creating a pod, lists no pods, and writes its done record to
    a throw-away repository: the controller writes the one record, from the pod's
    outcome. The image must hold Python, pydatatask, the script at the same path, and
    reach the repositories the body uses.

    :param func: the body; or use the task as a decorator.
    :param script: the pipeline script's path in the pod (default: this process's
        ``sys.argv[0]``, made absolute).
    :param python: the interpreter to run it with in the pod.

    The other parameters are those of :class:`KubeTask`.
    """

    reserved_names: ClassVar[frozenset[str]] = KubeTask.reserved_names | {
        "argv",
        "command",
        "python_paths",
    }

    def __init__(
        self,
        name: str,
        podman: PodManager,
        resources: ResourceManager | None,
        template: str,
        func: JobFunction | None = None,
        logs: BlobRepository | None = None,
        done: MetadataRepository | None = None,
        window: timedelta | float = timedelta(minutes=1),
        timeout: timedelta | float | None = None,
        env: Mapping[str, str] | None = None,
        ready: Repository | None = None,
        retry: RetryPolicy | int | None = None,
        *,
        script: str | None = None,
        python: str = "python3",
        on_exit: OnExit = "detach",
        max_concurrent: int | None = None,
    ) -> None:
        super().__init__(
            name,
            podman,
            resources,
            template,
            logs,
            done,
            window,
            timeout,
            env,
            ready,
            retry,
            on_exit=on_exit,
            max_concurrent=max_concurrent,
        )
        self.script = script
        self.python = python
        self.body = InProcessSyncTask(name)
        self.body.links = self.links  # the body's parameters name this task's links
        if func is not None:
            self(func)

    def __call__(self, func: JobFunction) -> Self:
        """Set the body; returns the task, so the class works as a decorator."""
        self.body(func)
        self.__doc__ = func.__doc__
        self.__wrapped__ = func
        return self

    @property
    def in_pod(self) -> bool:
        """Whether this process runs inside one of this task's pods."""
        return os.environ.get(IN_POD_VARIABLE) == self.name

    async def bind(self) -> None:
        """Match the body's parameters to links; inside a pod, keep the record to itself.

        :raises ConfigurationError: for a missing body or a parameter naming no link.
        """
        await self.body.bind()
        await super().bind()
        if self.in_pod:
            self.done = InProcessMetadataRepository()

    def argv(self, job: str) -> list[str]:
        """Return the command that runs ``job`` in the pod."""
        script = self.script or os.path.abspath(sys.argv[0])
        if job.startswith("-"):  # keep an id like '-x' from reading as an option
            return [self.python, script, "launch", "--sync", "--force", "--", self.name, job]
        return [self.python, script, "launch", self.name, job, "--sync", "--force"]

    def _context(self, job: str, attempt: int) -> dict[str, Any]:
        argv = self.argv(job)
        return {
            **super()._context(job, attempt),
            "argv": argv,
            "command": argv,
            "python_paths": python_paths(),
        }

    def _pod_env(self) -> dict[str, str]:
        return {**super()._pod_env(), IN_POD_VARIABLE: self.name}

    async def execute(self, job: str, attempt: int) -> dict[str, Any]:
        """Run the body here inside the pod; elsewhere, run a pod that does.

        :raises ProcessExitError: when the pod fails (the body raised, or worse).
        """
        if self.in_pod:
            return await self.body.execute(job, attempt)
        return await super().execute(job, attempt)

    async def live_jobs(self) -> dict[str, int]:
        """Return the pods an earlier controller left (none inside a pod)."""
        return {} if self.in_pod else await super().live_jobs()


@functools.cache
def python_paths() -> tuple[str, ...]:
    """Return the host folders that hold the running interpreter's environment.

    They are its prefixes (the virtual environment's and the base installation's), the
    folder of the interpreter's executable, its standard library and site-packages
    folders, every entry of ``sys.path`` past the script's own folder (so folders that
    ``.pth`` files add), and the folder that pydatatask is imported from. Each is given
    as it is named and, when that differs, as its symbolic links resolve; folders that
    do not exist or lie inside another one are left out. Mounting them at the same
    paths lets a pod run ``sys.executable`` with the same packages, wherever the
    virtual environment lives.
    """
    named = [
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        os.path.dirname(sys.executable),
        os.path.dirname(os.path.realpath(sys.executable)),
        *sysconfig.get_paths().values(),
        *site.getsitepackages(),
        *sys.path[1:],
        str(Path(__file__).parents[2]),
    ]
    folders = {
        form
        for path in named
        if path and os.path.isdir(path)
        for form in (os.path.abspath(path), os.path.realpath(path))
    }
    return tuple(
        sorted(
            folder
            for folder in folders
            if not any(folder.startswith(other + os.sep) for other in folders)
        )
    )
