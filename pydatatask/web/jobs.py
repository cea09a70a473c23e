"""What a job's page shows beyond its record: its state in each task and its output text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydatatask.errors import PydatataskError
from pydatatask.records import Outcome, outcome
from pydatatask.repository.base import BlobRepository, MetadataRepository
from pydatatask.task.base import DONE_LINK

if TYPE_CHECKING:
    from pydatatask.task.base import Task

__all__ = ["PREVIEW_BYTES", "Preview", "previews", "state_of"]

PREVIEW_BYTES = 32 * 1024
"""How much of each output a job page shows."""


@dataclass(frozen=True)
class Preview:
    """The beginning of one output of a job, as text."""

    link: str
    text: str
    truncated: bool
    """Whether the output goes on past :data:`PREVIEW_BYTES`."""
    note: str = ""
    """Why no text is shown (binary data, a read error), when none is."""


def state_of(traced: dict[str, Any]) -> str:
    """Name a job's state in one task from what ``trace`` says of it."""
    record = traced["done"]
    if traced["running"]:
        return "running"
    if record is None:
        return "no record"
    if not isinstance(record, dict) or "unreadable" in record:
        return "unreadable"
    if outcome(record) is Outcome.FAILED:  # pydatatask 0.4's records say it otherwise
        return "retrying" if record.get("retry_at") else "failed"
    return "succeeded"


async def _preview(name: str, repo: BlobRepository, job: str) -> Preview:
    try:
        async with await repo.open(job, "rb") as reader:
            data = await reader.read(PREVIEW_BYTES + 1)
    except (PydatataskError, OSError) as exc:
        return Preview(name, "", False, f"could not be read: {exc}")
    truncated = len(data) > PREVIEW_BYTES
    data = data[:PREVIEW_BYTES]
    if b"\0" in data:
        return Preview(name, "", truncated, "binary data")
    return Preview(name, data.decode("utf-8", errors="replace"), truncated)


async def previews(task: Task, job: str, links: dict[str, bool]) -> list[Preview]:
    """Return the beginning of each output of ``task`` that holds ``job`` (logs included).

    :param links: which links hold the job, as ``trace`` says.
    """
    found = []
    for name, link in task.links.items():
        repo = link.repo
        if name == DONE_LINK or link.is_read or not links.get(name):
            continue
        if isinstance(repo, BlobRepository) and not isinstance(repo, MetadataRepository):
            found.append(await _preview(name, repo, job))
    return found
