"""Several controllers share one pipeline through leases: each job runs exactly once.

The end-to-end tests start ``tests/leases_pipeline.py`` (a pipeline written as a user
would write it) through its command line, several times at once, with leases on files,
on S3 (SeaweedFS) and on MongoDB (SecantusDB), and count each job's side effects.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import pydatatask
from pydatatask.errors import ConfigurationError
from pydatatask.leases import Claim, Holder, Leases
from tests.servers.mongodb import MongoServer
from tests.servers.proxy import tcp_proxy
from tests.servers.s3 import S3Server, unique_bucket_name

SCRIPT = Path(__file__).with_name("leases_pipeline.py")
JOBS = 200
PATIENCE = 180.0  # seconds: generous, CI machines are busy


# ----------------------------------------------------------------- in one process


async def test_a_repository_that_cannot_claim_atomically_is_refused(tmp_path: Path) -> None:
    """Leases on a repository without an atomic create fail when the pipeline opens."""
    task = pydatatask.InProcessSyncTask(
        "noop", pydatatask.InProcessMetadataRepository(), func=_noop
    )
    pipeline = pydatatask.Pipeline(
        [task], leases=pydatatask.FileRepository(tmp_path / "leases", ".yaml")
    )
    with pytest.raises(ConfigurationError, match=r"YamlMetadataFileRepository.*not FileRepository"):
        await pipeline.open()
    with pytest.raises(pydatatask.LifecycleError):
        pipeline.scheduler  # noqa: B018 - it did not open


async def _noop(job: str) -> None:
    del job


def test_a_lease_shorter_than_a_second_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="lease_seconds must be at least 1"):
        Leases(pydatatask.InProcessMetadataRepository(), 0.1)


async def test_claims_exclude_each_other_until_released() -> None:
    repo = pydatatask.InProcessMetadataRepository()
    first, second = Leases(repo, 30), Leases(repo, 30)
    try:
        won = await first.claim("task", "job")
        assert isinstance(won, Claim)
        assert won.generation == 0
        assert not won.taken_over
        assert isinstance(await second.claim("task", "job"), Holder)
        assert isinstance(await second.claim("task", "other"), Claim)  # one job at a time
        await first.release(won)
        again = await second.claim("task", "job")
        assert isinstance(again, Claim)
        assert again.generation == 0
        assert isinstance(await first.claim("task", "job"), Holder)
    finally:
        await first.close()
        await second.close()


async def test_an_expired_claim_is_taken_over_and_fences_its_old_holder() -> None:
    """A holder that stops renewing loses its claim; the next one takes it over."""
    repo = pydatatask.InProcessMetadataRepository()
    stalled, survivor = Leases(repo, 1), Leases(repo, 1)
    try:
        old = await stalled.claim("task", "job")
        assert isinstance(old, Claim)
        assert stalled._renewing is not None
        stalled._renewing.cancel()  # as if the process were stopped
        assert isinstance(await survivor.claim("task", "job"), Holder)
        taken = await _eventually(lambda: survivor.claim("task", "job"), Claim)
        assert taken.generation == 1
        assert taken.taken_over
        assert not stalled.holds(old)  # its result would be refused
        await stalled.release(old)  # and it deletes nothing now
        assert isinstance(await Leases(repo, 1).claim("task", "job"), Holder)
        await survivor.release(taken)
        assert all(key.startswith("~controller.") for key in await repo.ids())
    finally:
        await stalled.close()
        await survivor.close()


async def test_a_closed_controller_leaves_its_claims_to_others_at_once() -> None:
    repo = pydatatask.InProcessMetadataRepository()
    leaving, staying = Leases(repo, 30), Leases(repo, 30)
    assert isinstance(await leaving.claim("task", "job"), Claim)
    await leaving.close()  # its heartbeat goes: the claim stands for no one
    taken = await staying.claim("task", "job")
    assert isinstance(taken, Claim)
    assert taken.taken_over
    await staying.close()


async def _eventually(attempt: Callable[[], Any], kind: type[Any]) -> Any:
    deadline = time.monotonic() + 30
    while True:
        found = await attempt()
        if isinstance(found, kind):
            return found
        assert time.monotonic() < deadline, f"still {found!r}"
        await asyncio.sleep(0.1)


# ------------------------------------------------------------ several controllers


def _environment(base: Path, store: str, kind: str, **settings: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LEASE_BASE=str(base), LEASE_STORE=store, LEASE_KIND=kind)
    env.update({f"LEASE_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def _start(env: dict[str, str], *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(controller: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = controller.communicate(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        controller.kill()
        out, err = controller.communicate()
        raise AssertionError(f"the controller did not finish:\n{err[-6000:]}") from None
    return controller.returncode, out, err


def _kill(controller: subprocess.Popen[str]) -> None:
    controller.send_signal(signal.SIGKILL)
    controller.communicate(timeout=PATIENCE)


def _effects(base: Path) -> Counter[tuple[str, str]]:
    log = base / "effects.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter((line.split()[0], line.split()[1]) for line in lines)


def _recorded(base: Path, task: str) -> dict[str, Any]:
    return {
        path.stem: yaml.safe_load(path.read_text())
        for path in (base / f"done_{task}").glob("*.yaml")
    }


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(
    params=[
        "files",
        pytest.param("s3", marks=pytest.mark.backend),
        pytest.param("mongo", marks=pytest.mark.backend),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """Return a lease store's name and the settings the pipeline script needs for it."""
    return request.param, store_settings(request, request.param)


def store_settings(request: pytest.FixtureRequest, name: str) -> dict[str, str]:
    """Return the settings the pipeline script needs for lease store ``name``, starting
    its server (a session fixture) if it has one; a fresh bucket or database each time.
    """
    if name == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return {
            "s3_endpoint": server.endpoint_url,
            "s3_key": server.access_key,
            "s3_secret": server.secret_key,
            "s3_bucket": unique_bucket_name(),
        }
    if name == "mongo":
        mongo: MongoServer = request.getfixturevalue("mongo_server")
        return {"mongo_uri": mongo.uri, "mongo_db": f"leases_{uuid.uuid4().hex[:12]}"}
    return {}


@pytest.mark.parametrize("kind", ["function", "process"])
def test_three_controllers_run_every_job_exactly_once(
    tmp_path: Path, store: tuple[str, dict[str, str]], kind: str
) -> None:
    """Three controllers started at once share 200 ids: one side effect, one record each."""
    name, settings = store
    env = _environment(tmp_path, name, kind, jobs=JOBS, sleep=0.01, **settings)
    controllers = [_start(env, "run") for _ in range(3)]
    results = [_finish(controller) for controller in controllers]
    for code, _, err in results:
        assert code == 0, err
    effects = _effects(tmp_path)
    everything = {f"item{index}" for index in range(JOBS)}
    for task in ("first", "second"):
        ran = {job for (which, job) in effects if which == task}
        assert ran == everything, task
        twice = sorted(
            job for (which, job), count in effects.items() if which == task and count > 1
        )
        assert not twice, f"{task} ran {len(twice)} jobs more than once: {twice[:5]}"
        records = _recorded(tmp_path, task)
        assert set(records) == everything
        assert all(record["success"] is True for record in records.values())
    for index in range(JOBS):
        assert (tmp_path / "final" / f"item{index}.txt").read_text().strip() == f"item{index}"
    launched = sum(int((out + err).rsplit("launched ", 1)[1].split()[0]) for _, out, err in results)
    assert launched == 2 * JOBS  # nobody counts a job another controller held
    if name == "files":  # every claim and heartbeat was given up
        assert sorted(os.listdir(tmp_path / "leases")) == []


def test_the_survivors_finish_what_a_killed_controller_held(tmp_path: Path) -> None:
    """kill -9 of one controller: the others take its jobs over after the lease."""
    env = _environment(tmp_path, "files", "function", jobs=60, sleep=0.2, seconds=2, concurrency=4)
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
        assert set(_recorded(tmp_path, task)) == {f"item{index}" for index in range(60)}
        for job in jobs:
            assert effects[(task, job)] == 1, f"{task} {job} ran again after it was done"


def test_a_killed_controllers_processes_are_adopted_not_started_again(tmp_path: Path) -> None:
    """Processes still running when their controller dies are followed by the next one."""
    env = _environment(tmp_path, "files", "process", jobs=6, sleep=3, seconds=2)
    victim = _start(env, "run")
    _wait_for(lambda: len(_effects(tmp_path)) >= 6, "every first job to start")
    _kill(victim)
    code, _, err = _finish(_start(env, "run"))
    assert code == 0, err
    effects = _effects(tmp_path)
    assert set(effects.values()) == {1}, effects
    assert len(effects) == 12
    assert len(_recorded(tmp_path, "first")) == 6


@pytest.mark.parametrize("kind", ["function", "process"])
def test_a_stopped_controller_writes_no_late_records(tmp_path: Path, kind: str) -> None:
    """SIGSTOP past the lease: another controller finishes; the first one's records are refused."""
    check_no_late_records(
        tmp_path, _environment(tmp_path, "files", kind, jobs=4, sleep=4, seconds=2)
    )
    if kind == "process":  # the processes ran on and were adopted, not started again
        assert _effects(tmp_path)[("first", "item0")] == 1


def check_no_late_records(base: Path, env: dict[str, str]) -> None:
    """Stop a controller past its lease while another finishes; its late records are refused."""
    sleeper = _start(env, "-vv", "run")
    _wait_for(lambda: len(_effects(base)) >= 4, "the stopped controller to start its jobs")
    sleeper.send_signal(signal.SIGSTOP)
    try:
        code, _, err = _finish(_start(env, "run"))
        assert code == 0, err
        snapshot = {
            task: {path.name: path.read_bytes() for path in (base / f"done_{task}").glob("*.yaml")}
            for task in ("first", "second")
        }
        assert all(len(files) == 4 for files in snapshot.values())
    finally:
        sleeper.send_signal(signal.SIGCONT)
    code, out, err = _finish(sleeper)
    assert code == 0, err
    assert "leases expired" in err, err
    assert "left to another controller (this one's lease expired)" in out + err, out
    for task, files in snapshot.items():
        now = {path.name: path.read_bytes() for path in (base / f"done_{task}").glob("*.yaml")}
        assert now == files, f"the stopped controller rewrote {task}'s records"


def test_status_names_the_controller_that_holds_a_running_job(tmp_path: Path) -> None:
    env = _environment(tmp_path, "files", "function", jobs=2, sleep=6)
    runner = _start(env, "run")
    try:
        _wait_for(lambda: len(_effects(tmp_path)) >= 2, "both jobs to start")
        shown = subprocess.run(
            [sys.executable, str(SCRIPT), "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=True,
        )
        status = json.loads(shown.stdout)
        assert status["first"]["running"] == 2
        assert list(status["first"]["holders"].values()) == [2]
        assert next(iter(status["first"]["holders"])).endswith(f":{runner.pid}")
        why = subprocess.run(
            [sys.executable, str(SCRIPT), "why", "first", "item0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
        assert f"with pid {runner.pid}" in why.stdout, why.stdout + why.stderr
    finally:
        code, _, err = _finish(runner)
    assert code == 0, err


def test_without_leases_a_second_controller_says_another_one_runs(tmp_path: Path) -> None:
    """Without leases, a second controller warns on stderr and both still finish."""
    env = _environment(tmp_path, "none", "function", jobs=4, sleep=3, concurrency=2)
    first = _start(env, "run")
    _wait_for(lambda: len(_effects(tmp_path)) >= 2, "the first controller to start jobs")
    second = _start(env, "run")
    code, _, err = _finish(second)
    assert code == 0, err
    assert "another controller is running this pipeline: the controller on" in err, err
    assert f"with pid {first.pid}" in err
    code, _, err = _finish(first)
    assert code == 0, err
    assert len(_recorded(tmp_path, "second")) == 4
    assert not (tmp_path / "done_first" / ".controllers").exists()  # notes removed


@pytest.mark.backend
def test_no_job_starts_while_the_lease_repository_is_unreachable(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """Cut the way to the S3 lease store mid-run: launches stop, and resume when it returns."""
    address = urllib.parse.urlsplit(s3_server.endpoint_url)
    assert address.hostname is not None
    assert address.port is not None
    with tcp_proxy(address.hostname, address.port) as proxy:
        env = _environment(
            tmp_path,
            "s3",
            "function",
            jobs=30,
            sleep=0.3,
            seconds=3,
            concurrency=2,
            s3_endpoint=f"http://127.0.0.1:{proxy.port}",
            s3_key=s3_server.access_key,
            s3_secret=s3_server.secret_key,
            s3_bucket=unique_bucket_name(),
        )
        controller = _start(env, "-v", "run")
        _wait_for(lambda: sum(_effects(tmp_path).values()) >= 4, "the first jobs to start")
        proxy.cut()
        at_cut = sum(_effects(tmp_path).values())
        time.sleep(6)  # twice the lease: the controller's claims expire meanwhile
        during = sum(_effects(tmp_path).values()) - at_cut
        assert during <= 2, f"{during} jobs started without a claim"  # 2 were in flight
        assert controller.poll() is None, "the controller gave up"
        proxy.restore()
        code, _, err = _finish(controller)
    assert code == 0, err
    assert "leases expired" in err, err
    assert len(_recorded(tmp_path, "second")) == 30


def test_claims_on_files_are_not_synced_to_disk(tmp_path: Path) -> None:
    """Claims need not survive a crash of the machine: they skip the fsync of done records."""
    given = pydatatask.YamlMetadataFileRepository(tmp_path / "leases")
    assert given.durable
    leases = Leases(given, 30)
    assert isinstance(leases.repo, pydatatask.YamlMetadataFileRepository)
    assert not leases.repo.durable
    assert leases.repo.basedir == given.basedir
