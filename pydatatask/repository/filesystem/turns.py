"""One folder listing at a time per event loop.

A listing thread gives the GIL back for every directory entry it reads. While another
thread wants the GIL too (another listing, or the event loop checking the ids a listing
found), it passes from thread to thread once per entry: five folders of 200,000 files
each took three times as long listed at once as one after the other. A controller
lists its folders together (``asyncio.gather``), so each listing, and the check of its
ids, takes its turn here; other coroutines run meanwhile.
"""

from __future__ import annotations

import asyncio
import weakref

__all__ = ["listing_turn"]

_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def listing_turn() -> asyncio.Lock:
    """Return the lock that lets one folder listing of the running event loop go at a time."""
    loop = asyncio.get_running_loop()
    turn = _TURNS.get(loop)
    if turn is None:
        turn = _TURNS[loop] = asyncio.Lock()
    return turn
