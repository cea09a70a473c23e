"""S3 repositories against a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
import pytest_asyncio

pytest.importorskip("aiobotocore")

import pydatatask
from pydatatask import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    LifecycleError,
    MissingDependencyError,
    UnstorableValueError,
)
from pydatatask.repository.s3 import (
    MIN_PART_SIZE,
    S3BucketRepository,
    YamlMetadataS3Repository,
)
from pydatatask.testing.repositories import BlobRepositoryContract, MetadataRepositoryContract
from tests.servers.processes import free_loopback_ports
from tests.servers.s3 import S3Server, client_factory

pytestmark = pytest.mark.backend

MiB = 1 << 20
Factory = Callable[[Callable[[], Any]], S3BucketRepository]


@contextlib.asynccontextmanager
async def opened(
    server: S3Server, make: Factory, *, validate: bool = True, **client: Any
) -> AsyncIterator[S3BucketRepository]:
    """Build a repository over a session resource yielding a client, and open it.

    With ``shared=client`` the resource yields that client instead of making a new one.
    """
    shared = client.pop("shared", None)

    async def reuse() -> AsyncIterator[Any]:
        yield shared

    session = pydatatask.Session()
    accessor = session.resource(reuse if shared is not None else client_factory(server, **client))
    repo = make(accessor)
    async with session:
        if validate:
            await repo.validate()
        yield repo


# --- the shared contracts ---------------------------------------------------------------


class TestS3BucketRepository(BlobRepositoryContract):
    """A whole fresh bucket, no suffix."""

    missing_info_has_default = True  # where the object would be, as in 0.4

    @pytest_asyncio.fixture(loop_scope="function")
    async def repo(
        self, s3_server: S3Server, s3_bucket: str, s3_client: Any
    ) -> AsyncIterator[S3BucketRepository]:
        def make(client: Callable[[], Any]) -> S3BucketRepository:
            return S3BucketRepository(client, f"{s3_bucket}/")

        async with opened(s3_server, make, shared=s3_client) as repo:
            yield repo


class TestS3BucketRepositoryWithSuffix(BlobRepositoryContract):
    """A suffix, and a key prefix given by keyword."""

    missing_info_has_default = True

    @pytest_asyncio.fixture(loop_scope="function")
    async def repo(
        self, s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
    ) -> AsyncIterator[S3BucketRepository]:
        def make(client: Callable[[], Any]) -> S3BucketRepository:
            return S3BucketRepository(client, s3_shared_bucket, ".txt", prefix=s3_prefix)

        async with opened(s3_server, make, shared=s3_client) as repo:
            yield repo


class TestS3BucketRepositoryWithBucketPrefix(BlobRepositoryContract):
    """A key prefix given in the bucket argument, extended by keyword."""

    missing_info_has_default = True

    @pytest_asyncio.fixture(loop_scope="function")
    async def repo(
        self, s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
    ) -> AsyncIterator[S3BucketRepository]:
        def make(client: Callable[[], Any]) -> S3BucketRepository:
            return S3BucketRepository(
                client, f"{s3_shared_bucket}/{s3_prefix}", ".bin", prefix="nested-"
            )

        async with opened(s3_server, make, shared=s3_client) as repo:
            assert repo.bucket == s3_shared_bucket
            assert repo.prefix == f"{s3_prefix}nested-"
            yield repo


class TestYamlMetadataS3Repository(MetadataRepositoryContract):
    @pytest_asyncio.fixture(loop_scope="function")
    async def repo(
        self, s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
    ) -> AsyncIterator[YamlMetadataS3Repository]:
        def make(client: Callable[[], Any]) -> YamlMetadataS3Repository:
            return YamlMetadataS3Repository(client, f"{s3_shared_bucket}/{s3_prefix}")

        async with opened(s3_server, make, shared=s3_client) as repo:
            assert isinstance(repo, YamlMetadataS3Repository)
            yield repo


# --- fixtures for the tests below ----------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="function")
async def shared_repo(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> AsyncIterator[S3BucketRepository]:
    def make(client: Callable[[], Any]) -> S3BucketRepository:
        return S3BucketRepository(
            client, f"{s3_shared_bucket}/{s3_prefix}", part_size=MIN_PART_SIZE
        )

    async with opened(s3_server, make, shared=s3_client) as repo:
        yield repo


async def pending_uploads(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    response = await client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return list(response.get("Uploads", ()))


def pattern(size: int) -> bytes:
    """Bytes that differ from part to part, so a misplaced part is noticed."""
    block = hashlib.sha256(str(size).encode()).digest() * (MiB // 32)
    return b"".join(bytes([index % 251]) + block[1:] for index in range(size // MiB)) + (
        b"t" * (size % MiB)
    )


# --- listing -----------------------------------------------------------------------------


async def test_listing_pages_through_many_keys(
    shared_repo: S3BucketRepository, s3_client: Any
) -> None:
    expected = {f"job-{index:05d}" for index in range(1500)}
    limit = asyncio.Semaphore(32)

    async def put(job: str) -> None:
        async with limit:
            await s3_client.put_object(
                Bucket=shared_repo.bucket, Key=shared_repo.object_key(job), Body=b"x"
            )

    await asyncio.gather(*(put(job) for job in expected))
    listed = [job async for job in shared_repo]
    assert len(listed) == 1500  # more than one page of 1,000
    assert set(listed) == expected
    assert await shared_repo.ids() == expected
    assert set(await shared_repo.info_all()) == expected


async def test_subfolders_and_other_suffixes_are_not_listed(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    for key in [
        "a.txt",
        "b.txt",
        "sub/c.txt",
        "sub/deeper/d.txt",
        "e.bin",
        "f",
        ".txt",
        "",  # a folder marker for the prefix itself
    ]:
        await s3_client.put_object(Bucket=s3_shared_bucket, Key=f"{s3_prefix}{key}", Body=b"1")
    await s3_client.put_object(
        Bucket=s3_shared_bucket, Key=f"elsewhere-{s3_prefix}g.txt", Body=b"1"
    )
    try:

        def with_suffix(client: Callable[[], Any]) -> S3BucketRepository:
            return S3BucketRepository(client, s3_shared_bucket, ".txt", prefix=s3_prefix)

        def without_suffix(client: Callable[[], Any]) -> S3BucketRepository:
            return S3BucketRepository(client, f"{s3_shared_bucket}/{s3_prefix}")

        async with opened(s3_server, with_suffix, shared=s3_client) as repo:
            assert await repo.ids() == {"a", "b"}
            assert not await repo.contains("e")
            assert set(await repo.info_all()) == {"a", "b"}
        async with opened(s3_server, without_suffix, shared=s3_client) as repo:
            assert await repo.ids() == {"a.txt", "b.txt", "e.bin", "f", ".txt"}
            assert not await repo.contains("sub")
    finally:
        await s3_client.delete_object(Bucket=s3_shared_bucket, Key=f"elsewhere-{s3_prefix}g.txt")


# --- streaming writes --------------------------------------------------------------------


async def test_large_value_uses_multipart_in_bounded_memory(
    shared_repo: S3BucketRepository, s3_client: Any
) -> None:
    data = pattern(2 * MIN_PART_SIZE + 3 * MiB)  # three parts, the last one short
    key = shared_repo.object_key("big")
    writer = await shared_repo.open("big", "wb")
    for start in range(0, len(data), 3 * MiB):
        await writer.write(data[start : start + 3 * MiB])
    # Two full parts are already on the server; nothing is visible yet.
    [upload] = await pending_uploads(s3_client, shared_repo.bucket, key)
    parts = await s3_client.list_parts(
        Bucket=shared_repo.bucket, Key=key, UploadId=upload["UploadId"]
    )
    assert [part["Size"] for part in parts["Parts"]] == [MIN_PART_SIZE, MIN_PART_SIZE]
    assert not await shared_repo.contains("big")
    await writer.close()

    assert writer.max_buffered <= MIN_PART_SIZE  # type: ignore[attr-defined]
    assert writer.parts_uploaded == 3  # type: ignore[attr-defined]
    head = await s3_client.head_object(Bucket=shared_repo.bucket, Key=key)
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentType"] == "application/octet-stream"
    assert await pending_uploads(s3_client, shared_repo.bucket, key) == []
    digest = hashlib.sha256()
    async with await shared_repo.open("big", "rb") as reader:
        while chunk := await reader.read(MiB):
            assert len(chunk) <= MiB
            digest.update(chunk)
    assert digest.digest() == hashlib.sha256(data).digest()


async def test_small_value_is_one_put_with_the_mimetype(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    def make(client: Callable[[], Any]) -> S3BucketRepository:
        return S3BucketRepository(
            client, s3_shared_bucket, ".txt", prefix=s3_prefix, mimetype="text/plain"
        )

    async with opened(s3_server, make, shared=s3_client) as repo:
        writer = await repo.open("note", "w")
        await writer.write("hello")
        await writer.close()
        assert writer.raw.parts_uploaded == 0  # type: ignore[attr-defined]
        head = await s3_client.head_object(Bucket=s3_shared_bucket, Key=f"{s3_prefix}note.txt")
        assert head["ContentType"] == "text/plain"
        assert head["ContentLength"] == 5
        assert await pending_uploads(s3_client, s3_shared_bucket, s3_prefix) == []


async def test_failed_multipart_writer_aborts_the_upload(
    shared_repo: S3BucketRepository, s3_client: Any
) -> None:
    key = shared_repo.object_key("doomed")
    with pytest.raises(RuntimeError, match="boom"):
        async with await shared_repo.open("doomed", "wb") as writer:
            await writer.write(b"x" * (MIN_PART_SIZE + MiB))
            assert len(await pending_uploads(s3_client, shared_repo.bucket, key)) == 1
            raise RuntimeError("boom")
    assert not await shared_repo.contains("doomed")
    assert await pending_uploads(s3_client, shared_repo.bucket, key) == []


async def test_cancelled_multipart_writer_aborts_the_upload(
    shared_repo: S3BucketRepository, s3_client: Any
) -> None:
    key = shared_repo.object_key("cancelled")
    started = asyncio.Event()

    async def slow_writer() -> None:
        async with await shared_repo.open("cancelled", "wb") as writer:
            await writer.write(b"y" * (MIN_PART_SIZE + MiB))
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(slow_writer())
    await started.wait()
    assert len(await pending_uploads(s3_client, shared_repo.bucket, key)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await shared_repo.contains("cancelled")
    assert await pending_uploads(s3_client, shared_repo.bucket, key) == []


class SlowToAnswerClient:
    """Delegates to a real client, but answers CreateMultipartUpload late."""

    def __init__(self, client: Any, created: asyncio.Event) -> None:
        self._client = client
        self._created = created

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def create_multipart_upload(self, **request: Any) -> Any:
        response = await self._client.create_multipart_upload(**request)
        self._created.set()
        await asyncio.sleep(0.2)  # the upload exists on the server; the answer is in flight
        return response


async def test_cancel_while_starting_the_upload_leaves_nothing(
    s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    created = asyncio.Event()
    slow = SlowToAnswerClient(s3_client, created)
    repo = S3BucketRepository(
        lambda: slow, s3_shared_bucket, prefix=s3_prefix, part_size=MIN_PART_SIZE
    )

    async def writer() -> None:
        async with await repo.open("starting", "wb") as stream:
            await stream.write(b"s" * MIN_PART_SIZE)

    task = asyncio.create_task(writer())
    await created.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pending_uploads(s3_client, s3_shared_bucket, s3_prefix) == []
    assert not await repo.contains("starting")


async def test_explicit_abort_after_parts_leaves_nothing(
    shared_repo: S3BucketRepository, s3_client: Any
) -> None:
    writer = await shared_repo.open("aborted", "wb")
    await writer.write(b"z" * MIN_PART_SIZE)
    await writer.abort()
    assert not await shared_repo.contains("aborted")
    assert await pending_uploads(s3_client, shared_repo.bucket, shared_repo.prefix) == []


# --- validate, credentials, reachability -------------------------------------------------


async def test_validate_creates_a_missing_bucket(
    s3_server: S3Server, s3_bucket: str, s3_client: Any
) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        await s3_client.head_bucket(Bucket=s3_bucket)
    make: Factory = lambda client: S3BucketRepository(client, s3_bucket)  # noqa: E731
    async with opened(s3_server, make, shared=s3_client) as repo:
        await s3_client.head_bucket(Bucket=s3_bucket)
        await asyncio.gather(repo.validate(), repo.validate())  # existing bucket: no error
        assert await repo.ids() == set()


async def test_missing_bucket_without_validate_is_a_clear_error(
    s3_server: S3Server, s3_bucket: str, s3_client: Any
) -> None:
    make: Factory = lambda client: S3BucketRepository(client, s3_bucket)  # noqa: E731
    async with opened(s3_server, make, validate=False, shared=s3_client) as repo:
        with pytest.raises(BackendError, match="does not exist") as caught:
            await repo.ids()
        assert s3_bucket in str(caught.value)


@pytest.mark.parametrize(
    ("credentials", "problem"),
    [
        ({"secret_key": "wrong-secret"}, "SignatureDoesNotMatch"),
        ({"access_key": "nobody"}, "InvalidAccessKeyId"),
    ],
)
async def test_wrong_credentials_fail_validate_clearly(
    s3_server: S3Server,
    s3_shared_bucket: str,
    credentials: dict[str, str],
    problem: str,
) -> None:
    make: Factory = lambda client: S3BucketRepository(client, s3_shared_bucket)  # noqa: E731
    async with opened(s3_server, make, validate=False, **credentials) as repo:
        with pytest.raises(BackendError, match=problem) as caught:
            await repo.validate()
        assert not isinstance(caught.value, BackendUnavailableError)
        assert s3_shared_bucket in str(caught.value)
        assert caught.value.__cause__ is not None
        with pytest.raises(BackendError, match=problem):
            await repo.ids()


async def test_unreachable_endpoint_fails_quickly(s3_server: S3Server, s3_bucket: str) -> None:
    [port] = free_loopback_ports(1)  # closed again: nothing listens there
    endpoint = f"http://127.0.0.1:{port}"
    make: Factory = lambda client: S3BucketRepository(client, s3_bucket)  # noqa: E731
    async with opened(
        s3_server,
        make,
        validate=False,
        endpoint_url=endpoint,
        connect_timeout=1,
        read_timeout=1,
        retries={"total_max_attempts": 1, "mode": "standard"},
    ) as repo:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=endpoint) as caught:
            await repo.validate()
        assert time.monotonic() - started < 30  # bounded well below the client's 60 s default
        assert isinstance(caught.value, ConnectionError)
        with pytest.raises(BackendUnavailableError):
            await repo.contains("job")


async def test_silent_endpoint_times_out(s3_server: S3Server, s3_bucket: str) -> None:
    # A socket that accepts connections (in its backlog) but never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        make: Factory = lambda client: S3BucketRepository(client, s3_bucket)  # noqa: E731
        async with opened(
            s3_server,
            make,
            validate=False,
            endpoint_url=endpoint,
            connect_timeout=1,
            read_timeout=1,
            retries={"total_max_attempts": 1, "mode": "standard"},
        ) as repo:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match=endpoint):
                await repo.validate()
            assert time.monotonic() - started < 30  # bounded well below the client's 60 s default


# --- info, accessor, configuration ---------------------------------------------------------


async def test_info_describes_where_the_object_is(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    def make(client: Callable[[], Any]) -> S3BucketRepository:
        return S3BucketRepository(
            client,
            f"{s3_shared_bucket}/{s3_prefix}",
            ".txt",
            incluster_endpoint="http://s3.storage.svc:8333",
        )

    async with opened(s3_server, make, shared=s3_client) as repo:
        async with await repo.open("my book", "w") as writer:
            await writer.write("text")
        key = f"{s3_prefix}my book.txt"
        info = await repo.info("my book")
        assert info == {
            "bucket": s3_shared_bucket,
            "key": key,
            "uri": f"s3://{s3_shared_bucket}/{key}",
            "endpoint": s3_server.endpoint_url,
            "url": f"{s3_server.endpoint_url}/{s3_shared_bucket}/{s3_prefix}my%20book.txt",
            "size": 4,
            "incluster_endpoint": "http://s3.storage.svc:8333",
            "incluster_url": f"http://s3.storage.svc:8333/{s3_shared_bucket}/{s3_prefix}my%20book.txt",
        }
        assert await repo.info_all() == {"my book": info}
        absent = await repo.info("absent")  # where it would be: an output named beforehand
        assert str(absent) == f"s3://{s3_shared_bucket}/{s3_prefix}absent.txt"
        assert absent.size is None
        assert "size" not in absent


async def test_client_is_fetched_on_every_use(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str
) -> None:
    session = pydatatask.Session()
    accessor = session.resource(client_factory(s3_server))
    repo = S3BucketRepository(accessor, f"{s3_shared_bucket}/{s3_prefix}")
    async with session:
        await repo.validate()
        async with await repo.open("job", "w") as writer:
            await writer.write("one")
    with pytest.raises(LifecycleError):
        await repo.contains("job")
    async with session:  # a new client from the reopened session
        assert await repo.contains("job")


async def test_yaml_repository_is_also_a_blob_repository(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    def make(client: Callable[[], Any]) -> YamlMetadataS3Repository:
        return YamlMetadataS3Repository(client, s3_shared_bucket, prefix=s3_prefix)

    async with opened(s3_server, make, shared=s3_client) as repo:
        assert isinstance(repo, YamlMetadataS3Repository)
        await repo.dump("job", {"name": "ünïcode", "values": [1, 2]})
        async with await repo.open("job", "r") as reader:
            assert "ünïcode" in await reader.read()
        head = await s3_client.head_object(Bucket=s3_shared_bucket, Key=f"{s3_prefix}job.yaml")
        assert head["ContentType"] == "text/yaml"
        many = {f"item{index}": {"index": index} for index in range(80)}
        await asyncio.gather(*(repo.dump(job, value) for job, value in many.items()))
        everything = await repo.info_all()
        assert everything == {**many, "job": {"name": "ünïcode", "values": [1, 2]}}
        await s3_client.put_object(
            Bucket=s3_shared_bucket, Key=f"{s3_prefix}bad.yaml", Body=b"a: ["
        )
        with pytest.raises(BackendError, match="not valid YAML"):
            await repo.info("bad")
        for write in (repo.dump, repo.create, repo.save):
            with pytest.raises(UnstorableValueError, match="'job'") as caught:
                await write("job", {"object": object()})
            assert (caught.value.job, caught.value.codec) == ("job", "yaml")
            assert isinstance(caught.value, TypeError)
        assert await repo.info("job") == {"name": "ünïcode", "values": [1, 2]}


# --- atomic create ------------------------------------------------------------------------

RACERS = 20


async def test_concurrent_creates_from_separate_clients_have_one_winner(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    def make(client: Callable[[], Any]) -> YamlMetadataS3Repository:
        return YamlMetadataS3Repository(client, s3_shared_bucket, prefix=s3_prefix)

    assert YamlMetadataS3Repository.atomic_create is True
    async with contextlib.AsyncExitStack() as stack:
        # One session, and so one client, per racer: as if they were separate hosts.
        repos = [
            await stack.enter_async_context(opened(s3_server, make, validate=index == 0))
            for index in range(RACERS)
        ]
        results = await asyncio.gather(
            *(
                cast(YamlMetadataS3Repository, repo).create("claim", {"owner": index})
                for index, repo in enumerate(repos)
            )
        )
        assert results.count(True) == 1, results
        winner = results.index(True)
        assert await repos[0].info("claim") == {"owner": winner}
    raw = await s3_client.get_object(Bucket=s3_shared_bucket, Key=f"{s3_prefix}claim.yaml")
    assert "owner: " + str(winner) in (await raw["Body"].read()).decode()


async def test_create_on_an_existing_id_keeps_the_value(
    s3_server: S3Server, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
) -> None:
    def make(client: Callable[[], Any]) -> YamlMetadataS3Repository:
        return YamlMetadataS3Repository(client, s3_shared_bucket, prefix=s3_prefix)

    async with opened(s3_server, make, shared=s3_client) as repo:
        assert isinstance(repo, YamlMetadataS3Repository)
        await repo.dump("job", {"first": 1})
        head = await s3_client.head_object(Bucket=s3_shared_bucket, Key=f"{s3_prefix}job.yaml")
        assert await repo.create("job", {"second": 2}) is False
        assert await repo.info("job") == {"first": 1}
        after = await s3_client.head_object(Bucket=s3_shared_bucket, Key=f"{s3_prefix}job.yaml")
        assert after["ETag"] == head["ETag"]
        assert await repo.create("new", [1, 2]) is True
        new = await s3_client.head_object(Bucket=s3_shared_bucket, Key=f"{s3_prefix}new.yaml")
        assert new["ContentType"] == "text/yaml"
        assert await repo.info("new") == [1, 2]


async def test_create_in_a_missing_bucket_is_a_clear_error(
    s3_server: S3Server, s3_bucket: str, s3_client: Any
) -> None:
    make: Factory = lambda client: YamlMetadataS3Repository(client, s3_bucket)  # noqa: E731
    async with opened(s3_server, make, validate=False, shared=s3_client) as repo:
        assert isinstance(repo, YamlMetadataS3Repository)
        with pytest.raises(BackendError, match="does not exist") as caught:
            await repo.create("job", 1)
        assert s3_bucket in str(caught.value)


def test_bucket_argument_may_carry_a_prefix() -> None:
    def client() -> None:
        return None

    assert (
        S3BucketRepository(client, "books/").bucket,
        S3BucketRepository(client, "books/").prefix,
    ) == ("books", "")
    repo = S3BucketRepository(client, "data/books/", ".txt", prefix="new-")
    assert (repo.bucket, repo.prefix, repo.suffix) == ("data", "books/new-", ".txt")
    assert repo.object_key("moby") == "books/new-moby.txt"
    assert YamlMetadataS3Repository(client, "meta").object_key("x") == "x.yaml"
    with pytest.raises(pydatatask.InvalidJobIdError):
        repo.object_key("../escape")


@pytest.mark.parametrize(
    "arguments",
    [
        {"bucket": ""},
        {"bucket": "/prefix/"},
        {"bucket": "books", "part_size": MIN_PART_SIZE - 1},
        {"bucket": "books", "client": object()},
    ],
)
def test_bad_configuration_is_rejected(arguments: dict[str, Any]) -> None:
    arguments = {"client": lambda: None, **arguments}
    with pytest.raises(ConfigurationError):
        S3BucketRepository(**arguments)


def test_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiobotocore", None)
    with pytest.raises(MissingDependencyError, match=r"pydatatask\[s3\]"):
        S3BucketRepository(lambda: None, "books")


def test_importing_the_module_loads_no_client_library() -> None:
    code = (
        "import sys, pydatatask, pydatatask.repository.s3\n"
        "print(','.join(m for m in ('aiobotocore', 'botocore', 'aiohttp') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
