"""Keep Python's cyclic garbage collector from walking, again and again, what a run keeps.

A run keeps what it learns: id sets, job states and, with in-memory done repositories,
every done record. A record holds its ``provenance`` as a dict inside a dict, which
CPython's collector tracks for as long as the record lives, so each full collection
walks every record kept so far: a 200,000-key run in memory spent a fifth of its time
collecting. :class:`Survivors` moves what has survived a batch of finished jobs out of
the collector's sight (:func:`gc.freeze`), after collecting the young generations so
that recent garbage is not kept, and gives it back (:func:`gc.unfreeze`) when the run
ends or re-lists its repositories; from then on it is collected as usual.

It leaves the collector alone when it is disabled or when something else in the process
has frozen objects: both mean the program manages the collector itself.
"""

from __future__ import annotations

import gc

__all__ = ["FREEZE_EVERY", "Survivors"]

FREEZE_EVERY = 20_000
"""Finished jobs between two freezes: a freeze costs a collection of the young generations."""


class Survivors:
    """Freezes what survived every :data:`FREEZE_EVERY` finished jobs; thaws on request."""

    def __init__(self, every: int = FREEZE_EVERY) -> None:
        self.every = every
        self._since = 0
        self._frozen = False

    def finished(self, count: int) -> None:
        """Count ``count`` more finished jobs, freezing the survivors once a batch is full."""
        self._since += count
        if self._since < self.every:
            return
        self._since = 0
        if not gc.isenabled() or (not self._frozen and gc.get_freeze_count()):
            return
        gc.collect(1)
        gc.freeze()
        self._frozen = True

    def thaw(self) -> None:
        """Hand what was frozen back to the collector (nothing if this froze nothing)."""
        if self._frozen:
            self._frozen = False
            gc.unfreeze()
