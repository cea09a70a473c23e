"""The progress display: totals, percentages, estimates and layout at any width."""

from __future__ import annotations

import io
import re
from typing import Any

from rich.console import Console

import pydatatask as pdt
from pydatatask import InProcessMetadataRepository as Memory
from pydatatask import progress

START = 100.0
"""The monotonic time the tests pretend the scheduler started at."""

BAR = set("━╸╺")
HTML = "render_report_as_html_pages"
TEXT = "render_report_as_text_pages"


def fan_out(
    inputs: dict[str, Any], names: tuple[str, str] = (HTML, TEXT), earlier: int = 0
) -> tuple[pdt.Pipeline, Memory]:
    """Build ``download`` feeding two render tasks.

    ``earlier`` pages were downloaded before (from inputs gone since): only the render
    tasks have them to do.
    """
    source = Memory(dict(inputs))
    downloaded = {f"old{index}": {"success": True} for index in range(earlier)}
    pages = Memory({job: "old" for job in downloaded})

    @pdt.InProcessSyncTask("download", Memory(downloaded))
    async def download(job: str, source: Memory, pages: Memory) -> None:
        await pages.dump(job, str(await source.info(job)))

    download.link("source", source, is_input=True)
    download.link("pages", pages, is_output=True)
    tasks: list[pdt.InProcessSyncTask] = [download]
    for name in names:

        async def render(job: str, pages: Memory, reports: Memory) -> None:
            await reports.dump(job, f"<{await pages.info(job)}>")

        task = pdt.InProcessSyncTask(name, Memory())(render)
        task.link("pages", pages, is_input=True)
        task.link("reports", Memory(), is_output=True)
        tasks.append(task)
    return pdt.Pipeline(tasks), source


def pages(first: int, last: int) -> dict[str, str]:
    return {f"page{index}": f"text {index}" for index in range(first, last)}


def at_start(pipeline: pdt.Pipeline) -> None:
    """Pretend every task's counting started at :data:`START`."""
    for counters in pipeline.scheduler.counters.values():
        counters.started_at = START


def render(item: progress.PipelineProgress, width: int) -> list[str]:
    buffer = io.StringIO()
    Console(file=buffer, width=width).print(item)
    return buffer.getvalue().splitlines()


def rows(lines: list[str]) -> dict[str, list[str]]:
    """Map each row's task to its other cells, leaving out progress bars."""
    header = next(index for index, line in enumerate(lines) if line.startswith("task"))
    table = {}
    for line in lines[header + 2 :]:
        if line.strip("─ "):
            task, *cells = re.split(r"\s{2,}", line.strip())
            table[task] = [cell for cell in cells if not set(cell) <= BAR]
    return table


async def half_done() -> progress.PipelineProgress:
    """Four pages downloaded and rendered, eight old ones rendered, six new ones waiting.

    Eight seconds in, downloading ran at 0.5 jobs/s and rendering at 1.5 jobs/s.
    """
    pipeline, source = fan_out(pages(0, 4), earlier=8)
    async with pipeline:
        await pdt.run(pipeline)
        source.data.update(pages(4, 10))
        await pipeline.scheduler.refresh()
        at_start(pipeline)
        return progress.snapshot(pipeline.scheduler, now=START + 8)


async def test_downstream_counts_the_work_still_upstream() -> None:
    item = await half_done()
    download, html, text = item.tasks
    assert (download.task, download.pending, download.upstream) == ("download", 6, 0)
    assert (html.finished, html.pending, html.upstream, html.total) == (12, 0, 6, 18)
    assert html.percent == "66%"
    # rendering runs at 1.5/s but its six jobs come from downloading at 0.5/s
    assert download.status == html.status == text.status == "0:12"
    table = rows(render(item, 200))
    assert table["download"] == ["4/10", "40%", "0", "6", "0", "0", "0.50/s", "0:12"]
    assert table[HTML] == ["12/18", "66%", "0", "0", "6", "0", "1.50/s", "0:12"]


async def test_total_line_sums_every_task() -> None:
    item = await half_done()
    assert item.total.finished == 28
    assert item.total.total == 46
    cells = rows(render(item, 200))[progress.ALL_TASKS]
    assert cells == ["28/46", "60%", "0", "6", "12", "0", "3.50/s", "0:12"]
    assert render(item, 200)[0].strip() == "elapsed 0:08"
    summary = item.lines()[-1]
    assert summary.startswith("all tasks: 28 succeeded, 0 failed, 0 running, 6 pending")
    assert summary.endswith("28/46 done (60%), 3.50/s, eta 0:12; 0:08 elapsed")


async def test_no_estimate_before_any_job_finished() -> None:
    pipeline, _ = fan_out(pages(0, 4))
    async with pipeline:
        await pipeline.scheduler.refresh()
        at_start(pipeline)
        item = progress.snapshot(pipeline.scheduler, now=START + 8)
    assert [task.status for task in item.tasks] == ["-", "-", "-"]
    assert item.total.status == "-"
    assert not any("eta" in line for line in item.lines())
    for cells in rows(render(item, 200)).values():
        assert cells[1] == "0%"
        assert cells[-2:] == ["0.00/s", "-"]


async def test_nothing_known_is_not_done() -> None:
    pipeline, _ = fan_out({})
    async with pipeline:
        item = progress.snapshot(pipeline.scheduler, now=START)
    assert item.total.status == item.total.percent == "-"
    assert item.lines()[0] == "download: 0 succeeded, 0 failed, 0 running, 0 pending; 0/0 done"


async def test_finished_run_says_done() -> None:
    pipeline, _ = fan_out(pages(0, 3))
    async with pipeline:
        await pdt.run(pipeline)
        at_start(pipeline)
        item = progress.snapshot(pipeline.scheduler, now=START + 3)
    table = rows(render(item, 60))
    assert table["download"][:2] == ["3/3", "100%"]
    assert table[progress.ALL_TASKS][:2] == ["9/9", "100%"]
    assert all(cells[-1] == "done" for cells in table.values())
    assert item.lines()[0].endswith("3/3 done (100%), 1.00/s, done")
    assert item.total.status == "done"


async def test_narrow_table_keeps_names_distinct() -> None:
    item = await half_done()
    lines = render(item, 40)
    assert max(map(len, lines)) <= 40
    table = rows(lines)
    download, html, text, total = table
    assert (download, total) == ("download", progress.ALL_TASKS)
    assert re.fullmatch(r"render\w*…\w*ml_pages", html)
    assert re.fullmatch(r"render\w*…\w*xt_pages", text)
    assert all(cells == [cells[0], cells[1], "0:12"] for cells in table.values())
    assert table[html][:2] == ["12/18", "66%"]


async def test_names_that_cannot_be_shortened_apart_are_folded() -> None:
    other = HTML.replace("_as_", "_in_")
    pipeline, _ = fan_out(pages(0, 2), names=(HTML, other))
    async with pipeline:
        item = progress.snapshot(pipeline.scheduler, now=START)
    lines = render(item, 40)
    assert max(map(len, lines)) <= 40
    names = "".join(line.split()[0] for line in lines[3:] if not line.startswith("─"))
    assert names == f"download{HTML}{other}all"


async def test_wide_table_shows_bars() -> None:
    item = await half_done()
    wide = render(item, 120)
    assert max(map(len, wide)) <= 120
    assert "━━━━━━━━" in "".join(wide)
    assert "━" not in "".join(render(item, 80))


async def test_plain_lines_are_never_cut() -> None:
    pipeline, _ = fan_out(pages(0, 3))
    buffer = io.StringIO()
    console = Console(file=buffer, width=80)
    async with pipeline, progress.display(pipeline.scheduler, console):
        await pdt.run(pipeline)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[1].startswith(f"{HTML}: 3 succeeded, 0 failed, 0 running, 0 pending; 3/3 done")
    assert all(len(line) > 80 for line in lines[1:])
    assert lines[-1].startswith("all tasks: 9 succeeded")


async def test_live_table_on_a_terminal() -> None:
    pipeline, _ = fan_out(pages(0, 3))
    buffer = io.StringIO()
    console = Console(file=buffer, width=60, force_terminal=True, color_system=None)
    async with pipeline, progress.display(pipeline.scheduler, console):
        await pdt.run(pipeline)
    last = buffer.getvalue().rsplit("elapsed", 1)[1]  # the table as it stays on screen
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", last).splitlines()
    assert max(map(len, lines)) <= 60
    assert rows(lines)[progress.ALL_TASKS][:2] == ["9/9", "100%"]
    assert rows(lines)[progress.ALL_TASKS][-1] == "done"
