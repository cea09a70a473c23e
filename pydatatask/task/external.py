"""What every task whose jobs run outside the controller has in common.

Processes, containers and pods are rendered from a jinja2 template per job, may outlive
the controller, and are stopped or left running when their wait is cancelled: always
stopped on a timeout or an ``rm``, and on a stopping controller only with
``on_exit="kill"``. A failed job's exit status goes into its done record.

A template may use ``job``, the task's :attr:`~ExternalTask.reserved_names` (``task``,
``env``, and what the task kind adds), every link by name, and jinja2's globals
(``range``, ``dict``, ...). Any other name is reported when the pipeline opens, unless
the template reads it with ``| default(...)`` or tests it with ``is defined``.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from typing import Any, ClassVar, Literal

from pydatatask.errors import ConfigurationError, JobNotFoundError, ProcessExitError
from pydatatask.repository.base import MetadataRepository, Repository
from pydatatask.task.base import Task
from pydatatask.task.retry import RetryPolicy
from pydatatask.templating import Lazy, environment, referenced_names, required_names

__all__ = ["ExternalTask", "OnExit"]

OnExit = Literal["detach", "kill"]


class ExternalTask(Task):
    """A task whose jobs are rendered from ``template`` and run outside the controller.

    :param on_exit: what a stopping controller does with running jobs: ``"detach"``
        leaves them for the next controller to re-attach; ``"kill"`` stops them, and
        they run again next time.
    :raises ConfigurationError: for a template that is not a str or does not parse, or
        an unknown ``on_exit``.
    """

    reserved_names: ClassVar[frozenset[str]] = frozenset({"task", "env"})
    """Template names the task provides besides ``job``; no link may take them."""

    def __init__(
        self,
        name: str,
        template: str,
        window: timedelta | float,
        done: MetadataRepository | None,
        ready: Repository | None,
        timeout: timedelta | float | None,
        retry: RetryPolicy | int | None,
        *,
        on_exit: OnExit,
        max_concurrent: int | None,
    ) -> None:
        super().__init__(
            name, done, ready, timeout=timeout, retry=retry, max_concurrent=max_concurrent
        )
        if not isinstance(template, str):
            raise ConfigurationError(f"task {name!r}: template must be a str")
        if on_exit not in ("detach", "kill"):
            raise ConfigurationError(f"task {name!r}: on_exit must be 'detach' or 'kill'")
        referenced_names(template)  # a syntax error shows now, not at the first job
        self.template = template
        self.window = window
        self.on_exit: OnExit = on_exit

    async def bind(self) -> None:
        """Check that no link hides a template name and the template uses no unknown name.

        :raises ConfigurationError: for a link named like one of :attr:`reserved_names`,
            or a template name that is neither ``job``, a reserved name, a link nor a
            jinja2 global (a name read with ``| default(...)`` or tested with
            ``is defined`` may be missing).
        """
        clash = self.reserved_names & set(self.links)
        if clash:
            raise ConfigurationError(
                f"task {self.name!r}: links may not be named {', '.join(sorted(clash))}"
            )
        known = {"job", *self.reserved_names, *self.links}
        for what, template in self.templates().items():
            unknown = required_names(template) - known - environment().globals.keys()
            if unknown:
                raise ConfigurationError(
                    f"task {self.name!r}: its {what} uses {_names(unknown)}, which "
                    f"{'is' if len(unknown) == 1 else 'are'} not defined; it can use "
                    f"{_names(known)}"
                )

    def templates(self) -> dict[str, str]:
        """Return the task's templates by what they render, all with the same names."""
        return {"template": self.template}

    def _link_context(self, job: str) -> dict[str, Any]:
        """Return each link's ``info`` for ``job``, computed only if a template uses it."""
        return {
            name: Lazy(functools.partial(link.repo.info, job)) for name, link in self.links.items()
        }

    def _should_stop(self, began: float) -> bool:
        """Whether a cancelled wait must stop the job, rather than leave it running.

        A timeout or an ``rm`` always stops it; a stopping controller does so only
        with ``on_exit="kill"``.
        """
        timed_out = (
            self.timeout is not None
            and asyncio.get_running_loop().time() >= began + self.timeout - 0.01
        )
        return timed_out or not self.shutting_down or self.on_exit == "kill"

    async def _recorded(self, job: str, attempt: int) -> bool:
        """Whether the done record of ``job`` already covers ``attempt``."""
        try:
            record = await self.done.info(job)
        except JobNotFoundError:
            return False
        return isinstance(record, dict) and int(record.get("attempt", 0)) >= attempt

    async def run_attempt(
        self, job: str, attempt: int, reattach: bool = False
    ) -> tuple[dict[str, Any], BaseException | None]:
        """Run one attempt; a failed job's ``exit_code`` goes into the done record too."""
        record, error = await super().run_attempt(job, attempt, reattach)
        if isinstance(error, ProcessExitError) and error.exit_code is not None:
            record["exit_code"] = error.exit_code
        return record, error


def _names(names: set[str] | frozenset[str]) -> str:
    return ", ".join(repr(name) for name in sorted(names))
