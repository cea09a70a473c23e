"""pydatatask 0.4's top-level functions, kept as thin deprecated wrappers.

Scripts written for 0.4 call ``pydatatask.update``, ``launch``, ``print_status``,
``print_trace``, ``delete_data``, ``cat_data``, ``inject_data`` and ``list_data`` with an
open pipeline. Each still works, warns with a ``DeprecationWarning`` that names its
replacement, and does its work through today's operations
(:meth:`~pydatatask.pipeline.Pipeline.update` and :mod:`pydatatask.admin`), so it
behaves as the command of the same name does.

Like the command line, and unlike the rest of the library, these functions write to
standard output (and ``inject_data`` reads standard input), as they did in 0.4. The
package resolves these names lazily and leaves them out of ``__all__``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TYPE_CHECKING

from pydatatask import admin
from pydatatask.errors import JobNotReadyError

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline
    from pydatatask.repository.base import Repository

__all__ = [
    "cat_data",
    "delete_data",
    "inject_data",
    "launch",
    "list_data",
    "print_status",
    "print_trace",
    "update",
]

logger = logging.getLogger(__name__)


def _deprecated(old: str, replacement: str) -> None:
    """Warn that the 0.4 function ``old`` is deprecated in favour of ``replacement``."""
    warnings.warn(
        f"pydatatask.{old} is deprecated since 0.5; use {replacement}",
        DeprecationWarning,
        stacklevel=3,
    )


def _out(text: str) -> None:
    sys.stdout.write(text)


async def update(pipeline: Pipeline) -> bool:
    """Run one scheduler round of the open ``pipeline``; return whether work remains.

    Deprecated: use ``await pipeline.update()``.
    """
    _deprecated("update(pipeline)", "await pipeline.update()")
    return await pipeline.update()


async def launch(
    pipeline: Pipeline,
    task_name: str,
    job: str,
    sync: bool = True,
    meta: bool = True,
    force: bool = False,
) -> int | None:
    """Run ``task_name``'s ``job`` now and wait for it; return 1 when it is not ready.

    Deprecated: use :func:`pydatatask.admin.launch` (or the ``launch`` command), which
    returns the job's done record and raises :class:`~pydatatask.errors.JobNotReadyError` instead.

    :param sync: accepted for 0.4's signature; the job always runs to its end before
        this returns.
    :param meta: when false, the job's done record is removed once the job has ended, so
        the job counts as not run (0.4 did not write it at all).
    :param force: run it even when it is not ready.
    """
    _deprecated("launch(...)", "pydatatask.admin.launch(pipeline, task, job, force=...)")
    try:
        await admin.launch(pipeline, task_name, job, force=force)
    except JobNotReadyError as exc:
        logger.warning("%s; use force=True to launch it anyway", exc)
        return 1
    if not meta:
        await pipeline.tasks[task_name].done.delete(job)
        await pipeline.scheduler.refresh()  # the job counts as not run, and is ready again
    return None


def _shown_links(
    pipeline: Pipeline, all_repos: bool
) -> list[tuple[str, list[tuple[str, Repository]]]]:
    """Return, per task, its links as 0.4 listed them: inputs, then status, then the rest.

    Without ``all_repos`` only input, output and status links are shown.
    """
    shown = []
    for name, task in pipeline.tasks.items():
        links = [
            (link_name, link)
            for link_name, link in task.links.items()
            if all_repos or link.is_input or link.is_output or link.is_status
        ]
        links.sort(key=lambda item: 0 if item[1].is_input else 1 if item[1].is_status else 2)
        shown.append((name, [(f"{name}.{link_name}", link.repo) for link_name, link in links]))
    return shown


async def print_status(pipeline: Pipeline, all_repos: bool = False) -> None:
    """Print each task and, under it, ``TASK.LINK COUNT`` for its links.

    Deprecated: use the ``status`` command or :func:`pydatatask.overview.status`.
    """
    _deprecated("print_status(...)", "the status command or pydatatask.admin.status(pipeline)")
    counts: dict[int, int] = {}
    for name, links in _shown_links(pipeline, all_repos):
        lines = [name]
        for label, repo in links:
            if id(repo) not in counts:
                counts[id(repo)] = len(await repo.ids())
            lines.append(f"{label} {counts[id(repo)]}")
        _out("\n".join(lines) + "\n\n")


async def print_trace(pipeline: Pipeline, all_repos: bool, job: list[str]) -> None:
    """Print each task and, under it, ``TASK.LINK JOB...``: which of ``job`` each link holds.

    Deprecated: use the ``trace`` command or :func:`pydatatask.overview.trace`.
    """
    _deprecated("print_trace(...)", "the trace command or pydatatask.admin.trace(pipeline, jobs)")
    for name, links in _shown_links(pipeline, all_repos):
        lines = [name]
        for label, repo in links:
            held = [
                each for each in job if repo.is_valid_job_id(each) and await repo.contains(each)
            ]
            lines.append(f"{label} {' '.join(held)}")
        _out("\n".join(lines) + "\n\n")


async def delete_data(pipeline: Pipeline, data: str, recursive: bool, job: list[str]) -> None:
    """Remove ``job`` (or ``["__all__"]``) from ``TASK`` or ``TASK.LINK``; print each removal.

    Deprecated: use the ``rm`` command or :func:`pydatatask.admin.rm`.
    """
    _deprecated("delete_data(...)", "the rm command or pydatatask.admin.rm(pipeline, target, jobs)")
    for label, removed in await admin.rm(pipeline, data, job, recursive):
        _out(f"{removed} {label}\n")


async def list_data(pipeline: Pipeline, data: list[str]) -> None:
    """Print, one per line and sorted, the ids of a set expression over ``TASK.LINK``.

    Deprecated: use the ``ls`` command or :func:`pydatatask.admin.ls`.
    """
    _deprecated("list_data(...)", "the ls command or pydatatask.admin.ls(pipeline, expr)")
    for found in await admin.ls(pipeline, " ".join(data)):
        _out(f"{found}\n")


async def cat_data(pipeline: Pipeline, data: str, job: str) -> None:
    """Write the value of ``job`` in ``TASK.LINK`` to standard output.

    Deprecated: use the ``cat`` command or :func:`pydatatask.admin.cat`.
    """
    _deprecated("cat_data(...)", "the cat command or pydatatask.admin.cat(pipeline, target, job)")
    value = await admin.cat(pipeline, data, job)
    if isinstance(value, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    else:
        _out(value)


async def inject_data(pipeline: Pipeline, data: str, job: str) -> None:
    """Store standard input as the value of ``job`` in ``TASK.LINK``.

    Deprecated: use the ``inject`` command or :func:`pydatatask.admin.inject`.

    :raises InputError: for malformed YAML given to a metadata repository (0.4 printed
        an error and returned 1); nothing is stored.
    """
    _deprecated(
        "inject_data(...)",
        "the inject command or pydatatask.admin.inject(pipeline, target, job, data)",
    )
    await admin.inject(pipeline, data, job, sys.stdin.buffer.read())
