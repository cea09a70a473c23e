"""An S3 repository answers for objects it wrote or listed a moment ago without a request.

The output check after a job (``contains``) and the next job's provenance token then
cost no ``HeadObject`` each; after a few seconds, or a delete, they ask the server again.
A listing's ETags serve as starting jobs' provenance tokens too, never as an answer to
``contains`` or to a check for stale jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("aiobotocore")

import pydatatask
from pydatatask.repository import s3recent
from pydatatask.repository.s3 import S3BucketRepository, YamlMetadataS3Repository
from tests.servers.s3 import S3Server
from tests.test_s3 import opened

pytestmark = pytest.mark.backend


class Requests:
    """Count the requests a client sends, by operation."""

    def __init__(self, client: Any) -> None:
        self.sent: list[str] = []
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str, **kwargs: Any) -> None:
        self.sent.append(event_name.rsplit(".", 1)[-1])

    def heads(self) -> int:
        return self.sent.count("HeadObject")


def _blobs(bucket: str, prefix: str) -> Callable[[Callable[[], Any]], S3BucketRepository]:
    return lambda client: S3BucketRepository(client, bucket, ".txt", prefix=prefix)


async def test_a_fresh_write_answers_contains_and_tokens_without_a_head(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    requests = Requests(s3_client)
    make = _blobs(s3_shared_bucket, s3_prefix)
    async with opened(s3_server, make, shared=s3_client) as repo:
        for job in ("a", "b"):
            async with await repo.open(job, "w") as writer:
                await writer.write(f"value of {job}")
        before = requests.heads()
        assert await repo.contains_many(["a", "b", "absent"]) == {"a", "b"}
        tokens = await repo.tokens(["a", "b"])
        assert requests.heads() - before == 1  # "absent" alone was asked for
    async with opened(s3_server, make, validate=False) as fresh:
        assert await fresh.tokens(["a", "b"]) == tokens  # what a HEAD says


async def test_after_a_while_or_a_delete_the_server_is_asked_again(
    s3_server: S3Server,
    s3_shared_bucket: str,
    s3_prefix: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests = Requests(s3_client)
    async with opened(s3_server, _blobs(s3_shared_bucket, s3_prefix), shared=s3_client) as repo:
        await repo.save("kept", "kept")
        await repo.save("gone", "gone")
        await repo.delete("gone")
        before = requests.heads()
        assert await repo.contains_many(["kept", "gone"]) == {"kept"}
        assert requests.heads() - before == 1  # the deleted one was asked for
        monkeypatch.setattr(s3recent, "RECENT_SECONDS", 0.0)
        assert await repo.contains("kept")
        assert requests.heads() - before == 2


async def test_yaml_dumps_and_creates_are_remembered_too(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    requests = Requests(s3_client)

    def make(client: Callable[[], Any]) -> YamlMetadataS3Repository:
        return YamlMetadataS3Repository(client, s3_shared_bucket, prefix=s3_prefix)

    async with opened(s3_server, make, shared=s3_client) as repo:
        assert isinstance(repo, YamlMetadataS3Repository)
        await repo.dump("dumped", {"n": 1})
        assert await repo.create("created", {"n": 2})
        assert not await repo.create("created", {"n": 3})  # lost: its entry stays right
        before = requests.heads()
        tokens = await repo.tokens(["dumped", "created"])
        assert requests.heads() == before
    async with opened(s3_server, make, validate=False) as fresh:
        assert await fresh.tokens(["dumped", "created"]) == tokens
        assert await fresh.info("created") == {"n": 2}


async def _put_elsewhere(client: Any, bucket: str, key: str, body: str) -> str:
    """Write an object as another program would, and return its ETag."""
    written = await client.put_object(Bucket=bucket, Key=key, Body=body.encode())
    return str(written["ETag"]).strip('"')


async def test_a_listing_remembers_the_tokens_of_what_it_listed(
    s3_server: S3Server,
    s3_shared_bucket: str,
    s3_prefix: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests = Requests(s3_client)
    etags = {
        job: await _put_elsewhere(s3_client, s3_shared_bucket, f"{s3_prefix}{job}.txt", job)
        for job in ("a", "b")
    }
    async with opened(s3_server, _blobs(s3_shared_bucket, s3_prefix), shared=s3_client) as repo:
        assert repo.remembered_token("a") is None
        assert {job async for job in repo} == {"a", "b"}
        assert {job: repo.remembered_token(job) for job in ("a", "b")} == etags
        before = requests.heads()
        assert await repo.contains_many(["a", "b"]) == {"a", "b"}
        assert requests.heads() - before == 2  # a listing never answers for presence

        changed = await _put_elsewhere(
            s3_client, s3_shared_bucket, f"{s3_prefix}a.txt", "changed by another program"
        )
        assert repo.remembered_token("a") == etags["a"]  # the safe side: its job reads stale
        assert await repo.tokens(["a"]) == {"a": changed}  # what stale checks ask: current
        monkeypatch.setattr(s3recent, "LISTED_SECONDS", 0.0)
        assert repo.remembered_token("a") is None


async def test_a_write_or_delete_through_the_repository_replaces_a_listed_token(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    for job in ("rewritten", "deleted"):
        await _put_elsewhere(s3_client, s3_shared_bucket, f"{s3_prefix}{job}.txt", "old")
    async with opened(s3_server, _blobs(s3_shared_bucket, s3_prefix), shared=s3_client) as repo:
        assert {job async for job in repo} == {"rewritten", "deleted"}
        await repo.save("rewritten", "new value")
        await repo.delete("deleted")
        remembered = {job: repo.remembered_token(job) for job in ("rewritten", "deleted")}
    async with opened(s3_server, _blobs(s3_shared_bucket, s3_prefix), validate=False) as fresh:
        current = await fresh.tokens(["rewritten", "deleted"])
    assert remembered == {"rewritten": current["rewritten"], "deleted": None}


def test_listed_tokens_are_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3recent, "LISTED_LIMIT", 2)
    recent = s3recent.RecentETags()
    recent.note_listed([{"Key": "k1", "ETag": '"e1"'}, {"Key": "k2", "ETag": '"e2"'}])
    recent.note_listed([{"Key": "k1", "ETag": '"e1b"'}, {"Key": "k3", "ETag": '"e3"'}])
    assert [recent.token(key) for key in ("k1", "k2", "k3")] == ["e1b", None, "e3"]
    assert recent.get("k1") is None  # listed entries say nothing of presence


async def test_a_pipeline_over_inputs_written_elsewhere_asks_no_head_for_tokens(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    """The first stage's provenance tokens come from the listing that found its jobs."""
    requests = Requests(s3_client)
    etags = {
        f"book{n}": await _put_elsewhere(
            s3_client, s3_shared_bucket, f"{s3_prefix}in/book{n}.txt", f"text {n}"
        )
        for n in range(6)
    }
    session = pydatatask.Session()

    @session.resource
    async def client() -> Any:
        yield s3_client

    books = S3BucketRepository(client, s3_shared_bucket, ".txt", prefix=f"{s3_prefix}in/")
    shouts = S3BucketRepository(client, s3_shared_bucket, ".txt", prefix=f"{s3_prefix}out/")
    done = pydatatask.InProcessMetadataRepository()

    @pydatatask.task(done=done, inputs={"book": books}, outputs={"shout": shouts})
    def shout(book: bytes) -> bytes:
        return book.upper()

    pipeline = pydatatask.Pipeline([shout], session)
    async with pipeline:
        await pydatatask.run(pipeline)
    assert requests.heads() == 0
    assert {job: record["provenance"]["inputs"]["book"] for job, record in done.data.items()} == (
        etags
    )
    assert all(record["success"] for record in done.data.values())
