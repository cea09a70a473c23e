"""Why a running job is being stopped, carried by the cancellation itself.

The controller stops a job by cancelling the coroutine that waits for it, with a
:class:`StopReason` as the cancellation's message. Whoever catches the
:class:`asyncio.CancelledError` (a task whose job runs in another process, container or
pod) reads the reason with :func:`stop_reason` and acts on it: a timeout or an ``rm``
stops the job where it runs; a stopping controller may leave it running for the next
controller to re-attach.
"""

from __future__ import annotations

import asyncio
import enum

__all__ = ["StopReason", "stop_reason"]


class StopReason(enum.Enum):
    """Why the controller stops waiting for a job."""

    TIMEOUT = "timeout"
    """The job ran longer than its task's ``timeout``: it is stopped and recorded as such."""
    REMOVED = "removed"
    """``rm`` removes the job: it is stopped and leaves no record."""
    SHUTDOWN = "shutdown"
    """The controller stops. The job leaves no record, and runs on or is stopped as the
    task's ``on_exit`` says."""
    LOST = "lost"
    """The controller's lease on the job expired, so another controller may follow it
    now. The job leaves no record here and, where it runs elsewhere, runs on."""


def stop_reason(cancelled: asyncio.CancelledError) -> StopReason:
    """Return why a wait was cancelled; a cancellation that gives no reason is a shutdown."""
    for argument in cancelled.args:
        if isinstance(argument, StopReason):
            return argument
    return StopReason.SHUTDOWN
