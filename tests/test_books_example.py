"""The example from the API guide runs unchanged against a real S3 server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiobotocore")

from tests.servers.s3 import S3Server, empty_bucket

pytestmark = pytest.mark.backend

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "books.py"
BOOKS = {
    "alice": "Alice was beginning to get very tired.\n\nSo she was considering.\n",
    "moby": "Call me Ishmael.\n",
}


def run_example(
    folder: Path, environment: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_books_example(s3_server: S3Server, s3_client: Any, tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    try:
        await s3_client.create_bucket(Bucket="books")
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise
    await empty_bucket(s3_client, "books")
    for name, text in BOOKS.items():
        await s3_client.put_object(Bucket="books", Key=f"{name}.txt", Body=text.encode())
    await s3_client.put_object(Bucket="books", Key="notes.md", Body=b"not a book")

    environment = {
        **os.environ,
        "BUCKET_ENDPOINT": s3_server.endpoint_url,
        "BUCKET_USERNAME": s3_server.access_key,
        "BUCKET_PASSWORD": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    run = await asyncio.to_thread(run_example, tmp_path, environment, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    reports = {path.stem: path.read_text() for path in (tmp_path / "reports").iterdir()}
    assert reports == {
        "alice": 'The book "alice" has 1 paragraphs, 3 lines, 11 words, and 61 characters.\n',
        "moby": 'The book "moby" has 0 paragraphs, 1 lines, 3 words, and 16 characters.\n',
    }
    assert sorted(path.stem for path in (tmp_path / "results").iterdir()) == ["alice", "moby"]

    status = await asyncio.to_thread(run_example, tmp_path, environment, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"succeeded": 2' in status.stdout
    await empty_bucket(s3_client, "books")
