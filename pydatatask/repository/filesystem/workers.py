"""Worker threads for short file operations, with little bookkeeping per call.

Folder repositories hand each job's small reads and writes (open a small file, install
a written one, write a done record) to a thread, as a disk may keep them waiting.
Through ``asyncio.to_thread`` each call also builds a ``concurrent.futures.Future`` (a
lock and a condition), chains it to an asyncio future and takes the executor's locks.
With many short jobs on files that bookkeeping, not the disk, kept the event loop busy:
about 80 us of it per call, against about 35 us here, where a call is one queue entry
and one ``call_soon_threadsafe``.

The threads are shared by every event loop of the process. A thread starts for a call
that finds none idle, up to :data:`MAX_WORKERS` (the size of asyncio's default
executor), and then waits for more calls for as long as the process lives. Before the
interpreter exits the threads finish what they are doing, so a write in progress is not
cut short. In a child process made by ``fork``, the pool starts afresh.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MAX_WORKERS", "in_worker"]

_T = TypeVar("_T")

MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)
"""Threads at most, as many as asyncio's default executor would start."""

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class _Pool:
    """Threads that take calls from one queue and hand each result to its event loop."""

    _calls: queue.SimpleQueue[_Call | None]
    _threads: list[threading.Thread]
    _idle: int
    """Threads that finished a call and wait for another one no caller counts on yet
    (changed under ``_lock``)."""
    _lock: threading.Lock

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Start with no thread and no call; also in a forked child, which has no thread."""
        self._calls = queue.SimpleQueue()
        self._threads = []
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, func: Callable[..., _T], args: tuple[Any, ...]) -> asyncio.Future[_T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._calls.put((loop, future, func, args))
        with self._lock:  # an idle thread takes this call, unless each one has a call already
            has_idle = self._idle > 0
            if has_idle:
                self._idle -= 1
        if not has_idle and len(self._threads) < MAX_WORKERS:
            worker = threading.Thread(target=self._work, name="pydatatask-io", daemon=True)
            self._threads.append(worker)
            worker.start()
        return future

    def _work(self) -> None:
        calls, lock = self._calls, self._lock
        while True:
            call = calls.get()
            if call is None:
                return
            loop, future, func, args = call
            del call
            try:
                result = func(*args)
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                _settle_soon(loop, future, None, error)
            else:
                _settle_soon(loop, future, result, None)
            del loop, future, func, args  # an idle thread keeps no call's values alive
            with lock:
                self._idle += 1

    def stop(self) -> None:
        """Let every thread finish its call, then end it."""
        for _ in self._threads:
            self._calls.put(None)
        for worker in self._threads:
            worker.join()
        self.forget()  # a call made after this starts a thread again


def _settle_soon(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.forget)
atexit.register(_pool.stop)


def in_worker(func: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
    """Run ``func(*args)`` in a worker thread; return a future of the running loop for it.

    Cancelling the future does not stop the call: its result is then dropped. The call
    runs without the caller's context variables. Meant for short blocking calls; a long
    one (a large listing) holds one of :data:`MAX_WORKERS` threads meanwhile.
    """
    return _pool.submit(func, args)
