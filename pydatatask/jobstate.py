"""What the scheduler knows of each job: one state per job, changed only by allowed moves.

A plain class with no I/O. A job the scheduler has no state for is one it has not
looked at, or one whose state follows from the repositories alone (waiting for its
inputs, or done before this controller started).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Set

__all__ = ["JobStates", "State", "TransitionError"]


class State(enum.Enum):
    """A job's state as the scheduler knows it."""

    READY = "ready"
    """Its readiness rule holds; it waits for capacity to launch."""
    RUNNING = "running"
    """Launched (or re-attached) by this controller, not yet ended (stopping one without a
    record forgets its state)."""
    ENDING = "ending"
    """Ended; its outcome is not taken in yet, so listings may not show its record."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Failed for good, or with a stored record that says so."""
    RETRYING = "retrying"
    """Failed; another attempt falls due at :meth:`JobStates.retry_time`."""
    UNREADABLE = "unreadable"
    """Its done record cannot be read; it is left alone."""
    UNRECORDED = "unrecorded"
    """It ended, but its done record could not be written; not run again here."""
    HELD = "held"
    """Another controller holds it, or its claim could not be made (looked at again at
    the next full listing, and with leases every renewal interval)."""

    # Members are compared by identity; hashing them the same way keeps the scheduler's
    # per-job lookups in C (Enum's own hash is written in Python).
    __hash__ = object.__hash__


# Looking a member up on its Enum class costs tens of nanoseconds on Python 3.11; the
# per-job paths read these module names instead.
_RUNNING, _RETRYING, _UNREADABLE = State.RUNNING, State.RETRYING, State.UNREADABLE

_ALLOWED: dict[State | None, frozenset[State | None]] = {
    None: frozenset(
        {
            State.READY,
            State.RUNNING,
            State.SUCCEEDED,
            State.FAILED,
            State.RETRYING,
            State.UNREADABLE,
        }
    ),
    State.READY: frozenset({None, State.RUNNING, State.READY}),
    State.RUNNING: frozenset({None, State.ENDING, State.HELD}),
    State.ENDING: frozenset(
        {State.SUCCEEDED, State.FAILED, State.RETRYING, State.UNRECORDED, State.HELD}
    ),
    # READY: a stale job is run again (``run --rerun-stale``).
    State.SUCCEEDED: frozenset({None, State.READY, State.RUNNING, State.SUCCEEDED, State.FAILED}),
    State.FAILED: frozenset({None, State.RUNNING, State.SUCCEEDED, State.FAILED, State.RETRYING}),
    State.RETRYING: frozenset({None, State.READY, State.RUNNING, State.FAILED}),
    State.UNREADABLE: frozenset({None, State.RUNNING, State.UNREADABLE}),
    State.UNRECORDED: frozenset(),
    State.HELD: frozenset({None}),
}
"""Which moves are allowed, from a state (None: no state) to another."""

_INDEXED = (
    State.READY,
    State.RUNNING,
    State.ENDING,
    State.RETRYING,
    State.UNREADABLE,
    State.HELD,
)
"""States whose jobs are also kept in a set, to list or count them without a scan."""


class TransitionError(RuntimeError):
    """A move that the state table does not allow: a bug in the caller."""


class JobStates:
    """The states of one task's jobs."""

    def __init__(self, task: str) -> None:
        self.task = task
        self._state: dict[str, State] = {}
        self._index: dict[State, set[str]] = {state: set() for state in _INDEXED}
        self._retry: dict[str, float] = {}
        self._next: dict[str, int] = {}
        self._notes: dict[str, str] = {}
        self.get = self._state.get
        """Return ``job``'s state, or None when the scheduler holds none."""

    def __repr__(self) -> str:
        counts = ", ".join(f"{state.value} {len(jobs)}" for state, jobs in self._index.items())
        return f"<JobStates {self.task}: {counts}>"

    def jobs(self, state: State) -> Set[str]:
        """Return the jobs in ``state`` (a live view for indexed states; do not change it)."""
        index = self._index.get(state)
        if index is not None:
            return index
        return {job for job, held in self._state.items() if held is state}

    def count(self, state: State) -> int:
        """Return how many jobs are in ``state``."""
        return len(self.jobs(state))

    def note(self, job: str) -> str | None:
        """Return what was noted with ``job``'s state (why its record is unreadable)."""
        return self._notes.get(job)

    def retry_time(self, job: str) -> float | None:
        """Return when a retrying job's next attempt falls due (a monotonic time)."""
        return self._retry.get(job)

    def retries(self) -> Iterator[tuple[str, float]]:
        """Yield ``(job, due time)`` for every retrying job."""
        yield from self._retry.items()

    def next_attempt(self, job: str) -> int:
        """Return the attempt number ``job`` launches with next (kept from retrying to running)."""
        return self._next.get(job, 1)

    def move(
        self,
        job: str,
        to: State | None,
        *,
        note: str | None = None,
        retry_at: float | None = None,
        attempt: int = 1,
    ) -> None:
        """Move ``job`` to state ``to`` (None: forget it).

        :param note: kept with the new state (why a record is unreadable).
        :param retry_at: for :attr:`State.RETRYING`, when the next attempt falls due.
        :param attempt: for :attr:`State.RETRYING`, that attempt's number.
        :raises TransitionError: when the state table does not allow the move.
        """
        now = self._state.get(job)
        if to not in _ALLOWED[now] or (to is _RETRYING) != (retry_at is not None):
            raise TransitionError(
                f"{self.task} job {job!r}: no move from {_name(now)} to {_name(to)}"
            )
        if now is not None:
            index = self._index.get(now)
            if index is not None:
                index.discard(job)
            if now is _RETRYING:
                del self._retry[job]
            elif now is _UNREADABLE:
                self._notes.pop(job, None)
        if self._next and (to is None or to is _RUNNING):
            self._next.pop(job, None)
        if to is None:
            del self._state[job]
            return
        self._state[job] = to
        index = self._index.get(to)
        if index is not None:
            index.add(job)
        if note is not None:
            self._notes[job] = note
        if retry_at is not None:
            self._retry[job] = retry_at
            self._next[job] = attempt

    def take(self, state: State) -> str | None:
        """Remove any one job from ``state`` (an indexed one), clearing its state; None if empty.

        Cheap however many jobs are in ``state``, for picking ready jobs one at a time.
        """
        index = self._index[state]
        if not index:
            return None
        if None not in _ALLOWED[state]:
            raise TransitionError(f"{self.task}: no job can leave {state.value} unset")
        job = index.pop()
        del self._state[job]
        if self._retry:
            self._retry.pop(job, None)
        if self._notes:
            self._notes.pop(job, None)
        return job  # its next attempt number is kept: it is about to start

    def forget_settled(self, recorded: Set[str], jobs: Iterable[str] | None = None) -> None:
        """Forget what a full listing (or a notification about ``jobs``) may have changed.

        Jobs held by another controller are looked at afresh, and so are the stored
        outcomes (succeeded, failed, unreadable) of jobs whose record is gone from
        ``recorded``, the ids of the done repository.
        """
        settled = (State.SUCCEEDED, State.FAILED, State.UNREADABLE)
        if jobs is None:  # every job: a set difference first, as most have their record
            states = self._state
            unrecorded = states.keys() - recorded
            stale = [job for job in unrecorded if states[job] in settled]
            stale.extend(self._index[State.HELD])
        else:
            stale = [
                job
                for job, state in self._states_of(jobs)
                if state is State.HELD or (state in settled and job not in recorded)
            ]
        for job in stale:
            self.move(job, None)

    def _states_of(self, jobs: Iterable[str]) -> list[tuple[str, State]]:
        return [(job, state) for job in jobs if (state := self._state.get(job)) is not None]


def _name(state: State | None) -> str:
    return "no state" if state is None else state.value
