"""The scheduler: one round reaps finished jobs, computes ready jobs and launches them.

What the scheduler learns is kept between rounds. Every repository a task's readiness
depends on is listed once when the scheduler starts and again every ``poll_interval``;
in between, the id sets are updated from the jobs' own results (a finished job adds its
done record and, if present, its outputs under its own id), so a round costs time in
proportion to what changed, not to how many jobs are already done.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydatatask.errors import JobNotReadyError, QuotaExceededError
from pydatatask.records import Outcome, Unreadable, error_line, outcome, read_record, read_records
from pydatatask.repository.base import Repository
from pydatatask.runner import JobRunner
from pydatatask.task.base import DONE_LINK, Task, failure_record, timestamp

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline

__all__ = ["Failure", "RunReport", "Scheduler", "TaskCounters", "run"]

logger = logging.getLogger(__name__)

_OUTCOME_LOOKUP_CONCURRENCY = 64
_QUOTA_RECHECK_SECONDS = 0.25


@dataclass
class TaskCounters:
    """What one task's jobs did since the scheduler started."""

    launched: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    started_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Failure:
    """A job that failed for good (no retry pending), or whose done record is unreadable."""

    task: str
    job: str
    error: str
    """The error in one line."""


@dataclass
class _Plan:
    """One task's readiness inputs, as repository keys into the scheduler's id cache."""

    task: Task
    required: list[int]
    inhibits: list[int]
    done: int
    outputs: list[Repository]
    upstream: list[str]
    downstream: list[str]
    rechecks: tuple[str, ...] = ()
    """The tasks whose readiness a finished job of this task may change."""
    watched_outputs: tuple[int, ...] = ()
    """The repositories this task writes that some task's readiness depends on."""


class Scheduler:
    """Keeps the state of one open pipeline between rounds."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.repos: dict[int, Repository] = {}
        self.ids: dict[int, set[str]] = {}
        self.watchers: dict[int, list[_Plan]] = {}
        self.plans: dict[str, _Plan] = {}
        for task in reversed(pipeline.topological_order()):  # downstream first
            self.plans[task.name] = self._plan(task)
        for name, plan in self.plans.items():
            watching = [watcher.task.name for watcher in self.watchers[plan.done]]
            plan.rechecks = tuple(dict.fromkeys([*watching, name, *plan.downstream]))
            plan.watched_outputs = tuple(
                id(repo) for repo in plan.outputs if id(repo) in self.watchers
            )
        self.runner = JobRunner(list(self.plans), self._finished)
        self.running = self.runner.running
        self.ready: dict[str, set[str]] = {name: set() for name in self.plans}
        self.succeeded: dict[str, set[str]] = {name: set() for name in self.plans}
        self.failed: dict[str, set[str]] = {name: set() for name in self.plans}
        self.retry_at: dict[str, dict[str, float]] = {name: {} for name in self.plans}
        self.next_attempt: dict[str, dict[str, int]] = {name: {} for name in self.plans}
        self.unrecorded: dict[str, set[str]] = {name: set() for name in self.plans}
        self.elsewhere: dict[str, set[str]] = {name: set() for name in self.plans}
        """Jobs found held by another controller since the last full listing."""
        self.unreadable: dict[str, dict[str, str]] = {name: {} for name in self.plans}
        """Jobs whose done record cannot be read, with the reason; they are left alone."""
        self.failures: list[Failure] = []
        """Every job that failed for good in this scheduler, in the order they ended."""
        self.other_controllers: set[str] = set()
        self.counters: dict[str, TaskCounters] = {name: TaskCounters() for name in self.plans}
        self.completions: list[tuple[str, str, dict[str, Any]]] = []
        self.unreaped: dict[str, set[str]] = {name: set() for name in self.plans}
        """Per task, the jobs in :attr:`completions`: ended, not yet taken in. A listing
        may have missed their done records, so they must not count as ready."""
        self.wakeup = asyncio.Event()
        self.last_refresh: float | None = None
        self._impossible: list[tuple[str, str, QuotaExceededError]] = []
        self._waiters: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._reattached = False

    def _plan(self, task: Task) -> _Plan:
        def key(repo: Repository) -> int:
            self.repos[id(repo)] = repo
            return id(repo)

        done_link = task.links[DONE_LINK]
        if task.ready is not None:
            required = [key(task.ready)]
        else:
            required = [key(link.repo) for link in task.links.values() if link.required_for_start]
        inhibits = [
            key(link.repo)
            for name, link in task.links.items()
            if link.inhibits_start and name != DONE_LINK
        ]
        plan = _Plan(
            task=task,
            required=list(dict.fromkeys(required)),
            inhibits=list(dict.fromkeys(inhibits)),
            done=key(done_link.repo),
            outputs=[
                link.repo
                for name, link in task.links.items()
                if (link.is_output or link.is_status) and name != DONE_LINK
            ],
            upstream=[up.name for up in self.pipeline.upstream_of(task.name)],
            downstream=[down.name for down in self.pipeline.downstream_of(task.name)],
        )
        for repo_key in [*plan.required, *plan.inhibits, plan.done]:
            self.watchers.setdefault(repo_key, [])
            if plan not in self.watchers[repo_key]:
                self.watchers[repo_key].append(plan)
        return plan

    # ----------------------------------------------------------------- the round

    async def round(self, launch: bool = True) -> bool:
        """Reap, compute ready jobs, launch; return whether work remains."""
        await self._reap()
        if launch and not self._reattached:
            # Before the first listing: reattaching may settle jobs and change what is listed.
            self._reattached = True
            await self._reattach_live_jobs()
        now = time.monotonic()
        if self.last_refresh is None or now - self.last_refresh >= self.pipeline.poll_interval:
            await self.refresh()
        self._release_due_retries()
        if launch:
            await self._launch()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "round: %d running; ready %s; retries pending %s",
                self.running_count,
                {name: len(jobs) for name, jobs in self.ready.items()},
                {name: len(jobs) for name, jobs in self.retry_at.items()},
            )
        return self.has_work()

    def has_work(self) -> bool:
        """Whether jobs are running, finished but not reaped, ready, or waiting for a retry."""
        return (
            self.running_count > 0
            or bool(self.completions)
            or any(self.ready.values())
            or any(self.retry_at[name] for name in self.plans)
        )

    def next_deadline(self) -> float | None:
        """Return the monotonic time at which the next retry falls due, if any."""
        times = [when for pending in self.retry_at.values() for when in pending.values()]
        return min(times, default=None)

    async def refresh(self) -> None:
        """List every watched repository and recompute the ready jobs from scratch."""
        first = self.last_refresh is None
        keys = list(self.watchers)
        listed = await asyncio.gather(*(self.repos[key].ids() for key in keys))
        self.ids = dict(zip(keys, listed, strict=True))
        if first:
            await self._load_retry_state()
        self.last_refresh = time.monotonic()
        for name, plan in self.plans.items():
            done = self.ids[plan.done]
            self.succeeded[name] &= done
            self.failed[name] &= done
            self.elsewhere[name].clear()
            for job in set(self.unreadable[name]) - done:
                del self.unreadable[name][job]
        logger.info(
            "listed %d repositories: %s",
            len(keys),
            ", ".join(f"{self.repos[key]!r} {len(self.ids[key])} ids" for key in keys),
        )
        # Jobs that finished while the listing ran may be missing from it: apply them.
        await self._reap()
        for plan in self.plans.values():
            await self._recompute(plan)

    async def _recompute(self, plan: _Plan) -> None:
        sets = sorted((self.ids[key] for key in plan.required), key=len)
        candidates = set(sets[0]).intersection(*sets[1:]) if sets else set()
        for key in plan.inhibits:
            candidates -= self.ids[key]
        name = plan.task.name
        candidates -= self.ids[plan.done] - self._due_retries(name)
        candidates -= self.running[name].keys()
        candidates -= self.unreaped[name]
        self.ready[name] = set()
        await self._recheck(plan, candidates)

    # ------------------------------------------------------------- readiness

    def _due_retries(self, name: str) -> set[str]:
        now = time.monotonic()
        return {job for job, when in self.retry_at[name].items() if when <= now}

    def _check(self, plan: _Plan, job: str, unknown: set[tuple[str, str]]) -> bool:
        name = plan.task.name
        ids = self.ids
        if (
            job in self.running[name]
            or job in self.unreaped[name]
            or job in self.unrecorded[name]
            or job in self.elsewhere[name]
        ):
            return False
        for key in plan.required:
            if job not in ids[key]:
                return False
        for key in plan.inhibits:
            if job in ids[key]:
                return False
        if job in ids[plan.done]:
            when = self.retry_at[name].get(job)
            if when is None or when > time.monotonic():
                return False
        for upstream in plan.upstream:
            if job in self.running[upstream] or job in self.failed[upstream]:
                return False
            if job in self.succeeded[upstream]:
                continue
            if job not in ids[self.plans[upstream].done]:
                return False
            unknown.add((upstream, job))
            return False
        return True

    async def _recheck(self, plan: _Plan, jobs: Iterable[str]) -> None:
        unknown: set[tuple[str, str]] = set()
        ready = self.ready[plan.task.name]
        for job in jobs:
            if self._check(plan, job, unknown):
                ready.add(job)
            else:
                ready.discard(job)
        if unknown:
            await self._learn_outcomes(unknown)
            await self._recheck(plan, {job for _, job in unknown})

    async def _learn_outcomes(self, pairs: set[tuple[str, str]]) -> None:
        """Read the done records of upstream jobs finished before this scheduler started."""
        limit = asyncio.Semaphore(_OUTCOME_LOOKUP_CONCURRENCY)

        async def learn(name: str, job: str) -> None:
            async with limit:
                record = await read_record(self.plans[name].task.done, job)
            if record is None:
                self.ids[self.plans[name].done].discard(job)
                return
            self._learn(name, job, record)

        await asyncio.gather(*(learn(name, job) for name, job in pairs))

    def _learn(self, name: str, job: str, record: Any) -> None:
        """Take in a stored done record of ``name``'s ``job``."""
        kind = outcome(record)
        (self.succeeded if kind is Outcome.SUCCEEDED else self.failed)[name].add(job)
        if kind is Outcome.UNREADABLE and job not in self.unreadable[name]:
            reason = error_line(record)
            self.unreadable[name][job] = reason
            logger.warning(
                "%s job %r: %s; it is left as it is (rm it to run the job again)", name, job, reason
            )

    async def _load_retry_state(self) -> None:
        for name, plan in self.plans.items():
            if plan.task.retry.max_attempts <= 1 or not self.ids[plan.done]:
                continue
            for job, record in (await read_records(plan.task.done)).items():
                self._learn(name, job, record)
                if not isinstance(record, Unreadable) and record.get("retry_at"):
                    self._schedule_retry(name, job, record)

    async def _reattach_live_jobs(self) -> None:
        """Wait again for jobs an earlier controller left running, instead of relaunching.

        Only a scheduler that launches does this: commands that just look (``status``,
        ``rm``) must not take over, or stop, another controller's jobs.
        """
        for name, plan in self.plans.items():
            for job, attempt in (await plan.task.live_jobs()).items():
                if job not in self.running[name]:
                    plan.task.reserve(job)  # they run already: account for them
                    self._start(plan, job, attempt=attempt, reattach=True)

    def _schedule_retry(self, name: str, job: str, record: dict[str, Any]) -> None:
        when = datetime.fromisoformat(str(record["retry_at"])).timestamp()
        self.retry_at[name][job] = time.monotonic() + max(0.0, when - time.time())
        self.next_attempt[name][job] = int(record.get("attempt", 1)) + 1

    def _release_due_retries(self) -> None:
        for name, plan in self.plans.items():
            due = self._due_retries(name) - self.ready[name]
            for job in due:
                if self._check(plan, job, set()):
                    self.ready[name].add(job)
                else:  # its inputs are gone: the failed record stands
                    del self.retry_at[name][job]
                    self.next_attempt[name].pop(job, None)

    # ------------------------------------------------------------- launching

    async def _launch(self) -> None:
        capacity = self.pipeline.max_concurrent_jobs - self.running_count
        if capacity <= 0:
            return
        chosen = await self._choose(capacity)
        for name, job in chosen:
            self._start(self.plans[name], job)
        if self._impossible:
            impossible, self._impossible = self._impossible, []
            await asyncio.gather(
                *(self._refuse(name, job, error) for name, job, error in impossible)
            )

    def _reserve(self, name: str, job: str) -> bool:
        """Claim the job's resources; a job that can never fit is set aside to be failed."""
        try:
            return self.plans[name].task.reserve(job)
        except QuotaExceededError as error:
            self.ready[name].discard(job)
            self._impossible.append((name, job, error))
            return False

    async def _refuse(self, name: str, job: str, error: QuotaExceededError) -> None:
        now = time.time()
        record = {
            "success": False,
            "attempt": self.next_attempt[name].pop(job, 1),
            "start_time": timestamp(now),
            "end_time": timestamp(now),
            "duration": 0.0,
            **failure_record(error),
        }
        logger.error("%s job %r can never start: %s", name, job, error)
        await self.plans[name].task.done.dump(job, record)
        self._finished(name, job, record)

    def _room(self, plan: _Plan) -> int:
        limit = plan.task.max_concurrent
        if limit is None:
            return len(self.ready[plan.task.name])
        return max(0, limit - len(self.running[plan.task.name]))

    async def _choose(self, capacity: int) -> list[tuple[str, str]]:
        if self.pipeline.priority is None:
            return self._choose_in_order(capacity)
        return await self._choose_by_priority(capacity)

    def _choose_in_order(self, capacity: int) -> list[tuple[str, str]]:
        """Take ready jobs task by task, downstream tasks first, to finish items early."""
        chosen: list[tuple[str, str]] = []
        for name, plan in self.plans.items():
            room = min(self._room(plan), capacity - len(chosen))
            ready = self.ready[name]
            while room > 0 and ready:
                job = ready.pop()
                if self._reserve(name, job):
                    chosen.append((name, job))
                    room -= 1
                elif job not in self._set_aside(name):
                    ready.add(job)
                    break  # no capacity for this task now
            if len(chosen) >= capacity:
                break
        return chosen

    async def _choose_by_priority(self, capacity: int) -> list[tuple[str, str]]:
        priority = self.pipeline.priority
        assert priority is not None
        ranked = []
        for name in self.plans:
            for job in self.ready[name]:
                score = priority(name, job)
                if inspect.isawaitable(score):
                    score = await score
                ranked.append((-float(score), name, job))
        ranked.sort()
        chosen: list[tuple[str, str]] = []
        taken: dict[str, int] = {}
        for _, name, job in ranked:
            if len(chosen) >= capacity:
                break
            if taken.get(name, 0) >= self._room(self.plans[name]) or not self._reserve(name, job):
                continue
            taken[name] = taken.get(name, 0) + 1
            self.ready[name].discard(job)
            chosen.append((name, job))
        return chosen

    def _set_aside(self, name: str) -> set[str]:
        return {job for task_name, job, _ in self._impossible if task_name == name}

    def _start(
        self, plan: _Plan, job: str, attempt: int | None = None, reattach: bool = False
    ) -> None:
        name = plan.task.name
        planned = self.next_attempt[name].pop(job, 1)
        self.retry_at[name].pop(job, None)
        self.runner.start(plan.task, job, planned if attempt is None else attempt, reattach)
        self.counters[name].launched += 1
        for downstream in plan.downstream:
            self.ready[downstream].discard(job)

    def _finished(self, name: str, job: str, record: dict[str, Any]) -> None:
        self.completions.append((name, job, record))
        self.unreaped[name].add(job)
        self.wakeup.set()
        waiter = self._waiters.pop((name, job), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(record)

    async def run_now(self, task_name: str, job: str) -> dict[str, Any]:
        """Run one job now, whether or not it is ready; return its done record.

        :raises JobNotReadyError: when the job is already running in this controller.
        """
        if self.is_running(task_name, job):
            raise JobNotReadyError(task_name, job, ["it is running"])
        if self.last_refresh is None:
            await self.refresh()
        finished = asyncio.get_running_loop().create_future()
        self._waiters[(task_name, job)] = finished
        self.ready[task_name].discard(job)
        self._start(self.plans[task_name], job)
        try:
            record: dict[str, Any] = await finished
        finally:
            self._waiters.pop((task_name, job), None)
        await self._reap()
        return record

    # --------------------------------------------------------------- reaping

    async def _reap(self) -> None:
        completions, self.completions = self.completions, []
        touched: dict[str, set[str]] = {}
        outputs: dict[int, set[str]] = {}
        for name, job, record in completions:
            plan = self.plans[name]
            self.unreaped[name].discard(job)
            if not self._record(plan, job, record):
                continue
            for task_name in plan.rechecks:
                touched.setdefault(task_name, set()).add(job)
            for key in plan.watched_outputs:
                outputs.setdefault(key, set()).add(job)
        for key, jobs in outputs.items():
            await self._refresh_outputs(key, jobs, touched)
        for name, jobs in touched.items():
            plan = self.plans[name]
            if plan.task.ready is not None:
                self.ids[plan.required[0]] = await plan.task.ready.ids()
            await self._recheck(plan, jobs)

    def _record(self, plan: _Plan, job: str, record: dict[str, Any]) -> bool:
        """Learn a finished job's outcome; False when it left no done record."""
        name = plan.task.name
        counters = self.counters[name]
        holder = record.get("held_by")
        if holder is not None:
            counters.launched -= 1  # it never started here
            self.elsewhere[name].add(job)
            self._note_other_controller(holder, name, job)
            return False
        if record.get("unrecorded"):
            self.unrecorded[name].add(job)
            counters.failed += 1
            self.failures.append(Failure(name, job, "its done record could not be written"))
            return False
        self.ids[plan.done].add(job)
        self.unreadable[name].pop(job, None)
        if record["success"]:
            self.succeeded[name].add(job)
            self.failed[name].discard(job)
            counters.succeeded += 1
        else:
            self.failed[name].add(job)
            self.succeeded[name].discard(job)
            if record.get("retry_at"):
                self._schedule_retry(name, job, record)
                counters.retried += 1
            else:
                counters.failed += 1
                self.failures.append(Failure(name, job, error_line(record)))
        return True

    def _note_other_controller(self, holder: str, name: str, job: str) -> None:
        if holder in self.other_controllers:
            return
        self.other_controllers.add(holder)
        logger.warning(
            "another controller is running this pipeline: %s job %r is held by %s; "
            "its jobs are left to it (without leases, one controller per pipeline is assumed)",
            name,
            job,
            holder,
        )

    def _touch(self, touched: dict[str, set[str]], key: int, job: str) -> None:
        """Mark ``job`` for a recheck by every task watching the repository ``key``."""
        for plan in self.watchers[key]:
            touched.setdefault(plan.task.name, set()).add(job)

    async def _refresh_outputs(
        self, key: int, jobs: set[str], touched: dict[str, set[str]]
    ) -> None:
        """Check finished jobs' outputs in one batch and update what is known of them."""
        present = await self.repos[key]._contains_many(list(jobs))  # listed, hence valid
        ids = self.ids[key]
        for job in jobs:
            if (job in present) != (job in ids):
                (ids.add if job in present else ids.discard)(job)
                self._touch(touched, key, job)

    # -------------------------------------------------------------- shutdown

    @property
    def running_count(self) -> int:
        """How many jobs are running or queued to run."""
        return self.runner.count

    def is_running(self, task_name: str, job: str) -> bool:
        """Whether ``job`` of task ``task_name`` is running in this controller."""
        return self.runner.is_running(task_name, job)

    async def cancel(self, task_name: str, job: str) -> bool:
        """Stop a job running in this controller without recording it; False if none was.

        A task whose jobs run elsewhere is told it is not a shutdown, so it kills the job.
        """
        return await self.runner.cancel(task_name, job)

    async def shutdown(self) -> None:
        """Cancel running in-process jobs and wait for them; they leave no done record."""
        for plan in self.plans.values():
            plan.task.shutting_down = True
        try:
            await self.runner.shutdown()
        finally:
            for plan in self.plans.values():
                plan.task.shutting_down = False

    def totals(self) -> tuple[int, int, int, int]:
        """Return the jobs launched, succeeded and failed so far, and the failures listed."""
        counters = self.counters.values()
        return (
            sum(item.launched for item in counters),
            sum(item.succeeded for item in counters),
            sum(item.failed for item in counters),
            len(self.failures),
        )

    def report_since(self, before: tuple[int, int, int, int], timed_out: bool) -> RunReport:
        """Return what happened since :meth:`totals` returned ``before``."""
        launched, succeeded, failed, _ = self.totals()
        return RunReport(
            launched=launched - before[0],
            succeeded=succeeded - before[1],
            failed=failed - before[2],
            timed_out=timed_out,
            failures=tuple(self.failures[before[3] :]),
            unreadable=tuple(
                Failure(name, job, reason)
                for name, jobs in self.unreadable.items()
                for job, reason in sorted(jobs.items())
            ),
        )

    async def wait(self, seconds: float | None) -> None:
        """Sleep until a job finishes or ``seconds`` pass."""
        if not self.completions:
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.wakeup.wait()


@dataclass(frozen=True)
class RunReport:
    """What one :func:`run` did."""

    launched: int
    succeeded: int
    failed: int
    timed_out: bool
    """Whether ``run`` stopped because its ``timeout`` passed."""
    failures: tuple[Failure, ...] = ()
    """The jobs that failed for good during this run, with their errors."""
    unreadable: tuple[Failure, ...] = ()
    """The done records found unreadable; their jobs were left alone."""


async def run(
    pipeline: Pipeline,
    forever: bool = False,
    launch_once: bool = False,
    timeout: float | None = None,  # noqa: ASYNC109 - part of the public API
) -> RunReport:
    """Run rounds until no work remains (or forever), waking as soon as a job finishes.

    :param pipeline: an open pipeline.
    :param forever: keep going when idle, re-reading repositories every
        ``pipeline.poll_interval`` seconds to pick up changes made from outside.
    :param launch_once: launch only in the first round, then wait for those jobs.
    :param timeout: stop after this many seconds; jobs still running are cancelled and
        run again next time.
    """
    scheduler: Scheduler = pipeline.scheduler
    before = scheduler.totals()
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    timed_out = False
    first = True
    while True:
        more = await scheduler.round(launch=first or not launch_once)
        first = False
        if launch_once and scheduler.running_count == 0 and not scheduler.completions:
            break
        if not more and not forever:
            break
        waits = [pipeline.poll_interval] if forever else []
        if scheduler.running_count == 0 and any(scheduler.ready.values()):
            # Ready jobs that could not launch wait for a quota's launch window to pass.
            waits.append(min(pipeline.poll_interval, _QUOTA_RECHECK_SECONDS))
        retry = scheduler.next_deadline()
        if retry is not None:
            waits.append(max(0.0, retry - time.monotonic()))
        if deadline is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                timed_out = True
                break
            waits.append(remaining)
        await scheduler.wait(min(waits) if waits else None)
    if timed_out:
        await scheduler.shutdown()
        await scheduler.round(launch=False)
    return scheduler.report_since(before, timed_out)
