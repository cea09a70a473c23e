"""Run job bodies on a ``concurrent.futures`` executor.

Repositories and their clients live on the controller's event loop. A body running in
a worker gets views of its repositories that carry every call over to that loop: a
blocking view for a plain function, an async view for a coroutine function, which runs
on an event loop its worker thread keeps for all the jobs it runs.

The views of one job share a :class:`JobScope`, which the task ends when the job ends,
however it ends. A worker thread cannot be interrupted, so a body that timed out or was
cancelled may still be running; from then on every call through its views, reads
included, raises :class:`~pydatatask.errors.LifecycleError`, and the writers it left
open are discarded, so nothing it does afterwards lands in a repository.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

from pydatatask.errors import LifecycleError

__all__ = ["AsyncView", "BlockingView", "JobScope", "run_on_executor"]

logger = logging.getLogger(__name__)

_local = threading.local()


class _WorkerLoop:
    """An event loop owned by one worker thread, closed when the thread ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if not self.loop.is_closed():
            self.loop.close()


def _worker_loop() -> asyncio.AbstractEventLoop:
    holder: _WorkerLoop | None = getattr(_local, "holder", None)
    if holder is None:
        holder = _WorkerLoop()
        _local.holder = holder
    return holder.loop


class JobScope:
    """What the repository views of one job's body share, until the job ends.

    Every call a view makes runs on the controller's loop. After :meth:`end`, each new
    call raises :class:`LifecycleError` naming the task, the job and how it ended; calls
    still running are cancelled, and writers opened through the views are aborted, so
    a writer the body closes afterwards commits nothing. A commit already under way
    when the job ends may still complete: it began before the end.
    """

    def __init__(self, controller: asyncio.AbstractEventLoop, task: str, job: str) -> None:
        self.controller = controller
        self._task = task
        self._job = job
        self._ending: str | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._writers: list[Any] = []

    def _refusal(self) -> LifecycleError:
        return LifecycleError(
            f"task {self._task!r} job {self._job!r} {self._ending}: "
            "its repositories refuse every call"
        )

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Run ``coroutine`` on the controller's loop; callable from any thread.

        :raises LifecycleError: once the job has ended.
        """
        if self._ending is not None:
            coroutine.close()
            raise self._refusal()
        return asyncio.run_coroutine_threadsafe(self._run(coroutine), self.controller)

    async def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        # On the controller's loop, like end(): a call either starts before the job
        # ends, and end() cancels it, or it sees the ending and never starts.
        if self._ending is not None:
            coroutine.close()
            raise self._refusal()
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            result = await coroutine
        except asyncio.CancelledError:
            if self._ending is None:
                raise
            raise self._refusal() from None
        finally:
            self._running.discard(task)
        if _is_stream(result) and callable(getattr(result, "abort", None)):
            self._writers.append(result)
        return result

    async def end(self, ending: str) -> None:
        """Refuse every later call, saying the job ``ending`` (e.g. "timed out after 2 s").

        Waits for the calls still running to stop, then aborts every writer opened
        through the views (closed writers ignore it). Ending twice does nothing.
        """
        if self._ending is not None:
            return
        self._ending = ending
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for writer in self._writers:
            try:
                await writer.abort()
            except Exception:
                logger.exception(
                    "could not discard a writer of task %r job %r", self._task, self._job
                )
        self._writers.clear()


def _is_stream(value: object) -> bool:
    return callable(getattr(value, "read", None)) or callable(getattr(value, "write", None))


class BlockingView:
    """A blocking view of a repository or stream for a body running in a worker thread."""

    def __init__(self, target: Any, scope: JobScope) -> None:
        self._target = target
        self._scope = scope

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        result = self._scope.submit(coroutine).result()
        return BlockingView(result, self._scope) if _is_stream(result) else result

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(attribute(*args, **kwargs))

        return call

    def __iter__(self) -> Any:
        return iter(sorted(self._call(self._target.ids())))

    def __enter__(self) -> BlockingView:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._call(self._target.__aexit__(exc_type, exc, traceback))


class AsyncView:
    """An async view of a repository or stream for a coroutine body on a worker's loop."""

    def __init__(self, target: Any, scope: JobScope) -> None:
        self._target = target
        self._scope = scope

    async def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        result = await asyncio.wrap_future(self._scope.submit(coroutine))
        return AsyncView(result, self._scope) if _is_stream(result) else result

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        @functools.wraps(attribute)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._call(attribute(*args, **kwargs))

        return call

    async def __aiter__(self) -> Any:
        for job in sorted(await self._call(self._target.ids())):
            yield job

    async def __aenter__(self) -> AsyncView:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._call(self._target.__aexit__(exc_type, exc, traceback))


class _Cancel:
    """Lets the controller cancel a coroutine body running on a worker's loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    def attach(self, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._task = task
            if self._cancelled:
                task.get_loop().call_soon_threadsafe(task.cancel)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._task is not None:
                self._task.get_loop().call_soon_threadsafe(self._task.cancel)


def _run_coroutine_body(
    func: Callable[..., Any], job: str, kwargs: dict[str, Any], cancel: _Cancel
) -> Any:
    loop = _worker_loop()
    task = loop.create_task(func(job, **kwargs))
    cancel.attach(task)
    return loop.run_until_complete(task)


async def run_on_executor(
    executor: concurrent.futures.Executor,
    func: Callable[..., Any],
    job: str,
    repositories: dict[str, Any],
    scope: JobScope,
) -> Any:
    """Run ``func(job, **repositories)`` on ``executor`` and return its result.

    The body receives views of ``repositories`` that act through ``scope``, which the
    caller ends when the job ends. When the caller is cancelled (a timeout), a coroutine
    body is cancelled on its worker loop; a plain function cannot be interrupted and is
    abandoned.
    """
    is_coroutine = inspect.iscoroutinefunction(func)
    view = AsyncView if is_coroutine else BlockingView
    kwargs = {name: view(repo, scope) for name, repo in repositories.items()}
    cancel = _Cancel()
    if is_coroutine:
        call = functools.partial(_run_coroutine_body, func, job, kwargs, cancel)
    else:
        call = functools.partial(func, job, **kwargs)
    try:
        return await scope.controller.run_in_executor(executor, call)
    finally:
        cancel.cancel()
