"""What the dashboard shows of a pipeline: every task's jobs by state, read at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pydatatask.overview import job_states

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline

__all__ = ["STATES", "Snapshot", "snapshot"]

STATES = (
    "succeeded",
    "failed",
    "running",
    "ready",
    "waiting",
    "blocked",
    "retrying",
    "unreadable",
    "stale",
)
"""The states ``status`` counts, in the order the dashboard shows them."""


@dataclass(frozen=True)
class Snapshot:
    """Every task's jobs by state, as :func:`pydatatask.overview.job_states` sorts them."""

    jobs: dict[str, dict[str, list[str]]]
    """The ids per task and state, sorted. Lists: a list of a million ids takes a
    quarter of the memory of a set of them."""
    taken: datetime
    """When the repositories were read."""

    def counts(self) -> dict[str, dict[str, int]]:
        """Return how many jobs each task has in each state (what ``status`` counts)."""
        return {
            task: {state: len(ids) for state, ids in by_state.items()}
            for task, by_state in self.jobs.items()
        }


async def snapshot(pipeline: Pipeline) -> Snapshot:
    """Read every task's jobs by state, afresh."""
    taken = datetime.now().astimezone()
    found = await job_states(pipeline)
    jobs = {
        name: {state: sorted(ids) for state, ids in task_jobs.jobs.items()}
        for name, task_jobs in found.items()
    }
    return Snapshot(jobs, taken)
