"""Takeover and fencing with leases on S3 (SeaweedFS) and MongoDB (SecantusDB).

The same checks as ``tests/test_leases.py`` makes with leases on files: a controller
killed with ``kill -9`` leaves its jobs to the others, and one stopped past its lease
writes no late done record.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_leases import (
    _effects,
    _environment,
    _finish,
    _kill,
    _recorded,
    _start,
    _wait_for,
    check_no_late_records,
    store_settings,
)

pytestmark = pytest.mark.backend


@pytest.fixture(params=["s3", "mongo"])
def remote_store(request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    """Return a lease store on a server and the settings the pipeline script needs for it."""
    return request.param, store_settings(request, request.param)


def test_the_survivors_finish_what_a_killed_controller_held(
    tmp_path: Path, remote_store: tuple[str, dict[str, str]]
) -> None:
    name, settings = remote_store
    env = _environment(
        tmp_path, name, "function", jobs=40, sleep=0.2, seconds=2, concurrency=4, **settings
    )
    victim = _start(env, "run")
    _wait_for(lambda: len(_recorded(tmp_path, "first")) >= 5, "the first jobs to finish")
    others = [_start(env, "run") for _ in range(2)]
    _wait_for(lambda: len(_recorded(tmp_path, "second")) >= 3, "progress in every stage")
    _kill(victim)
    finished_before = {task: set(_recorded(tmp_path, task)) for task in ("first", "second")}
    for code, _, err in map(_finish, others):
        assert code == 0, err
    effects = _effects(tmp_path)
    for task, jobs in finished_before.items():
        assert set(_recorded(tmp_path, task)) == {f"item{index}" for index in range(40)}
        for job in jobs:
            assert effects[(task, job)] == 1, f"{task} {job} ran again after it was done"


def test_a_stopped_controller_writes_no_late_records(
    tmp_path: Path, remote_store: tuple[str, dict[str, str]]
) -> None:
    name, settings = remote_store
    env = _environment(tmp_path, name, "process", jobs=4, sleep=4, seconds=2, **settings)
    check_no_late_records(tmp_path, env)
    assert _effects(tmp_path)[("first", "item0")] == 1  # the process ran on and was adopted
