"""Provenance: what a job ran with, and whether its result is stale now.

Every done record keeps ``provenance``: ``{"code": TOKEN, "inputs": {LINK: TOKEN}}``,
the task's :attr:`~pydatatask.Task.code_token` and a token of each input link's value
for the job, taken as the job starts (:meth:`~pydatatask.Repository.tokens`).

A successful job is **stale** when

- its task's code token differs from the one in its record,
- an input's token differs from the recorded one (an input that is gone is not compared:
  nothing could run with it),
- the job with the same id of an upstream task ended after this job started (it ran
  again), or
- that upstream job is stale itself, so staleness runs downstream.

A record without ``provenance`` (written before records kept it) is never stale.
:func:`find_stale` applies the rule to many jobs at once, reading each input's tokens
in one call per link.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydatatask.errors import BackendError
from pydatatask.records import Outcome, outcome

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline
    from pydatatask.repository.base import Repository
    from pydatatask.task.base import Task

__all__ = [
    "Change",
    "ChangeKind",
    "find_stale",
    "input_links",
    "provenance_at_hand",
    "provenance_of",
]

logger = logging.getLogger(__name__)


def input_links(task: Task) -> list[tuple[str, Repository]]:
    """Return the task's input links, whose tokens provenance keeps."""
    return [(name, link.repo) for name, link in task.links.items() if link.is_input]


async def provenance_of(
    task: Task, job: str, links: list[tuple[str, Repository]] | None = None
) -> dict[str, Any]:
    """Return what ``job`` of ``task`` runs with: the code token and its inputs' tokens.

    :param links: the task's :func:`input_links`, when the caller keeps them.
    """
    inputs: dict[str, str] = {}
    for name, repo in input_links(task) if links is None else links:
        token = repo.remembered_token(job)  # a listed, hence valid, id
        try:
            if token is None:
                token = (await repo._tokens([job])).get(job)
        except BackendError as exc:  # the job finds out for itself; its record says less
            logger.warning("%s job %r: no token of input %r: %s", task.name, job, name, exc)
            continue
        if token is not None:
            inputs[name] = token
    return {"code": task.code_token, "inputs": inputs}


def provenance_at_hand(task: Task, job: str, links: list[tuple[str, Repository]]) -> dict[str, Any]:
    """Return :func:`provenance_of` without I/O, where every input has its tokens at hand.

    Inputs that hold their values in memory (see
    :attr:`~pydatatask.Repository.tokens_at_hand`) give their tokens at once; the caller
    checks that every one of ``links`` does.
    """
    inputs: dict[str, str] = {}
    for name, repo in links:
        token = repo.token_at_hand(job)
        if token is not None:
            inputs[name] = token
    return {"code": task.code_token, "inputs": inputs}


class ChangeKind(enum.Enum):
    """What made a job stale."""

    CODE = "code"
    INPUT = "input"
    UPSTREAM_RAN = "upstream ran again"
    UPSTREAM_STALE = "upstream stale"


@dataclass(frozen=True)
class Change:
    """Why a successful job is stale; ``str()`` says it in words."""

    kind: ChangeKind
    task: str
    job: str
    name: str = ""
    """The input link, or the upstream task, the change concerns."""
    old: str | None = None
    new: str | None = None

    def __str__(self) -> str:
        match self.kind:
            case ChangeKind.CODE:
                return f"the code of task {self.task!r} changed ({self.old} -> {self.new})"
            case ChangeKind.INPUT:
                return f"input {self.task}.{self.name} changed ({self.old} -> {self.new})"
            case ChangeKind.UPSTREAM_RAN:
                return (
                    f"upstream task {self.name!r} job {self.job!r} ran again after it "
                    f"(ended {self.new})"
                )
            case ChangeKind.UPSTREAM_STALE:
                return f"upstream task {self.name!r} job {self.job!r} is stale"
        raise AssertionError(self.kind)  # every kind is handled above

    def as_json(self) -> dict[str, Any]:
        """Return the change as plain values (``status --json``, ``plan --json``)."""
        return {
            "change": self.kind.value,
            "name": self.name,
            "old": self.old,
            "new": self.new,
            "text": str(self),
        }


def _own_change(
    task: str, job: str, provenance: Mapping[str, Any], code: str, tokens: Mapping[str, Any]
) -> Change | None:
    """Return how the job's code or inputs changed since its record, if they did."""
    old_code = provenance.get("code")
    if old_code is not None and old_code != code:
        return Change(ChangeKind.CODE, task, job, old=str(old_code), new=code)
    inputs = provenance.get("inputs")
    if not isinstance(inputs, Mapping):
        return None
    for link, old in inputs.items():
        current = tokens.get(link)
        new = None if current is None else current.get(job)
        if new is not None and new != old:
            return Change(ChangeKind.INPUT, task, job, link, str(old), new)
    return None


async def find_stale(
    pipeline: Pipeline, records: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Change]]:
    """Return every stale job among ``records`` (``{task: {job: done record}}``), by task.

    ``records`` holds what was read of each task's done records (every task of the
    pipeline should be present, upstream ones included, for staleness to propagate).
    Each input link is asked for its tokens once, for every job to compare.
    """
    stale: dict[str, dict[str, Change]] = {}
    for task in pipeline.topological_order():
        found: dict[str, Change] = {}
        stale[task.name] = found
        own = records.get(task.name, {})
        compared = {
            job: provenance
            for job, record in own.items()
            if isinstance(record, dict)
            and isinstance(provenance := record.get("provenance"), dict)
            and outcome(record) is Outcome.SUCCEEDED
        }
        if not compared:
            continue
        jobs = list(compared)
        tokens = {name: await repo._tokens(jobs) for name, repo in input_links(task)}
        upstream = [item.name for item in pipeline.upstream_of(task.name)]
        code = task.code_token
        for job, provenance in compared.items():
            change = _own_change(task.name, job, provenance, code, tokens)
            if change is None and upstream:
                change = _upstream_change(task.name, job, own[job], upstream, records, stale)
            if change is not None:
                found[job] = change
    return stale


def _upstream_change(
    task: str,
    job: str,
    record: Mapping[str, Any],
    upstream: list[str],
    records: Mapping[str, Mapping[str, Any]],
    stale: Mapping[str, Mapping[str, Change]],
) -> Change | None:
    """Return how an upstream job with the same id changed since the job started."""
    started = record.get("start_time")
    for name in upstream:
        if job in stale.get(name, {}):
            return Change(ChangeKind.UPSTREAM_STALE, task, job, name)
        before = records.get(name, {}).get(job)
        if not isinstance(before, dict) or not started:
            continue
        ended = before.get("end_time")
        # Done records write times in one ISO 8601 UTC form, so text order is time order.
        if ended and str(ended) > str(started):
            return Change(ChangeKind.UPSTREAM_RAN, task, job, name, str(started), str(ended))
    return None
