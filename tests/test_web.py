"""The web dashboard: its pages and API over HTTP, and live counts in a real browser.

The browser tests also take the screenshots of docs/dashboard.rst.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx

import pydatatask
from pydatatask import InProcessBlobRepository, InProcessMetadataRepository
from pydatatask.cli import run_cli
from pydatatask.web import create_app, serve, serving

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "_static" / "dashboard"
WAIT = 60.0
"""Generous bound on anything the tests wait for: conditions, never fixed delays."""
HOSTILE = "<img src=x onerror=alert(1)> \"quoted\" & 'single'"
"""A valid job id full of markup."""


class Books:
    """clean (books -> texts) -> count (fails for 'bad', holds 'held') -> report, in memory.

    ``delay`` makes every job sleep that long, so a run can be watched.
    """

    def __init__(
        self,
        names: list[str],
        delay: float = 0.0,
        books: type[InProcessMetadataRepository] = InProcessMetadataRepository,
    ) -> None:
        self.books = books({name: f"the text of {name}, " * (3 + len(name)) for name in names})
        self.texts = InProcessMetadataRepository()
        self.counts = InProcessMetadataRepository()
        self.reports = InProcessMetadataRepository()
        self.logs = InProcessBlobRepository()
        self.hold = InProcessMetadataRepository({"held": "kept back by hand"})

        @pydatatask.InProcessSyncTask("clean", InProcessMetadataRepository())
        async def clean(
            job: str, books: InProcessMetadataRepository, texts: InProcessMetadataRepository
        ) -> None:
            await asyncio.sleep(delay)
            await texts.dump(job, " ".join(str(await books.info(job)).split()))

        @pydatatask.InProcessSyncTask("count", InProcessMetadataRepository())
        async def count(
            job: str,
            texts: InProcessMetadataRepository,
            counts: InProcessMetadataRepository,
            logs: InProcessBlobRepository,
        ) -> None:
            await asyncio.sleep(delay)
            text = str(await texts.info(job))
            async with await logs.open(job, "w") as log:
                await log.write(f"counting {len(text)} characters of <{job}>\n")
            if job.startswith("bad") or job == HOSTILE:
                raise ValueError(f"cannot count the words of <{job}>")
            await counts.dump(job, len(text.split()))

        @pydatatask.InProcessSyncTask("report", InProcessMetadataRepository())
        async def report(
            job: str, counts: InProcessMetadataRepository, reports: InProcessMetadataRepository
        ) -> None:
            await asyncio.sleep(delay)
            await reports.dump(job, f"{job}: {await counts.info(job)} words")

        clean.link("books", self.books, is_input=True)
        clean.link("texts", self.texts, is_output=True)
        count.link("texts", self.texts, is_input=True)
        count.link("counts", self.counts, is_output=True)
        count.link("logs", self.logs, is_output=True)
        count.link("hold", self.hold, inhibits_start=True)
        report.link("counts", self.counts, is_input=True)
        report.link("reports", self.reports, is_output=True)
        self.pipeline = pydatatask.Pipeline([clean, count, report], max_concurrent_jobs=2)


def cli_status(pipeline: pydatatask.Pipeline, capsys: pytest.CaptureFixture[str]) -> str:
    """Return what ``status --json`` prints."""
    capsys.readouterr()
    assert run_cli(pipeline, ["status", "--json"]) == 0
    return capsys.readouterr().out


@dataclass
class Served:
    """A dashboard served from its own thread and event loop."""

    url: str
    loop: asyncio.AbstractEventLoop
    go: asyncio.Event
    stop: asyncio.Event

    def start_run(self) -> None:
        """Run the pipeline, in the dashboard's event loop, while it serves."""
        self.loop.call_soon_threadsafe(self.go.set)


@contextlib.contextmanager
def live(pipeline: pydatatask.Pipeline) -> Iterator[Served]:
    """Open the pipeline and serve its dashboard from a thread, as ``run --serve`` does."""
    ready = threading.Event()
    found: list[Served] = []
    errors: list[BaseException] = []

    async def main() -> None:
        go, stop = asyncio.Event(), asyncio.Event()
        async with pipeline, serving(pipeline, 0) as url:
            found.append(Served(url, asyncio.get_running_loop(), go, stop))
            ready.set()
            stopping = asyncio.create_task(stop.wait())
            starting = asyncio.create_task(go.wait())
            await asyncio.wait([stopping, starting], return_when=asyncio.FIRST_COMPLETED)
            if go.is_set():
                running = asyncio.create_task(pydatatask.run(pipeline))
                await asyncio.wait([stopping, running], return_when=asyncio.FIRST_COMPLETED)
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            starting.cancel()
            await stopping

    def target() -> None:
        try:
            asyncio.run(main())
        except Exception as exc:  # noqa: BLE001 - raised again in the test's thread
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="dashboard", daemon=True)
    thread.start()
    try:
        assert ready.wait(WAIT), "the dashboard did not start"
        if errors:
            raise errors[0]
        yield found[0]
    finally:
        if found:
            found[0].loop.call_soon_threadsafe(found[0].stop.set)
        thread.join(WAIT)
        assert not thread.is_alive(), "the dashboard did not stop"
    if errors:
        raise errors[0]


@pytest.fixture
def books(capsys: pytest.CaptureFixture[str]) -> Books:
    """The books pipeline after one run: 'bad' failed, 'held' is blocked, the rest succeeded."""
    made = Books(["alice", "bad", "dracula", "emma", "held", "ivanhoe", "moby", "ulysses"])
    assert run_cli(made.pipeline, ["run"]) == 1  # 'bad' fails
    return made


# ------------------------------------------------------------------ over HTTP


def test_api_status_is_what_status_json_prints(
    books: Books, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = cli_status(books.pipeline, capsys)
    with live(books.pipeline) as served:
        url = served.url
        answer = httpx.get(url + "api/status")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.text == expected
    assert json.loads(answer.text)["count"]["failed"] == 1
    assert json.loads(answer.text)["count"]["blocked"] == 1


def test_every_change_is_refused(books: Books) -> None:
    with live(books.pipeline) as served, httpx.Client(base_url=served.url) as client:
        for path in ("/", "/api/status", "/tasks/count", "/tasks/count/jobs/bad", "/nowhere"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                answer = client.request(method, path, content=b"x")
                assert answer.status_code == 405, (method, path)
                assert answer.headers["allow"] == "GET, HEAD"
        assert client.get("/api/status").status_code == 200
        assert client.head("/").status_code == 200


async def page_without(client: httpx.AsyncClient, path: str, text: str) -> httpx.Response:
    """Request ``path`` until the page no longer says ``text``."""
    async with asyncio.timeout(WAIT):
        while True:
            answer = await client.get(path)
            if text not in answer.text:
                return answer
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def dashboard(
    pipeline: pydatatask.Pipeline, read_first: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Yield a client of the open pipeline's dashboard in this event loop.

    With ``read_first``, once the dashboard has read the pipeline.
    """
    app = create_app(pipeline)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client,
    ):
        if read_first:
            await page_without(client, "/", "Counting the jobs")
        yield client


async def test_pages_answer_in_the_same_event_loop() -> None:
    made = Books(["alice", "bad"])
    async with made.pipeline:
        await pydatatask.run(made.pipeline)
        async with dashboard(made.pipeline) as client:
            graph = await client.get("/")
            failed = await client.get("/tasks/count", params={"state": "failed"})
            job = await client.get("/tasks/count/jobs/bad")
            unknown_task = await client.get("/tasks/nosuch")
            unknown_job = await client.get("/tasks/count/jobs/nosuch")
            bad_state = await client.get("/tasks/count", params={"state": "sleeping"})
            bad_page = await client.get("/tasks/count", params={"page": "zero"})
    assert graph.status_code == 200
    assert "default-src 'self'" in graph.headers["content-security-policy"]
    assert 'href="/tasks/count"' in graph.text
    assert failed.status_code == 200
    assert 'href="/tasks/count/jobs/bad"' in failed.text
    assert "alice" not in failed.text.split("<ol", 1)[1]
    assert job.status_code == 200
    assert "ValueError: cannot count the words of &lt;bad&gt;" in job.text
    assert "Traceback (most recent call last)" in job.text
    assert "counting" in job.text  # the log's beginning
    assert 'href="/tasks/report/jobs/bad"' in job.text  # downstream
    assert 'href="/tasks/clean/jobs/bad"' in job.text  # upstream
    assert unknown_task.status_code == 404
    assert unknown_job.status_code == 404
    assert bad_state.status_code == 400
    assert bad_page.status_code == 400
    assert "new EventSource" in graph.text  # the script comes inline, allowed by its hash
    assert "script-src 'sha256-" in graph.headers["content-security-policy"]


async def test_a_task_page_shows_one_page_of_many_jobs_and_filters() -> None:
    names = [f"book{index:04d}" for index in range(250)]
    made = Books(names)
    async with made.pipeline:
        await pydatatask.run(made.pipeline)
        async with dashboard(made.pipeline) as client:
            first = await client.get("/tasks/report", params={"state": "succeeded"})
            last = await client.get("/tasks/report", params={"state": "succeeded", "page": "3"})
            beyond = await client.get("/tasks/report", params={"state": "succeeded", "page": "9"})
            some = await client.get("/tasks/report", params={"state": "succeeded", "q": "book01"})
    assert "jobs 1\N{EN DASH}100 of 250" in first.text
    assert first.text.count("/tasks/report/jobs/") == 100
    assert "book0000" in first.text
    assert "book0100" not in first.text
    assert "jobs 201\N{EN DASH}250 of 250" in last.text
    assert "page 3 of 3" in last.text
    assert "page 3 of 3" in beyond.text  # past the end: the last page
    assert some.text.count("/tasks/report/jobs/") == 100
    assert "book0199" in some.text
    assert "book0200" not in some.text


async def test_a_job_page_escapes_markup_in_ids_and_tracebacks() -> None:
    made = Books([HOSTILE, "alice"])
    async with made.pipeline:
        await pydatatask.run(made.pipeline)
        async with dashboard(made.pipeline) as client:
            job = await client.get(f"/tasks/count/jobs/{quote(HOSTILE, safe='')}")
            listing = await client.get("/tasks/count", params={"state": "failed"})
    for page in (job, listing):
        assert page.status_code == 200
        assert "<img" not in page.text
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "cannot count the words of &lt;&lt;img" in job.text


class SlowListing(InProcessMetadataRepository):
    """Listing it takes ``delay`` seconds, as listing a million ids does."""

    delay = 0.0

    async def ids(self) -> set[str]:
        await asyncio.sleep(self.delay)
        return await super().ids()


async def test_pages_do_not_wait_for_a_slow_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    made = Books(["alice", "bad"], books=SlowListing)
    async with made.pipeline:
        await pydatatask.run(made.pipeline)
    monkeypatch.setattr(SlowListing, "delay", 1.5)
    async with made.pipeline, dashboard(made.pipeline, read_first=False) as client:
        graph = await client.get("/")
        task = await client.get("/tasks/count")
        later = await page_without(client, "/", "Counting the jobs")
        listed = await page_without(client, "/tasks/count", "Listing the jobs")
    assert graph.status_code == 200
    assert "Counting the jobs" in graph.text
    assert 'data-state="succeeded">…<' in graph.text
    assert '<meta http-equiv="refresh"' in task.text
    assert 'data-task="count" data-state="succeeded">1<' in later.text
    assert '<meta http-equiv="refresh"' not in listed.text
    assert 'href="/tasks/count/jobs/bad"' in listed.text


async def test_the_event_stream_sends_the_counts_as_they_change() -> None:
    made = Books([f"book{index}" for index in range(6)], delay=0.2)
    async with made.pipeline, serving(made.pipeline, 0) as url:
        seen: list[dict[str, Any]] = []
        running = asyncio.create_task(pydatatask.run(made.pipeline))
        async with (
            httpx.AsyncClient(base_url=url, timeout=WAIT) as client,
            client.stream("GET", "/events") as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            async with asyncio.timeout(WAIT):
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        seen.append(json.loads(line.removeprefix("data: ")))
                        if seen[-1]["report"]["succeeded"] == 6:
                            break
        await running
    assert len(seen) >= 2
    assert all(earlier != later for earlier, later in itertools.pairwise(seen))
    assert seen[0]["report"]["succeeded"] < 6


async def test_serve_serves_until_cancelled() -> None:
    made = Books(["alice"])
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with made.pipeline:
        serving_task = asyncio.create_task(serve(made.pipeline, port=port))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            async with asyncio.timeout(WAIT):
                while True:
                    with contextlib.suppress(httpx.ConnectError):
                        if (await client.get("/api/status")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
            serving_task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await serving_task
            with pytest.raises(httpx.ConnectError):
                await client.get("/api/status")


async def test_serving_reports_a_port_in_use() -> None:
    made = Books(["alice"])
    async with made.pipeline, serving(made.pipeline, 0) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(OSError, match=r"[Aa]ddress already in use"):
            async with serving(made.pipeline, port):
                pass


def test_importing_pydatatask_loads_no_web_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pydatatask; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'pydatatask.web') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- in a browser


def shown_counts(driver: Chrome) -> dict[str, dict[str, int]]:
    """Return the counts the page shows in its table, by task and state."""
    from selenium.webdriver.common.by import By

    counts: dict[str, dict[str, int]] = {}
    for cell in driver.find_elements(By.CSS_SELECTOR, "table.counts [data-task][data-state]"):
        task, state = cell.get_attribute("data-task"), cell.get_attribute("data-state")
        assert task is not None
        assert state is not None
        counts.setdefault(task, {})[state] = int(cell.text)
    return counts


def counts_shown(driver: Chrome) -> bool:
    """Whether every count in the page's table is a number (none still to come)."""
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, "table.counts [data-task][data-state]")
    return bool(cells) and all(cell.text.isdigit() for cell in cells)


def loaded_from(driver: Chrome) -> list[str]:
    """Return the URL of the page and of everything it loaded."""
    urls: list[str] = driver.execute_script(
        "return performance.getEntries().map(entry => entry.name)"
        ".filter(name => name.includes('://'));"
    )
    return urls


def wait_until(driver: Chrome, condition: Any, message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message)


@pytest.mark.backend
def test_graph_page_shows_the_counts_of_status_json(
    browser: Chrome, books: Books, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By

    expected = json.loads(cli_status(books.pipeline, capsys))
    with live(books.pipeline) as served:
        url = served.url
        browser.get(url)
        wait_until(browser, counts_shown, "no counts")
        assert browser.find_element(By.ID, "live").text == "live"
        shown = shown_counts(browser)
        assert set(shown) == set(expected)
        for task, counts in shown.items():
            for state, number in counts.items():
                assert number == expected[task][state], (task, state)
            known = {"succeeded", "failed", "running", "ready", "waiting", "blocked"}
            assert known <= set(counts)
        names = [box.text for box in browser.find_elements(By.CSS_SELECTOR, ".task-name")]
        assert names == ["clean", "count", "report"]
        assert len(browser.find_elements(By.CSS_SELECTOR, "path.edge")) == 2
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / "graph.png"))

        browser.get(url + "tasks/count?state=succeeded")
        jobs = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "ol.jobs a")]
        assert jobs == ["alice", "dracula", "emma", "ivanhoe", "moby", "ulysses"]
        browser.save_screenshot(str(SCREENSHOTS / "task.png"))
        everything = loaded_from(browser)
    assert everything, "the browser reported no page load"
    assert all(name.startswith(url) for name in everything), everything


@pytest.mark.backend
def test_a_failing_jobs_page_shows_its_exception(browser: Chrome, books: Books) -> None:
    from selenium.webdriver.common.by import By

    with live(books.pipeline) as served:
        url = served.url
        browser.get(url + "tasks/count")  # opens on the failed jobs, once they are listed
        wait_until(browser, lambda d: d.find_elements(By.LINK_TEXT, "bad"), "no job 'bad'")
        browser.find_element(By.LINK_TEXT, "bad").click()
        wait_until(browser, lambda d: "/jobs/bad" in d.current_url, "no job page")
        exception = browser.find_element(By.CSS_SELECTOR, ".exception").text
        traceback = browser.find_element(By.CSS_SELECTOR, "pre.traceback").text
        why = browser.find_element(By.CSS_SELECTOR, "ul.why").text
        assert exception == "ValueError: cannot count the words of <bad>"
        assert traceback.startswith("Traceback (most recent call last)")
        assert "raise ValueError" in traceback
        assert "failed at" in why
        assert "counting" in browser.find_element(By.CSS_SELECTOR, "pre.output").text
        browser.save_screenshot(str(SCREENSHOTS / "job.png"))
        everything = loaded_from(browser)
    assert all(name.startswith(url) for name in everything), everything


@pytest.mark.backend
def test_a_job_page_shows_markup_as_text(browser: Chrome) -> None:
    from selenium.webdriver.common.by import By

    made = Books([HOSTILE])
    assert run_cli(made.pipeline, ["run"]) == 1
    with live(made.pipeline) as served:
        url = served.url
        browser.get(url + f"tasks/count/jobs/{quote(HOSTILE, safe='')}")
        assert browser.find_element(By.CSS_SELECTOR, ".job-id").text == HOSTILE
        assert browser.find_elements(By.TAG_NAME, "img") == []
        exception = browser.find_element(By.CSS_SELECTOR, ".exception").text
        assert exception == f"ValueError: cannot count the words of <{HOSTILE}>"


@pytest.mark.backend
def test_counts_rise_on_an_open_page_while_the_pipeline_runs(browser: Chrome) -> None:

    names = [f"book{index:02d}" for index in range(12)]
    made = Books(names, delay=0.25)
    with live(made.pipeline) as served:
        url = served.url
        browser.get(url)
        wait_until(browser, counts_shown, "no counts")
        assert shown_counts(browser)["report"]["succeeded"] == 0
        browser.execute_script("window.notReloaded = true;")
        served.start_run()

        def reports_done(driver: Chrome) -> int:
            return shown_counts(driver)["report"]["succeeded"]

        wait_until(browser, lambda d: reports_done(d) == len(names), "not every report counted")
        assert browser.execute_script("return window.notReloaded === true;")
        counts = shown_counts(browser)
        assert counts["clean"]["succeeded"] == counts["count"]["succeeded"] == len(names)
        assert counts["report"]["running"] == 0
