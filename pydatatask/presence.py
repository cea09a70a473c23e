"""Without leases: notice another controller running the same pipeline, and say so.

A pipeline without leases assumes one controller. To catch a second one started by
mistake, a controller that launches jobs notes itself in a hidden ``.controllers``
folder beside the done records of the pipeline's first task kept in a folder (the same
place a process task keeps its ``pids``), rewrites that note at every full listing, and
removes it when it stops. Another note belongs to a live controller when its process
exists on this host, or, from another host, when it was rewritten within the last three
``poll_interval`` periods. Nothing is noted for a pipeline whose done records live
elsewhere (S3, MongoDB): give it leases to share it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

from pydatatask.controller import ControllerId
from pydatatask.errors import BackendError
from pydatatask.records import read_records
from pydatatask.repository.filesystem import YamlMetadataFileRepository
from pydatatask.repository.filesystem.folder import FolderRepository

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline

__all__ = ["Presence"]

logger = logging.getLogger(__name__)

_STALE_POLLS = 3


class Presence:
    """A controller's note in the pipeline's ``.controllers`` folder, if it has one."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._poll = pipeline.poll_interval
        folders = [
            task.done.basedir
            for task in pipeline.topological_order()
            if isinstance(task.done, FolderRepository)
        ]
        self.notes = YamlMetadataFileRepository(folders[0] / ".controllers") if folders else None
        me = ControllerId.current()
        self._key = f"{me.host}-{me.pid}-{me.start}"
        self._warned: set[ControllerId] = set()
        self._noted = False

    async def announce(self) -> None:
        """Note this controller (again), and warn once about each other live one."""
        if self.notes is None:
            return
        me = ControllerId.current()
        try:
            if not self._noted:
                await self.notes.validate()
            await self.notes.dump(self._key, {"controller": me.as_record(), "noted": time.time()})
            self._noted = True
            notes = await read_records(self.notes)
        except (BackendError, OSError) as exc:
            logger.debug("cannot note this controller in %r: %s", self.notes, exc)
            return
        for key, note in notes.items():
            other = (
                ControllerId.from_record(note.get("controller")) if isinstance(note, dict) else None
            )
            if other is None or other == me or other in self._warned:
                continue
            if other.host == me.host and not other.is_alive():
                await self.notes.delete(key)  # it died without removing its note
                continue
            if other.host != me.host and time.time() - float(note.get("noted", 0)) > (
                _STALE_POLLS * self._poll
            ):
                continue
            self._warned.add(other)
            logger.warning(
                "another controller is running this pipeline: %s; without leases, one "
                "controller per pipeline is assumed and jobs may run twice "
                "(give the Pipeline leases= to share it)",
                other,
            )

    async def withdraw(self) -> None:
        """Remove this controller's note."""
        if self.notes is None or not self._noted:
            return
        try:
            await self.notes.delete(self._key)
            with contextlib.suppress(OSError):  # the last controller leaves no folder behind
                os.rmdir(self.notes.basedir)
        except (BackendError, OSError) as exc:
            logger.debug("cannot remove this controller's note: %s", exc)
