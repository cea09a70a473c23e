"""Run launched jobs on a pool of worker coroutines and record their outcomes.

Workers are started as jobs are launched, never more than the jobs running at once, and
then wait on one queue for as long as the scheduler lives, so a stream of short jobs
costs no asyncio task per job. A job's done record is written
when its body returns, after its outputs; a job cancelled because the controller stops
leaves no record and runs again next time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable

from pydatatask.errors import JobClaimedError
from pydatatask.records import Ended, Held, JobResult, Recorded, Unrecorded
from pydatatask.task.base import Task, timestamp
from pydatatask.task.stopping import StopReason

__all__ = ["Finished", "JobRunner", "Stopped"]

logger = logging.getLogger(__name__)

Finished = Callable[[str, str, Ended], None]
"""Called with the task name, the job and how it ended."""
Stopped = Callable[[str, str], None]
"""Called with the task name and the job, for a job that left without ending."""


class JobRunner:
    """Runs jobs for a scheduler and reports each outcome to ``on_finished``.

    :param on_finished: called with (task name, job, how it ended) once the job's done
        record is written (:class:`~pydatatask.records.Recorded`), could not be written
        (:class:`~pydatatask.records.Unrecorded`), or the job turned out to be held by
        another controller (:class:`~pydatatask.records.Held`).
    :param on_stopped: called with (task name, job) for a job that leaves without ending:
        cancelled while running, withdrawn while queued, or dropped at shutdown.
    """

    def __init__(self, task_names: list[str], on_finished: Finished, on_stopped: Stopped) -> None:
        self.running: dict[str, dict[str, asyncio.Task[None] | None]] = {
            name: {} for name in task_names
        }
        """Per task, the jobs running or queued, each with the worker running it."""
        self.count = 0
        self._on_finished = on_finished
        self._on_stopped = on_stopped
        self._queue: collections.deque[tuple[Task, str, int, bool]] = collections.deque()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._withdrawn: set[tuple[str, str]] = set()
        self._workers: set[asyncio.Task[None]] = set()

    def start(self, task: Task, job: str, attempt: int, reattach: bool = False) -> None:
        """Queue ``job`` to run now (or, with ``reattach``, to be waited for)."""
        self.running[task.name][job] = None
        self.count += 1
        self._withdrawn.discard((task.name, job))
        self._queue.append((task, job, attempt, reattach))
        while self._idle:
            waiting = self._idle.popleft()
            if not waiting.done():
                waiting.set_result(None)
                return
        if len(self._workers) < self.count:
            worker = asyncio.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    def count_of(self, task_name: str) -> int:
        """Return how many jobs of the task are running or queued."""
        return len(self.running[task_name])

    def is_running(self, task_name: str, job: str) -> bool:
        """Whether ``job`` of the task is running or about to."""
        return job in self.running[task_name]

    async def cancel(self, task_name: str, job: str) -> bool:
        """Stop a running or queued job without recording it; False if it was not running."""
        if job not in self.running[task_name]:
            return False
        worker = self.running[task_name][job]
        if worker is None:  # still queued: the worker that takes it will skip it
            self._withdrawn.add((task_name, job))
            self._forget(task_name, job)
            self._on_stopped(task_name, job)
            return True
        worker.cancel(StopReason.REMOVED)
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        return True

    async def shutdown(self) -> None:
        """Cancel every job and stop the workers; unfinished jobs leave no record."""
        while self._queue:
            task, job, _, _ = self._queue.popleft()
            self._forget(task.name, job)
            self._on_stopped(task.name, job)
        workers = list(self._workers)
        for worker in workers:
            worker.cancel(StopReason.SHUTDOWN)
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def _forget(self, task_name: str, job: str) -> None:
        if self.running[task_name].pop(job, False) is not False:
            self.count -= 1

    async def _work(self) -> None:
        current = asyncio.current_task()
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:  # wait until start() hands over a job
                idle: asyncio.Future[None] = loop.create_future()
                self._idle.append(idle)
                await idle
                continue
            task, job, attempt, reattach = self._queue.popleft()
            if (task.name, job) in self._withdrawn:
                self._withdrawn.discard((task.name, job))
                continue
            self.running[task.name][job] = current
            ended: Ended | None = None
            try:
                ended = await self._run(task, job, attempt, reattach)
            finally:
                task.release(job)
                self._forget(task.name, job)
                if ended is None:
                    self._on_stopped(task.name, job)
            self._on_finished(task.name, job, ended)

    async def _run(self, task: Task, job: str, attempt: int, reattach: bool) -> Ended:
        logging_info = logger.isEnabledFor(logging.INFO)
        if logging_info:
            verb = "re-attaching to" if reattach else "launching"
            logger.info("%s %s job %r (attempt %d)", verb, task.name, job, attempt)
        result: JobResult | None = None
        try:
            result, error = await task.run_attempt(job, attempt, reattach)
            if not result.success and task.retry.should_retry(attempt, error, result.timeout):
                result.retry_at = timestamp(time.time() + task.retry.delay(attempt))
            await task.done._dump(job, result.to_record())  # a listed, hence valid, id
        except JobClaimedError as claimed:
            logger.info("%s job %r: not started: %s", task.name, job, claimed)
            return Held(claimed.holder)
        except Exception as exc:  # one job's bookkeeping must not stop the rest
            logger.exception("could not record the result of %s job %r", task.name, job)
            problem = " ".join(f"its done record could not be written: {exc}".split())
            return Unrecorded(result or JobResult(success=False, attempt=attempt), problem)
        if logging_info:
            _log_outcome(task.name, job, result)
        return Recorded(result)


def _log_outcome(name: str, job: str, result: JobResult) -> None:
    if result.success:
        logger.info("%s job %r succeeded in %.3f s", name, job, result.duration)
    elif result.retry_at is not None:
        logger.info(
            "%s job %r failed (%s); retrying at %s", name, job, result.error, result.retry_at
        )
    else:
        logger.info("%s job %r failed: %s", name, job, result.error)
