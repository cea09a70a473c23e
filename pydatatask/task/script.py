"""What tasks that run a templated shell script per job (processes, containers) share.

They move stdin, stdout and stderr through blob repositories, charge a fixed amount of
a quota per job, and hand the lifecycle of their jobs to
:class:`~pydatatask.task.external.ExternalTask`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any, ClassVar, Final, Unpack

from pydatatask.errors import ConfigurationError
from pydatatask.executor.protocol import Executor
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.streams import ByteReader
from pydatatask.task.base import TaskOptions
from pydatatask.task.external import ExternalTask, HandleT, OnExit, Source, SpecT

__all__ = ["STDOUT", "OnExit", "ScriptTask", "StdoutSentinel"]


class StdoutSentinel:
    """The type of :data:`STDOUT`: pass ``stderr=STDOUT`` to merge stderr into stdout."""

    def __repr__(self) -> str:
        return "pydatatask.STDOUT"


STDOUT: Final = StdoutSentinel()
"""Pass as ``stderr`` to send a job's standard error to its standard output."""


class ScriptTask(ExternalTask[SpecT, HandleT]):
    """A task whose jobs are templated scripts run outside the controller.

    Subclasses turn the rendered script into their executor's spec (``_spec``);
    this class validates the shared options, links ``stdin``/``stdout``/``stderr``,
    builds the template context, and charges ``job_resources`` per job. Every argument
    but ``name`` and ``template`` is passed by keyword; ``manager`` is the executor and
    ``resource_manager`` the quota of :class:`~pydatatask.task.external.ExternalTask`,
    and ``options`` are the options of every task (``timeout``, ``retry``,
    ``max_concurrent``).
    """

    reserved_names: ClassVar[frozenset[str]] = frozenset({"task", "env", "environ"})

    def __init__(
        self,
        name: str,
        template: str,
        *,
        manager: Source[Executor[SpecT, HandleT]],
        resource_manager: ResourceManager | None,
        job_resources: Resources,
        window: timedelta | float,
        environ: Mapping[str, str] | None,
        done: MetadataRepository | None,
        stdin: BlobRepository | None,
        stdout: BlobRepository | None,
        stderr: BlobRepository | StdoutSentinel | None,
        ready: Repository | None,
        on_exit: OnExit,
        kill_grace: float | None = None,
        **options: Unpack[TaskOptions],
    ) -> None:
        if resource_manager is not None and not isinstance(resource_manager, ResourceManager):
            raise ConfigurationError(f"task {name!r}: resource_manager must be a ResourceManager")
        if not isinstance(job_resources, Resources):
            raise ConfigurationError(f"task {name!r}: job_resources must be a Resources value")
        super().__init__(
            name,
            template,
            window=window,
            done=done,
            ready=ready,
            executor=manager,
            quota=resource_manager,
            estimate=job_resources,
            on_exit=on_exit,
            kill_grace=kill_grace,
            **options,
        )
        self.resource_manager = resource_manager
        self.job_resources = job_resources
        self.environ = dict(environ or {})
        self.merge_stderr = stderr is STDOUT
        if stdin is not None:
            self.link("stdin", stdin, is_input=True)
        if stdout is not None:
            self.link("stdout", stdout, is_output=True)
        if isinstance(stderr, BlobRepository):
            self.link("stderr", stderr, is_output=True)
        elif stderr is not None and stderr is not STDOUT:
            raise ConfigurationError(f"task {name!r}: stderr must be a BlobRepository or STDOUT")
        self.streams = {"stdout": "stdout", "stderr": "stdout" if self.merge_stderr else "stderr"}

    def _context(self, job: str) -> dict[str, Any]:
        """Return the template context: ``job``, ``task``, ``env``, and each link's info."""
        context = self._link_context(job)
        context.update(job=job, task=self.name, env=self.environ, environ=self.environ)
        return context

    @contextlib.asynccontextmanager
    async def rendered(self, job: str, attempt: int) -> AsyncIterator[SpecT]:
        """Render the job's spec, with its input open while the spec is in use."""
        context = self._context(job)
        link = self.links.get("stdin")
        if link is None:
            yield await self._spec(context, None)
            return
        assert isinstance(link.repo, BlobRepository)
        async with await link.repo.open(job, "rb") as reader:
            yield await self._spec(context, reader)

    @abc.abstractmethod
    async def _spec(self, context: dict[str, Any], stdin: ByteReader | None) -> SpecT:
        """Render the templates with ``context`` into the executor's spec."""
