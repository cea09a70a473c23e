"""Pipeline files: views through a function (``map``) and functions over repositories."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jsonschema")

import pydatatask
from pydatatask.config import ConfigFileError, load_pipeline

pytestmark = pytest.mark.backend  # the pipeline file format needs the yaml-pipelines extra

STEPS = textwrap.dedent(
    """
    import concurrent.futures

    import pydatatask


    @pydatatask.InProcessSyncTask("ignored", pydatatask.InProcessMetadataRepository())
    async def summary(job, books, reports):
        async with await books.open(job, "r") as fp:
            data = await fp.read()
        async with await reports.open(job, "w") as fp:
            await fp.write(f"{job}: {len(data.split())} words\\n")


    def copy(job, books, copies):
        copies.dump(job, {"text": books.info(job)})


    threaded = pydatatask.ExecutorTask(
        "ignored", concurrent.futures.ThreadPoolExecutor(2), func=copy
    )


    def shout(info):
        return str(info).upper()


    async def only_a(job):
        return job == "a"
    """
)


def project(tmp_path: Path, module: str, tail: str) -> Path:
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("one two\n\nthree\n")
    (tmp_path / "books" / "b.txt").write_text("four\n")
    (tmp_path / f"{module}.py").write_text(STEPS)
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "repositories:\n"
        "  books: {kind: file, path: books, extension: .txt}\n"
        + textwrap.dedent(tail).lstrip("\n").replace("STEPS", module)
    )
    return path


async def test_a_function_over_repositories_and_a_map_view(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        "kinds_steps_run",
        """
          reports: {kind: file, path: reports, extension: .txt}
          copies: {kind: memory}
          shouting: {kind: map, base: books, function: "STEPS:shout", filter: "STEPS:only_a"}
        tasks:
          summary:
            function: STEPS:summary
            inputs: {books: books}
            outputs: {reports: reports}
            version: "2"
          copy:
            function: STEPS:threaded
            inputs: {books: books}
            outputs: {copies: copies}
        """,
    )
    pipeline = load_pipeline(path)
    summary, copy = pipeline.tasks["summary"], pipeline.tasks["copy"]
    assert (type(summary).__name__, type(copy).__name__) == ("InProcessSyncTask", "ExecutorTask")
    assert summary.version == "2"
    async with pipeline:
        report = await pydatatask.run(pipeline, timeout=60)
        assert (report.launched, report.failed) == (4, 0)
        copies: Any = copy.links["copies"].repo
        assert await copies.info("b") == {"text": str(tmp_path / "books" / "b.txt")}
    assert (tmp_path / "reports" / "a.txt").read_text() == "a: 3 words\n"
    assert (tmp_path / "reports" / "b.txt").read_text() == "b: 1 words\n"


async def test_a_map_view_lists_what_its_filter_passes(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        "kinds_steps_map",
        """
          shouting: {kind: map, base: books, function: "STEPS:shout", filter: "STEPS:only_a"}
        tasks:
          look:
            process: "test -n {{ text | shquote }}"
            inputs: {text: shouting}
        """,
    )
    pipeline = load_pipeline(path)
    view = pipeline.tasks["look"].links["text"].repo
    assert [job async for job in view] == ["a"]
    assert await view.info("a") == str(tmp_path / "books" / "a.txt").upper()


def test_a_map_function_that_cannot_be_imported_names_its_key(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        "kinds_steps_broken",
        """
          shouting: {kind: map, base: books, function: "STEPS:shout", filter: "STEPS:only_b"}
        tasks: {}
        """,
    )
    with pytest.raises(ConfigFileError) as caught:
        load_pipeline(path)
    assert str(caught.value) == (
        f"{path}:3: repositories.shouting.filter: cannot import 'kinds_steps_broken:only_b': "
        "'kinds_steps_broken' has no 'only_b' (did you mean 'only_a'?)"
    )
