"""A controller running forever takes in new objects of an append-only S3 prefix at once.

With ``append_only=True`` it asks only for the keys after the greatest one it knows
(``StartAfter``); the poll interval of an hour means nothing here is found by a listing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import textwrap
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiobotocore")

import pydatatask
from pydatatask.repository import s3follow
from pydatatask.repository.base import Repository
from pydatatask.repository.s3 import S3BucketRepository, YamlMetadataS3Repository
from tests.forever import NEVER, PATIENCE, running_forever, until
from tests.servers.proxy import tcp_proxy
from tests.servers.s3 import S3Server, client_factory

pytestmark = pytest.mark.backend

FOLLOW_EVERY = 0.05
"""Seconds between requests for new keys: short, so the tests do not wait on it."""


class ListingCounter:
    """Note the prefix of every listing, full or after a key (``StartAfter``)."""

    def __init__(self) -> None:
        self.full: list[str] = []
        self.after: list[str] = []

    def attach(self, client: Any) -> None:
        listing = client.list_objects_v2

        async def counted(**request: Any) -> Any:
            if "StartAfter" in request:
                self.after.append(request["Prefix"])
            elif "ContinuationToken" not in request:
                self.full.append(request["Prefix"])
            return await listing(**request)

        client.list_objects_v2 = counted


def _session(
    server: S3Server, counter: ListingCounter | None = None, endpoint_url: str | None = None
) -> tuple[pydatatask.Session, Callable[[], Any]]:
    make = client_factory(server, endpoint_url=endpoint_url, connect_timeout=1, read_timeout=2)

    async def counted_client() -> AsyncIterator[Any]:
        async for client in make():
            if counter is not None:
                counter.attach(client)
            yield client

    session = pydatatask.Session()
    return session, session.resource(counted_client)


def _pipeline(
    client: Callable[[], Any],
    session: pydatatask.Session,
    bucket: str,
    ran: list[str] | None = None,
) -> tuple[pydatatask.Pipeline, dict[str, Any]]:
    """One stage over an append-only input; with ``ran``, the jobs it runs are noted
    there, and it runs with leases in the bucket so that several controllers share it."""
    repos: dict[str, Any] = {
        "readings": S3BucketRepository(
            client, f"{bucket}/readings/", ".txt", append_only=True, follow_every=FOLLOW_EVERY
        ),
        "shouts": S3BucketRepository(client, f"{bucket}/shouts/", ".txt"),
        "done": YamlMetadataS3Repository(client, f"{bucket}/done/"),
    }

    @pydatatask.task(
        done=repos["done"],
        inputs={"reading": repos["readings"]},
        outputs={"shout": repos["shouts"]},
    )
    async def shout(job: str, reading: str) -> str:
        if ran is not None:
            ran.append(job)
            await asyncio.sleep(0.01)  # long enough for another controller to try too
        return reading.upper()

    leases = None if ran is None else YamlMetadataS3Repository(client, f"{bucket}/claims/")
    pipeline = pydatatask.Pipeline([shout], session, leases=leases, lease_seconds=3)
    pipeline.poll_interval = NEVER
    return pipeline, repos


async def _put(client: Any, bucket: str, key: str, body: str) -> None:
    """Write an object as another program would: one plain ``PutObject``."""
    await client.put_object(Bucket=bucket, Key=key, Body=body.encode())


async def test_objects_added_after_the_greatest_key_are_run_without_a_listing(
    s3_server: S3Server, s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first objects were written a moment ago, so the follower would list them again
    # (from the first key, no StartAfter) for SETTLE_SECONDS; here they count as settled.
    monkeypatch.setattr(s3follow, "SETTLE_SECONDS", 0.0)
    counter = ListingCounter()
    session, client = _session(s3_server, counter)
    pipeline, repos = _pipeline(client, session, s3_bucket)
    await s3_client.create_bucket(Bucket=s3_bucket)
    for day in ("2026-12-01", "2026-12-02"):
        await _put(s3_client, s3_bucket, f"readings/{day}.txt", f"reading of {day}")
    async with pipeline:
        async with running_forever(pipeline):

            async def shouted(count: int) -> bool:
                return len(await repos["shouts"].ids()) == count

            await until(lambda: shouted(2), "the first two jobs")
            listed_at = pipeline.scheduler.last_refresh
            full_listings = len(counter.full)
            for day in ("2026-12-03", "2026-12-04", "2026-12-05"):
                await _put(s3_client, s3_bucket, f"readings/{day}.txt", f"reading of {day}")
            await until(lambda: shouted(5), "the three new objects")
            assert pipeline.scheduler.last_refresh == listed_at  # no full listing since
            assert "readings/" not in counter.full[full_listings:]
            assert "readings/" in counter.after
        assert await repos["shouts"].load("2026-12-05") == "READING OF 2026-12-05"
        assert (await repos["done"].info("2026-12-04"))["success"] is True


async def test_objects_uploaded_together_are_all_run_without_a_listing(
    s3_server: S3Server, s3_client: Any, s3_bucket: str
) -> None:
    """Forty uploads at once finish in any order; every one of them runs.

    The earlier a key sorts, the larger its object, so later keys tend to appear first."""
    session, client = _session(s3_server)
    pipeline, repos = _pipeline(client, session, s3_bucket)
    await s3_client.create_bucket(Bucket=s3_bucket)
    await _put(s3_client, s3_bucket, "readings/0000.txt", "before")
    days = [f"{number:04d}" for number in range(1, 41)]
    async with pipeline, running_forever(pipeline):
        await until(lambda: repos["shouts"].contains("0000"), "the first job")
        listed_at = pipeline.scheduler.last_refresh
        await asyncio.gather(
            *(
                _put(s3_client, s3_bucket, f"readings/{day}.txt", day * (50_000 - 1_000 * index))
                for index, day in enumerate(days)
            )
        )

        async def all_shouted() -> bool:
            return len(await repos["shouts"].contains_many(days)) == len(days)

        await until(all_shouted, "the forty uploads")
        assert pipeline.scheduler.last_refresh == listed_at  # found by the follower


def _followed_prefix(
    s3_server: S3Server, bucket: str
) -> tuple[pydatatask.Session, S3BucketRepository]:
    """An append-only repository of ``.txt`` objects under ``in/``, and its session."""
    session, client = _session(s3_server)
    repo = S3BucketRepository(
        client, f"{bucket}/in/", ".txt", append_only=True, follow_every=FOLLOW_EVERY
    )
    return session, repo


async def _listening(repo: Repository, stop: asyncio.Event) -> AsyncIterator[set[str]]:
    follow = repo._changes()
    assert follow is not None
    changes = follow(stop)
    assert await asyncio.wait_for(anext(changes), PATIENCE) == set()  # it listens
    return changes


async def _named_until(changes: AsyncIterator[set[str]], wanted: set[str]) -> set[str]:
    """Gather the ids the follower names until ``wanted`` are among them."""
    named: set[str] = set()
    while not wanted <= named:
        named |= await asyncio.wait_for(anext(changes), PATIENCE)
    return named


async def test_a_key_out_of_order_beyond_the_settling_time_is_left_to_listings(
    s3_server: S3Server, s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no time to settle, only keys after the greatest one listed are named; other
    suffixes and subfolders are never ids."""
    monkeypatch.setattr(s3follow, "SETTLE_SECONDS", 0.0)
    session, repo = _followed_prefix(s3_server, s3_bucket)
    async with session:
        await repo.validate()
        await repo.save("b", "first")
        assert repo._listed is None  # no listing yet
        assert await repo.ids() == {"b"}
        assert repo._listed is not None
        assert (repo._listed.settled, repo._listed.greatest) == ("in/b.txt", "in/b.txt")
        stop = asyncio.Event()
        changes = await _listening(repo, stop)
        await _put(s3_client, s3_bucket, "in/a.txt", "out of order")
        await _put(s3_client, s3_bucket, "in/c.txt", "new")
        await _put(s3_client, s3_bucket, "in/d.json", "another suffix")
        await _put(s3_client, s3_bucket, "in/e/f.txt", "in a subfolder")
        assert await asyncio.wait_for(anext(changes), PATIENCE) == {"c"}
        await _put(s3_client, s3_bucket, "in/f.txt", "newer")
        assert await asyncio.wait_for(anext(changes), PATIENCE) == {"f"}
        stop.set()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(changes), PATIENCE)


async def test_a_key_that_appears_a_moment_after_a_later_one_is_still_named(
    s3_server: S3Server, s3_client: Any, s3_bucket: str
) -> None:
    """Concurrent uploads finish out of key order; each id is named once all the same."""
    session, repo = _followed_prefix(s3_server, s3_bucket)
    async with session:
        await repo.validate()
        await _put(s3_client, s3_bucket, "in/day-1.txt", "old")
        assert await repo.ids() == {"day-1"}
        stop = asyncio.Event()
        changes = await _listening(repo, stop)
        await _put(s3_client, s3_bucket, "in/day-3.txt", "finished first")
        assert "day-3" in await _named_until(changes, {"day-3"})
        await _put(s3_client, s3_bucket, "in/day-2.txt", "finished a moment later")
        assert await _named_until(changes, {"day-2"}) == {"day-2"}
        stop.set()


async def test_uploads_under_way_while_the_controller_lists_are_named(
    s3_server: S3Server, s3_client: Any, s3_bucket: str
) -> None:
    """The first mark stops before the keys written in the last seconds."""
    session, repo = _followed_prefix(s3_server, s3_bucket)
    async with session:
        await repo.validate()
        await _put(s3_client, s3_bucket, "in/b.txt", "just written")
        assert await repo.ids() == {"b"}
        assert repo._listed is not None
        assert (repo._listed.settled, repo._listed.greatest) == ("", "in/b.txt")
        stop = asyncio.Event()
        changes = await _listening(repo, stop)
        await _put(s3_client, s3_bucket, "in/a.txt", "its upload ended after the listing")
        assert "a" in await _named_until(changes, {"a"})
        stop.set()


async def test_only_append_only_repositories_are_followed(s3_server: S3Server) -> None:
    _, client = _session(s3_server)
    assert S3BucketRepository(client, "b/")._changes() is None
    assert YamlMetadataS3Repository(client, "b/", append_only=True)._changes() is not None


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), "soon", None, True])
def test_follow_every_must_be_a_positive_number(s3_server: S3Server, seconds: Any) -> None:
    _, client = _session(s3_server)
    with pytest.raises(pydatatask.ConfigurationError, match="follow_every must be a positive"):
        S3BucketRepository(client, "b/", append_only=True, follow_every=seconds)


async def test_the_follower_outlasts_an_unreachable_store(
    s3_server: S3Server, s3_client: Any, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """While the store cannot be reached it says so once, and it resumes when it returns."""
    address = urllib.parse.urlsplit(s3_server.endpoint_url)
    assert address.hostname is not None
    assert address.port is not None
    await s3_client.create_bucket(Bucket=s3_bucket)
    await _put(s3_client, s3_bucket, "in/0001.txt", "first")
    with tcp_proxy(address.hostname, address.port) as proxy:
        session, client = _session(s3_server, endpoint_url=f"http://127.0.0.1:{proxy.port}")
        repo = S3BucketRepository(
            client, f"{s3_bucket}/in/", ".txt", append_only=True, follow_every=FOLLOW_EVERY
        )
        async with session:
            assert await repo.ids() == {"0001"}
            stop = asyncio.Event()
            changes = await _listening(repo, stop)
            proxy.cut()
            await _put(s3_client, s3_bucket, "in/0002.txt", "while cut")
            with caplog.at_level(logging.INFO, logger="pydatatask.repository.s3follow"):
                waiting = asyncio.ensure_future(anext(changes))
                await until(lambda: "cannot look for new objects" in caplog.text, "the warning")
                await asyncio.sleep(20 * FOLLOW_EVERY)  # several more failed requests
                assert not waiting.done()
                proxy.restore()
                assert "0002" in await asyncio.wait_for(waiting, PATIENCE)
            assert caplog.text.count("cannot look for new objects") == 1
            assert "looking for new objects again" in caplog.text
            stop.set()


PIPELINE_FILE = textwrap.dedent(
    """
    resources:
      store: {kind: s3, endpoint_url: "${S3_ENDPOINT}", access_key: "${S3_KEY}",
              secret_key: "${S3_SECRET}"}
    repositories:
      readings: {kind: s3, resource: store, bucket: "${BUCKET}/readings/", suffix: .txt,
                 append_only: true, follow_every: 0.1}
      shouts: {kind: s3, resource: store, bucket: "${BUCKET}/shouts/", suffix: .txt}
      done: {kind: yaml-s3, resource: store, bucket: "${BUCKET}/done/"}
    tasks:
      shout:
        function: steps:shout
        inputs: {reading: readings}
        outputs: {shout: shouts}
        done: done
    """
)


async def _start_controller(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> asyncio.subprocess.Process:
    """Start ``pydatatask -f pipeline.yaml run --forever --poll 3600`` over the bucket."""
    (tmp_path / "pipeline.yaml").write_text(PIPELINE_FILE)
    (tmp_path / "steps.py").write_text("def shout(reading):\n    return reading.upper()\n")
    settings = {
        "S3_ENDPOINT": s3_server.endpoint_url,
        "S3_KEY": s3_server.access_key,
        "S3_SECRET": s3_server.secret_key,
        "BUCKET": s3_bucket,
    }
    command = [sys.executable, "-m", "pydatatask", "-f", str(tmp_path / "pipeline.yaml")]
    for name, value in settings.items():
        command += ["--set", f"{name}={value}"]
    return await asyncio.create_subprocess_exec(
        *command,
        "run",
        "--forever",
        "--poll",
        str(NEVER),
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _stop_controller(controller: asyncio.subprocess.Process) -> bytes:
    """Stop the controller as Ctrl-C does (SIGKILL if it lingers); return what it printed."""
    controller.send_signal(signal.SIGINT)
    try:
        _, errors = await asyncio.wait_for(controller.communicate(), PATIENCE)
    except TimeoutError:
        controller.kill()
        _, errors = await controller.communicate()
    return errors


async def _shouts(s3_client: Any, bucket: str) -> set[str]:
    found = await s3_client.list_objects_v2(Bucket=bucket, Prefix="shouts/")
    return {entry["Key"].removeprefix("shouts/") for entry in found.get("Contents", ())}


async def test_run_forever_from_a_pipeline_file_takes_in_new_objects(
    tmp_path: Path, s3_server: S3Server, s3_client: Any, s3_bucket: str
) -> None:
    """``pydatatask -f pipeline.yaml run --forever --poll 3600`` runs each new object."""
    await s3_client.create_bucket(Bucket=s3_bucket)
    await _put(s3_client, s3_bucket, "readings/0001.txt", "first")
    controller = await _start_controller(tmp_path, s3_server, s3_bucket)
    try:

        async def shouted(job: str) -> bool:
            assert controller.returncode is None, "the controller ended"
            found = await s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=f"shouts/{job}")
            return bool(found.get("Contents"))

        await until(lambda: shouted("0001"), "the first job")
        await _put(s3_client, s3_bucket, "readings/0002.txt", "second")
        await until(lambda: shouted("0002"), "the new object")
        body = await s3_client.get_object(Bucket=s3_bucket, Key="shouts/0002.txt")
        assert await body["Body"].read() == b"SECOND"
    finally:
        errors = await _stop_controller(controller)
    assert b"Traceback" not in errors


async def test_a_controller_killed_while_uploads_arrive_finishes_them_after_a_restart(
    tmp_path: Path, s3_server: S3Server, s3_client: Any, s3_bucket: str
) -> None:
    """kill -9 while objects arrive together, more arrive while it is down: all are run."""
    await s3_client.create_bucket(Bucket=s3_bucket)
    await _put(s3_client, s3_bucket, "readings/0000.txt", "reading 0000")
    days = [f"{number:04d}" for number in range(61)]

    async def upload(chosen: list[str]) -> None:
        await asyncio.gather(
            *(_put(s3_client, s3_bucket, f"readings/{day}.txt", f"reading {day}") for day in chosen)
        )

    controller = await _start_controller(tmp_path, s3_server, s3_bucket)
    try:

        async def shouted_more_than(count: int) -> bool:
            assert controller.returncode is None, "the controller ended"
            return len(await _shouts(s3_client, s3_bucket)) > count

        await until(lambda: shouted_more_than(0), "the first job")  # it follows the prefix
        await upload(days[1:31])
        await until(lambda: shouted_more_than(1), "a job of the uploads")
    finally:
        controller.kill()  # SIGKILL: no clean-up
        await controller.wait()
    await upload(days[31:])
    restarted = await _start_controller(tmp_path, s3_server, s3_bucket)
    try:

        async def all_shouted() -> bool:
            assert restarted.returncode is None, "the controller ended"
            return await _shouts(s3_client, s3_bucket) == {f"{day}.txt" for day in days}

        await until(all_shouted, "all sixty-one objects")
        body = await s3_client.get_object(Bucket=s3_bucket, Key="shouts/0017.txt")
        assert await body["Body"].read() == b"READING 0017"
    finally:
        errors = await _stop_controller(restarted)
    assert b"Traceback" not in errors
    done = await s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="done/")
    assert len(done.get("Contents", ())) == len(days)


async def test_an_append_only_dataset_names_each_new_partition(
    s3_server: S3Server, s3_client: Any, s3_bucket: str
) -> None:
    """Partitions are dates: the keys after the newest one are the new days."""
    session, client = _session(s3_server)
    dataset = pydatatask.S3HiveDatasetRepository(
        client, s3_bucket, "sales", append_only=True, follow_every=FOLLOW_EVERY
    )
    async with session:
        await dataset.validate()
        await dataset.save("2026-12-01", [{"day": 1, "total": 10}])
        assert await dataset.ids() == {"2026-12-01"}
        stop = asyncio.Event()
        changes = await _listening(dataset, stop)
        key = "dataset=sales/rundate=2026-12-02/data.csv"
        await _put(s3_client, s3_bucket, key, "day,total\n2,20\n")
        assert "2026-12-02" in await _named_until(changes, {"2026-12-02"})
        stop.set()


async def test_two_controllers_with_leases_run_each_new_object_once(
    s3_server: S3Server, s3_client: Any, s3_bucket: str
) -> None:
    """Both controllers find every new key; the leases let only one of them run it."""
    ran: list[str] = []
    await s3_client.create_bucket(Bucket=s3_bucket)
    await _put(s3_client, s3_bucket, "readings/0000.txt", "before")
    first_session, first_client = _session(s3_server)
    second_session, second_client = _session(s3_server)
    first, repos = _pipeline(first_client, first_session, s3_bucket, ran)
    second, _ = _pipeline(second_client, second_session, s3_bucket, ran)
    async with first, second, running_forever(first), running_forever(second):

        async def shouted(count: int) -> bool:
            return len(await repos["shouts"].ids()) == count

        await until(lambda: shouted(1), "the first job")
        for number in range(1, 21):
            await _put(s3_client, s3_bucket, f"readings/{number:04d}.txt", f"reading {number}")
        await until(lambda: shouted(21), "the 20 new objects")
        await until(lambda: not first.scheduler.has_work(), "the first controller to settle")
        await until(lambda: not second.scheduler.has_work(), "the second controller to settle")
        assert await repos["shouts"].load("0007") == "READING 7"
    assert sorted(ran) == [f"{number:04d}" for number in range(21)]  # each exactly once
