"""Inspect and repair an open pipeline: the operations behind the command line.

Every function takes an open :class:`~pydatatask.Pipeline`, reads its repositories
afresh, and returns plain data; nothing here prints. ``status``, ``failures``, ``trace``
and ``why`` come from :mod:`pydatatask.overview`. Targets are written ``TASK`` or
``TASK.LINK``; a mistake in one (an unknown name, a malformed expression or YAML text)
raises :class:`InputError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import yaml

from pydatatask import setexpr, yamltext
from pydatatask.errors import InputError, JobNotFoundError, JobNotReadyError
from pydatatask.graph import graph
from pydatatask.overview import READY, Listing, failures, plan, status, trace, why
from pydatatask.overview import task_of as _task
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.task.base import DONE_LINK, Task

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline
    from pydatatask.scheduler import Scheduler

__all__ = [
    "ALL_JOBS",
    "READY",
    "InputError",
    "JobNotReadyError",
    "cat",
    "failures",
    "graph",
    "inject",
    "launch",
    "ls",
    "plan",
    "rm",
    "status",
    "trace",
    "why",
]

ALL_JOBS = "__all__"
"""The job list ``[ALL_JOBS]`` given to :func:`rm` means every id in the repository."""


# ------------------------------------------------------------------- naming


def _split(target: str) -> tuple[str, str | None]:
    name, dot, link = target.partition(".")
    if dot and not link:
        raise InputError(f"{target!r} names no link: write TASK or TASK.LINK")
    return name, (link if dot else None)


def _link(pipeline: Pipeline, target: str) -> tuple[Task, str, Repository]:
    """Resolve ``TASK.LINK`` to the task, the link name and the repository."""
    name, link = _split(target)
    task = _task(pipeline, name)
    if link is None:
        raise InputError(f"{target!r} names no link: write TASK.LINK")
    if link not in task.links:
        known = ", ".join(sorted(task.links))
        raise InputError(f"task {name!r} has no link {link!r} (links: {known})")
    return task, link, task.links[link].repo


def _scheduler(pipeline: Pipeline) -> Scheduler:
    scheduler: Scheduler = pipeline.scheduler
    return scheduler


# ----------------------------------------------------------------------- ls


async def ls(pipeline: Pipeline, expr: str) -> list[str]:
    """Evaluate a set expression over ``TASK.LINK`` id sets; return the ids, sorted.

    Operators, loosest first as in Python: ``|`` (union), ``^`` (symmetric
    difference), ``&`` (intersection), ``-`` (difference); parentheses group. Example:
    ``summary.books - summary.done``.

    :raises InputError: for a malformed expression or an unknown task or link.
    """
    tokens = setexpr.tokenize(expr)
    if not tokens:
        raise InputError("the expression is empty: name at least one TASK.LINK")
    listing = Listing()
    values = {text: await listing.ids(_link(pipeline, text)[2]) for text in setexpr.names(tokens)}
    return sorted(setexpr.evaluate(expr, tokens, values))


# ---------------------------------------------------------------- cat, inject


def _plain(value: Any) -> Any:
    """Turn a value into something ``yaml.safe_dump`` can write."""
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    try:
        yaml.safe_dump(value)
    except yaml.YAMLError:
        return repr(value)
    return value


def to_yaml(value: Any) -> str:
    """Render a value as YAML text, writing what YAML cannot hold as its ``repr``."""
    return yamltext.dump(_plain(value))


async def cat(pipeline: Pipeline, target: str, job: str) -> bytes | str:
    """Return the value of ``job`` in ``TASK.LINK``.

    :returns: the bytes of a blob repository, or YAML text of ``info`` for any other
        (a :class:`~pydatatask.YamlMetadataFileRepository` gives its parsed value).
    :raises JobNotFoundError: when the job is absent.
    """
    _, _, repo = _link(pipeline, target)
    if not await repo.contains(job):
        raise JobNotFoundError(job, target)
    if isinstance(repo, BlobRepository) and not isinstance(repo, MetadataRepository):
        async with await repo.open(job, "rb") as reader:
            return await reader.read()
    return to_yaml(await repo.info(job))


def parse_yaml(data: bytes | str, what: str) -> Any:
    """Parse YAML text given for ``what``.

    :raises InputError: naming the line of the first syntax error.
    """
    try:
        return yaml.safe_load(data)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" on line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise InputError(f"malformed YAML for {what}{line}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML for {what}: {' '.join(str(exc).split())}") from exc


async def inject(pipeline: Pipeline, target: str, job: str, data: bytes) -> None:
    """Store ``data`` as the value of ``job`` in ``TASK.LINK``.

    A blob repository receives the bytes as they are. A metadata repository (a
    :class:`~pydatatask.YamlMetadataFileRepository` included) receives the parsed YAML
    through ``dump``, so what it stores is always valid.

    :raises InputError: for malformed YAML (nothing is written) or a repository that
        cannot be written.
    """
    _, _, repo = _link(pipeline, target)
    repo.check_job_id(job)
    if isinstance(repo, MetadataRepository):
        await repo.dump(job, parse_yaml(data, f"{target} {job!r}"))
    elif isinstance(repo, BlobRepository):
        async with await repo.open(job, "wb") as writer:
            await writer.write(data)
    else:
        raise InputError(f"{target} ({type(repo).__name__}) cannot be written to")
    await _scheduler(pipeline).refresh()


# ----------------------------------------------------------------------- rm


def _closure(pipeline: Pipeline, roots: Iterable[Task]) -> list[Task]:
    """Return the tasks ``roots`` and every task downstream of them, downstream first."""
    found = {task.name for task in roots}
    pending = list(found)
    while pending:
        for task in pipeline.downstream_of(pending.pop()):
            if task.name not in found:
                found.add(task.name)
                pending.append(task.name)
    order = reversed(pipeline.topological_order())  # the open pipeline has no cycle
    return [task for task in order if task.name in found]


def _removals(
    pipeline: Pipeline, task: Task, link: str | None, recursive: bool
) -> list[tuple[str, Repository]]:
    """List what to delete, done records first: an interrupted removal then only reruns more."""
    if not recursive:
        if link is None:
            return [(f"{task.name}.{DONE_LINK}", task.done)]
        return [(f"{task.name}.{link}", task.links[link].repo)]
    if link is None:
        closure = _closure(pipeline, [task])
        producers: list[Task] = []
        targets: list[tuple[str, Repository]] = []
    else:
        repo = task.links[link].repo
        uses = [(other, item) for other in pipeline.tasks.values() for item in other.links.values()]
        closure = _closure(
            pipeline, [other for other, item in uses if item.repo is repo and item.is_read]
        )
        producers = [other for other, item in uses if item.repo is repo and item.is_output]
        targets = [(f"{task.name}.{link}", repo)]
    ordered = [
        *[(f"{other.name}.{DONE_LINK}", other.done) for other in [*producers, *closure]],
        *targets,
        *[
            (f"{other.name}.{name}", item.repo)
            for other in closure
            for name, item in other.links.items()
            if item.is_output
        ],
    ]
    unique: dict[int, tuple[str, Repository]] = {}
    for label, repo in ordered:
        unique.setdefault(id(repo), (label, repo))
    return list(unique.values())


async def _stop(pipeline: Pipeline, tasks: Iterable[str], jobs: Iterable[str]) -> None:
    """Stop running ``jobs`` (here or wherever they run) so they cannot write after removal."""
    scheduler = _scheduler(pipeline)
    for name in tasks:
        for job in jobs:
            if not await scheduler.cancel(name, job):
                await pipeline.tasks[name].kill(job)


async def rm(
    pipeline: Pipeline, target: str, jobs: Iterable[str], recursive: bool = False
) -> list[tuple[str, str]]:
    """Remove jobs so that they run again; return the ``(TASK.LINK, job)`` pairs removed.

    ``TASK`` removes the task's done record. ``-r TASK`` also removes the task's outputs
    and, for every task downstream, its done records and outputs. ``TASK.LINK`` removes
    the value from that repository; with ``recursive`` also the done record of the task
    that produces it and everything derived from it downstream. ``jobs == ["__all__"]``
    means every id in the target (for ``-r TASK``: in its done and output repositories).
    Running in-process jobs of the affected tasks are cancelled first. Views that do not
    allow deletes are left as they are and not reported.
    """
    name, link = _split(target)
    task = _task(pipeline, name)
    head = task.done if link is None else _link(pipeline, target)[2]
    removals = _removals(pipeline, task, link, recursive)
    wanted = list(jobs)
    if wanted == [ALL_JOBS]:
        sources = [head]
        if link is None and recursive:
            sources += [item.repo for item in task.links.values() if item.is_output]
        wanted = sorted(set().union(*[await repo.ids() for repo in sources]))
    else:
        wanted = [head.check_job_id(job) for job in wanted]
    touched = {id(repo) for _, repo in removals}
    affected = [
        other.name
        for other in pipeline.tasks.values()
        if any(
            id(item.repo) in touched and (item.is_output or item.is_status)
            for item in other.links.values()
        )
    ]
    await _stop(pipeline, affected, wanted)
    removed: list[tuple[str, str]] = []
    for job in wanted:
        for label, repo in removals:
            if not repo.is_valid_job_id(job) or not await repo.contains(job):
                continue
            await repo.delete(job)
            if not await repo.contains(job):
                removed.append((label, job))
    await _scheduler(pipeline).refresh()
    return removed


# ------------------------------------------------------------------ why, launch


async def launch(
    pipeline: Pipeline, task_name: str, job: str, force: bool = False
) -> dict[str, Any]:
    """Run one job now in this process, record its outcome, and return the record.

    :param force: run it even when it is not ready (done, failed, missing inputs, ...);
        a job that is running is never started twice.
    :raises JobNotReadyError: when the job is not ready and ``force`` is false.
    """
    reasons = await why(pipeline, task_name, job)
    scheduler = _scheduler(pipeline)
    if scheduler.is_running(task_name, job):
        raise JobNotReadyError(task_name, job, [reasons[0]])
    if reasons != [READY] and not force:
        raise JobNotReadyError(task_name, job, [*reasons, "use --force to run it anyway"])
    return await scheduler.run_now(task_name, job)
