"""A two-stage pipeline over files whose results go stale, as a user would write it.

Driven through its command line by ``tests/test_provenance.py``:
``python tests/stale_pipeline.py run``. ``STALE_BASE`` is the folder that holds
``books/`` (the inputs), ``shouts/``, ``counts/`` and the done records;
``STALE_SHOUT_VERSION``, when set, is the ``version=`` of the first stage;
``STALE_LEASES=1`` lets several controllers share the pipeline through leases in
``leases/``, and ``STALE_SLEEP`` is how long each job takes (seconds). Every job appends
``TASK JOB`` to ``effects.log`` in that folder when it runs, so the test can count what
ran.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pydatatask

BASE = Path(os.environ["STALE_BASE"])
EFFECTS = BASE / "effects.log"
SLEEP = float(os.environ.get("STALE_SLEEP", "0"))

books = pydatatask.FileRepository(BASE / "books", ".txt")
shouts = pydatatask.FileRepository(BASE / "shouts", ".txt")
counts = pydatatask.YamlMetadataFileRepository(BASE / "counts")


def _effect(task: str, job: str) -> None:
    with EFFECTS.open("a") as log:
        log.write(f"{task} {job}\n")
    time.sleep(SLEEP)


@pydatatask.task(
    done=pydatatask.YamlMetadataFileRepository(BASE / "done_shout"),
    inputs={"book": books},
    outputs={"shout": shouts},
    version=os.environ.get("STALE_SHOUT_VERSION") or None,
)
def shout(job: str, book: str) -> str:
    """Shout the book."""
    _effect("shout", job)
    return book.upper()


@pydatatask.task(
    done=pydatatask.YamlMetadataFileRepository(BASE / "done_count"),
    inputs={"shout": shouts},
    outputs={"count": counts},
)
def count(job: str, shout: str) -> dict[str, int]:
    """Count the words."""
    _effect("count", job)
    return {"words": len(shout.split())}


leases = (
    pydatatask.YamlMetadataFileRepository(BASE / "leases")
    if os.environ.get("STALE_LEASES") == "1"
    else None
)
pipeline = pydatatask.Pipeline([shout, count], leases=leases, lease_seconds=10)

if __name__ == "__main__":
    pydatatask.main(pipeline)
