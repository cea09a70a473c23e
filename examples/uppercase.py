"""A pipeline of shell commands: upper-case text files with ``tr``, then count their lines.

Run it with no arguments for a tour (run the pipeline, then show its status), or give
any command: ``python examples/uppercase.py status``, ``... ls upper.dst``,
``... cat count.lines 'shopping list'``, ``... graph``. Everything lives in
``examples/work/uppercase/``; drop more ``.txt`` files into its ``inputs`` folder and
``run`` again to process just those.

The ``upper`` task runs one process per input file on this machine. Its template names
the input and the output file through the links ``src`` and ``dst``: for a
``FileRepository`` a link's value in a template is the file's path, also for an output
that does not exist yet. ``| shquote`` makes each path one shell word, so an id with a
space (``shopping list``) or any other shell character is passed through unharmed.

The ``count`` task reads what ``upper`` wrote. Nothing names the order: ``count`` reads
the repository ``upper`` writes, so its job for an id waits for ``upper``'s job for the
same id to succeed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pydatatask
from pydatatask.cli import run_cli

WORK = Path(__file__).resolve().parent / "work" / "uppercase"

SEED_INPUTS = {
    "greeting": "hello, world\n",
    "poem": "the rain in spain\nstays mainly\nin the plain\n",
    "shopping list": "apples\nbread\ncheese\n",
}

inputs = pydatatask.FileRepository(WORK / "inputs", ".txt")
outputs = pydatatask.FileRepository(WORK / "outputs", ".txt")
line_counts = pydatatask.YamlMetadataFileRepository(WORK / "line_counts")

upper = pydatatask.ProcessTask(
    "upper",
    pydatatask.LocalLinuxManager("uppercase", local_path=WORK / "jobs"),
    template="tr a-z A-Z < {{ src | shquote }} > {{ dst | shquote }}",
    done=pydatatask.YamlMetadataFileRepository(WORK / "done_upper"),
)
upper.link("src", inputs, is_input=True)
upper.link("dst", outputs, is_output=True)


@pydatatask.InProcessSyncTask("count", pydatatask.YamlMetadataFileRepository(WORK / "done_count"))
async def count(
    job: str, shouted: pydatatask.FileRepository, lines: pydatatask.YamlMetadataFileRepository
) -> None:
    """Count the lines and characters of one upper-cased file."""
    async with await shouted.open(job, "r") as reader:
        text = await reader.read()
    await lines.dump(job, {"lines": text.count("\n"), "characters": len(text)})


count.link("shouted", outputs, is_input=True)
count.link("lines", line_counts, is_output=True)

pipeline = pydatatask.Pipeline([upper, count])


def seed() -> None:
    """Write the sample inputs the first time."""
    folder = WORK / "inputs"
    if not folder.exists():
        folder.mkdir(parents=True)
        for name, text in SEED_INPUTS.items():
            (folder / f"{name}.txt").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    seed()
    if len(sys.argv) > 1:
        pydatatask.main(pipeline)
    # The tour: run everything that is ready, show where things stand, and exit with the
    # status of the run.
    code = run_cli(pipeline, ["run"])
    run_cli(pipeline, ["status"])
    sys.exit(code)
