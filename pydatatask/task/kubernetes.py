"""Tasks whose jobs run as Kubernetes pods.

A :class:`KubeTask` renders its jinja2 pod manifest for a job into a
:class:`~pydatatask.executor.pods.PodSpec`, which a
:class:`~pydatatask.executor.kubernetes.PodManager` completes (name, labels,
``restartPolicy: Never``), creates and follows; the lifecycle (follow, re-attach,
timeout, kill, quota, clean-up) is :class:`~pydatatask.task.external.ExternalTask`'s.
The pod's log goes to the ``logs`` repository, and the done record gets ``reason``,
``exit_code``, ``node``, ``image`` and the pod's timings; the pod is deleted after the
record is written. Pods are the memory of what runs: a restarted controller lists them
by label, waits for the running ones and reaps the ones that ended while no controller
watched, so no job runs twice.

Manifests are rendered with :func:`~pydatatask.templating.render_manifest`: ids and
values are put into the parsed manifest, so none can add keys or change its structure.

A :class:`KubeFunctionTask` runs a Python function in a pod by running the pipeline
script there: ``python SCRIPT launch TASK JOB --sync --force``. Its manifests can mount
:func:`python_paths`, the host folders of the running interpreter's environment.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import site
import sys
import sysconfig
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

import jinja2

from pydatatask.errors import ConfigurationError, PydatataskError
from pydatatask.executor.kubernetes import PodManager
from pydatatask.executor.pods import PodHandle, PodSpec, pod_requests
from pydatatask.quota import ResourceManager, Resources
from pydatatask.records import JobResult
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.repository.memory import InProcessMetadataRepository
from pydatatask.task.external import ExternalTask, OnExit, Source
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


class KubeTask(ExternalTask[PodSpec, PodHandle]):
    """Run a templated pod per job on a Kubernetes cluster.

    :param name: the task name.
    :param podman: the :class:`~pydatatask.PodManager` that creates and follows pods,
        or a session accessor returning one.
    :param resources: the quota the pods draw from (None: no quota). A pod holds the sum
        of its containers' ``resources.requests`` (CPU and memory) while it runs. The
        scheduler reserves what the template requests when rendered without a job (else
        what the last pod requested; until one is known, one pod runs at a time); a pod
        that requests more holds that instead, and later pods wait for room.
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
    :param max_concurrent: the most jobs of this task running at once.
    :param version: the code's version for provenance (default: a hash of the templates).
    :raises TypeError: for an unknown keyword argument.
    :raises ConfigurationError: for arguments of the wrong kind or a template that does
        not parse.
    """

    def __init__(
        self,
        name: str,
        podman: PodManager | Callable[[], PodManager],
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
        version: str | None = None,
    ) -> None:
        if resources is not None and not isinstance(resources, ResourceManager):
            raise ConfigurationError(f"task {name!r}: resources must be a ResourceManager")
        self._podman: Source[PodManager] = Source(name, "podman", podman, PodManager)
        super().__init__(
            name,
            template,
            window=window,
            done=done,
            ready=ready,
            executor=self._podman,
            quota=resources,
            estimate=None,
            on_exit=on_exit,
            timeout=timeout,
            retry=retry,
            max_concurrent=max_concurrent,
            version=version,
        )
        self.resources = resources
        self.env = dict(env or {})
        if logs is not None:
            if not isinstance(logs, BlobRepository):
                raise ConfigurationError(f"task {name!r}: logs must be a BlobRepository")
            self.link("logs", logs, is_output=True)
        self.streams = {"log": "logs"}

    @property
    def podman(self) -> PodManager:
        """The pod manager (an accessor's value while its session is open)."""
        return self._podman.get()

    async def bind(self) -> None:
        """Check the template's names and the manager, and estimate what one pod requests.

        :raises ConfigurationError: for a link named like a template name, an unknown
            template name, or a wrong manager.
        """
        await super().bind()
        context: dict[str, Any] = {name: _Blank() for name in self.links}
        context.update(self._context("job", 1), job="job")
        try:
            self._quota.estimate = pod_requests(await render_manifest(self.template, context))
        except (
            jinja2.TemplateError,
            PydatataskError,
            TypeError,
            ValueError,
            AttributeError,
        ) as exc:
            logger.debug("%s: no estimate of a pod's requests before a job: %s", self.name, exc)

    def _context(self, job: str, attempt: int) -> dict[str, Any]:
        """Return the template names besides the links (subclasses add their own)."""
        return {"job": job, "task": self.name, "env": self.env}

    def _pod_env(self) -> dict[str, str]:
        return dict(self.env)

    @contextlib.asynccontextmanager
    async def rendered(self, job: str, attempt: int) -> AsyncIterator[PodSpec]:
        """Render the job's pod manifest.

        :raises ConfigurationError: when the manifest is not YAML or not a mapping.
        """
        context = self._link_context(job)
        context.update(self._context(job, attempt))
        try:
            manifest = await render_manifest(self.template, context)
        except ConfigurationError as exc:
            raise ConfigurationError(f"task {self.name!r}, job {job!r}: {exc}") from exc
        if not isinstance(manifest, Mapping):
            raise ConfigurationError(f"task {self.name!r}: the template must render a Pod manifest")
        yield PodSpec(manifest, self._pod_env())

    def _asks(self, spec: PodSpec) -> Resources:
        return pod_requests(spec.manifest)

    def _holds(self, handle: PodHandle) -> Resources:
        return handle.requests

    async def live_jobs(self, shared: bool = False) -> dict[str, int]:
        """Return the jobs whose pods an earlier controller left, running or ended.

        Inside a pod started by a :class:`KubeFunctionTask`, nothing is listed: that
        process must not adopt pods.
        """
        if os.environ.get(IN_POD_VARIABLE):
            return {}
        return await super().live_jobs(shared)

    async def run_attempt(
        self, job: str, attempt: int, reattach: bool = False
    ) -> tuple[JobResult, BaseException | None]:
        """Run one attempt; the pod's outcome (reason, exit code, node, ...) joins the record."""
        result, error = await super().run_attempt(job, attempt, reattach)
        if result.timeout:
            result.extra["reason"] = "Timeout"
        elif "reason" not in result.extra and error is not None:
            result.extra["reason"] = "Error"
        return result, error


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
        podman: PodManager | Callable[[], PodManager],
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
        version: str | None = None,
    ) -> None:
        super().__init__(
            name,
            podman,
            resources,
            template,
            logs=logs,
            done=done,
            window=window,
            timeout=timeout,
            env=env,
            ready=ready,
            retry=retry,
            on_exit=on_exit,
            max_concurrent=max_concurrent,
            version=version,
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

    def code_material(self) -> str:
        """Return the manifest and the body's source."""
        return f"{super().code_material()}\0{self.body.code_material()}"

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
