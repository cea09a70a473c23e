"""What an executor of external jobs does: the one contract every engine keeps.

An *executor* runs jobs outside the controller (process groups on a Linux host, Docker
containers, Kubernetes pods, ...). It knows nothing of repositories or done records:
:class:`~pydatatask.task.external.ExternalTask` drives every engine through the same
lifecycle, and an engine differs only in the methods below.

- :meth:`Executor.submit` starts a job from a rendered spec and returns its handle;
- :meth:`Executor.live` and :meth:`Executor.find` find jobs again, so a restarted
  controller re-adopts them instead of starting them twice;
- :meth:`Executor.wait` waits for a job to end and says how it ended;
- :meth:`Executor.stop` stops a job that still runs;
- :meth:`Executor.collect` copies what the job wrote into the task's repositories;
- :meth:`Executor.forget` removes every trace the job left on the engine.

A handle names one job (task, job id, attempt) plus what the engine needs to find it;
:meth:`JobHandle.as_record` and :meth:`Executor.restore` turn it into plain values and
back, so a task may keep it in a repository. :mod:`pydatatask.testing.executors` holds
the suite every engine passes.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydatatask.streams import ByteWriter

__all__ = ["Executor", "ExitStatus", "JobHandle", "Outputs"]

SpecT = TypeVar("SpecT", contravariant=True)
HandleT = TypeVar("HandleT", bound="JobHandle")


@dataclass(frozen=True)
class JobHandle:
    """One job as an engine knows it; engines subclass it with what finds the job again."""

    task: str
    job: str
    attempt: int

    def as_record(self) -> dict[str, Any]:
        """Return the engine's own fields as plain values (see :meth:`Executor.restore`)."""
        return {}


@dataclass(frozen=True)
class ExitStatus:
    """How a job ended.

    A job succeeded when it exited with status 0 and the engine gave no other
    ``reason`` for its end.
    """

    code: int | None
    """Its exit status; None when it ended without one (killed, never started, gone)."""
    reason: str | None = None
    """What ended it in the engine's words (``"Evicted"``, ``"ErrImagePull"``), when more
    than its own exit did."""
    message: str = ""
    """The engine's explanation, if it gave one."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Fields the engine adds to the done record (a pod's node, image and timings)."""

    @property
    def succeeded(self) -> bool:
        """Whether the job did what it should."""
        return self.code == 0 and self.reason is None

    def describe(self) -> str:
        """Say how the job ended, as the end of a sentence about it."""
        if self.reason is None:
            if self.code is None:
                return (
                    "ended without recording an exit status (it was killed, or its host restarted)"
                )
            return f"exited with status {self.code}"
        status = "" if self.code is None else f", exit status {self.code}"
        message = f": {self.message}" if self.message else ""
        return f"ended with {self.reason}{status}{message}"


class Outputs:
    """Where a job's output streams go, opened on first use.

    Streams are named ``"stdout"``, ``"stderr"`` and ``"log"`` (the whole output of an
    engine that does not separate them). Streams sent to the same target share one
    writer, so ``stderr`` can merge into ``stdout``. Every writer is committed by
    :meth:`close` or discarded by :meth:`abort`.

    :param targets: for each wanted stream, a target name and how to open its writer.
    """

    def __init__(self, targets: Mapping[str, tuple[str, Callable[[], Awaitable[ByteWriter]]]]):
        self._targets = dict(targets)
        self._open: dict[str, ByteWriter] = {}

    def wants(self, stream: str) -> bool:
        """Whether the task keeps ``stream``."""
        return stream in self._targets

    async def writer(self, stream: str) -> ByteWriter:
        """Return the writer for ``stream``, opening it the first time.

        :raises KeyError: for a stream the task does not keep (see :meth:`wants`).
        """
        target, opener = self._targets[stream]
        if target not in self._open:
            self._open[target] = await opener()
        return self._open[target]

    async def close(self) -> None:
        """Commit every writer opened so far."""
        for writer in self._open.values():
            await writer.close()

    async def abort(self) -> None:
        """Discard every writer opened so far."""
        for writer in self._open.values():
            await writer.abort()


class Executor(abc.ABC, Generic[SpecT, HandleT]):
    """Runs jobs described by ``SpecT`` on one engine and follows them by ``HandleT``.

    Every method may raise :class:`~pydatatask.errors.BackendError`, and
    :class:`~pydatatask.errors.BackendUnavailableError` while the engine cannot be
    reached, except :meth:`wait`, which retries: an unreachable engine ends no job.
    """

    @abc.abstractmethod
    async def submit(self, task: str, job: str, attempt: int, spec: SpecT) -> HandleT:
        """Start ``job`` of ``task`` as ``spec`` says; return once the engine runs it.

        A leftover of the same job that has ended is replaced. On failure or
        cancellation, what was started is stopped and removed before this raises.

        :raises BackendError: when the job cannot start, or the same job already runs.
        """

    @abc.abstractmethod
    async def live(self, task: str) -> list[HandleT]:
        """Return ``task``'s jobs that run, or ended and are not yet forgotten.

        This is what a restarted controller re-adopts; engines answer in one request.
        """

    @abc.abstractmethod
    async def find(self, task: str, job: str) -> HandleT | None:
        """Return the handle of ``job`` if the engine has any trace of it, else None."""

    @abc.abstractmethod
    def restore(self, task: str, job: str, attempt: int, record: Mapping[str, Any]) -> HandleT:
        """Rebuild a handle from what :meth:`JobHandle.as_record` returned.

        :raises BackendError: for a record that does not describe a handle.
        """

    @abc.abstractmethod
    async def wait(self, handle: HandleT) -> ExitStatus:
        """Wait until the job ends; return how it ended.

        A job whose traces are gone (stopped, forgotten, deleted by hand) has ended,
        without an exit status. Engines that poll check every job waited for in one
        batched request per interval (see :mod:`pydatatask.executor.polling`).
        """

    @abc.abstractmethod
    async def stop(self, handle: HandleT, grace: float | None = None) -> None:
        """Stop the job if it still runs: politely, then by force after ``grace`` seconds.

        ``grace`` None is the engine's own default. Its traces stay for :meth:`forget`.
        """

    @abc.abstractmethod
    async def collect(self, handle: HandleT, outputs: Outputs) -> None:
        """Copy what the ended job wrote into ``outputs`` (the streams it wants)."""

    @abc.abstractmethod
    async def forget(self, handle: HandleT) -> None:
        """Remove every trace of the job from the engine; a missing one is fine.

        It is called once the job has ended or was stopped.
        """
