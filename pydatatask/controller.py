"""Who runs a job: the identity of a controller process, and whether it still lives.

Records that say which controller started a job (a process task's ``pids`` entries)
carry :meth:`ControllerId.as_record`, so another controller can tell a job that a live
controller follows (leave it alone) from one whose controller died (take it over).
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from typing import Any

__all__ = ["ControllerId"]

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """Return the start time of process ``pid`` in clock ticks since boot, if it exists."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: count after its end.
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ControllerId:
    """One controller process: its host name, PID, start time and the host's boot id."""

    host: str
    pid: int
    start: int
    boot: str

    @classmethod
    def current(cls) -> ControllerId:
        """Return the identity of this process (computed once per process)."""
        return _current(os.getpid())

    @classmethod
    def from_record(cls, value: Any) -> ControllerId | None:
        """Read an identity stored with :meth:`as_record`; None for anything else."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                str(value["host"]), int(value["pid"]), int(value["start"]), str(value["boot"])
            )
        except (KeyError, TypeError, ValueError):
            return None

    def as_record(self) -> dict[str, Any]:
        """Return the identity as plain values for a record."""
        return {"host": self.host, "pid": self.pid, "start": self.start, "boot": self.boot}

    def __str__(self) -> str:
        return f"the controller on {self.host} with pid {self.pid}"

    def is_current(self) -> bool:
        """Whether this identity is this very process."""
        return self == ControllerId.current()

    def is_alive(self) -> bool:
        """Whether the controller may still run.

        On this host the answer is exact (the PID exists with the same start time since
        the same boot). A controller on another host cannot be checked from here and
        counts as alive, so its jobs are never taken from it.
        """
        me = ControllerId.current()
        if self.host != me.host:
            return True
        return self.boot == me.boot and _start_ticks(self.pid) == self.start


@functools.cache
def _current(pid: int) -> ControllerId:
    boot = (_read(_BOOT_ID) or "").strip()
    return ControllerId(socket.gethostname(), pid, _start_ticks(pid) or 0, boot)
