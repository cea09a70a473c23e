"""The dashboard: first page loads over many done keys, and what serving costs W1.

``pages``: a one-stage in-memory pipeline is run over ``10 * N`` keys (1,000,000 by
default), so every key has a real done record; then the dashboard serves it and the
first loads of ``/`` and of the task page are timed (by a client in another thread, as
a browser in another process sees them), with the server's added memory (resident set
size above what the open pipeline held, sampled every 10 ms).

``w1``: W1 in memory (:mod:`benchmarks.w1`) over N keys, three times in one process:
alone, while the dashboard serves with a page open (an event stream), and while it
serves with no page open.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pydatatask
from benchmarks import w1
from benchmarks._common import Stopwatch, keys, value_of
from pydatatask.web import serving

PAGES_SCALE = 10
"""The pages are measured over this many times N keys."""
TASK = "stage"


def rss_mib() -> float:
    """Return this process's resident set size now, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class PeakSampler:
    """Sample the resident set size every 10 ms in a thread; keep the highest."""

    def __init__(self) -> None:
        self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _get(url: str, path: str) -> tuple[float, str]:
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with Stopwatch() as watch:
        connection = http.client.HTTPConnection(host, int(port), timeout=600)
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read()  # as much as Content-Length says
        finally:
            connection.close()
    if answer.status != 200:
        raise RuntimeError(f"GET {path}: {answer.status} {answer.reason}")
    return watch.seconds, body.decode()


async def timed_get(url: str, path: str) -> tuple[float, str]:
    """Return the seconds ``GET path`` took and the page, requested from another thread
    and timed there, as a browser in another process sees it (the server's event loop
    may be busy reading the pipeline meanwhile)."""
    return await asyncio.to_thread(_get, url, path)


async def get(url: str, path: str) -> str:
    """Return the page at ``path``."""
    return (await timed_get(url, path))[1]


async def until_without(url: str, path: str, text: str) -> float:
    """Request ``path`` until its page no longer says ``text``; return the seconds taken."""
    started = time.perf_counter()
    while True:
        if text not in await get(url, path):
            return time.perf_counter() - started
        await asyncio.sleep(0.1)


def _done_pipeline(names: list[str]) -> pydatatask.Pipeline:
    source = pydatatask.InProcessMetadataRepository({key: value_of(key) for key in names})
    lengths = pydatatask.InProcessMetadataRepository()

    @pydatatask.InProcessSyncTask(TASK, pydatatask.InProcessMetadataRepository())
    async def stage(job: str, source: Any, lengths: Any) -> None:
        await lengths.dump(job, len(await source.info(job)))

    stage.link("source", source, is_input=True)
    stage.link("lengths", lengths, is_output=True)
    return pydatatask.Pipeline([stage])


async def pages(count: int) -> dict[str, Any]:
    """Time the first loads of the graph and task pages over ``count`` done keys."""
    pipeline = _done_pipeline(keys(count))
    result: dict[str, Any] = {"keys": count}
    async with pipeline:
        with Stopwatch() as setup:
            report = await pydatatask.run(pipeline)
        if report.succeeded != count:
            raise RuntimeError(f"the pipeline did not finish every job: {report}")
        result["setup_seconds"] = setup.seconds
        gc.collect()
        before = rss_mib()
        with PeakSampler() as sampler:
            started = time.perf_counter()
            async with serving(pipeline, 0) as url:
                result["listening_seconds"] = time.perf_counter() - started
                result["graph_first_seconds"], body = await timed_get(url, "/")
                result["graph_first_had_counts"] = "Counting the jobs" not in body
                result["graph_counts_seconds"] = result["graph_first_seconds"] + (
                    await until_without(url, "/", "Counting the jobs")
                )
                result["graph_again_seconds"], _ = await timed_get(url, "/")
                path = f"/tasks/{TASK}?state=succeeded"
                result["task_first_seconds"], body = await timed_get(url, path)
                result["task_first_had_jobs"] = "Listing the jobs" not in body
                result["task_listed_seconds"] = result["task_first_seconds"] + (
                    await until_without(url, path, "Listing the jobs")
                )
                result["task_page_seconds"], _ = await timed_get(url, path + "&page=5000")
                result["task_filter_seconds"], _ = await timed_get(url, path + "&q=99")
                result["api_status_seconds"], _ = await timed_get(url, "/api/status")
            gc.collect()
            after = rss_mib()
        result["added_rss_peak_mib"] = sampler.peak - before
        result["added_rss_after_mib"] = after - before
        result["pipeline_rss_mib"] = before
    return result


@asynccontextmanager
async def _watched(pipeline: pydatatask.Pipeline, watch: bool) -> AsyncIterator[list[int]]:
    """Serve the dashboard; with ``watch``, keep its event stream open, counting events."""
    events = [0]
    async with serving(pipeline, 0) as url:
        if not watch:
            yield events
            return
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())

        async def count_events() -> None:
            async for line in reader:
                events[0] += line.startswith(b"data: ")

        counting = asyncio.create_task(count_events())
        try:
            yield events
        finally:
            counting.cancel()
            writer.close()


async def _w1(count: int, serve: bool, watch: bool) -> dict[str, Any]:
    pipeline, _ = w1._memory_pipeline(keys(count))
    gc.collect()
    async with pipeline:
        if serve:
            async with _watched(pipeline, watch) as events:
                with Stopwatch() as running:
                    report = await pydatatask.run(pipeline)
        else:
            events = [0]
            with Stopwatch() as running:
                report = await pydatatask.run(pipeline)
        if report.failed or report.succeeded < 2 * count:
            raise RuntimeError(f"W1 did not complete every job: {report}")
    return {
        "jobs": 2 * count,
        "seconds": running.seconds,
        "jobs_per_second": 2 * count / running.seconds,
        "extra_launches": report.launched - 2 * count,
        "events": events[0],
    }


async def w1_served(count: int) -> dict[str, Any]:
    """Run W1 alone, with the dashboard watched, and with it served to nobody."""
    return {
        "alone": await _w1(count, serve=False, watch=False),
        "watched": await _w1(count, serve=True, watch=True),
        "served": await _w1(count, serve=True, watch=False),
    }


def rows(result: dict[str, Any]) -> list[Any]:
    """Return the report's rows for the ``web-pages`` and ``web-w1`` results."""
    from benchmarks.table import Row

    found = []
    if "keys" in result:
        keys_text = f"{result['keys']:,} done keys"
        found += [
            Row(
                f"Dashboard / first load, {keys_text}",
                f"{result['graph_first_seconds']:.3f}",
                "s",
                target="< 1 s",
                meets="yes" if result["graph_first_seconds"] < 1 else "NO",
            ),
            Row(
                "  the server listening, after its start", f"{result['listening_seconds']:.3f}", "s"
            ),
            Row(
                "  until its counts show (one reading of the pipeline)",
                f"{result['graph_counts_seconds']:.3f}",
                "s",
            ),
            Row("  loaded again", f"{result['graph_again_seconds']:.3f}", "s"),
            Row(
                "Dashboard task page, first load",
                f"{result['task_first_seconds']:.3f}",
                "s",
                target="< 1 s",
                meets="yes" if result["task_first_seconds"] < 1 else "NO",
            ),
            Row("  until its jobs are listed", f"{result['task_listed_seconds']:.3f}", "s"),
            Row("  page 5,000 / filtered", _pair(result, "task_page", "task_filter"), "s"),
            Row("  /api/status", f"{result['api_status_seconds']:.3f}", "s"),
            Row(
                "Dashboard added RSS: peak / after",
                f"{result['added_rss_peak_mib']:.1f} / {result['added_rss_after_mib']:.1f}",
                "MiB",
                target="< 100 MiB",
                meets="yes" if result["added_rss_peak_mib"] < 100 else "NO",
            ),
        ]
    if "alone" in result:
        alone = result["alone"]["jobs_per_second"]
        for name, title in (("watched", "a page open"), ("served", "no page open")):
            figures = result[name]
            found.append(
                Row(
                    f"W1 in-memory while serving, {title} ({figures['jobs']:,} jobs)",
                    f"{figures['jobs_per_second']:,.0f}",
                    "jobs/s",
                    f"{figures['jobs_per_second'] / alone:.2f}x alone",
                )
            )
            if figures["extra_launches"]:
                found.append(
                    Row(
                        "  launches beyond one per job",
                        f"{figures['extra_launches']:,}",
                        "jobs",
                        target="0",
                        meets="NO",
                    )
                )
        found.append(Row("  W1 in-memory alone, same process", f"{alone:,.0f}", "jobs/s"))
    return found


def _pair(result: dict[str, Any], first: str, second: str) -> str:
    return f"{result[first + '_seconds']:.3f} / {result[second + '_seconds']:.3f}"


def main(variant: str, count: int) -> dict[str, Any]:
    """Entry point for a worker process: ``pages`` or ``w1``."""
    if variant == "pages":
        return asyncio.run(pages(PAGES_SCALE * count))
    if variant == "w1":
        return asyncio.run(w1_served(count))
    raise ValueError(f"unknown dashboard benchmark {variant!r}")
