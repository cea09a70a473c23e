"""Tasks whose body is a Python function: in the controller's loop or on an executor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Callable
from typing import Any, Self, Unpack

from pydatatask.errors import ConfigurationError
from pydatatask.executor.pool import JobScope, run_on_executor
from pydatatask.repository.base import MetadataRepository, Repository
from pydatatask.task.base import Task, TaskOptions, source_of
from pydatatask.task.stopping import StopReason, stop_reason

__all__ = ["ExecutorTask", "FunctionTask", "InProcessSyncTask", "JobFunction"]

JobFunction = Callable[..., Any]
"""The body of a function task, ``func(job, **links)``, sync or async."""


class FunctionTask(Task):
    """A task whose body is ``func(job, **links)``.

    The first parameter receives the job id; each other parameter names a link and
    receives its repository; a ``**kwargs`` parameter receives every link. Usable as a
    decorator when ``func`` is omitted: ``@InProcessSyncTask("name", done)`` on the body
    returns the task.
    """

    def __init__(
        self,
        name: str,
        done: MetadataRepository | None = None,
        ready: Repository | None = None,
        func: JobFunction | None = None,
        **options: Unpack[TaskOptions],
    ) -> None:
        super().__init__(name, done, ready, **options)
        self.func: JobFunction | None = None
        self._bound_links: list[str] | None = None
        self._bound_arguments: dict[str, Repository] | None = None
        if func is not None:
            self(func)

    def __call__(self, func: JobFunction) -> Self:
        """Set the body; returns the task, so the class works as a decorator."""
        if not callable(func):
            raise ConfigurationError(f"task {self.name!r}: the body must be callable")
        if self.func is not None:
            raise ConfigurationError(f"task {self.name!r} already has a body")
        self.func = func
        self.__doc__ = func.__doc__
        self.__wrapped__ = func
        return self

    def code_material(self) -> str:
        """Return the body's source."""
        return source_of(self.func)

    async def bind(self) -> None:
        """Match the body's parameters to links once.

        :raises ConfigurationError: naming a parameter that matches no link.
        """
        if self.func is None:
            raise ConfigurationError(f"task {self.name!r} has no body: decorate a function")
        parameters = list(inspect.signature(self.func).parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not parameters or parameters[0].kind not in positional:
            raise ConfigurationError(
                f"task {self.name!r}: the body's first parameter must take the job id"
            )
        names: list[str] = []
        for parameter in parameters[1:]:
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                names = list(self.links)
                continue
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if parameter.name in self.links:
                if parameter.name not in names:
                    names.append(parameter.name)
            elif parameter.default is inspect.Parameter.empty:
                raise ConfigurationError(
                    f"task {self.name!r}: parameter {parameter.name!r} of "
                    f"{getattr(self.func, '__qualname__', self.func)!r} names no link; "
                    f"links are {', '.join(sorted(self.links))}"
                )
        self._bound_links = names
        self._bound_arguments = {name: self.links[name].repo for name in names}

    def _arguments(self) -> dict[str, Repository]:
        if self._bound_arguments is None:
            raise ConfigurationError(f"task {self.name!r} was not bound: open its pipeline first")
        return self._bound_arguments


class InProcessSyncTask(FunctionTask):
    """Run an ``async def body(job, **links)`` in the controller's event loop.

    A plain ``def`` body is also accepted and called directly, which blocks the loop
    while it runs: use :class:`ExecutorTask` for blocking work.
    """

    async def execute(self, job: str, attempt: int) -> dict[str, Any]:
        """Call the body for ``job``."""
        assert self.func is not None
        result = self.func(job, **self._arguments())
        if inspect.isawaitable(result):
            await result
        return {}


class ExecutorTask(FunctionTask):
    """Run the body on a :class:`concurrent.futures.Executor`.

    A plain ``def`` body runs in a worker and receives blocking views of its repositories
    (``repo.info(job)`` returns the value); an ``async def`` body runs on an event loop
    that the worker thread keeps for all its jobs and receives async views. Either way,
    each repository call is carried out on the controller's loop, where the session's
    clients live. A process pool can only run bodies that take just ``job``.

    A worker thread cannot be interrupted, so a body whose job timed out or was
    cancelled may go on running. Once its job has ended, every call it makes through
    its views, reads included, raises :class:`~pydatatask.errors.LifecycleError` naming
    the task, the job and how it ended, and the writers it left open are discarded:
    nothing it writes after the end becomes visible.
    """

    def __init__(
        self,
        name: str,
        executor: concurrent.futures.Executor,
        done: MetadataRepository | None = None,
        ready: Repository | None = None,
        func: JobFunction | None = None,
        **options: Unpack[TaskOptions],
    ) -> None:
        if not isinstance(executor, concurrent.futures.Executor):
            raise ConfigurationError(
                f"task {name!r}: executor must be a concurrent.futures.Executor, "
                f"not {type(executor).__name__}"
            )
        self.executor = executor
        super().__init__(name, done, ready, func, **options)

    async def bind(self) -> None:
        """Match parameters to links; a process pool may take no link parameters."""
        await super().bind()
        if isinstance(self.executor, concurrent.futures.ProcessPoolExecutor) and self._bound_links:
            raise ConfigurationError(
                f"task {self.name!r}: a process pool cannot pass repositories to the body "
                f"(parameters {', '.join(self._bound_links)}); use a thread pool"
            )

    async def execute(self, job: str, attempt: int) -> dict[str, Any]:
        """Run the body for ``job`` on the executor; its views stop working when it ends."""
        assert self.func is not None
        scope = JobScope(asyncio.get_running_loop(), self.name, job)
        ending = "has ended"
        try:
            await run_on_executor(self.executor, self.func, job, self._arguments(), scope)
        except asyncio.CancelledError as cancelled:
            reason = stop_reason(cancelled)
            if reason is StopReason.TIMEOUT:
                ending = f"timed out after {self.timeout:g} s"
            else:
                ending = "was removed" if reason is StopReason.REMOVED else "was cancelled"
            raise
        finally:
            await scope.end(ending)
        return {}
