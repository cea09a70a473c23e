"""The dashboard as an ASGI application: read-only pages over what overview returns."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pydatatask import overview
from pydatatask.admin import to_yaml
from pydatatask.errors import InputError, InvalidJobIdError, JobNotFoundError
from pydatatask.web.feed import CountsFeed
from pydatatask.web.jobs import PREVIEW_BYTES, previews, state_of
from pydatatask.web.layout import layout
from pydatatask.web.queries import STATES, snapshot
from pydatatask.web.recent import Recent

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline

__all__ = ["PAGE_SIZE", "create_app"]

PAGE_SIZE = 100
"""Jobs per page of a task's listing."""
RELOAD_SECONDS = 1
"""How soon a task page sent without its listing asks the browser to load it again."""

_SUMMARY_ROWS = (("succeeded", "failed", "stale"), ("running", "ready", "waiting"))
"""The counts a task's box in the graph shows, line by line."""
_DEFAULT_STATE_ORDER = (
    "failed",
    "running",
    "ready",
    "retrying",
    "blocked",
    "unreadable",
    "waiting",
    "succeeded",
)
"""The state a task page opens on: the first of these that has jobs."""
_STATIC = Path(__file__).resolve().parent / "static"


def _policy(style: str, script: str) -> str:
    """Return the Content-Security-Policy of every page: nothing from elsewhere.

    The page's own style sheet and script are allowed by their hashes: they come inline,
    so that a page is whole in one response even while the server is busy reading.
    """

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    return (
        f"default-src 'self'; style-src {digest(style)}; script-src {digest(script)}; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def task_url(
    task: str, *, state: str | None = None, page: int | None = None, q: str | None = None
) -> str:
    """Return the path of a task's page."""
    params = {"state": state, "page": page if page != 1 else None, "q": q or None}
    query = urlencode({key: value for key, value in params.items() if value is not None})
    return f"/tasks/{quote(task, safe='')}" + (f"?{query}" if query else "")


def job_url(task: str, job: str) -> str:
    """Return the path of a job's page."""
    return f"/tasks/{quote(task, safe='')}/jobs/{quote(job, safe='')}"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def status_json(status: dict[str, Any]) -> str:
    """Render a status exactly as ``status --json`` prints it."""
    return json.dumps(status, indent=2, default=_json_default) + "\n"


def present_states(status: dict[str, dict[str, Any]]) -> list[str]:
    """Return the known states that ``status`` counts, in the dashboard's order."""
    return [state for state in STATES if any(state in counts for counts in status.values())]


class ReadOnly:
    """Answer every request other than GET and HEAD with 405: the dashboard changes nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            response = PlainTextResponse(
                "this dashboard is read-only\n", status_code=405, headers={"Allow": "GET, HEAD"}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _Dashboard:
    """The pages of one open pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.snapshots = Recent(lambda: snapshot(pipeline))
        self.status = Recent(lambda: overview.status(pipeline))
        self.feed = CountsFeed(self.snapshots)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("pydatatask.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        style = (_STATIC / "dashboard.css").read_text()
        script = (_STATIC / "dashboard.js").read_text()
        self.templates.globals.update(
            task_url=task_url, job_url=job_url, style=style, script=script
        )
        self.policy = _policy(style, script)

    def render(
        self, template: str, status_code: int = 200, *, read: bool = False, **values: Any
    ) -> HTMLResponse:
        """Render a page; with ``read``, start reading the pipeline once it is sent.

        A page never waits for a reading: with a million jobs it takes seconds, during
        which the server answers nothing else.
        """
        text = self.templates.get_template(template).render(**values)
        headers = {"Content-Security-Policy": self.policy, "Cache-Control": "no-store"}
        after = BackgroundTask(self.snapshots.refresh_soon) if read else None
        return HTMLResponse(text, status_code=status_code, headers=headers, background=after)

    def problem(self, status_code: int, title: str, message: str) -> HTMLResponse:
        return self.render("error.html", status_code, title=title, message=message)

    async def graph_page(self, request: Request) -> Response:
        found = self.snapshots.latest
        counts = {name: {} for name in self.pipeline.tasks} if found is None else found.counts()
        return self.render(
            "graph.html",
            read=not self.snapshots.is_recent,
            status=counts,
            pending=found is None,
            taken=None if found is None else found.taken,
            states=list(STATES) if found is None else present_states(counts),
            summary_rows=_SUMMARY_ROWS,
            drawing=layout(self.pipeline),
        )

    async def task_page(self, request: Request) -> Response:
        name = request.path_params["task"]
        if name not in self.pipeline.tasks:
            return self.problem(404, "No such task", f"the pipeline has no task {name!r}")
        found = self.snapshots.latest
        counts = {} if found is None else found.counts()[name]
        states = list(STATES) if found is None else present_states({name: counts})
        default = next((s for s in _DEFAULT_STATE_ORDER if counts.get(s)), "succeeded")
        current = request.query_params.get("state") or default
        if current not in states:
            return self.problem(400, "No such state", f"states: {', '.join(states)}")
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            page = 0
        if page < 1:
            return self.problem(400, "No such page", "pages are numbered from 1")
        query = request.query_params.get("q", "")
        values: dict[str, Any] = {"pending": found is None, "taken": None}
        if found is not None:
            jobs = found.jobs[name].get(current, [])
            if query:
                jobs = [job for job in jobs if query in job]
            pages = max(1, math.ceil(len(jobs) / PAGE_SIZE))
            page = min(page, pages)
            shown = jobs[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            first = (page - 1) * PAGE_SIZE + 1 if shown else 0
            values.update(
                taken=found.taken,
                jobs=shown,
                page=page,
                pages=pages,
                total=len(jobs),
                first=first,
                last=first + len(shown) - 1 if shown else 0,
            )
        return self.render(
            "task.html",
            read=not self.snapshots.is_recent,
            task=name,
            counts=counts,
            states=states,
            current=current,
            query=query,
            reload_seconds=RELOAD_SECONDS,
            **values,
        )

    async def job_page(self, request: Request) -> Response:
        name, job = request.path_params["task"], request.path_params["job"]
        try:
            task = overview.task_of(self.pipeline, name)
            traced = (await overview.trace(self.pipeline, [job]))[job]
            why = await overview.why(self.pipeline, name, job)
        except InputError as exc:
            return self.problem(404, "No such task", str(exc))
        except InvalidJobIdError as exc:
            return self.problem(404, "No such job", str(exc))
        except JobNotFoundError:
            return self.problem(404, "No such job", f"no task has a job {job!r}")
        own = traced[name]
        record = own["done"]
        details = record if isinstance(record, dict) else {}
        shown = {key: value for key, value in details.items() if key != "traceback"}
        return self.render(
            "job.html",
            task=name,
            job=job,
            state=state_of(own),
            why=why,
            record=None if record is None else to_yaml(shown),
            exception=details.get("exception") or details.get("unreadable"),
            traceback=details.get("traceback"),
            links=own["links"],
            previews=await previews(task, job, own["links"]),
            preview_kib=PREVIEW_BYTES // 1024,
            upstream=[
                (up.name, state_of(traced[up.name])) for up in self.pipeline.upstream_of(name)
            ],
            downstream=[
                (down.name, state_of(traced[down.name]))
                for down in self.pipeline.downstream_of(name)
            ],
        )

    async def api_status(self, request: Request) -> Response:
        text = status_json(await self.status.get())
        return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def events(self, request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"
            async for text in self.feed.watch():
                yield ": still here\n\n" if text is None else f"data: {text}\n\n"

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.feed.close()
            await self.snapshots.close()


def create_app(pipeline: Pipeline) -> Starlette:
    """Return the dashboard of ``pipeline`` as an ASGI application (Starlette).

    The pipeline must be open while the application serves requests; the application
    opens and closes nothing. Pages:

    - ``/``: the task graph with each task's counts by state;
    - ``/tasks/TASK?state=STATE&page=N&q=TEXT``: a task's jobs in one state, a page
      of ``PAGE_SIZE`` at a time, optionally only ids containing ``TEXT``;
    - ``/tasks/TASK/jobs/JOB``: a job's done record, traceback, ``why`` explanation,
      the beginning of its outputs (logs included), and its upstream and downstream jobs;
    - ``/api/status``: what ``status --json`` prints;
    - ``/events``: server-sent events, every task's counts by state (one line of JSON,
      ``{TASK: {STATE: COUNT}}``) each time they change, read at most every half second
      while someone watches.

    Pages show the latest reading of the pipeline (:func:`pydatatask.overview.job_states`)
    and never wait for one: a page finding none, or an old one, starts one once it is
    sent (the event stream then brings the counts). A reading is not repeated within
    half a second, nor within 19 times as long as it took (so that watching costs a
    running controller at most a twentieth of its time). Every request other than
    GET or HEAD is answered with 405. ``await app.state.end_streams()`` ends the open
    event streams, so that a server that stops need not wait for the pages to close.
    """
    dashboard = _Dashboard(pipeline)
    routes = [
        Route("/", dashboard.graph_page, methods=["GET"]),
        Route("/tasks/{task}", dashboard.task_page, methods=["GET"]),
        Route("/tasks/{task}/jobs/{job}", dashboard.job_page, methods=["GET"]),
        Route("/api/status", dashboard.api_status, methods=["GET"]),
        Route("/events", dashboard.events, methods=["GET"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(ReadOnly)], lifespan=dashboard.lifespan)
    app.state.end_streams = dashboard.feed.end
    return app
