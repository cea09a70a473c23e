"""Bodies over values that a process pool or a Dask cluster runs (importable by name)."""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path

import pydatatask

WORK = Path(os.environ.get("VALUES_TEST_WORK", "/tmp/pydatatask-values-test"))

texts = pydatatask.FileRepository(WORK / "texts", ".txt")
counts = pydatatask.FileRepository(WORK / "counts", ".json")
done = pydatatask.YamlMetadataFileRepository(WORK / "done")


def make_count(executor: concurrent.futures.Executor, pause: float = 0.0) -> pydatatask.ValueTask:
    """Return a task that counts words on ``executor``, each job taking ``pause`` seconds."""

    @pydatatask.task(
        "count", done=done, inputs={"text": texts}, outputs={"count": counts}, executor=executor
    )
    def count(job: str, text: str) -> dict[str, object]:
        if "poison" in text:
            raise ValueError(f"{job} is poisoned")
        time.sleep(pause)
        return {"job": job, "words": len(text.split()), "pid": os.getpid()}

    return count


@pydatatask.task(done=done, inputs={"text": texts}, outputs={"count": counts})
def module_count(job: str, text: str) -> dict[str, object]:
    """A body reachable by its module's name, which is now the task's."""
    return {"job": job, "words": len(text.split()), "pid": os.getpid()}
