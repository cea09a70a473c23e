"""Links: how a task is wired to a repository."""

from __future__ import annotations

from dataclasses import dataclass

from pydatatask.repository.base import Repository

__all__ = ["Link"]


@dataclass(frozen=True, eq=False)
class Link:
    """One connection between a task and a repository, with its dispositions.

    :param repo: the repository.
    :param is_input: the task reads it.
    :param is_output: the task writes it (for job ``k``, under id ``k``).
    :param is_status: it records the state of the task's jobs (the ``done`` link is one).
    :param inhibits_start: a job whose id is present here is not started.
    :param required_for_start: a job starts only when its id is present here
        (default: ``is_input``).
    :param inhibits_output: a job whose id is present here is not treated as having
        produced output (``rm -r`` and ``status`` use this).
    :param required_for_output: a job's output is complete only when its id is present
        here (default: ``is_output``).
    """

    repo: Repository
    is_input: bool = False
    is_output: bool = False
    is_status: bool = False
    inhibits_start: bool = False
    required_for_start: bool | None = None
    inhibits_output: bool = False
    required_for_output: bool | None = None

    def __post_init__(self) -> None:
        if self.required_for_start is None:
            object.__setattr__(self, "required_for_start", self.is_input)
        if self.required_for_output is None:
            object.__setattr__(self, "required_for_output", self.is_output)

    @property
    def is_read(self) -> bool:
        """Whether the task depends on this repository's contents to start."""
        return bool(self.is_input or self.required_for_start)
