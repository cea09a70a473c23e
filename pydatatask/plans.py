"""How the scheduler sees a pipeline: each task's readiness inputs, and answers from its cache.

:class:`Layout` keys every repository a task's readiness depends on, so the scheduler
lists each one once; :class:`CachedFacts` answers the readiness rule from those listings
and the scheduler's job states.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydatatask.jobstate import State
from pydatatask.readiness import Activity, Known, Rule, activity_of
from pydatatask.repository.base import Repository
from pydatatask.task.base import DONE_LINK, Task

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline
    from pydatatask.provenance import Change
    from pydatatask.scheduler import Scheduler

__all__ = ["CachedFacts", "Layout", "TaskPlan"]

_SETTLED = {State.SUCCEEDED: Known.SUCCEEDED, State.FAILED: Known.FAILED}

# Looking a member up on its Enum class costs tens of nanoseconds on Python 3.11; the
# per-job paths read these module names instead.
_RETRYING, _NONE, _UNKNOWN = State.RETRYING, Known.NONE, Known.UNKNOWN


@dataclass
class TaskPlan:
    """One task's readiness inputs, with repository keys into the scheduler's id cache."""

    task: Task
    rule: Rule
    required: list[int]
    inhibits: list[int]
    done: int
    outputs: list[Repository]
    downstream: list[str]
    rechecks: tuple[str, ...] = ()
    """The tasks whose readiness a finished job of this task may change."""
    watched_outputs: tuple[int, ...] = ()
    """The repositories this task writes that some task's readiness depends on."""

    @property
    def upstream(self) -> tuple[str, ...]:
        """The tasks whose job with the same id this task's job waits for."""
        return self.rule.upstream


class CachedFacts:
    """What the readiness rule needs, answered from the scheduler's caches."""

    def __init__(self, scheduler: Scheduler) -> None:
        """Answer from ``scheduler``'s listings and job states."""
        # Looked up once per call of the rule, for every job: keep the paths short.
        self._ids = scheduler.ids
        self._states = scheduler.states
        self._done = {name: plan.done for name, plan in scheduler.plans.items()}
        self._stale = scheduler.stale
        self._rerun_stale = False

    @property
    def rerun_stale(self) -> bool:
        """Whether the scheduler reruns stale jobs (then it was told which are)."""
        return self._rerun_stale

    def rerun(self) -> None:
        """Treat the scheduler's stale jobs as ready to run again from now on."""
        self._rerun_stale = True

    def holds(self, repo: Repository, job: str) -> bool:
        """Return whether ``repo`` holds ``job``."""
        return job in self._ids[id(repo)]

    def activity(self, task: str, job: str) -> Activity | None:
        """Return what this controller does with the job now, if anything."""
        state = self._states[task].get(job)
        return None if state is None else activity_of(state)

    def known(self, task: str, job: str) -> Known:
        """Return what is known of the task's done record for the job."""
        states = self._states[task]
        state = states.get(job)
        if state is _RETRYING:
            when = states.retry_time(job)
            due = when is not None and when <= time.monotonic()
            return Known.RETRY_DUE if due else Known.RETRY_PENDING
        if job not in self._ids[self._done[task]]:
            return _NONE
        if state is State.UNREADABLE:
            return Known.UNREADABLE
        if self._stale and job in self._stale.get(task, ()):
            return Known.STALE
        return _SETTLED.get(state, _UNKNOWN) if state is not None else _UNKNOWN

    def record(self, task: str, job: str) -> Any:
        """Return the done record at hand, if any."""
        return None

    def holder(self, task: str, job: str) -> str | None:
        """Return who holds the job elsewhere: not kept in the scheduler's caches."""
        return None

    def change(self, task: str, job: str) -> Change | None:
        """Return what made a stale job stale."""
        return self._stale.get(task, {}).get(job)


class Layout:
    """Every task's plan, downstream first, and the repositories they watch, by key."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.repos: dict[int, Repository] = {}
        """The watched repositories by key (their ``id``)."""
        self.watchers: dict[int, list[TaskPlan]] = {}
        """For each watched repository, the plans whose readiness depends on it."""
        self.plans: dict[str, TaskPlan] = {}
        for task in reversed(pipeline.topological_order()):  # downstream first
            self.plans[task.name] = self._plan(task)
        for name, plan in self.plans.items():
            # A finished job is no longer ready for its own task (it has a record, or a
            # retry that falls due later), so only the others that read its record and
            # the tasks downstream of it need to look at it again.
            watching = [watcher.task.name for watcher in self.watchers[plan.done]]
            others = [other for other in [*watching, *plan.downstream] if other != name]
            plan.rechecks = tuple(dict.fromkeys(others))
            plan.watched_outputs = tuple(
                id(repo) for repo in plan.outputs if id(repo) in self.watchers
            )

    def _key(self, repo: Repository) -> int:
        self.repos[id(repo)] = repo
        return id(repo)

    def _plan(self, task: Task) -> TaskPlan:
        upstream = [up.name for up in self.pipeline.upstream_of(task.name)]
        rule = Rule.of(task, upstream, leases=self.pipeline.leases is not None)
        plan = TaskPlan(
            task=task,
            rule=rule,
            required=list(dict.fromkeys(self._key(repo) for _, repo in rule.required)),
            inhibits=list(dict.fromkeys(self._key(repo) for _, repo in rule.inhibits)),
            done=self._key(task.links[DONE_LINK].repo),
            outputs=[
                link.repo
                for name, link in task.links.items()
                if (link.is_output or link.is_status) and name != DONE_LINK
            ],
            downstream=[down.name for down in self.pipeline.downstream_of(task.name)],
        )
        for repo_key in [*plan.required, *plan.inhibits, plan.done]:
            watchers = self.watchers.setdefault(repo_key, [])
            if plan not in watchers:
                watchers.append(plan)
        return plan
