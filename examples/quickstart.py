"""A two-stage pipeline over local folders: count words, then write a report per document.

Run it with no arguments for a tour (run the pipeline, then show its status), or give
any command: ``python examples/quickstart.py status``, ``... why report empty``,
``... rm -r count empty``, ``... graph``. Everything lives in ``examples/work/``.

One of the seed documents is empty on purpose: counting it fails, the failure is
recorded in the ``count`` task's done repository, ``status`` shows it, and the report
for it is never written. Every other document goes through both stages; a second run
does nothing, because everything is already done.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pydatatask
from pydatatask.cli import run_cli

WORK = Path(__file__).resolve().parent / "work"

SEED_DOCUMENTS = {
    "lorem": "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n\nSed do eiusmod.\n",
    "zen": "Beautiful is better than ugly.\nExplicit is better than implicit.\n",
    "poem": "The rain in Spain\nstays mainly\nin the plain.\n",
    "empty": "",
}

documents = pydatatask.FileRepository(WORK / "documents", ".txt")
word_counts = pydatatask.YamlMetadataFileRepository(WORK / "word_counts")
reports = pydatatask.FileRepository(WORK / "reports", ".txt")


@pydatatask.InProcessSyncTask("count", pydatatask.YamlMetadataFileRepository(WORK / "done_count"))
async def count(
    job: str, documents: pydatatask.FileRepository, counts: pydatatask.YamlMetadataFileRepository
) -> None:
    """Count the words of one document."""
    async with await documents.open(job, "r") as reader:
        text = await reader.read()
    words = [word.strip(".,;:!?").lower() for word in text.split()]
    if not words:
        raise ValueError(f"document {job!r} has no words")
    await counts.dump(
        job,
        {
            "words": len(words),
            "lines": text.count("\n"),
            "top": dict(Counter(words).most_common(3)),
        },
    )


@pydatatask.InProcessSyncTask("report", pydatatask.YamlMetadataFileRepository(WORK / "done_report"))
async def report(
    job: str, counts: pydatatask.YamlMetadataFileRepository, reports: pydatatask.FileRepository
) -> None:
    """Write a one-line report from the word counts."""
    stats = await counts.info(job)
    top = ", ".join(f"{word} ({n})" for word, n in stats["top"].items())
    async with await reports.open(job, "w") as writer:
        await writer.write(
            f"{job}: {stats['words']} words on {stats['lines']} lines; most common: {top}\n"
        )


count.link("documents", documents, is_input=True)
count.link("counts", word_counts, is_output=True)
report.link("counts", word_counts, is_input=True)
report.link("reports", reports, is_output=True)

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
