"""What tasks that run a templated shell script per job (processes, containers) share.

They move stdin, stdout and stderr through blob repositories, charge a fixed amount of
a quota per job, record the script's exit status, and clean up after a job once its
done record is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any, ClassVar, Final, Generic, TypeVar

from pydatatask.errors import ConfigurationError, ProcessExitError
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.task.external import ExternalTask, OnExit
from pydatatask.task.retry import RetryPolicy

__all__ = ["STDOUT", "OnExit", "ScriptTask", "StdoutSentinel"]

logger = logging.getLogger(__name__)

ManagerT = TypeVar("ManagerT")


class StdoutSentinel:
    """The type of :data:`STDOUT`: pass ``stderr=STDOUT`` to merge stderr into stdout."""

    def __repr__(self) -> str:
        return "pydatatask.STDOUT"


STDOUT: Final = StdoutSentinel()
"""Pass as ``stderr`` to send a job's standard error to its standard output."""


class ScriptTask(ExternalTask, Generic[ManagerT]):
    """A task whose jobs are templated scripts run outside the controller.

    Subclasses start, follow and stop the jobs; this class validates the shared
    options, links ``stdin``/``stdout``/``stderr``, builds the template context,
    charges the quota, and reports a script's exit status. The manager that runs the
    jobs is given as itself or as a session accessor returning it (``manager()`` is then
    called whenever the manager is used, so it is the one of the open session).
    """

    reserved_names: ClassVar[frozenset[str]] = frozenset({"task", "env", "environ"})

    def __init__(
        self,
        name: str,
        manager: ManagerT | Callable[[], ManagerT],
        manager_kind: type[ManagerT],
        resource_manager: ResourceManager | None,
        job_resources: Resources,
        template: str,
        window: timedelta | float,
        environ: Mapping[str, str] | None,
        done: MetadataRepository | None,
        stdin: BlobRepository | None,
        stdout: BlobRepository | None,
        stderr: BlobRepository | StdoutSentinel | None,
        ready: Repository | None,
        timeout: timedelta | float | None,
        retry: RetryPolicy | int | None,
        *,
        on_exit: OnExit,
        max_concurrent: int | None,
    ) -> None:
        super().__init__(
            name,
            template,
            window,
            done,
            ready,
            timeout,
            retry,
            on_exit=on_exit,
            max_concurrent=max_concurrent,
        )
        if not isinstance(manager, manager_kind) and not callable(manager):
            raise ConfigurationError(
                f"task {name!r}: manager must be a {manager_kind.__name__} or a session "
                f"accessor returning one, not {type(manager).__name__}"
            )
        self._manager_source = manager
        self._manager_kind = manager_kind
        if resource_manager is not None and not isinstance(resource_manager, ResourceManager):
            raise ConfigurationError(f"task {name!r}: resource_manager must be a ResourceManager")
        if not isinstance(job_resources, Resources):
            raise ConfigurationError(f"task {name!r}: job_resources must be a Resources value")
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
        self._reattaching: set[str] = set()
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def manager(self) -> ManagerT:
        """The manager that runs this task's jobs (an accessor's value while its session is open).

        :raises ConfigurationError: when an accessor returns something else.
        :raises LifecycleError: when the accessor's session is closed.
        """
        source = self._manager_source
        if isinstance(source, self._manager_kind):
            return source
        assert callable(source)
        value = source()
        if not isinstance(value, self._manager_kind):
            raise ConfigurationError(
                f"task {self.name!r}: the manager accessor returned a {type(value).__name__}, "
                f"not a {self._manager_kind.__name__}"
            )
        return value

    async def bind(self) -> None:
        """Check the template's names and that the manager is of the right kind.

        :raises ConfigurationError: for a misnamed link or template name, or a wrong manager.
        """
        await super().bind()
        _ = self.manager

    def _context(self, job: str) -> dict[str, Any]:
        """Return the template context: ``job``, ``task``, ``env``, and each link's info."""
        context = self._link_context(job)
        context.update(job=job, task=self.name, env=self.environ, environ=self.environ)
        return context

    # ---------------------------------------------------------------- quota

    def reserve(self, job: str) -> bool:
        """Charge ``job_resources`` for ``job``; False when the quota is full for now.

        :raises QuotaExceededError: when one job needs more than the whole quota.
        """
        if self.resource_manager is None:
            return True
        key = (self.name, job)
        if job in self._reattaching:  # it runs already: account for it, count no launch
            self.resource_manager.claim(key, self.job_resources)
            return True
        return self.resource_manager.try_reserve(key, self.job_resources, window=self.window)

    def release(self, job: str) -> None:
        """Give back the job's resources, then clean up after it, now that it is recorded."""
        if self.resource_manager is not None:
            self.resource_manager.release((self.name, job))
        self._reattaching.discard(job)
        cleanup = self._cleanup_after_record(job)
        if cleanup is not None:
            running = asyncio.get_running_loop().create_task(cleanup)
            self._cleanups.add(running)
            running.add_done_callback(self._cleanups.discard)

    async def finish_cleanup(self) -> None:
        """Wait for the clean-up of finished jobs (removing their traces) to end."""
        while pending := [cleanup for cleanup in self._cleanups if not cleanup.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    def _cleanup_after_record(self, job: str) -> Coroutine[Any, Any, None] | None:
        """Return what removes a finished job's traces, once its done record is written."""
        return None

    # ------------------------------------------------------------- outcomes

    def _outcome(self, job: str, exit_code: int | None) -> dict[str, Any]:
        """Return the done-record fields of a script that ended with ``exit_code``.

        :raises ProcessExitError: for a non-zero or unknown exit status.
        """
        if exit_code == 0:
            return {"exit_code": 0}
        if exit_code is None:
            raise ProcessExitError(
                f"job {job!r} of {self.name} ended without recording an exit status "
                "(it was killed, or its host restarted)",
                None,
            )
        raise ProcessExitError(
            f"job {job!r} of {self.name} exited with status {exit_code}", exit_code
        )
