"""Serving the dashboard with uvicorn: on its own, or beside a pipeline that runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn

from pydatatask.web.app import create_app

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from pydatatask.pipeline import Pipeline

__all__ = ["serve", "serving"]

logger = logging.getLogger(__name__)

GRACE_SECONDS = 1
"""How long, in seconds, requests still being answered may take when the server stops
(open pages' event streams are ended at once)."""


@dataclass(frozen=True)
class _Running:
    url: str
    task: asyncio.Task[None]


def _listen(host: str, port: int) -> socket.socket:
    """Bind a listening socket, so that a port in use fails here with an OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def _serve(server: uvicorn.Server, sock: socket.socket, app: Starlette) -> None:
    """Run the server; when it is told to stop (by a signal too), end the pages' streams.

    uvicorn notes a signal by setting ``should_exit``, which its own loop looks at every
    0.1 s; the streams are ended as promptly, so that it need not wait for the pages.
    """
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.should_exit and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await app.state.end_streams()
    await serving


@contextlib.asynccontextmanager
async def _started(pipeline: Pipeline, port: int, host: str) -> AsyncIterator[_Running]:
    sock = _listen(host, port)
    app = create_app(pipeline)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        ws="none",  # the pages use server-sent events, not web sockets
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(_serve(server, sock, app), name="pydatatask-dashboard")
    running = _Running(_url(sock), task)
    try:
        # uvicorn offers no event for having started listening: look every 10 ms.
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if task.done():
            await task  # raises what stopped it
            raise OSError(f"the dashboard at {running.url} stopped as it started")
        logger.info("serving the dashboard of %r at %s", pipeline, running.url)
        yield running
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def serving(
    pipeline: Pipeline, port: int = 8765, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Serve the dashboard of ``pipeline`` in the background while the block runs.

    The pipeline must be open for as long as the block runs; serving opens and closes
    nothing. The server listens before the block starts and has stopped when it ends
    (requests being answered are given ``GRACE_SECONDS`` to finish)::

        async with pipeline, serving(pipeline, 8765) as url:
            await pydatatask.run(pipeline)

    :param port: the TCP port; 0 picks a free one (the URL yielded names it).
    :param host: the address to listen on; loopback unless told otherwise.
    :returns: the dashboard's URL, such as ``http://127.0.0.1:8765/``.
    :raises OSError: when the address cannot be bound (the port is in use).
    """
    async with _started(pipeline, port, host) as running:
        yield running.url


async def serve(pipeline: Pipeline, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the dashboard of the open ``pipeline`` until cancelled (or interrupted).

    :raises OSError: when the address cannot be bound (the port is in use).
    """
    async with _started(pipeline, port, host) as running:
        await asyncio.shield(running.task)
