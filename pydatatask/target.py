"""One target and its Result: run one job and only the upstream jobs it needs.

``await pipeline.materialize("report", "zen")`` follows the implicit dependencies of
task ``report`` for id ``zen`` upstream, runs each job that has no successful done
record (upstream first, independent ones at once), reads the ones already done, and
returns a :class:`Result` with the job's record, its outputs and the Results of the
jobs it needed. Jobs of any other id never run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydatatask.errors import InputError, JobFailedError, JobNotReadyError
from pydatatask.records import Outcome, error_line, outcome, read_record
from pydatatask.repository.base import BlobRepository, MetadataRepository
from pydatatask.repository.filesystem.folder import FolderRepository

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline
    from pydatatask.repository.base import Repository
    from pydatatask.task.base import Task

__all__ = ["Result", "materialize", "materialize_job"]


@dataclass
class Result:
    """One job of one task, run by :func:`materialize` or found done."""

    task: str
    job: str
    ran: bool
    """True when this call ran the job, False when it was done already."""
    record: Any
    """Its done record (a mapping), or None when it could not run."""
    deps: dict[str, Result] = field(default_factory=dict)
    """The Results of the upstream jobs it needed, by task name."""
    target: dict[str, Any] = field(default_factory=dict)
    """Each output link's ``info`` for the job (a file's path, an object's address)."""
    outputs: dict[str, Repository] = field(default_factory=dict, repr=False)

    @property
    def succeeded(self) -> bool:
        """Whether its done record says it succeeded."""
        return self.record is not None and outcome(self.record) is Outcome.SUCCEEDED

    async def load(self, link: str | None = None) -> Any:
        """Return the value of an output (``load(job)``); name the link when there are several.

        :raises InputError: for an unknown link, or no link named among several.
        """
        if link is None:
            if len(self.outputs) != 1:
                names = ", ".join(self.outputs) or "none"
                raise InputError(f"{self.task} has several outputs ({names}): name one")
            link = next(iter(self.outputs))
        repo = self.outputs.get(link)
        if repo is None:
            names = ", ".join(self.outputs) or "none"
            raise InputError(f"{self.task} has no output {link!r} (outputs: {names})")
        if isinstance(repo, MetadataRepository | BlobRepository):
            return await repo.load(self.job)
        return await repo.info(self.job)

    def as_json(self) -> dict[str, Any]:
        """Return the Result as plain values for JSON.

        The keys are ``task``, ``job``, ``ran``, ``record``, ``target`` (paths and
        addresses as text) and ``deps``.
        """
        return {
            "task": self.task,
            "job": self.job,
            "ran": self.ran,
            "record": self.record,
            "target": {link: str(info) for link, info in self.target.items()},
            "deps": {name: dep.as_json() for name, dep in self.deps.items()},
        }


def materialize(
    pipeline: Pipeline, task_name: str, job: str, *, rerun_failed: bool = False
) -> Result:
    """Open ``pipeline``, materialize one job (see :func:`materialize_job`), and close it.

    For synchronous code. The Result's ``load`` reads files after the pipeline closed;
    outputs behind session resources (S3, MongoDB) need an open pipeline: use
    ``await pipeline.materialize(...)`` inside ``async with pipeline`` for those.
    """

    async def opened() -> Result:
        async with pipeline:
            return await materialize_job(pipeline, task_name, job, rerun_failed=rerun_failed)

    return asyncio.run(opened())


async def materialize_job(
    pipeline: Pipeline, task_name: str, job: str, *, rerun_failed: bool = False
) -> Result:
    """Run ``job`` of ``task_name`` and the upstream jobs it needs; return its Result.

    A job with a successful done record is not run again: its Result reads what is
    stored. A job that failed before is not run again either, unless ``rerun_failed``.

    :raises InputError: for an unknown task.
    :raises InvalidJobIdError: for an id the task cannot hold.
    :raises JobNotReadyError: when an input that no task produces lacks the id.
    :raises JobFailedError: when the job or one it needs failed (now, or before without
        ``rerun_failed``); its ``result`` holds the Results so far.
    """
    if task_name not in pipeline.tasks:
        known = ", ".join(sorted(pipeline.tasks)) or "none"
        raise InputError(f"unknown task {task_name!r} (tasks: {known})")
    pipeline.tasks[task_name].done.check_job_id(job)
    pending: dict[str, asyncio.Task[Result]] = {}

    def result_of(name: str) -> asyncio.Task[Result]:
        if name not in pending:  # each upstream job once, however many need it
            pending[name] = asyncio.ensure_future(one(name))
        return pending[name]

    async def one(name: str) -> Result:
        task = pipeline.tasks[name]
        upstream = [item.name for item in pipeline.upstream_of(name)]
        found = await asyncio.gather(
            *(result_of(item) for item in upstream), return_exceptions=True
        )
        deps: dict[str, Result] = {}
        for item, outcome_of in zip(upstream, found, strict=True):
            if isinstance(outcome_of, JobFailedError):
                deps[item] = outcome_of.result
                raise JobFailedError(
                    name,
                    job,
                    f"upstream {item} job {job!r} failed",
                    Result(name, job, False, None, deps),
                )
            if isinstance(outcome_of, BaseException):
                raise outcome_of
            deps[item] = outcome_of
        record = await read_record(task.done, job)
        ran = False
        if record is None or (outcome(record) is not Outcome.SUCCEEDED and rerun_failed):
            await _check_sources(pipeline, task, job)
            record = await pipeline.scheduler.run_now(name, job)
            ran = True
        result = Result(name, job, ran, record, deps, *await _outputs(task, job))
        if outcome(record) is not Outcome.SUCCEEDED:
            raise JobFailedError(name, job, error_line(record), result)
        return result

    try:
        return await result_of(task_name)
    finally:
        for running in pending.values():
            running.cancel()
        await asyncio.gather(*pending.values(), return_exceptions=True)


async def _outputs(task: Task, job: str) -> tuple[dict[str, Any], dict[str, Repository]]:
    repos = {name: link.repo for name, link in task.links.items() if link.is_output}
    target = {}
    for name, repo in repos.items():
        target[name] = await repo.info(job) if await _named(repo, job) else None
    return target, repos


async def _named(repo: Repository, job: str) -> bool:
    """Whether ``info`` names ``job``'s place in ``repo``: a path, or a value present.

    A folder of files names the path of a job not written yet; a metadata repository's
    ``info`` is the stored value, so only a present job has one.
    """
    if isinstance(repo, FolderRepository) and not isinstance(repo, MetadataRepository):
        return True
    return await repo.contains(job)


async def _check_sources(pipeline: Pipeline, task: Task, job: str) -> None:
    """Refuse a job whose inputs that no task produces lack the id."""
    produced = {id(repo) for item in pipeline.upstream_of(task.name) for repo in item.writes()}
    missing = [
        f"input {task.name}.{name} has no {job!r}"
        for name, link in task.links.items()
        if link.required_for_start
        and id(link.repo) not in produced
        and not await link.repo.contains(job)
    ]
    if missing:
        raise JobNotReadyError(task.name, job, missing)
