"""Run job bodies on a ``concurrent.futures`` executor.

Repositories and their clients live on the controller's event loop. A body running in
a worker gets views of its repositories that carry every call over to that loop: a
blocking view for a plain function, an async view for a coroutine function, which runs
on an event loop its worker thread keeps for all the jobs it runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

from pydatatask.errors import LifecycleError

__all__ = ["AsyncView", "BlockingView", "run_on_executor"]

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


class _Bridge:
    """Submits coroutines to the controller loop on behalf of one job, until it ends."""

    def __init__(self, controller: asyncio.AbstractEventLoop) -> None:
        self.controller = controller
        self.closed = False
        self.pending: set[concurrent.futures.Future[Any]] = set()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        if self.closed:
            coroutine.close()
            raise LifecycleError("this job has ended (cancelled or timed out)")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.controller)
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)
        return future

    def close(self) -> None:
        self.closed = True
        for future in list(self.pending):
            future.cancel()


def _is_stream(value: object) -> bool:
    return callable(getattr(value, "read", None)) or callable(getattr(value, "write", None))


class BlockingView:
    """A blocking view of a repository or stream for a body running in a worker thread."""

    def __init__(self, target: Any, bridge: _Bridge) -> None:
        self._target = target
        self._bridge = bridge

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        result = self._bridge.submit(coroutine).result()
        return BlockingView(result, self._bridge) if _is_stream(result) else result

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

    def __init__(self, target: Any, bridge: _Bridge) -> None:
        self._target = target
        self._bridge = bridge

    async def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        result = await asyncio.wrap_future(self._bridge.submit(coroutine))
        return AsyncView(result, self._bridge) if _is_stream(result) else result

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
    controller: asyncio.AbstractEventLoop,
) -> Any:
    """Run ``func(job, **repositories)`` on ``executor`` and return its result.

    When the caller is cancelled (a timeout), a coroutine body is cancelled on its
    worker loop; a plain function cannot be interrupted and is abandoned, and any
    repository call it makes afterwards fails.
    """
    bridge = _Bridge(controller)
    is_coroutine = inspect.iscoroutinefunction(func)
    view = AsyncView if is_coroutine else BlockingView
    kwargs = {name: view(repo, bridge) for name, repo in repositories.items()}
    cancel = _Cancel()
    if is_coroutine:
        call = functools.partial(_run_coroutine_body, func, job, kwargs, cancel)
    else:
        call = functools.partial(func, job, **kwargs)
    try:
        return await controller.run_in_executor(executor, call)
    finally:
        cancel.cancel()
        bridge.close()
