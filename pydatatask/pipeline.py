"""Pipelines: a set of tasks whose dependencies follow from the repositories they share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pydatatask.errors import ConfigurationError, LifecycleError, PipelineValidationError
from pydatatask.plans import Layout
from pydatatask.repository.base import Repository
from pydatatask.scheduler import Scheduler
from pydatatask.session import Session
from pydatatask.target import Result, materialize_job
from pydatatask.task.base import Task

__all__ = ["Edge", "Pipeline", "Priority"]

logger = logging.getLogger(__name__)

Priority = Callable[[str, str], float | Awaitable[float]]
"""``priority(task_name, job)``: jobs with a higher number launch first."""


@dataclass(frozen=True)
class Edge:
    """Task ``upstream`` writes a repository that task ``downstream`` reads."""

    upstream: str
    downstream: str
    links: tuple[tuple[str, str], ...]
    """Pairs of (upstream link name, downstream link name) that share a repository."""


class Pipeline:
    """An unordered set of tasks, run together.

    A task B depends on a task A when A writes (an output or status link) a repository
    that B reads (an input or required-for-start link): B's job ``k`` then also waits
    for A's job ``k`` to succeed, and is held while it runs.

    :param tasks: the tasks; names must be unique.
    :param session: the session whose resources the repositories use.
    :param resources: quotas shared by the tasks' jobs.
    :param priority: ``priority(task_name, job)``, sync or async; higher launches first.
    :param max_concurrent_jobs: the most jobs running at once across all tasks.
    :param poll_interval: seconds between re-reading every repository from scratch, to
        notice changes made from outside (``run(forever=True)`` and repeated ``update``);
        a listing that takes long is repeated less often, so that listings take at most
        a tenth of the controller's time.
    :param leases: a metadata repository whose ``create`` is atomic
        (``YamlMetadataFileRepository``, ``YamlMetadataS3Repository``,
        ``MongoMetadataRepository``, or for one process ``InProcessMetadataRepository``)
        where controllers claim jobs, so that any number of them may run the pipeline at
        once, each job exactly once (see :mod:`pydatatask.leases`). Without it, one
        controller per pipeline is assumed.
    :param lease_seconds: how long a controller's claims stand without renewal; a
        controller that dies leaves its jobs to others after this long.
    """

    def __init__(
        self,
        tasks: Iterable[Task],
        session: Session | None = None,
        resources: Iterable[Any] = (),
        priority: Priority | None = None,
        *,
        max_concurrent_jobs: int = 256,
        poll_interval: float = 10.0,
        leases: Repository | None = None,
        lease_seconds: float = 30.0,
    ) -> None:
        self.tasks: dict[str, Task] = {}
        for task in tasks:
            if not isinstance(task, Task):
                raise ConfigurationError(f"a pipeline holds tasks, not {type(task).__name__}")
            if task.name in self.tasks:
                raise ConfigurationError(f"two tasks are named {task.name!r}")
            self.tasks[task.name] = task
        if max_concurrent_jobs < 1:
            raise ConfigurationError("max_concurrent_jobs must be at least 1")
        if poll_interval <= 0:
            raise ConfigurationError("poll_interval must be positive")
        self.session = session if session is not None else Session()
        self.resources = tuple(resources)
        self.priority = priority
        self.max_concurrent_jobs = max_concurrent_jobs
        self.poll_interval = poll_interval
        self.leases = leases
        self.lease_seconds = lease_seconds
        self.edges = self._find_edges()
        self._scheduler: Scheduler | None = None
        self._listed_on_open: dict[int, Repository] = {}
        """The repositories whose validation at open left work to their first listing."""

    def _find_edges(self) -> list[Edge]:
        edges = []
        for upstream in self.tasks.values():
            for downstream in self.tasks.values():
                if upstream is downstream:
                    continue
                shared = tuple(
                    (out_name, in_name)
                    for out_name, out_link in upstream.links.items()
                    if out_link.is_output or out_link.is_status
                    for in_name, in_link in downstream.links.items()
                    if in_link.is_read and in_link.repo is out_link.repo
                )
                if shared:
                    edges.append(Edge(upstream.name, downstream.name, shared))
        return edges

    def __repr__(self) -> str:
        return f"<Pipeline of {', '.join(self.tasks) or 'no tasks'}>"

    def upstream_of(self, name: str) -> list[Task]:
        """Return the tasks whose jobs a job of task ``name`` waits for."""
        return [self.tasks[edge.upstream] for edge in self.edges if edge.downstream == name]

    def downstream_of(self, name: str) -> list[Task]:
        """Return the tasks that wait for jobs of task ``name``."""
        return [self.tasks[edge.downstream] for edge in self.edges if edge.upstream == name]

    def topological_order(self) -> list[Task]:
        """Return the tasks, each after every task it depends on.

        :raises PipelineValidationError: when the dependencies form a cycle.
        """
        incoming = {name: 0 for name in self.tasks}
        for edge in self.edges:
            incoming[edge.downstream] += 1
        order = [name for name, count in incoming.items() if count == 0]
        for name in order:
            for task in self.downstream_of(name):
                incoming[task.name] -= 1
                if incoming[task.name] == 0:
                    order.append(task.name)
        if len(order) < len(self.tasks):
            stuck = sorted(name for name, count in incoming.items() if count > 0)
            raise PipelineValidationError(
                [f"the tasks {', '.join(stuck)} depend on each other in a cycle"]
            )
        return [self.tasks[name] for name in order]

    def sources(self) -> list[tuple[str, str]]:
        """Return the (task, link) inputs that no task in the pipeline produces."""
        produced = {id(repo) for task in self.tasks.values() for repo in task.writes()}
        return [
            (task.name, name)
            for task in self.tasks.values()
            for name, link in task.links.items()
            if link.is_read and id(link.repo) not in produced
        ]

    async def validate(self) -> list[str]:
        """Check the pipeline and its repositories; return warnings.

        Validates every repository (creating folders or buckets), binds every task, and
        reports inputs that no task produces and that hold nothing.

        :raises PipelineValidationError: for a cycle.
        :raises ConfigurationError: for a task whose wiring is wrong.
        """
        return await self._validate({})

    async def _validate(self, listed_soon: dict[int, Repository]) -> list[str]:
        """Validate; the repositories in ``listed_soon`` leave work to their next listing."""
        self.topological_order()
        repositories = _unique(
            [link.repo for task in self.tasks.values() for link in task.links.values()]
            + ([] if self.leases is None else [self.leases])
        )
        await asyncio.gather(
            *(
                repo._validate_before_listing() if id(repo) in listed_soon else repo.validate()
                for repo in repositories
            )
        )
        for task in self.tasks.values():
            await task.bind()
        warnings = []
        for task_name, link_name in self.sources():
            repo = self.tasks[task_name].links[link_name].repo
            if not await _has_any(repo):
                warnings.append(
                    f"input {task_name}.{link_name} is produced by no task and holds nothing, "
                    f"so {task_name} has nothing to do"
                )
        for warning in warnings:
            logger.warning("%s", warning)
        return warnings

    async def open(self) -> None:
        """Open the session and validate the pipeline.

        :raises LifecycleError: when the pipeline is already open.
        """
        if self._scheduler is not None:
            raise LifecycleError("the pipeline is already open")
        await self.session.open()
        try:
            layout = Layout(self)
            # The scheduler lists these in its first round: they finish validating there.
            await self._validate(layout.repos)
            self._scheduler = Scheduler(self, layout)
            self._listed_on_open = dict(layout.repos)
        except BaseException:
            await self.session.close()
            raise

    async def _finish_validation(self) -> None:
        """Finish validating the repositories that no listing took care of since open."""
        listed, self._listed_on_open = self._listed_on_open, {}
        await asyncio.gather(*(repo._finish_validation() for repo in listed.values()))

    async def close(self) -> None:
        """Stop running in-process jobs (they run again next time) and close the session.

        Tasks first finish the clean-up they started after recorded jobs (removing
        containers, pid entries), so nothing is left behind.
        """
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        try:
            await scheduler.shutdown()
            # Before the session closes: tasks may still need its clients to clean up.
            await asyncio.gather(*(task.finish_cleanup() for task in self.tasks.values()))
            await scheduler.leave()
            await self._finish_validation()
        finally:
            await self.session.close()

    @property
    def scheduler(self) -> Scheduler:
        """The open pipeline's scheduler.

        :raises LifecycleError: when the pipeline is not open.
        """
        if self._scheduler is None:
            raise LifecycleError("the pipeline is not open: use 'async with pipeline:'")
        return self._scheduler

    async def materialize(self, task: str, job: str, *, rerun_failed: bool = False) -> Result:
        """Run ``job`` of ``task`` and only the upstream jobs it needs; return its Result.

        A job already done is read, not run again; see :func:`pydatatask.target.materialize_job`.

        :raises JobFailedError: when it or a job it needs failed (now, or before without
            ``rerun_failed``).
        """
        return await materialize_job(self, task, job, rerun_failed=rerun_failed)

    async def update(self) -> bool:
        """Run one scheduler round: reap, compute ready jobs, launch; True while work remains."""
        return bool(await self.scheduler.round())

    async def __aenter__(self) -> Pipeline:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _unique(repositories: Iterable[Repository]) -> list[Repository]:
    seen: dict[int, Repository] = {}
    for repo in repositories:
        seen.setdefault(id(repo), repo)
    return list(seen.values())


async def _has_any(repo: Repository) -> bool:
    async with contextlib.aclosing(repo.__aiter__()) as jobs:
        async for _ in jobs:
            return True
    return False
