"""A two-stage pipeline over local folders: count words, then write a report per document.

Run it with no arguments for a tour (run the pipeline, then show its status), or give
any command: ``python examples/quickstart.py status``, ``... why report empty``,
``... rm -r count empty``, ``... graph``. Everything lives in ``examples/work/``.

One of the seed documents is empty on purpose: counting it fails, the failure is
recorded in the ``count`` task's done repository, ``status`` shows it, and the report
for it is never written. Every other document goes through both stages; a second run
does nothing, because everything is already done.

Both tasks are functions over values: each gets its input already loaded (the text of a
document, the counts as a dict) and returns what is saved to its output.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pydatatask
from pydatatask.cli import run_cli

WORK = Path(__file__).resolve().parent / "work"

SEED_DOCUMENTS = {
    "lorem": "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n\nSed do eiusmod.\n",
    "zen": "Beautiful is better than ugly.\nExplicit is better than implicit.\n",
    "poem": "The rain in Spain\nstays mainly\nin the plain.\n",
    "empty": "",
}

documents = pydatatask.FileRepository(WORK / "documents", ".txt")  # text, from ".txt"
word_counts = pydatatask.YamlMetadataFileRepository(WORK / "word_counts")
reports = pydatatask.FileRepository(WORK / "reports", ".txt")


@pydatatask.task(
    done=pydatatask.YamlMetadataFileRepository(WORK / "done_count"),
    inputs={"document": documents},
    outputs={"counts": word_counts},
)
def count(job: str, document: str) -> dict[str, object]:
    """Count the words of one document."""
    words = [word.strip(".,;:!?").lower() for word in document.split()]
    if not words:
        raise ValueError(f"document {job!r} has no words")
    return {
        "words": len(words),
        "lines": document.count("\n"),
        "top": dict(Counter(words).most_common(3)),
    }


@pydatatask.task(
    done=pydatatask.YamlMetadataFileRepository(WORK / "done_report"),
    inputs={"counts": word_counts},
    outputs={"report": reports},
)
def report(job: str, counts: dict[str, Any]) -> str:
    """Write a one-line report from the word counts."""
    top = ", ".join(f"{word} ({n})" for word, n in counts["top"].items())
    return f"{job}: {counts['words']} words on {counts['lines']} lines; most common: {top}\n"


pipeline = pydatatask.Pipeline([count, report])


def seed() -> None:
    """Write the sample documents the first time."""
    folder = WORK / "documents"
    if not folder.exists():
        folder.mkdir(parents=True)
        for name, text in SEED_DOCUMENTS.items():
            (folder / f"{name}.txt").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    seed()
    if len(sys.argv) > 1:
        pydatatask.main(pipeline)
    # The tour: run (one document fails on purpose), then show where things stand.
    run_cli(pipeline, ["run"])
    pydatatask.main(pipeline, ["status"])
