# Longer than 400 lines on purpose: one class holds one open pipeline's scheduling state,
# and its rounds, launching and reaping all change that state; split apart, they would
# pass it around.
"""The scheduler: one round reaps finished jobs, computes ready jobs and launches them.

What the scheduler learns is kept between rounds. Every repository a task's readiness
depends on is listed once when the scheduler starts and again every ``poll_interval``
(or less often when a listing is slow: see :meth:`Scheduler.listing_interval`); in
between, the id sets are updated from the jobs' own results (a finished job adds its
done record and, if present, its outputs under its own id), so a round costs time in
proportion to what changed, not to how many jobs are already done.

Each job's state is kept in one :class:`~pydatatask.jobstate.JobStates` per task, and
whether a job may start is decided by the one rule in :mod:`pydatatask.readiness`, asked
with the scheduler's cached listings.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydatatask.errors import BackendError, JobClaimedError, JobNotReadyError, QuotaExceededError
from pydatatask.jobstate import JobStates, State
from pydatatask.leases import Leases
from pydatatask.plans import CachedFacts, Layout, TaskPlan
from pydatatask.presence import Presence
from pydatatask.provenance import Change, find_stale
from pydatatask.readiness import Why, readiness
from pydatatask.records import (
    Ended,
    Held,
    JobResult,
    Outcome,
    Recorded,
    Unrecorded,
    error_line,
    outcome,
    read_record,
    read_records,
)
from pydatatask.report import Failure, RunReport, TaskCounters
from pydatatask.repository.base import leaves
from pydatatask.repository.schedule import ScheduleRepository
from pydatatask.runner import JobRunner
from pydatatask.survivors import Survivors
from pydatatask.task.base import failure_record, timestamp
from pydatatask.watching import Changes, changes_of

if TYPE_CHECKING:
    from collections.abc import Set

    from pydatatask.pipeline import Pipeline

__all__ = ["Scheduler"]

logger = logging.getLogger(__name__)

_OUTCOME_LOOKUP_CONCURRENCY = 64
LISTEN_WAIT = 10.0
"""Seconds a controller that runs forever waits for its followers of changes to listen."""
LISTING_SHARE = 0.1
"""The most of a controller's time that its periodic full listings may take."""

# Looking a member up on its Enum class costs tens of nanoseconds on Python 3.11; the
# per-job paths read these module names instead.
_READY, _RUNNING, _ENDING = State.READY, State.RUNNING, State.ENDING
_SUCCEEDED, _FAILED, _HELD = State.SUCCEEDED, State.FAILED, State.HELD
_UPSTREAM_UNKNOWN = Why.UPSTREAM_UNKNOWN


class Scheduler:
    """Keeps the state of one open pipeline between rounds."""

    def __init__(self, pipeline: Pipeline, layout: Layout) -> None:
        self.pipeline = pipeline
        self.layout = layout
        """The pipeline's plans and the repositories they watch."""
        self.plans = self.layout.plans
        """The tasks, downstream first."""
        self.repos = self.layout.repos
        self.watchers = self.layout.watchers
        self.ids: dict[int, set[str]] = {}
        self.states: dict[str, JobStates] = {name: JobStates(name) for name in self.plans}
        """Each task's jobs by state."""
        self.leases = (
            None
            if pipeline.leases is None
            else Leases(pipeline.leases, pipeline.lease_seconds, on_lost=self._leases_lost)
        )
        """The claims that let several controllers share the pipeline, if it has leases."""
        self.presence = Presence(pipeline) if self.leases is None else None
        """This controller's note, to notice a second one (only without leases)."""
        self.runner = JobRunner(list(self.plans), self._finished, self._stopped, self.leases)
        self.counters: dict[str, TaskCounters] = {name: TaskCounters() for name in self.plans}
        self.failures: list[Failure] = []
        """Every job that failed for good in this scheduler, in the order they ended."""
        self.other_controllers: set[str] = set()
        """The controllers found holding jobs of this pipeline."""
        self.completions: list[tuple[str, str, Ended]] = []
        self.survivors = Survivors()
        """Keeps the garbage collector off what finished jobs leave behind."""
        self.wakeup = asyncio.Event()
        self._turn = asyncio.Lock()
        self.last_refresh: float | None = None
        self._refresh_seconds = 0.0
        """How long the last full listing took, with taking in what it found."""
        self.stale: dict[str, dict[str, Change]] = {}
        """The stale jobs to run again, by task, while :meth:`rerun_stale` is in force."""
        self._rerun_attempts: dict[tuple[str, str], int] = {}
        self._noticed: dict[int, set[str]] = {}
        self._watches: list[asyncio.Task[None]] = []
        self._stop_watching = asyncio.Event()
        self._listing_due = False
        """A follower began to listen after a listing: list again, for what came between."""
        self.facts = CachedFacts(self)
        self._impossible: list[tuple[str, str, QuotaExceededError]] = []
        self._waiters: dict[tuple[str, str], asyncio.Future[Ended]] = {}
        self._reattached = False
        self._held_check = 0.0
        self._finished_elsewhere: set[tuple[str, str]] = set()
        self._lost: set[tuple[str, str]] = set()
        self._abandoning: asyncio.Task[None] | None = None
        stores = {id(leaf): leaf for repo in self.repos.values() for leaf in leaves(repo)}
        self.schedules = [repo for repo in stores.values() if isinstance(repo, ScheduleRepository)]
        """The schedules the pipeline reads, also through views such as
        :class:`~pydatatask.AggregateAndRepository`; a new occurrence is listed when it
        falls due."""
        sources = [pipeline.tasks[task].links[link].repo for task, link in pipeline.sources()]
        self.polls = not self.schedules or any(
            not isinstance(leaf, ScheduleRepository) for repo in sources for leaf in leaves(repo)
        )
        """Whether inputs other than schedules need re-reading every ``poll_interval``."""
        self.next_occurrence_at: float | None = None
        """When (monotonic) the next occurrence of any schedule falls due, if one will."""

    def jobs(self, task: str, state: State) -> Set[str]:
        """Return ``task``'s jobs in ``state`` (do not change the set)."""
        return self.states[task].jobs(state)

    # ----------------------------------------------------------------- the round

    async def round(self, launch: bool = True) -> bool:
        """Reap, compute ready jobs, launch; return whether work remains.

        A round and a :meth:`refresh` (``status`` or a dashboard reading while this
        controller runs) take turns: a listing that a round's reaping overtook would
        forget jobs that just finished, and launch them again.
        """
        async with self._turn:
            return await self._round(launch)

    async def _round(self, launch: bool) -> bool:
        self.wakeup.clear()  # what happens from now on wakes the next wait()
        await self._reap()
        if self._noticed:
            await self._take_noticed()
        if launch and not self._reattached:
            # Before the first listing: reattaching may settle jobs and change what is listed.
            self._reattached = True
            await self._reattach_live_jobs()
        now = time.monotonic()
        due = self.next_occurrence_at is not None and now >= self.next_occurrence_at
        if (
            due
            or self._listing_due
            or self.last_refresh is None
            or now - self.last_refresh >= self.listing_interval()
        ):
            if self._reattached and self.presence is not None:
                await self.presence.announce()
            await self._refresh()
        self._release_due_retries()
        if self.leases is not None and now >= self._held_check:
            self._held_check = now + min(self.leases.interval, self.pipeline.poll_interval)
            await self._recheck_held()
        if launch:
            await self._launch()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "round: %d running; ready %s; retries pending %s",
                self.running_count,
                {name: states.count(_READY) for name, states in self.states.items()},
                {name: states.count(State.RETRYING) for name, states in self.states.items()},
            )
        return self.has_work()

    def has_work(self) -> bool:
        """Whether jobs are running, finished but not reaped, ready, or waiting for a retry.

        With leases, jobs that other controllers hold count too: this controller waits
        for them, and takes them over if their holder dies.
        """
        return (
            self.running_count > 0
            or bool(self.completions)
            or any(states.count(_READY) for states in self.states.values())
            or any(states.count(State.RETRYING) for states in self.states.values())
            or (self.leases is not None and self._holds_back())
        )

    def _holds_back(self) -> bool:
        return any(states.count(_HELD) for states in self.states.values())

    def next_deadline(self) -> float | None:
        """Return the monotonic time of the next retry, or of the next look at held jobs."""
        times = [when for states in self.states.values() for _, when in states.retries()]
        if self.leases is not None and self._holds_back():
            times.append(self._held_check)
        return min(times, default=None)

    async def _recheck_held(self) -> None:
        """Look again at jobs other controllers held: finished, still held, or free now."""
        pairs = {(name, job) for name, states in self.states.items() for job in states.jobs(_HELD)}
        if not pairs:
            return
        for name, job in pairs:
            self.states[name].move(job, None)
        await self._learn_outcomes(pairs)
        recorded = [pair for pair in pairs if pair[1] in self.ids[self.plans[pair[0]].done]]
        await self._take_in(recorded)
        for name, plan in self.plans.items():
            await self._recheck(plan, {job for task, job in pairs if task == name})

    async def refresh(self) -> None:
        """List every watched repository and recompute the ready jobs from scratch.

        It waits for a round that is under way to end (see :meth:`round`).
        """
        async with self._turn:
            await self._refresh()

    def listing_interval(self) -> float:
        """Return the seconds from one periodic full listing to the next.

        That is ``poll_interval``, or longer when listing takes long (many ids, a slow
        store): listings then take at most ``LISTING_SHARE`` of the controller's time.
        """
        slow = self._refresh_seconds * (1 - LISTING_SHARE) / LISTING_SHARE
        return max(self.pipeline.poll_interval, slow)

    async def _refresh(self) -> None:
        started = time.monotonic()
        self.survivors.thaw()  # what the last listing held may be garbage now
        first = self.last_refresh is None
        self._listing_due = False
        self._noticed.clear()  # the listing sees those changes, and any made before it
        keys = list(self.watchers)
        listed = await asyncio.gather(*(self.repos[key].ids() for key in keys))
        self.ids.clear()  # in place: the cached facts hold this very dict
        self.ids.update(zip(keys, listed, strict=True))
        if first:
            await self._load_retry_state()
        self.last_refresh = time.monotonic()
        self.next_occurrence_at = self._next_occurrence()
        for name, plan in self.plans.items():
            self.states[name].forget_settled(self.ids[plan.done])
        logger.info(
            "listed %d repositories: %s",
            len(keys),
            ", ".join(f"{self.repos[key]!r} {len(self.ids[key])} ids" for key in keys),
        )
        # Jobs that finished while the listing ran may be missing from it: apply them.
        await self._reap()
        for plan in self.plans.values():
            await self._recompute(plan)
        self._refresh_seconds = time.monotonic() - started

    def _next_occurrence(self) -> float | None:
        """Return when (monotonic) the next occurrence of any schedule falls due."""
        delays = []
        for schedule in self.schedules:
            upcoming = schedule.next_occurrence()
            if upcoming is not None:
                delays.append((upcoming - schedule.now()).total_seconds())
        return time.monotonic() + max(0.0, min(delays)) if delays else None

    async def _recompute(self, plan: TaskPlan) -> None:
        name = plan.task.name
        states = self.states[name]
        sets = sorted((self.ids[key] for key in plan.required), key=len)
        candidates: set[str] = set()
        if sets:
            # A record settles its job, unless a retry is due or the job is to rerun as
            # stale. Set operations only, starting from the smallest set: with every job
            # done (a re-run with nothing to do) this is one difference.
            unsettled = self._due_retries(name)
            if self.stale:
                unsettled.update(self.stale.get(name, {}).keys())
            candidates = sets[0] - self.ids[plan.done]
            if unsettled:
                candidates |= sets[0] & unsettled
            for other in sets[1:]:
                candidates &= other
        for key in plan.inhibits:
            candidates -= self.ids[key]
        candidates -= states.jobs(_RUNNING)
        candidates -= states.jobs(_ENDING)
        for job in [job for job in states.jobs(_READY) if job not in candidates]:
            states.move(job, None)
        await self._recheck(plan, candidates)

    # ------------------------------------------------------------- readiness

    def _due_retries(self, name: str) -> set[str]:
        now = time.monotonic()
        return {job for job, when in self.states[name].retries() if when <= now}

    def _check(self, plan: TaskPlan, job: str, unknown: set[tuple[str, str]]) -> bool:
        reason = readiness(plan.rule, job, self.facts)
        if reason.why is _UPSTREAM_UNKNOWN:
            unknown.add((reason.task, job))
        return bool(reason)

    async def _recheck(self, plan: TaskPlan, jobs: Iterable[str], learn: bool = True) -> None:
        unknown: set[tuple[str, str]] = set()
        states = self.states[plan.task.name]
        for job in jobs:
            state = states.get(job)
            if self._check(plan, job, unknown):
                if state is not _READY:
                    states.move(job, _READY)
            elif state is _READY:
                states.move(job, None)
        if unknown and learn:  # once: a record that still reads as unknown waits its turn
            await self._learn_outcomes(unknown)
            await self._recheck(plan, {job for _, job in unknown}, learn=False)

    async def _learn_outcomes(self, pairs: set[tuple[str, str]]) -> None:
        """Read the done records of upstream jobs finished before this scheduler started."""
        limit = asyncio.Semaphore(_OUTCOME_LOOKUP_CONCURRENCY)

        async def learn(name: str, job: str) -> None:
            async with limit:
                record = await read_record(self.plans[name].task.done, job)
            done = self.ids[self.plans[name].done]
            if record is None:
                done.discard(job)
                return
            done.add(job)
            self._learn(name, job, record)

        await asyncio.gather(*(learn(name, job) for name, job in pairs))

    def _learn(self, name: str, job: str, record: Any) -> None:
        """Take in a stored done record of ``name``'s ``job``."""
        states = self.states[name]
        if states.get(job) is _HELD:
            states.move(job, None)  # its holder has recorded it since
        elif states.get(job) is not None:
            return  # the scheduler knows better: it ran the job itself
        kind = outcome(record)
        if kind is Outcome.UNREADABLE:
            reason = error_line(record)
            states.move(job, State.UNREADABLE, note=reason)
            logger.warning(
                "%s job %r: %s; it is left as it is (rm it to run the job again)", name, job, reason
            )
        elif kind is Outcome.FAILED and record.get("retry_at"):
            _plan_retry(states, job, JobResult.from_record(record))
        else:
            states.move(job, _SUCCEEDED if kind is Outcome.SUCCEEDED else _FAILED)

    async def _load_retry_state(self) -> None:
        for name, plan in self.plans.items():
            if plan.task.retry.max_attempts <= 1 or not self.ids[plan.done]:
                continue
            for job, record in (await read_records(plan.task.done)).items():
                self._learn(name, job, record)

    async def _reattach_live_jobs(self) -> None:
        """Wait again for jobs an earlier controller left running, instead of relaunching.

        Only a scheduler that launches does this: commands that just look (``status``,
        ``rm``) must not take over, or stop, another controller's jobs.
        """
        for name, plan in self.plans.items():
            shared = self.leases is not None
            for job, attempt in (await plan.task.live_jobs(shared)).items():
                if not self.is_running(name, job):
                    plan.task.reserve(job)  # they run already: account for them
                    self._start(plan, job, attempt=attempt, reattach=True)

    def _release_due_retries(self) -> None:
        for name, plan in self.plans.items():
            states = self.states[name]
            for job in self._due_retries(name):
                if self._check(plan, job, set()):
                    states.move(job, _READY)
                else:  # its inputs are gone: the failed record stands
                    states.move(job, _FAILED)

    # ------------------------------------------------------------- launching

    async def _launch(self) -> None:
        capacity = self.pipeline.max_concurrent_jobs - self.running_count
        if capacity <= 0:
            return
        chosen = await self._choose(capacity)
        stale = self.stale
        for name, job in chosen:
            if stale and job in stale.get(name, ()):
                # It runs again over its record as the next attempt, which that record
                # does not cover; a controller that reran it first leaves a record that
                # does, so the job is not run twice.
                attempt = self._rerun_attempts.get((name, job))
                self._start(self.plans[name], job, attempt=attempt)
            else:
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
            self._impossible.append((name, job, error))
            return False

    async def _refuse(self, name: str, job: str, error: QuotaExceededError) -> None:
        now = timestamp(time.time())
        failure = failure_record(error)
        result = JobResult(
            success=False,
            attempt=self.states[name].next_attempt(job),
            start_time=now,
            end_time=now,
            exception=failure["exception"],
            traceback=failure["traceback"],
        )
        logger.error("%s job %r can never start: %s", name, job, error)
        await self.plans[name].task.done.dump(job, result.to_record())
        states = self.states[name]
        if states.get(job) is not None:
            states.move(job, None)
        states.move(job, _RUNNING)  # it ends at once, like a job that ran
        self._finished(name, job, Recorded(result))

    def _room(self, plan: TaskPlan) -> int:
        states = self.states[plan.task.name]
        limit = plan.task.max_concurrent
        if limit is None:
            return states.count(_READY)
        return max(0, limit - self.runner.count_of(plan.task.name))

    async def _choose(self, capacity: int) -> list[tuple[str, str]]:
        if self.pipeline.priority is None:
            return self._choose_in_order(capacity)
        return await self._choose_by_priority(capacity)

    def _choose_in_order(self, capacity: int) -> list[tuple[str, str]]:
        """Take ready jobs task by task, downstream tasks first, to finish items early."""
        chosen: list[tuple[str, str]] = []
        for name, plan in self.plans.items():
            room = min(self._room(plan), capacity - len(chosen))
            states = self.states[name]
            while room > 0 and (job := states.take(_READY)) is not None:
                if self._reserve(name, job):
                    chosen.append((name, job))
                    room -= 1
                elif job not in self._set_aside(name):
                    states.move(job, _READY)
                    break  # no capacity for this task now
            if len(chosen) >= capacity:
                break
        return chosen

    async def _choose_by_priority(self, capacity: int) -> list[tuple[str, str]]:
        priority = self.pipeline.priority
        assert priority is not None
        ranked = []
        for name, states in self.states.items():
            for job in list(states.jobs(_READY)):
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
                if job in self._set_aside(name):
                    self.states[name].move(job, None)
                continue
            taken[name] = taken.get(name, 0) + 1
            chosen.append((name, job))
        return chosen

    def _set_aside(self, name: str) -> set[str]:
        return {job for task_name, job, _ in self._impossible if task_name == name}

    def _start(
        self,
        plan: TaskPlan,
        job: str,
        attempt: int | None = None,
        reattach: bool = False,
        forced: bool = False,
    ) -> None:
        name = plan.task.name
        states = self.states[name]
        planned = states.next_attempt(job)
        states.move(job, _RUNNING)
        attempt = planned if attempt is None else attempt
        self.runner.start(plan.task, job, attempt, reattach, forced)
        self.counters[name].launched += 1
        for downstream in plan.downstream:
            if self.states[downstream].get(job) is _READY:
                self.states[downstream].move(job, None)

    def _stopped(self, name: str, job: str) -> None:
        """Forget a job stopped without a record (``rm``, a stopping controller).

        A job whose lease was lost is held by no one here now: it is looked at again
        with the other held jobs.
        """
        if self.states[name].get(job) is _RUNNING:
            lost = (name, job) in self._lost
            self._lost.discard((name, job))
            self.states[name].move(job, _HELD if lost else None)
            if lost:
                self.counters[name].handed_over += 1
        self.wakeup.set()  # one job fewer runs: a waiting run() looks again

    def _leases_lost(self) -> None:
        """Stop following every running job: this controller's leases expired."""
        for name, running in self.runner.running.items():
            self._lost.update((name, job) for job in running)
        if self._abandoning is None or self._abandoning.done():
            self._abandoning = asyncio.get_running_loop().create_task(self.runner.abandon())
        self.wakeup.set()

    async def rerun_stale(self) -> dict[str, dict[str, Change]]:
        """Find the stale jobs and run them again from now on, upstream ones first.

        A stale job is then ready like one without a record, once no upstream job with
        the same id is stale; as each one succeeds, what it made stale downstream runs.
        Returns the stale jobs found, by task.
        """
        records = {name: await read_records(plan.task.done) for name, plan in self.plans.items()}
        found = await find_stale(self.pipeline, records)
        self.stale.clear()
        self.stale.update({name: dict(jobs) for name, jobs in found.items() if jobs})
        self._rerun_attempts = {
            (name, job): _attempt_after(records[name][job])
            for name, jobs in self.stale.items()
            for job in jobs
        }
        self.facts.rerun()
        if self.last_refresh is not None:
            async with self._turn:
                for plan in self.plans.values():
                    await self._recompute(plan)
        return found

    def start(self, task_name: str, job: str) -> None:
        """Launch ``job`` of ``task_name`` now, ready or not; it is recorded as usual."""
        self._start(self.plans[task_name], job, forced=True)

    def _finished(self, name: str, job: str, ended: Ended) -> None:
        self.completions.append((name, job, ended))
        self.states[name].move(job, _ENDING)
        self.wakeup.set()
        if self._waiters:  # someone waits for particular jobs (run_now)
            waiter = self._waiters.pop((name, job), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(ended)

    async def run_now(self, task_name: str, job: str) -> dict[str, Any]:
        """Run one job now, whether or not it is ready; return its done record.

        :raises JobNotReadyError: when the job is running in this controller.
        :raises JobClaimedError: when another controller holds the job.
        :raises BackendError: when its done record could not be written.
        """
        if self.states[task_name].get(job) in (_RUNNING, _ENDING, _HELD):
            raise JobNotReadyError(task_name, job, ["it is running"])
        if self.last_refresh is None:
            await self.refresh()
        finished: asyncio.Future[Ended] = asyncio.get_running_loop().create_future()
        self._waiters[(task_name, job)] = finished
        states = self.states[task_name]
        if states.get(job) in (State.UNRECORDED,):
            raise JobNotReadyError(task_name, job, ["its last done record could not be written"])
        plan = self.plans[task_name]
        record = await read_record(plan.task.done, job) if job in self.ids[plan.done] else None
        # A job run again over its record runs as the next attempt, which no record covers.
        attempt = None if record is None else _attempt_after(record)
        self._start(plan, job, attempt=attempt, forced=True)
        try:
            ended = await finished
        finally:
            self._waiters.pop((task_name, job), None)
        async with self._turn:
            await self._reap()
        if isinstance(ended, Held):
            raise JobClaimedError(task_name, job, ended.holder)
        if isinstance(ended, Unrecorded):
            raise BackendError(f"{task_name} job {job!r}: {ended.problem}")
        return ended.result.to_record()

    # --------------------------------------------------------------- reaping

    async def _reap(self) -> None:
        completions, self.completions = self.completions, []
        if completions:
            self.survivors.finished(len(completions))
        finished = [
            (name, job)
            for name, job, ended in completions
            if self._record(self.plans[name], job, ended)
        ]
        if self._finished_elsewhere:
            elsewhere, self._finished_elsewhere = self._finished_elsewhere, set()
            await self._learn_outcomes(elsewhere)
        await self._take_in(finished)

    async def _take_in(self, finished: Iterable[tuple[str, str]]) -> None:
        """Update what is known after jobs were recorded: their outputs, what they unblock."""
        touched: dict[str, set[str]] = {}
        outputs: dict[int, set[str]] = {}
        for name, job in finished:
            plan = self.plans[name]
            for task_name in plan.rechecks:
                touched.setdefault(task_name, set()).add(job)
            for key in plan.watched_outputs:
                outputs.setdefault(key, set()).add(job)
        for key, jobs in outputs.items():
            await self._refresh_outputs(key, jobs, touched)
        await self._recheck_touched(touched)

    async def _recheck_touched(self, touched: dict[str, set[str]]) -> None:
        """Look again at the jobs each task may see differently now."""
        for name, jobs in touched.items():
            plan = self.plans[name]
            if plan.task.ready is not None:
                self.ids[plan.required[0]] = await plan.task.ready.ids()
            await self._recheck(plan, jobs)

    def _record(self, plan: TaskPlan, job: str, ended: Ended) -> bool:
        """Take in how a job ended; False when it left no done record."""
        name = plan.task.name
        states = self.states[name]
        counters = self.counters[name]
        if isinstance(ended, Held):
            if ended.lost:
                counters.handed_over += 1
            else:
                counters.launched -= 1  # it never started here
            if ended.finished:  # its record is read with the others' outcomes
                states.move(job, _HELD)
                states.move(job, None)
                self.ids[plan.done].add(job)
                self._finished_elsewhere.add((name, job))
                return True
            states.move(job, _HELD)
            if self.leases is None:
                self._note_other_controller(ended.holder, name, job)
            return False
        if isinstance(ended, Unrecorded):
            states.move(job, State.UNRECORDED)
            counters.failed += 1
            self.failures.append(Failure(name, job, ended.problem))
            return False
        result = ended.result
        self.ids[plan.done].add(job)
        if self.stale and self.stale.get(name, {}).pop(job, None) is not None:
            self._rerun_attempts.pop((name, job), None)  # it ran again: its new record stands
        if result.success:
            states.move(job, _SUCCEEDED)
            counters.succeeded += 1
        elif result.retry_at is not None:
            _plan_retry(states, job, result)
            counters.retried += 1
        else:
            states.move(job, _FAILED)
            counters.failed += 1
            self.failures.append(Failure(name, job, result.error))
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
        self._update_ids(key, jobs, present, touched)

    def _update_ids(
        self, key: int, jobs: Iterable[str], present: Set[str], touched: dict[str, set[str]]
    ) -> list[str]:
        """Bring the cached ids of ``key`` in line with ``present``; return the ids gone."""
        ids = self.ids[key]
        gone: list[str] = []
        for job in jobs:
            if (job in present) != (job in ids):
                if job in present:
                    ids.add(job)
                else:
                    ids.discard(job)
                    gone.append(job)
                self._touch(touched, key, job)
        return gone

    # ------------------------------------------------------------- watching

    async def start_watching(self) -> int:
        """Follow the repositories that notify of changes; return how many are followed.

        Between full listings, the ids they name are checked and taken in at the next
        round, which a notification starts (see :mod:`pydatatask.watching`). It waits
        (at most ``LISTEN_WAIT`` seconds) until every follower listens, so that a
        listing after it misses nothing that comes between the two.
        """
        if not self._watches:
            self._stop_watching.clear()
            listening: list[asyncio.Future[None]] = []
            for key, repo in self.repos.items():
                follow = changes_of(repo)
                if follow is not None:
                    ready = asyncio.get_running_loop().create_future()
                    listening.append(ready)
                    self._watches.append(asyncio.create_task(self._follow(key, follow, ready)))
            if listening:
                await asyncio.wait(listening, timeout=LISTEN_WAIT)
        return len(self._watches)

    async def stop_watching(self) -> None:
        """Stop following repositories' changes."""
        self._stop_watching.set()
        watches, self._watches = self._watches, []
        for watch in watches:
            watch.cancel()
        await asyncio.gather(*watches, return_exceptions=True)

    async def _follow(self, key: int, follow: Changes, ready: asyncio.Future[None]) -> None:
        try:
            async for jobs in follow(self._stop_watching):
                if not ready.done():  # it listens from now on
                    ready.set_result(None)
                    if self.last_refresh is not None:  # listed before: what came between?
                        self._listing_due = True
                        self.wakeup.set()
                if jobs:
                    self._noticed.setdefault(key, set()).update(jobs)
                    self.wakeup.set()
        except Exception as exc:  # noqa: BLE001 - watching only saves listings
            logger.warning(
                "stopped watching %r (%s); its changes are seen at the next full listing",
                self.repos[key],
                exc,
            )
        finally:
            if not ready.done():
                ready.set_result(None)

    async def _take_noticed(self) -> None:
        """Check the ids notifications named, and look again at the jobs they concern."""
        noticed, self._noticed = self._noticed, {}
        touched: dict[str, set[str]] = {}
        for key, named in noticed.items():
            repo = self.repos[key]
            jobs = [job for job in named if repo.is_valid_job_id(job)]
            gone = self._update_ids(key, jobs, await repo._contains_many(jobs), touched)
            for plan in self.watchers[key]:
                if plan.done == key:  # a record removed from outside: its outcome goes
                    self.states[plan.task.name].forget_settled(self.ids[key], gone)
        await self._recheck_touched(touched)

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

        The job is cancelled with
        :attr:`~pydatatask.task.stopping.StopReason.REMOVED`, so a job running elsewhere
        is stopped there too.
        """
        return await self.runner.cancel(task_name, job)

    async def shutdown(self) -> None:
        """Cancel the running jobs and wait for them; they leave no done record.

        They are cancelled with :attr:`~pydatatask.task.stopping.StopReason.SHUTDOWN`.

        Jobs that run elsewhere are stopped or left running as their task's ``on_exit``
        says.
        """
        await self.runner.shutdown()
        if self._abandoning is not None:
            await self._abandoning

    async def leave(self) -> None:
        """Give up this controller's leases (others may take its jobs at once), or its note."""
        self.survivors.thaw()
        if self.leases is not None:
            await self.leases.close()
        if self.presence is not None:
            await self.presence.withdraw()

    def totals(self) -> tuple[int, int, int, int, int]:
        """Return the jobs launched, succeeded, failed, handed over, and failures listed."""
        counters = self.counters.values()
        return (
            sum(item.launched for item in counters),
            sum(item.succeeded for item in counters),
            sum(item.failed for item in counters),
            sum(item.handed_over for item in counters),
            len(self.failures),
        )

    def report_since(self, before: tuple[int, int, int, int, int], timed_out: bool) -> RunReport:
        """Return what happened since :meth:`totals` returned ``before``."""
        launched, succeeded, failed, handed_over, _ = self.totals()
        return RunReport(
            launched=launched - before[0],
            succeeded=succeeded - before[1],
            failed=failed - before[2],
            handed_over=handed_over - before[3],
            timed_out=timed_out,
            failures=tuple(self.failures[before[4] :]),
            unreadable=tuple(
                Failure(name, job, states.note(job) or "unreadable")
                for name, states in self.states.items()
                for job in sorted(states.jobs(State.UNREADABLE))
            ),
        )

    async def wait(self, seconds: float | None) -> None:
        """Sleep until a job finishes or stops, or ``seconds`` pass.

        What happened since the last round began counts: the event is cleared when a
        round begins, not here, so a job that stopped in between is not missed.
        """
        if not self.completions:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.wakeup.wait()


def _attempt_after(record: Any) -> int:
    """Return the attempt that follows the one a stored done record covers."""
    try:
        return int(record.get("attempt", 1)) + 1 if isinstance(record, dict) else 1
    except (TypeError, ValueError):
        return 1


def _plan_retry(states: JobStates, job: str, result: JobResult) -> None:
    """Move a failed job to RETRYING, due when its record's ``retry_at`` says."""
    assert result.retry_at is not None
    when = datetime.fromisoformat(str(result.retry_at)).timestamp()
    states.move(
        job,
        State.RETRYING,
        retry_at=time.monotonic() + max(0.0, when - time.time()),
        attempt=result.attempt + 1,
    )
