"""An S3 repository answers for objects it wrote a moment ago from the write's response.

The output check after a job (``contains``) and the next job's provenance token then
cost no ``HeadObject`` each; after a few seconds, or a delete, they ask the server again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("aiobotocore")

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
