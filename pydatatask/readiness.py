"""The one readiness rule: whether a job may start, and if not, why.

:func:`readiness` returns a :class:`Reason` that is truthy exactly when the job is ready
and whose text explains it. The scheduler asks it with what it has cached; ``why`` and
``status`` ask it with what they read afresh. Both describe what they know through
:class:`Facts`, so the rule itself is written once and does no I/O.

A job of task T is ready when it is not running or otherwise held by the controller, it
is in every repository T requires for start and in none that inhibits it, T has no done
record for it (or one whose retry is due), and every upstream task's job with the same
id has succeeded. A stale job (see :mod:`pydatatask.provenance`) counts as succeeded,
unless stale jobs are being rerun: then it is ready as if it had no record, once no
upstream job with the same id is stale.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydatatask.jobstate import State
from pydatatask.records import error_line
from pydatatask.task.base import DONE_LINK

if TYPE_CHECKING:
    from pydatatask.provenance import Change
    from pydatatask.repository.base import Repository
    from pydatatask.task.base import Task

__all__ = [
    "READY",
    "Activity",
    "Facts",
    "Known",
    "Reason",
    "Rule",
    "Why",
    "activity_of",
    "readiness",
    "reasons",
]


class Known(enum.Enum):
    """What is known of a job's done record."""

    NONE = "no record"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Failed, with no retry pending."""
    RETRY_DUE = "retry due"
    RETRY_PENDING = "retry pending"
    UNREADABLE = "unreadable"
    UNKNOWN = "recorded"
    """A record exists; what it says has not been read."""
    BLOCKED = "blocked"
    """No record, and it cannot run until something upstream of it is fixed."""
    STALE = "stale"
    """Succeeded, but its code, an input or an upstream job changed since."""

    __hash__ = object.__hash__  # identity, like their equality; hashed in C


class Activity(enum.Enum):
    """What the controller is doing with a job, if anything."""

    RUNNING = "running"
    ENDING = "ending"
    HELD = "held"
    UNRECORDED = "unrecorded"

    __hash__ = object.__hash__  # identity, like their equality; hashed in C


class Why(enum.Enum):
    """The kinds of reason."""

    READY = "ready"
    RUNNING = "running"
    ENDING = "ending"
    HELD = "held elsewhere"
    UNRECORDED = "unrecorded"
    DONE = "done"
    STALE = "stale"
    FAILED = "failed"
    RETRY_PENDING = "retry pending"
    UNREADABLE = "unreadable"
    RECORDED = "recorded"
    MISSING_INPUT = "missing input"
    INHIBITED = "inhibited"
    UPSTREAM_RUNNING = "upstream running"
    UPSTREAM_WAITING = "upstream waiting"
    UPSTREAM_FAILED = "upstream failed"
    UPSTREAM_UNKNOWN = "upstream unknown"
    UPSTREAM_STALE = "upstream stale"

    __hash__ = object.__hash__  # identity, like their equality; hashed in C


_BLOCKING = frozenset({Why.INHIBITED, Why.UPSTREAM_FAILED})

# Looking a member up on its Enum class costs tens of nanoseconds on Python 3.11; the
# per-job paths read these module names instead.
_WHY_READY, _SUCCEEDED, _STALE = Why.READY, Known.SUCCEEDED, Known.STALE
_ACTIVITY_OF_STATE = {
    State.RUNNING: Activity.RUNNING,
    State.ENDING: Activity.ENDING,
    State.HELD: Activity.HELD,
    State.UNRECORDED: Activity.UNRECORDED,
}
_ACTIVITY_WHY = {
    Activity.RUNNING: Why.RUNNING,
    Activity.ENDING: Why.ENDING,
    Activity.HELD: Why.HELD,
    Activity.UNRECORDED: Why.UNRECORDED,
}
_OWN_RECORD_WHY = {
    Known.SUCCEEDED: Why.DONE,
    Known.FAILED: Why.FAILED,
    Known.RETRY_PENDING: Why.RETRY_PENDING,
    Known.UNREADABLE: Why.UNREADABLE,
    Known.UNKNOWN: Why.RECORDED,
}


@dataclass(frozen=True)
class Reason:
    """Why a job is or is not ready: truthy exactly when it is ready; ``str()`` explains."""

    why: Why
    task: str
    """The task the reason is about, the job's own or the upstream task named."""
    job: str
    link: str = ""
    """The link named, for a missing input or an inhibiting repository."""
    record: Any = None
    """The done record the reason rests on, when the facts gave one."""
    holder: str | None = None
    """Who holds the job elsewhere, when the facts know."""
    change: Change | None = None
    """What made a stale job stale, when the facts know."""

    def __bool__(self) -> bool:
        return self.why is _WHY_READY

    @property
    def blocks(self) -> bool:
        """Whether the job cannot run until a person acts (inhibited, upstream failed)."""
        return self.why in _BLOCKING

    def __str__(self) -> str:  # noqa: C901 - one sentence per kind
        task, job, record = self.task, self.job, self.record
        again = f"'rm {task} {job}' to run it again"
        when = record.get("end_time") if isinstance(record, dict) else None
        when = when or "an unknown time"
        upstream = f"upstream task {task!r} job {job!r}"
        match self.why:
            case Why.READY:
                return "ready to run"
            case Why.RUNNING:
                return f"{task} job {job!r} is running now"
            case Why.ENDING:
                return f"{task} job {job!r} has just ended"
            case Why.HELD:
                return f"{task} job {job!r} is held by {self.holder or 'another controller'}"
            case Why.UNRECORDED:
                return f"{task} job {job!r} ended, but its done record could not be written"
            case Why.DONE:
                return f"already done (succeeded at {when}); {again}"
            case Why.STALE:
                changed = f": {self.change}" if self.change is not None else ""
                return f"done, but stale{changed}; 'run --rerun-stale' runs it again"
            case Why.FAILED:
                return f"failed at {when} ({error_line(record)}); {again}"
            case Why.RETRY_PENDING:
                retry = record.get("retry_at") if isinstance(record, dict) else None
                return f"failed at {when}; it will be retried at {retry or 'a later time'}"
            case Why.UNREADABLE:
                return f"its done record is unreadable ({error_line(record)}); {again}"
            case Why.RECORDED:
                return f"{task} has a done record for {job!r}"
            case Why.MISSING_INPUT:
                return f"input {task}.{self.link} has no {job!r}"
            case Why.INHIBITED:
                return f"blocked by {task}.{self.link} containing {job!r}"
            case Why.UPSTREAM_RUNNING:
                return f"waiting for {upstream} to succeed (it is running)"
            case Why.UPSTREAM_WAITING:
                if isinstance(record, dict) and record.get("retry_at"):
                    state = f"it failed and will be retried at {record['retry_at']}"
                else:
                    state = "it has not run"
                return f"waiting for {upstream} to succeed ({state})"
            case Why.UPSTREAM_FAILED:
                if record is None:
                    return f"blocked: {upstream} cannot run either (its own upstream failed)"
                verb = "failed" if isinstance(record, dict) else "has an unreadable record"
                return f"blocked: {upstream} {verb} ({error_line(record)}); {again}"
            case Why.UPSTREAM_UNKNOWN:
                return f"{upstream} has a done record not read yet"
            case Why.UPSTREAM_STALE:
                return f"waiting for {upstream} to run again (it is stale)"
        raise AssertionError(self.why)  # every kind is handled above


def activity_of(state: State | None) -> Activity | None:
    """Return what a job in the scheduler's ``state`` means to the rule, if anything."""
    return None if state is None else _ACTIVITY_OF_STATE.get(state)


READY = Reason(Why.READY, "", "")
"""The reason of every ready job."""


class Facts(Protocol):
    """What the rule needs to know; answered from a cache or from fresh reads."""

    def holds(self, repo: Repository, job: str) -> bool:
        """Whether ``repo`` holds ``job``."""

    def activity(self, task: str, job: str) -> Activity | None:
        """Return what the controller does with the job now, if anything."""

    def known(self, task: str, job: str) -> Known:
        """Return what is known of the task's done record for the job."""

    def record(self, task: str, job: str) -> Any:
        """Return the done record itself, for explanations (None when not at hand)."""

    def holder(self, task: str, job: str) -> str | None:
        """Return who holds the job elsewhere, for explanations (None when not known)."""

    def change(self, task: str, job: str) -> Change | None:
        """Return what made a stale job stale, for explanations (None when not known)."""

    @property
    def rerun_stale(self) -> bool:
        """Whether stale jobs are to run again (``run --rerun-stale``, ``plan --rerun-stale``)."""


@dataclass(frozen=True)
class Rule:
    """One task's readiness inputs."""

    task: str
    required: tuple[tuple[str, Repository], ...]
    inhibits: tuple[tuple[str, Repository], ...]
    upstream: tuple[str, ...]

    @classmethod
    def of(cls, task: Task, upstream: Iterable[str], leases: bool = False) -> Rule:
        """Read the rule of ``task`` from its links (``ready`` replaces the inputs).

        With ``leases``, the task's own claim store does not hold jobs back: a job noted
        there is claimed like any other, and re-adopted by whoever wins it.
        """
        if task.ready is not None:
            required: list[tuple[str, Repository]] = [("ready", task.ready)]
        else:
            required = [
                (name, link.repo) for name, link in task.links.items() if link.required_for_start
            ]
        inhibits = [
            (name, link.repo)
            for name, link in task.links.items()
            if link.inhibits_start
            and name != DONE_LINK
            and not (leases and task.claims is not None and link.repo is task.claims)
        ]
        return cls(task.name, tuple(required), tuple(inhibits), tuple(upstream))


def _own(rule: Rule, job: str, facts: Facts, explain: bool, found: list[Reason]) -> None:
    """Add what the controller does with the job, and what its own record says."""
    activity = facts.activity(rule.task, job)
    if activity is not None:
        holder = facts.holder(rule.task, job) if explain and activity is Activity.HELD else None
        found.append(Reason(_ACTIVITY_WHY[activity], rule.task, job, holder=holder))
    known = facts.known(rule.task, job)
    if known is _STALE:
        if not facts.rerun_stale:
            change = facts.change(rule.task, job) if explain else None
            record = facts.record(rule.task, job) if explain else None
            found.append(Reason(Why.STALE, rule.task, job, record=record, change=change))
        return
    own = _OWN_RECORD_WHY.get(known)
    if own is not None:
        record = facts.record(rule.task, job) if explain else None
        found.append(Reason(own, rule.task, job, record=record))


def _inputs(rule: Rule, job: str, facts: Facts, explain: bool, found: list[Reason]) -> None:
    """Add the inputs that lack the job, and the repositories that inhibit it."""
    for link, repo in rule.required:
        if not facts.holds(repo, job):
            found.append(Reason(Why.MISSING_INPUT, rule.task, job, link))
    for link, repo in rule.inhibits:
        if facts.holds(repo, job):
            found.append(Reason(Why.INHIBITED, rule.task, job, link))


def _upstreams(rule: Rule, job: str, facts: Facts, explain: bool, found: list[Reason]) -> None:
    """Add the upstream jobs with the same id that have not succeeded."""
    for upstream in rule.upstream:
        reason = _upstream(upstream, job, facts, explain)
        if reason is not None:
            found.append(reason)
            if not explain:
                return


_STAGES = (_own, _inputs, _upstreams)


def _reasons(rule: Rule, job: str, facts: Facts, explain: bool) -> list[Reason]:
    """Return the reasons ``job`` is not ready, in the order ``why`` prints them.

    Without ``explain`` the scheduler only asks whether there is one: the stages stop
    at the first that finds any, and records are not fetched for the text.
    """
    found: list[Reason] = []
    for stage in _STAGES:
        stage(rule, job, facts, explain, found)
        if found and not explain:
            break
    return found


def _upstream(upstream: str, job: str, facts: Facts, explain: bool) -> Reason | None:
    if facts.activity(upstream, job) is not None:
        return Reason(Why.UPSTREAM_RUNNING, upstream, job)
    known = facts.known(upstream, job)
    if known is _SUCCEEDED:
        return None
    if known is _STALE:
        return Reason(Why.UPSTREAM_STALE, upstream, job) if facts.rerun_stale else None
    record = facts.record(upstream, job) if explain else None
    if known in (Known.FAILED, Known.UNREADABLE, Known.BLOCKED):
        return Reason(Why.UPSTREAM_FAILED, upstream, job, record=record)
    if known is Known.UNKNOWN:
        return Reason(Why.UPSTREAM_UNKNOWN, upstream, job)
    return Reason(Why.UPSTREAM_WAITING, upstream, job, record=record)


def readiness(rule: Rule, job: str, facts: Facts) -> Reason:
    """Return :data:`READY`, or the first reason ``job`` of ``rule.task`` is not ready."""
    found: list[Reason] = []
    # The stages of _reasons, unrolled: the scheduler asks this once per job it looks at.
    _own(rule, job, facts, False, found)
    if not found:
        _inputs(rule, job, facts, False, found)
        if not found:
            _upstreams(rule, job, facts, False, found)
    return found[0] if found else READY


def reasons(rule: Rule, job: str, facts: Facts) -> list[Reason]:
    """Return every reason ``job`` is not ready, with records for the text; ``[READY]`` if none."""
    return _reasons(rule, job, facts, explain=True) or [READY]
