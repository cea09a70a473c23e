"""A two-stage pipeline that several controllers run at once, sharing leases.

Written as a user would write it, and driven through its command line by
``tests/test_leases.py``: ``python tests/leases_pipeline.py run``. Settings come from
the environment:

- ``LEASE_BASE``: the folder for inputs, outputs, done records and the side-effect log;
- ``LEASE_STORE``: where leases live: ``files``, ``s3`` or ``mongo`` (``none``: no
  leases, one controller assumed);
- ``LEASE_KIND``: ``function`` (in-process tasks) or ``process`` (shell commands);
- ``LEASE_JOBS``: how many ids; ``LEASE_SLEEP``: seconds each job takes;
  ``LEASE_CONCURRENCY``: the most jobs one controller runs at once;
- ``LEASE_SECONDS``: the lease; for S3, ``LEASE_S3_ENDPOINT``, ``LEASE_S3_KEY``,
  ``LEASE_S3_SECRET``, ``LEASE_S3_BUCKET``; for MongoDB, ``LEASE_MONGO_URI`` and
  ``LEASE_MONGO_DB``.

Every job appends ``TASK JOB PID`` to ``effects.log`` when it runs, so the test can
count how often each job's side effect happened.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pydatatask

BASE = Path(os.environ["LEASE_BASE"])
STORE = os.environ.get("LEASE_STORE", "files")
KIND = os.environ.get("LEASE_KIND", "function")
JOBS = int(os.environ.get("LEASE_JOBS", "200"))
SLEEP = float(os.environ.get("LEASE_SLEEP", "0.01"))
EFFECTS = BASE / "effects.log"

session = pydatatask.Session()


def lease_repository() -> pydatatask.MetadataRepository | None:
    """Return the repository the controllers claim jobs in (None: no leases)."""
    if STORE == "none":
        return None
    if STORE == "files":
        return pydatatask.YamlMetadataFileRepository(BASE / "leases")
    if STORE == "s3":

        @session.resource
        async def bucket() -> AsyncIterator[Any]:
            import aiobotocore.session
            from aiobotocore.config import AioConfig

            async with aiobotocore.session.get_session().create_client(
                "s3",
                endpoint_url=os.environ["LEASE_S3_ENDPOINT"],
                aws_access_key_id=os.environ["LEASE_S3_KEY"],
                aws_secret_access_key=os.environ["LEASE_S3_SECRET"],
                region_name="us-east-1",
                config=AioConfig(
                    s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=10
                ),
            ) as client:
                yield client

        return pydatatask.YamlMetadataS3Repository(bucket, os.environ["LEASE_S3_BUCKET"] + "/")
    if STORE == "mongo":

        @session.resource
        async def claims() -> AsyncIterator[Any]:
            from pymongo import AsyncMongoClient

            client: AsyncMongoClient[Any] = AsyncMongoClient(
                os.environ["LEASE_MONGO_URI"], serverSelectionTimeoutMS=5000
            )
            try:
                yield client[os.environ["LEASE_MONGO_DB"]]["leases"]
            finally:
                await client.close()

        return pydatatask.MongoMetadataRepository(claims)
    raise SystemExit(f"unknown LEASE_STORE {STORE!r}")


items = pydatatask.InProcessMetadataRepository({f"item{index}": index for index in range(JOBS)})
middle = pydatatask.FileRepository(BASE / "middle", ".txt")
final = pydatatask.FileRepository(BASE / "final", ".txt")
done_first = pydatatask.YamlMetadataFileRepository(BASE / "done_first")
done_second = pydatatask.YamlMetadataFileRepository(BASE / "done_second")


def note(task: str, job: str) -> None:
    """Append one line per run of a job: the side effect the test counts."""
    with EFFECTS.open("a", encoding="utf-8") as log:
        log.write(f"{task} {job} {os.getpid()}\n")


def function_tasks() -> list[pydatatask.Task]:
    """Return the two stages as in-process tasks."""

    @pydatatask.InProcessSyncTask("first", done_first)
    async def first(job: str, item: Any, out: pydatatask.FileRepository) -> None:
        note("first", job)
        await asyncio.sleep(SLEEP)
        async with await out.open(job, "w") as writer:
            await writer.write(job.upper())

    @pydatatask.InProcessSyncTask("second", done_second)
    async def second(
        job: str, inp: pydatatask.FileRepository, out: pydatatask.FileRepository
    ) -> None:
        note("second", job)
        await asyncio.sleep(SLEEP)
        async with await inp.open(job, "r") as reader:
            text = await reader.read()
        async with await out.open(job, "w") as writer:
            await writer.write(text.lower())

    first.link("item", items, is_input=True)
    first.link("out", middle, is_output=True)
    second.link("inp", middle, is_input=True)
    second.link("out", final, is_output=True)
    return [first, second]


def process_tasks() -> list[pydatatask.Task]:
    """Return the two stages as shell commands run by local processes."""
    manager = pydatatask.LocalLinuxManager("leases", local_path=BASE / "jobs")
    log = str(EFFECTS)
    first = pydatatask.ProcessTask(
        "first",
        manager,
        template=(
            f'echo "first {{{{ job }}}} $$" >> {log}; sleep {SLEEP}; '
            "echo {{ job }} | tr a-z A-Z > {{ out | shquote }}"
        ),
        done=done_first,
    )
    first.link("item", items, is_input=True)
    first.link("out", middle, is_output=True)
    second = pydatatask.ProcessTask(
        "second",
        manager,
        template=(
            f'echo "second {{{{ job }}}} $$" >> {log}; sleep {SLEEP}; '
            "tr A-Z a-z < {{ inp | shquote }} > {{ out | shquote }}"
        ),
        done=done_second,
    )
    second.link("inp", middle, is_input=True)
    second.link("out", final, is_output=True)
    return [first, second]


pipeline = pydatatask.Pipeline(
    function_tasks() if KIND == "function" else process_tasks(),
    session,
    leases=lease_repository(),
    lease_seconds=float(os.environ.get("LEASE_SECONDS", "30")),
    max_concurrent_jobs=int(os.environ.get("LEASE_CONCURRENCY", "256")),
    poll_interval=1.0,
)

if __name__ == "__main__":
    pydatatask.main(pipeline)
