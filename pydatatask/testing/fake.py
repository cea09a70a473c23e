"""An engine in memory: the smallest complete executor, and a task that renders its spec.

:class:`FakeEngine` holds simulated jobs, no processes: each one ends by itself a given
number of seconds after it started, with a given exit status and output, unless it is
stopped first. :class:`FakeExecutor` is its
:class:`~pydatatask.executor.protocol.Executor` and :class:`FakeTask` renders its spec
from a template; the two are all a new engine needs, and they pass the executor
contract suite (:mod:`pydatatask.testing.executors`). Several executors may share one
engine, the way a restarted controller finds the jobs of the one before it::

    engine = FakeEngine()
    task = FakeTask("nap", FakeExecutor(engine), "{seconds: 2, stdout: 'hi {{ job }}'}")
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Unpack

from pydatatask.errors import BackendError, ConfigurationError
from pydatatask.executor.polling import BatchPoller
from pydatatask.executor.protocol import Executor, ExitStatus, JobHandle, Outputs
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.task.base import TaskOptions
from pydatatask.task.external import ExternalTask, OnExit, Source
from pydatatask.templating import render_manifest

__all__ = ["FakeEngine", "FakeExecutor", "FakeHandle", "FakeJob", "FakeSpec", "FakeTask"]


@dataclass(frozen=True)
class FakeSpec:
    """What a simulated job does: run ``seconds``, write its output, exit."""

    seconds: float = 0.0
    exit_code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass(frozen=True)
class FakeHandle(JobHandle):
    """A simulated job, told apart from other starts of the same job by its serial."""

    serial: int

    def as_record(self) -> dict[str, Any]:
        """Return the serial."""
        return {"serial": self.serial}


@dataclass
class FakeJob:
    """A simulated job on the engine."""

    handle: FakeHandle
    spec: FakeSpec
    ends_at: float
    stopped: bool = False

    def status(self) -> ExitStatus | None:
        """How the job ended, or None while it runs."""
        if self.stopped:
            return ExitStatus(None)
        if time.monotonic() >= self.ends_at:
            return ExitStatus(self.spec.exit_code)
        return None


@dataclass
class FakeEngine:
    """The simulated jobs, by (task, job), and every submission ever made."""

    jobs: dict[tuple[str, str], FakeJob] = field(default_factory=dict)
    submitted: list[FakeHandle] = field(default_factory=list)
    _serials: itertools.count[int] = field(default_factory=itertools.count, init=False)

    def serial(self) -> int:
        """Return a number no other start on this engine has."""
        return next(self._serials)

    def current(self, handle: FakeHandle) -> FakeJob | None:
        """Return the job ``handle`` names, if the engine still has it."""
        job = self.jobs.get((handle.task, handle.job))
        return job if job is not None and job.handle == handle else None


class FakeExecutor(Executor[FakeSpec, FakeHandle]):
    """Runs simulated jobs on a :class:`FakeEngine`, polled like a real engine.

    :param engine: the engine (a new one when omitted).
    :param poll_interval: the shortest time between two checks of the jobs waited for.
    """

    def __init__(self, engine: FakeEngine | None = None, *, poll_interval: float = 0.01) -> None:
        self.engine = engine if engine is not None else FakeEngine()
        self._poller = BatchPoller(
            self._ended, "fake engine", shortest=poll_interval, longest=poll_interval * 5
        )

    async def submit(self, task: str, job: str, attempt: int, spec: FakeSpec) -> FakeHandle:
        """Start a simulated job.

        :raises BackendError: when the same job still runs.
        """
        existing = self.engine.jobs.get((task, job))
        if existing is not None and existing.status() is None:
            raise BackendError(f"{task} job {job!r} already runs")
        handle = FakeHandle(task, job, attempt, self.engine.serial())
        self.engine.jobs[(task, job)] = FakeJob(handle, spec, time.monotonic() + spec.seconds)
        self.engine.submitted.append(handle)
        return handle

    async def live(self, task: str) -> list[FakeHandle]:
        """Return ``task``'s jobs that the engine still has."""
        return [job.handle for (owner, _), job in self.engine.jobs.items() if owner == task]

    async def find(self, task: str, job: str) -> FakeHandle | None:
        """Return the handle of ``job``, if the engine has it."""
        found = self.engine.jobs.get((task, job))
        return None if found is None else found.handle

    def restore(self, task: str, job: str, attempt: int, record: Mapping[str, Any]) -> FakeHandle:
        """Rebuild a handle from its serial.

        :raises BackendError: when the record has none.
        """
        try:
            return FakeHandle(task, job, attempt, int(record["serial"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"not a fake handle: {dict(record)!r}") from exc

    async def wait(self, handle: FakeHandle) -> ExitStatus:
        """Wait until the job ends; one the engine lost ended without a status."""
        return await self._poller.wait(handle)

    async def _ended(self, handles: Sequence[FakeHandle]) -> dict[FakeHandle, ExitStatus]:
        ended = {}
        for handle in handles:
            job = self.engine.current(handle)
            status = ExitStatus(None) if job is None else job.status()
            if status is not None:
                ended[handle] = status
        return ended

    async def stop(self, handle: FakeHandle, grace: float | None = None) -> None:
        """Stop the job at once if it runs."""
        job = self.engine.current(handle)
        if job is not None and job.status() is None:
            job.stopped = True

    async def collect(self, handle: FakeHandle, outputs: Outputs) -> None:
        """Write the job's ``stdout`` and ``stderr`` to the streams ``outputs`` wants."""
        job = self.engine.current(handle)
        if job is None:
            return
        for stream, data in (("stdout", job.spec.stdout), ("stderr", job.spec.stderr)):
            if outputs.wants(stream):
                await (await outputs.writer(stream)).write(data)

    async def forget(self, handle: FakeHandle) -> None:
        """Drop the job from the engine."""
        if self.engine.current(handle) is not None:
            del self.engine.jobs[(handle.task, handle.job)]


class FakeTask(ExternalTask[FakeSpec, FakeHandle]):
    """Run a simulated job per job, rendered from a YAML template of :class:`FakeSpec`'s fields.

    The template sees ``job``, ``task``, ``env`` (empty) and every link by name; values
    cannot change its structure (see :func:`~pydatatask.templating.render_manifest`).

    :param executor: a :class:`FakeExecutor`, or a session accessor returning one.
    :param stdout: a blob repository receiving each job's ``stdout``.
    :param stderr: a blob repository receiving each job's ``stderr``.
    :param quota: the quota the jobs draw from, each holding ``job_resources``.
    :param window: the period over which the quota's ``launches`` are counted.
    :param on_exit: what a stopping controller does with running jobs (``"detach"`` or
        ``"kill"``).
    :param options: the options of every task (``timeout``, ``retry``, ``max_concurrent``;
        see :class:`~pydatatask.task.base.TaskOptions`); any other raises ``TypeError``.

    The other parameters are those of every task (see :class:`~pydatatask.Task`).
    """

    def __init__(
        self,
        name: str,
        executor: FakeExecutor | Callable[[], FakeExecutor],
        template: str,
        *,
        done: MetadataRepository | None = None,
        ready: Repository | None = None,
        stdout: BlobRepository | None = None,
        stderr: BlobRepository | None = None,
        quota: ResourceManager | None = None,
        job_resources: Resources | None = None,
        window: timedelta | float = timedelta(minutes=1),
        on_exit: OnExit = "detach",
        **options: Unpack[TaskOptions],
    ) -> None:
        super().__init__(
            name,
            template,
            window=window,
            done=done,
            ready=ready,
            executor=Source(name, "executor", executor, FakeExecutor),
            quota=quota,
            estimate=job_resources or Resources(),
            on_exit=on_exit,
            **options,
        )
        for stream, repo in (("stdout", stdout), ("stderr", stderr)):
            if repo is not None:
                self.link(stream, repo, is_output=True)
                self.streams[stream] = stream

    @contextlib.asynccontextmanager
    async def rendered(self, job: str, attempt: int) -> AsyncIterator[FakeSpec]:
        """Render the job's spec.

        :raises ConfigurationError: when the template does not render a mapping of
            :class:`FakeSpec`'s fields.
        """
        context = self._link_context(job)
        context.update(job=job, task=self.name, env={})
        fields = await render_manifest(self.template, context)
        if not isinstance(fields, dict) or set(fields) - {
            "seconds",
            "exit_code",
            "stdout",
            "stderr",
        }:
            raise ConfigurationError(
                f"task {self.name!r}: the template must render seconds, exit_code, stdout "
                f"and stderr, not {fields!r}"
            )
        yield FakeSpec(
            float(fields.get("seconds", 0)),
            int(fields.get("exit_code", 0)),
            str(fields.get("stdout", "")).encode(),
            str(fields.get("stderr", "")).encode(),
        )
