# Longer than 400 lines on purpose: status, why, plan and the dashboard read one listing
# through the same functions, so that they cannot disagree.
"""Where an open pipeline stands: counts by state, failed jobs, traces and explanations.

Every function reads the repositories afresh and asks the one readiness rule of
:mod:`pydatatask.readiness` with what it read, so ``status`` and ``why`` can never
disagree with the scheduler about what holds a job back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydatatask.controller import ControllerId
from pydatatask.errors import InputError, JobNotFoundError
from pydatatask.jobstate import State
from pydatatask.provenance import Change, find_stale
from pydatatask.readiness import Activity, Known, Rule, activity_of, reasons
from pydatatask.records import Outcome, Unreadable, error_line, outcome, read_record, read_records
from pydatatask.repository.base import Repository, check_job_id

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline
    from pydatatask.scheduler import Scheduler
    from pydatatask.task.base import Task

__all__ = [
    "READY",
    "STATES",
    "Listing",
    "Planned",
    "TaskJobs",
    "failures",
    "job_states",
    "plan",
    "status",
    "trace",
    "why",
]

READY = "ready to run"
"""The one line :func:`why` returns for a job that nothing holds back."""


def task_of(pipeline: Pipeline, name: str) -> Task:
    """Return the task named ``name``.

    :raises InputError: naming the tasks there are, when there is none such.
    """
    task = pipeline.tasks.get(name)
    if task is None:
        known = ", ".join(sorted(pipeline.tasks)) or "none"
        raise InputError(f"unknown task {name!r} (tasks: {known})")
    return task


def _rule(pipeline: Pipeline, task: Task) -> Rule:
    upstream = [item.name for item in pipeline.upstream_of(task.name)]
    return Rule.of(task, upstream, leases=pipeline.leases is not None)


def _known(record: Any) -> Known:
    """Classify a stored done record (a mapping or an :class:`Unreadable`)."""
    kind = outcome(record)
    if kind is Outcome.SUCCEEDED:
        return Known.SUCCEEDED
    if kind is Outcome.UNREADABLE:
        return Known.UNREADABLE
    retry = record.get("retry_at")
    if not retry:
        return Known.FAILED
    due = datetime.fromisoformat(str(retry)).timestamp() <= datetime.now().timestamp()
    return Known.RETRY_DUE if due else Known.RETRY_PENDING


class _ReadFacts:
    """What the readiness rule needs, from fresh reads and what this controller runs."""

    def __init__(
        self,
        scheduler: Scheduler,
        holding: dict[int, set[str]],
        records: dict[str, dict[str, Any]],
        blocked: dict[str, set[str]] | None = None,
        holders: dict[tuple[str, str], ControllerId] | None = None,
        stale: dict[str, dict[str, Change]] | None = None,
        rerun_stale: bool = False,
    ) -> None:
        self._scheduler = scheduler
        self._holding = holding
        self._records = records
        self._blocked = blocked or {}
        self._holders = holders or {}
        self._stale = stale or {}
        self.rerun_stale = rerun_stale
        """Whether stale jobs are to run again."""

    def holds(self, repo: Repository, job: str) -> bool:
        """Return whether ``repo`` holds ``job``."""
        return job in self._holding[id(repo)]

    def activity(self, task: str, job: str) -> Activity | None:
        """Return what this controller, or another one holding a lease, does with the job."""
        own = activity_of(self._scheduler.states[task].get(job))
        if own is None and (task, job) in self._holders:
            return Activity.HELD
        return own

    def holder(self, task: str, job: str) -> str | None:
        """Return the controller that holds the job's lease, if another one does."""
        controller = self._holders.get((task, job))
        return None if controller is None else str(controller)

    def known(self, task: str, job: str) -> Known:
        """Return what is known of the task's done record for the job."""
        record = self._records.get(task, {}).get(job)
        if record is None:
            return Known.BLOCKED if job in self._blocked.get(task, ()) else Known.NONE
        if job in self._stale.get(task, ()):
            return Known.STALE
        return _known(record)

    def change(self, task: str, job: str) -> Change | None:
        """Return what made a stale job stale."""
        return self._stale.get(task, {}).get(job)

    def record(self, task: str, job: str) -> Any:
        """Return the done record at hand, if any."""
        return self._records.get(task, {}).get(job)


class Listing:
    """Repository id sets, each listed at most once per command."""

    def __init__(self) -> None:
        self.by_key: dict[int, set[str]] = {}
        """The ids listed so far, keyed by the repository's ``id``."""

    async def ids(self, repo: Repository) -> set[str]:
        """Return the ids of ``repo``, listing it the first time only."""
        if id(repo) not in self.by_key:
            self.by_key[id(repo)] = await repo.ids()
        return self.by_key[id(repo)]


STATES = (
    "succeeded",
    "stale",
    "failed",
    "unreadable",
    "retrying",
    "running",
    "ready",
    "waiting",
    "blocked",
)
"""The states :func:`job_states` sorts a task's jobs into, each job into one."""


@dataclass
class TaskJobs:
    """One task's jobs by state (:data:`STATES`), with what made the stale ones stale."""

    jobs: dict[str, set[str]]
    """The ids in each state."""
    stale: dict[str, Change]
    """What made each stale job stale."""
    links: dict[str, int]
    """How many ids each of the task's links holds."""
    holders: dict[str, ControllerId]
    """The running jobs other controllers hold, and who holds each."""
    retries: set[str]
    """The ready jobs that failed before, whose retry is due."""


async def job_states(pipeline: Pipeline, rerun_stale: bool = False) -> dict[str, TaskJobs]:
    """Sort every task's jobs by state, reading the repositories afresh.

    States: ``succeeded``, ``stale`` (succeeded, but its code, an input or an upstream
    job changed since; see :mod:`pydatatask.provenance`), ``failed`` (no retry
    pending), ``unreadable`` (a done record that cannot be read; the job is left
    alone), ``retrying``, ``running``, ``ready``, ``blocked`` (in an inhibiting
    repository, or an upstream job failed or is blocked) and ``waiting`` (present in the
    required inputs but not ready, for example waiting for an upstream job to run).
    With ``rerun_stale``, ``ready`` and ``waiting`` are what they would be for
    ``run --rerun-stale``: stale jobs are ready once no upstream job of theirs is stale.
    """
    scheduler: Scheduler = pipeline.scheduler
    await scheduler.refresh()
    tasks = pipeline.topological_order()
    rules = {task.name: _rule(pipeline, task) for task in tasks}
    listing = Listing()
    # What the refresh just listed is not listed again. A running controller may change
    # these sets while this reads on: they are only read in single C calls (membership,
    # intersections, sizes), never iterated across an await.
    listing.by_key.update(scheduler.ids)
    for repo in [
        *(link.repo for task in tasks for link in task.links.values()),
        *(repo for rule in rules.values() for _, repo in rule.required),
    ]:
        await listing.ids(repo)
    listed = listing.by_key
    records = {task.name: await read_records(task.done) for task in tasks}
    stale = await find_stale(pipeline, records)
    holders = await _holders(scheduler)
    blocked: dict[str, set[str]] = {}
    facts = _ReadFacts(scheduler, listed, records, blocked, holders, stale, rerun_stale)
    result: dict[str, TaskJobs] = {}
    for task in tasks:
        name = task.name
        rule = rules[name]
        kinds: dict[Known, set[str]] = {kind: set() for kind in Known}
        for job, record in records[name].items():
            kinds[_known(record)].add(job)
        stale_jobs = set(stale[name])
        ready = set(scheduler.jobs(name, State.READY))
        running = set(scheduler.jobs(name, State.RUNNING)) | set(scheduler.jobs(name, State.ENDING))
        elsewhere = {job: held for (task_name, job), held in holders.items() if task_name == name}
        running |= set(elsewhere) - set(records[name])
        if task.claims is not None:  # jobs a stopped controller left running, or its claims
            running |= await listing.ids(task.claims) - set(records[name])
        sets = [listed[id(repo)] for _, repo in rule.required]
        eligible = set(sets[0]).intersection(*sets[1:]) if sets else set()
        eligible -= set(records[name]) - (stale_jobs if rerun_stale else set())
        eligible -= running | ready
        waiting: set[str] = set()
        for job in eligible:
            found = reasons(rule, job, facts)
            if not found[0]:
                (blocked.setdefault(name, set()) if any(r.blocks for r in found) else waiting).add(
                    job
                )
            else:
                ready.add(job)
        settled_stale = stale_jobs - ready - waiting - running
        result[name] = TaskJobs(
            jobs={
                "succeeded": kinds[Known.SUCCEEDED] - stale_jobs,
                "stale": settled_stale,
                "failed": kinds[Known.FAILED] | (kinds[Known.RETRY_DUE] - ready),
                "unreadable": kinds[Known.UNREADABLE],
                "retrying": kinds[Known.RETRY_PENDING] - ready,
                "running": running,
                "ready": ready,
                "waiting": waiting,
                "blocked": blocked.get(name, set()),
            },
            stale=stale[name],
            links={link: len(listed[id(item.repo)]) for link, item in task.links.items()},
            holders={job: held for job, held in elsewhere.items() if job not in records[name]},
            retries=kinds[Known.RETRY_DUE] & ready,
        )
    return {name: result[name] for name in pipeline.tasks}


async def status(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """Count each task's jobs by state, and the ids in each link.

    The states are those of :func:`~pydatatask.overview.job_states`.
    """
    result: dict[str, dict[str, Any]] = {}
    for name, found in (await job_states(pipeline)).items():
        counts: dict[str, Any] = {state: len(found.jobs[state]) for state in STATES}
        counts["links"] = found.links
        if pipeline.scheduler.leases is not None:
            counts["holders"] = _count_holders(found.holders)
        result[name] = counts
    return result


_SETTLED_OR_NOW = ("succeeded", "failed", "unreadable", "retrying", "running", "ready", "blocked")
"""The states of jobs a run does not launch after the jobs upstream of them."""


@dataclass(frozen=True)
class Planned:
    """A job ``run`` would launch, and why."""

    task: str
    job: str
    reason: str
    """``new``, ``retry`` or ``stale``."""
    change: Change | None = None
    """What made a stale job stale."""
    now: bool = True
    """False for a job that waits for planned jobs upstream of it to succeed first."""

    def __str__(self) -> str:
        what = {"new": "not run yet", "retry": "a retry is due"}.get(self.reason)
        text = what or f"stale: {self.change}"
        return text if self.now else f"{text}; after the planned jobs upstream of it"

    def as_json(self) -> dict[str, Any]:
        """Return the entry as plain values."""
        entry: dict[str, Any] = {"task": self.task, "job": self.job, "reason": self.reason}
        entry["now"] = self.now
        if self.change is not None:
            entry["change"] = self.change.as_json()
        entry["text"] = str(self)
        return entry


async def plan(pipeline: Pipeline, rerun_stale: bool = False) -> list[Planned]:
    """List the jobs ``run`` (``run --rerun-stale``) would launch, and why; launch none.

    The jobs ready now come first in each task, then (``now`` false) those a planned job
    upstream of them holds back: the run launches them as those succeed (if their
    other inputs are there by then).
    """
    states = await job_states(pipeline, rerun_stale)
    planned: dict[str, list[Planned]] = {}
    for task in pipeline.topological_order():
        name = task.name
        found = states[name]
        entries: list[Planned] = []
        for job in sorted(found.jobs["ready"]):
            change = found.stale.get(job) if rerun_stale else None
            if change is not None:
                entries.append(Planned(name, job, "stale", change))
            else:
                entries.append(Planned(name, job, "retry" if job in found.retries else "new"))
        after = {entry.job for up in pipeline.upstream_of(name) for entry in planned[up.name]}
        for state in _SETTLED_OR_NOW if rerun_stale else (*_SETTLED_OR_NOW, "stale"):
            after -= found.jobs[state]
        for job in sorted(after):
            change = found.stale.get(job) if rerun_stale else None
            reason = "stale" if change is not None else "new"
            entries.append(Planned(name, job, reason, change, now=False))
        planned[name] = entries
    return [entry for name in pipeline.tasks for entry in planned[name]]


async def _holders(scheduler: Scheduler) -> dict[tuple[str, str], ControllerId]:
    """Return the jobs whose leases other controllers hold now (none without leases)."""
    if scheduler.leases is None:
        return {}
    me = ControllerId.current()
    return {pair: held for pair, held in (await scheduler.leases.standing()).items() if held != me}


def _count_holders(held: dict[str, ControllerId]) -> dict[str, int]:
    """Count running jobs by the controller (``HOST:PID``) that holds them."""
    counts: dict[str, int] = {}
    for controller in held.values():
        name = f"{controller.host}:{controller.pid}"
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


async def failures(pipeline: Pipeline) -> list[tuple[str, str, str]]:
    """List every job whose done record says it failed (with no retry pending) or is unreadable.

    :returns: ``(task, job, error in one line)`` triples, by task, then by job.
    """
    found: list[tuple[str, str, str]] = []
    for name, task in pipeline.tasks.items():
        records = await read_records(task.done)
        for job in sorted(records):
            if _known(records[job]) in (Known.FAILED, Known.RETRY_DUE, Known.UNREADABLE):
                found.append((name, job, error_line(records[job])))
    return found


async def _record(task: Task, job: str) -> Any:
    """Return ``job``'s done record of ``task`` (maybe an :class:`Unreadable`), or None."""
    if not task.done.is_valid_job_id(job):
        return None
    return await read_record(task.done, job)


async def trace(pipeline: Pipeline, jobs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Show, for each job and task, its done record, whether it runs, and its link ids.

    An unreadable done record shows as ``{"unreadable": REASON}``.

    :returns: ``{job: {task: {"done": record or None, "running": bool,
        "links": {link: bool}}}}``.
    :raises InvalidJobIdError: for an id no repository can hold.
    :raises JobNotFoundError: for an id that no link of any task holds, with no done
        record and nothing running (the first such id).
    """
    scheduler: Scheduler = pipeline.scheduler
    result: dict[str, dict[str, Any]] = {}
    for job in jobs:
        check_job_id(job)
        per_task: dict[str, Any] = {}
        for name, task in pipeline.tasks.items():
            links = {
                link: item.repo.is_valid_job_id(job) and await item.repo.contains(job)
                for link, item in task.links.items()
            }
            record = await _record(task, job)
            per_task[name] = {
                "done": {"unreadable": record.reason} if isinstance(record, Unreadable) else record,
                "running": scheduler.is_running(name, job),
                "links": links,
            }
        if not any(state["running"] or any(state["links"].values()) for state in per_task.values()):
            raise JobNotFoundError(job, pipeline)
        result[job] = per_task
    return result


async def why(pipeline: Pipeline, task_name: str, job: str) -> list[str]:
    """Explain in words why ``job`` of ``task_name`` is or is not ready to run.

    Repositories are read afresh. The only line is :data:`~pydatatask.overview.READY`
    (``"ready to run"``) exactly when nothing holds the job back.

    :raises InputError: for an unknown task.
    :raises InvalidJobIdError: for an id the task's done repository cannot hold.
    """
    task = task_of(pipeline, task_name)
    task.done.check_job_id(job)
    rule = _rule(pipeline, task)
    holding = {
        id(repo): {job} if repo.is_valid_job_id(job) and await repo.contains(job) else set()
        for _, repo in (*rule.required, *rule.inhibits)
    }
    records: dict[str, dict[str, Any]] = {}
    for name in (task.name, *_ancestors(pipeline, task.name)):
        record = await _record(pipeline.tasks[name], job)
        records[name] = {} if record is None else {job: record}
    stale = await find_stale(pipeline, records)
    holders = await _holders(pipeline.scheduler)
    facts = _ReadFacts(pipeline.scheduler, holding, records, holders=holders, stale=stale)
    return [str(reason) for reason in reasons(rule, job, facts)]


def _ancestors(pipeline: Pipeline, name: str) -> list[str]:
    """Return the tasks upstream of ``name``, directly or not: staleness comes from them."""
    found: dict[str, None] = {}
    pending = [name]
    while pending:
        for upstream in pipeline.upstream_of(pending.pop()):
            if upstream.name not in found:
                found[upstream.name] = None
                pending.append(upstream.name)
    return list(found)
