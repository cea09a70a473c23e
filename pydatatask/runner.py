"""Run launched jobs on a pool of worker coroutines and record their outcomes.

Workers are started as jobs are launched, never more than the jobs running at once, and
then wait on one queue for as long as the scheduler lives, so a stream of short jobs
costs no asyncio task per job. They are woken one at a time: a worker that takes a job
while more wait wakes the next, so jobs that wait on I/O run side by side, and jobs that
never wait are run one after another by the worker already running. A job's done record
is written when its body returns, after its outputs; a job cancelled because the
controller stops leaves no record and runs again next time.

With :class:`~pydatatask.leases.Leases`, a job runs only once its claim is won, and its
record is written only while the claim still stands.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydatatask.errors import BackendError, JobClaimedError
from pydatatask.leases import Claim, Leases
from pydatatask.provenance import input_links, provenance_at_hand, provenance_of
from pydatatask.records import Ended, Held, JobResult, Recorded, Unrecorded, read_record
from pydatatask.task.base import Task, timestamp
from pydatatask.task.stopping import StopReason, stop_reason

if TYPE_CHECKING:
    from pydatatask.repository.base import Repository

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
    :param leases: the claims that let several controllers share the pipeline, if any.
    """

    def __init__(
        self,
        task_names: list[str],
        on_finished: Finished,
        on_stopped: Stopped,
        leases: Leases | None = None,
    ) -> None:
        self.running: dict[str, dict[str, asyncio.Task[None] | None]] = {
            name: {} for name in task_names
        }
        """Per task, the jobs running or queued, each with the worker running it."""
        self.count = 0
        self._on_finished = on_finished
        self._on_stopped = on_stopped
        self.leases = leases
        self._queue: collections.deque[tuple[Task, str, int, bool, bool]] = collections.deque()
        self._abandoned: set[tuple[str, str]] = set()
        self._claims_failing = False
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._waking: object | None = None
        """The idle worker's future just resolved, or the worker just made, until it runs."""
        self._withdrawn: set[tuple[str, str]] = set()
        self._workers: set[asyncio.Task[None]] = set()
        self._input_links: dict[str, tuple[list[tuple[str, Repository]], bool]] = {}
        """Per task, its input links, and whether they all give their tokens without I/O."""

    def start(
        self, task: Task, job: str, attempt: int, reattach: bool = False, forced: bool = False
    ) -> None:
        """Queue ``job`` to run now (or, with ``reattach``, to be waited for).

        With leases, a job whose claim turns out to cover an attempt already recorded
        by another controller does not run, unless it is ``forced`` (``launch``).
        """
        self.running[task.name][job] = None
        self.count += 1
        if self._withdrawn:
            self._withdrawn.discard((task.name, job))
        self._queue.append((task, job, attempt, reattach, forced))
        self._wake_one()

    def _wake_one(self) -> None:
        """Wake an idle worker, or start one, for the queued jobs, unless one is on its way.

        One at a time: a worker that takes a job while more wait wakes the next, so jobs
        that wait on I/O run side by side, and a stream of jobs that never wait is run
        by one worker without waking the others for nothing.
        """
        if self._waking is not None:
            return
        while self._idle:
            waiting = self._idle.popleft()
            if not waiting.done():
                waiting.set_result(None)
                self._waking = waiting
                return
        if len(self._workers) < self.count:  # the ones being stopped take no new job
            worker = asyncio.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._worker_ended)
            self._waking = worker

    def _worker_ended(self, worker: asyncio.Task[None]) -> None:
        self._workers.discard(worker)
        if self._waking is worker:  # stopped before it ran
            self._waking = None
        if self._queue:
            self._wake_one()  # jobs queued while it was stopping still run

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
        await self._stop_all(StopReason.SHUTDOWN)

    async def abandon(self) -> None:
        """Stop following every job without recording it: their leases were lost.

        Jobs running elsewhere run on, for the controller that takes them over.
        """
        await self._stop_all(StopReason.LOST)

    async def _stop_all(self, reason: StopReason) -> None:
        while self._queue:
            task, job, _, _, _ = self._queue.popleft()
            self._forget(task.name, job)
            self._on_stopped(task.name, job)
        workers = list(self._workers)
        for worker in workers:
            worker.cancel(reason)
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def _forget(self, task_name: str, job: str) -> None:
        if self.running[task_name].pop(job, False) is not False:
            self.count -= 1

    async def _work(self) -> None:
        current = asyncio.current_task()
        if self._waking is current:
            self._waking = None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:  # wait until start() hands over a job
                idle: asyncio.Future[None] = loop.create_future()
                self._idle.append(idle)
                try:
                    await idle
                finally:
                    if self._waking is idle:
                        self._waking = None
                continue
            task, job, attempt, reattach, forced = self._queue.popleft()
            if self._queue:
                self._wake_one()  # for the next job, should this one wait on I/O
            if self._withdrawn and (task.name, job) in self._withdrawn:
                self._withdrawn.discard((task.name, job))
                continue
            self.running[task.name][job] = current
            ended: Ended | None = None
            try:
                if self.leases is None:  # one coroutine less per job where nothing is claimed
                    ended = await self._run_claimed(task, job, attempt, reattach, None)
                else:
                    ended = await self._run(task, job, attempt, reattach, forced)
            finally:
                if self._abandoned and (task.name, job) in self._abandoned:
                    self._abandoned.discard((task.name, job))
                    task.abandon(job)  # its traces belong to the job's new holder
                else:
                    task.release(job)
                self._forget(task.name, job)
                if ended is None:
                    self._on_stopped(task.name, job)
            self._on_finished(task.name, job, ended)

    async def _run(self, task: Task, job: str, attempt: int, reattach: bool, forced: bool) -> Ended:
        claim: Claim | None = None
        if self.leases is not None:
            won = await self._claim(task, job, attempt, forced)
            if isinstance(won, Held):
                return won
            claim = won
            # An earlier holder's job may still run where it was started: follow it.
            reattach = reattach or (claim.taken_over and task.runs_elsewhere)
        try:
            return await self._run_claimed(task, job, attempt, reattach, claim)
        except asyncio.CancelledError as cancelled:
            reason = stop_reason(cancelled)
            if reason is StopReason.LOST:
                self._abandoned.add((task.name, job))
            elif reason is StopReason.REMOVED and claim is not None:
                await asyncio.shield(self._release(claim))
            raise

    async def _claim(self, task: Task, job: str, attempt: int, forced: bool) -> Claim | Held:
        """Win the job's claim, or say why the job cannot run here now."""
        assert self.leases is not None
        try:
            won = await self.leases.claim(task.name, job)
        except (BackendError, OSError) as exc:
            level = logging.INFO if self._claims_failing else logging.WARNING
            self._claims_failing = True  # said once until claims work again
            logger.log(level, "%s job %r: not started: no claim: %s", task.name, job, exc)
            return Held(f"no controller: its claim cannot be made ({exc})")
        self._claims_failing = False
        if not isinstance(won, Claim):
            logger.info("%s job %r: not started: %s holds it", task.name, job, won)
            return Held(str(won))
        try:
            record = None if forced else await read_record(task.done, job)
        except (BackendError, OSError) as exc:
            await self._release(won)
            return Held(f"no controller: its done record cannot be read ({exc})")
        if record is not None and _covers(record, attempt):  # recorded since we looked
            await self._release(won)
            return Held("another controller, which has finished it", finished=True)
        return won

    async def _release(self, claim: Claim) -> None:
        assert self.leases is not None
        try:
            await self.leases.release(claim)
        except (BackendError, OSError) as exc:  # it expires with this controller's lease
            logger.warning(
                "could not give up the claim on %s job %r: %s", claim.task, claim.job, exc
            )

    async def _run_claimed(
        self, task: Task, job: str, attempt: int, reattach: bool, claim: Claim | None
    ) -> Ended:
        logging_info = logger.isEnabledFor(logging.INFO)
        if logging_info:
            verb = "re-attaching to" if reattach else "launching"
            logger.info("%s %s job %r (attempt %d)", verb, task.name, job, attempt)
        result: JobResult | None = None
        try:
            known = self._input_links.get(task.name)
            if known is None:  # the pipeline is open: its links are set for good
                links = input_links(task)
                at_hand = all(repo.tokens_at_hand for _, repo in links)
                known = self._input_links[task.name] = (links, at_hand)
            links, at_hand = known
            if at_hand:
                provenance = provenance_at_hand(task, job, links)
            else:
                provenance = await provenance_of(task, job, links)
            result, error = await task.run_attempt(job, attempt, reattach)
            result.provenance = provenance
            if not result.success and task.retry.should_retry(attempt, error, result.timeout):
                result.retry_at = timestamp(time.time() + task.retry.delay(attempt))
            if claim is not None and self.leases is not None and not self.leases.holds(claim):
                logger.warning(
                    "%s job %r: its result is not recorded: this controller's lease on it "
                    "expired, and another controller may have taken it over",
                    task.name,
                    job,
                )
                self._abandoned.add((task.name, job))
                return Held("another controller (this one's lease expired)", lost=True)
            await task.done._dump(job, result.to_record())  # a listed, hence valid, id
        except JobClaimedError as claimed:
            logger.info("%s job %r: not started: %s", task.name, job, claimed)
            if claim is not None:
                await self._release(claim)
            return Held(claimed.holder)
        except Exception as exc:  # one job's bookkeeping must not stop the rest
            logger.exception("could not record the result of %s job %r", task.name, job)
            problem = " ".join(f"its done record could not be written: {exc}".split())
            if claim is not None:
                await self._release(claim)
            return Unrecorded(result or JobResult(success=False, attempt=attempt), problem)
        if claim is not None:
            await self._release(claim)
        if logging_info:
            _log_outcome(task.name, job, result)
        return Recorded(result)


def _covers(record: Any, attempt: int) -> bool:
    """Whether a stored done record already covers ``attempt`` of its job."""
    if not isinstance(record, dict):
        return True  # something was recorded: leave it to be looked at
    try:
        return int(record.get("attempt", attempt)) >= attempt
    except (TypeError, ValueError):
        return True


def _log_outcome(name: str, job: str, result: JobResult) -> None:
    if result.success:
        logger.info("%s job %r succeeded in %.3f s", name, job, result.duration)
    elif result.retry_at is not None:
        logger.info(
            "%s job %r failed (%s); retrying at %s", name, job, result.error, result.retry_at
        )
    else:
        logger.info("%s job %r failed: %s", name, job, result.error)
