"""One pipeline, several controllers: start this script in as many terminals as you like.

``python examples/shared.py run`` in two or three terminals at once (or on several
machines sharing the ``work`` folder) splits the work between them: each controller
claims a job in ``leases/`` before it runs it, so every report is written exactly once.
Kill one of them (even with ``kill -9``): the others take its jobs over once its lease
of 5 seconds has run out. ``python examples/shared.py status`` shows which controller
(host and pid) runs what.

Everything lives in ``examples/work/shared/``; ``seed`` writes 40 small inputs the first
time.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pydatatask

WORK = Path(__file__).resolve().parent / "work" / "shared"

texts = pydatatask.FileRepository(WORK / "texts", ".txt")
reports = pydatatask.FileRepository(WORK / "reports", ".txt")
leases = pydatatask.YamlMetadataFileRepository(WORK / "leases")


@pydatatask.InProcessSyncTask("report", pydatatask.YamlMetadataFileRepository(WORK / "done"))
async def report(job: str, text: pydatatask.FileRepository, out: pydatatask.FileRepository) -> None:
    """Count the words of one text, slowly enough to watch several controllers share it."""
    async with await text.open(job, "r") as reader:
        words = len((await reader.read()).split())
    await asyncio.sleep(0.2)
    async with await out.open(job, "w") as writer:
        await writer.write(f"{job}: {words} words, counted by process {os.getpid()}\n")


report.link("text", texts, is_input=True)
report.link("out", reports, is_output=True)

pipeline = pydatatask.Pipeline(
    [report], leases=leases, lease_seconds=5, max_concurrent_jobs=4, poll_interval=2
)


def seed() -> None:
    """Write the sample inputs the first time."""
    folder = WORK / "texts"
    if not folder.exists():
        folder.mkdir(parents=True)
        for index in range(40):
            (folder / f"text{index:02}.txt").write_text("word " * (index + 1), encoding="utf-8")


if __name__ == "__main__":
    seed()
    pydatatask.main(pipeline)
