"""The scheduler's job states and the readiness rule, tested without any I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pydatatask import InProcessMetadataRepository as Memory
from pydatatask.jobstate import JobStates, State, TransitionError
from pydatatask.readiness import READY, Activity, Known, Rule, Why, readiness, reasons
from pydatatask.repository.base import Repository

# --------------------------------------------------------------------------- states


def test_a_job_moves_through_its_life() -> None:
    states = JobStates("t")
    states.move("k", State.READY)
    assert states.jobs(State.READY) == {"k"}
    states.move("k", State.RUNNING)
    states.move("k", State.ENDING)
    states.move("k", State.RETRYING, retry_at=10.0, attempt=2)
    assert states.retry_time("k") == 10.0
    assert dict(states.retries()) == {"k": 10.0}
    states.move("k", State.READY)
    assert states.next_attempt("k") == 2  # kept while it waits to launch again
    assert states.take(State.READY) == "k"
    assert states.get("k") is None
    assert states.next_attempt("k") == 2
    states.move("k", State.RUNNING)
    assert states.next_attempt("k") == 1
    states.move("k", State.ENDING)
    states.move("k", State.SUCCEEDED)
    assert states.count(State.SUCCEEDED) == 1
    assert states.jobs(State.RUNNING) == set()


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (None, State.ENDING),
        (State.RUNNING, State.READY),
        (State.RUNNING, State.SUCCEEDED),
        (State.ENDING, State.RUNNING),
        (State.UNRECORDED, State.READY),
        (State.HELD, State.RUNNING),
    ],
)
def test_moves_the_table_forbids_raise(start: State | None, to: State) -> None:
    states = JobStates("t")
    path = {
        State.RUNNING: [State.RUNNING],
        State.ENDING: [State.RUNNING, State.ENDING],
        State.UNRECORDED: [State.RUNNING, State.ENDING, State.UNRECORDED],
        State.HELD: [State.RUNNING, State.ENDING, State.HELD],
    }.get(start, [])
    for step in path:
        states.move("k", step)
    with pytest.raises(TransitionError, match="t job 'k': no move from"):
        states.move("k", to)
    assert states.get("k") is start


def test_retrying_needs_a_due_time_and_only_retrying_takes_one() -> None:
    states = JobStates("t")
    with pytest.raises(TransitionError):
        states.move("k", State.RETRYING)
    with pytest.raises(TransitionError):
        states.move("k", State.READY, retry_at=1.0)


def test_a_full_listing_forgets_held_jobs_and_vanished_records() -> None:
    states = JobStates("t")
    for job, state in [
        ("kept", State.SUCCEEDED),
        ("gone", State.FAILED),
        ("odd", State.UNREADABLE),
    ]:
        states.move(job, state)
    for step in (State.RUNNING, State.ENDING, State.HELD):
        states.move("held", step)
    states.move("ready", State.READY)
    states.forget_settled({"kept", "odd"})
    assert states.get("kept") is State.SUCCEEDED
    assert states.get("odd") is State.UNREADABLE
    assert states.get("gone") is None
    assert states.get("held") is None
    assert states.get("ready") is State.READY


# ------------------------------------------------------------------------ readiness


@dataclass
class Facts:
    holding: dict[int, set[str]] = field(default_factory=dict)
    activities: dict[tuple[str, str], Activity] = field(default_factory=dict)
    knowledge: dict[tuple[str, str], Known] = field(default_factory=dict)
    records: dict[tuple[str, str], Any] = field(default_factory=dict)

    def holds(self, repo: Repository, job: str) -> bool:
        return job in self.holding.get(id(repo), set())

    def activity(self, task: str, job: str) -> Activity | None:
        return self.activities.get((task, job))

    def known(self, task: str, job: str) -> Known:
        return self.knowledge.get((task, job), Known.NONE)

    def record(self, task: str, job: str) -> Any:
        return self.records.get((task, job))


BOOKS, SKIP = Memory(), Memory()
RULE = Rule("count", (("books", BOOKS),), (("skip", SKIP),), ("fetch",))


def ready_facts() -> Facts:
    return Facts(
        holding={id(BOOKS): {"k"}},
        knowledge={("fetch", "k"): Known.SUCCEEDED},
    )


def test_a_job_with_everything_in_place_is_ready() -> None:
    facts = ready_facts()
    assert readiness(RULE, "k", facts) is READY
    assert reasons(RULE, "k", facts) == [READY]
    assert str(READY) == "ready to run"


@pytest.mark.parametrize(
    ("change", "why", "text"),
    [
        (
            lambda f: f.activities.update({("count", "k"): Activity.RUNNING}),
            Why.RUNNING,
            "count job 'k' is running now",
        ),
        (
            lambda f: f.holding.update({id(BOOKS): set()}),
            Why.MISSING_INPUT,
            "input count.books has no 'k'",
        ),
        (
            lambda f: f.holding.update({id(SKIP): {"k"}}),
            Why.INHIBITED,
            "blocked by count.skip containing 'k'",
        ),
        (
            lambda f: f.knowledge.update({("count", "k"): Known.SUCCEEDED}),
            Why.DONE,
            "already done (succeeded at an unknown time); 'rm count k' to run it again",
        ),
        (
            lambda f: f.knowledge.update({("fetch", "k"): Known.NONE}),
            Why.UPSTREAM_WAITING,
            "waiting for upstream task 'fetch' job 'k' to succeed (it has not run)",
        ),
        (
            lambda f: f.activities.update({("fetch", "k"): Activity.RUNNING}),
            Why.UPSTREAM_RUNNING,
            "waiting for upstream task 'fetch' job 'k' to succeed (it is running)",
        ),
        (
            lambda f: f.knowledge.update({("fetch", "k"): Known.UNKNOWN}),
            Why.UPSTREAM_UNKNOWN,
            "upstream task 'fetch' job 'k' has a done record not read yet",
        ),
        (
            lambda f: f.knowledge.update({("fetch", "k"): Known.BLOCKED}),
            Why.UPSTREAM_FAILED,
            "blocked: upstream task 'fetch' job 'k' cannot run either (its own upstream failed)",
        ),
    ],
)
def test_each_reason_holds_the_job_back_and_says_so(change: Any, why: Why, text: str) -> None:
    facts = ready_facts()
    change(facts)
    reason = readiness(RULE, "k", facts)
    assert not reason
    assert reason.why is why
    assert str(reasons(RULE, "k", facts)[0]) == text


def test_a_failed_upstream_blocks_and_its_error_is_named() -> None:
    facts = ready_facts()
    facts.knowledge[("fetch", "k")] = Known.FAILED
    facts.records[("fetch", "k")] = {"success": False, "exception": "OSError: gone"}
    (reason,) = reasons(RULE, "k", facts)
    assert reason.blocks
    assert str(reason) == (
        "blocked: upstream task 'fetch' job 'k' failed (OSError: gone); "
        "'rm fetch k' to run it again"
    )


def test_a_retry_that_is_due_does_not_hold_the_job_but_a_pending_one_does() -> None:
    facts = ready_facts()
    facts.knowledge[("count", "k")] = Known.RETRY_DUE
    assert readiness(RULE, "k", facts)
    facts.knowledge[("count", "k")] = Known.RETRY_PENDING
    facts.records[("count", "k")] = {"end_time": "T1", "retry_at": "T2"}
    (reason,) = reasons(RULE, "k", facts)
    assert str(reason) == "failed at T1; it will be retried at T2"


def test_why_lists_every_reason_in_order() -> None:
    facts = ready_facts()
    facts.holding = {id(SKIP): {"k"}}
    facts.knowledge[("fetch", "k")] = Known.NONE
    assert [reason.why for reason in reasons(RULE, "k", facts)] == [
        Why.MISSING_INPUT,
        Why.INHIBITED,
        Why.UPSTREAM_WAITING,
    ]


def test_a_job_result_reads_back_the_record_it_writes() -> None:
    from pydatatask.records import JobResult

    result = JobResult(success=False, attempt=2, start_time="T0", end_time="T1", duration=1.5)
    result.update({"exception": "OSError: gone", "exit_code": 3, "reason": "Evicted"})
    result.retry_at = "T2"
    record = result.to_record()
    assert list(record) == [
        "success",
        "attempt",
        "exception",
        "exit_code",
        "reason",
        "start_time",
        "end_time",
        "duration",
        "retry_at",
    ]
    assert JobResult.from_record(record) == result
    assert JobResult.from_record({}).success  # a record without the flag counts as done
