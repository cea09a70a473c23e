"""Helpers for tests of controllers that run forever: start one, and wait for what it does."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pydatatask

PATIENCE = 60.0
"""Seconds a test waits for something before it fails: generous, CI machines are busy."""
NEVER = 3600.0
"""A poll interval no test waits for, so what the controller takes in was not listed."""


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Wait until ``condition()`` (a plain or async function) is true, at most :data:`PATIENCE`."""
    deadline = time.monotonic() + PATIENCE
    while True:
        holds = condition()
        if await holds if inspect.isawaitable(holds) else holds:
            return
        assert time.monotonic() < deadline, f"waited {PATIENCE:g} s for {what}"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_forever(pipeline: pydatatask.Pipeline) -> AsyncIterator[None]:
    """Run the open ``pipeline`` forever for the block, then stop it as Ctrl-C would."""
    running = asyncio.create_task(pydatatask.run(pipeline, forever=True))
    try:
        yield
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
