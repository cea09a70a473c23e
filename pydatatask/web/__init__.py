"""The web dashboard: a read-only view of an open pipeline, served over HTTP.

Needs the ``web`` extra (``pip install 'pydatatask[web]'``: Starlette and uvicorn).
:func:`create_app` returns the ASGI application; :func:`serve` serves it until
cancelled, and :func:`serving` serves it in the background while the caller runs the
pipeline. Pages show what :mod:`pydatatask.overview` returns (``status``, ``trace``,
``why``), never the scheduler's own state.
"""

from __future__ import annotations

from pydatatask._optional import import_optional

import_optional("starlette", "web")
import_optional("uvicorn", "web")

from pydatatask.web.app import create_app  # noqa: E402 - after the install hint above
from pydatatask.web.server import serve, serving  # noqa: E402

__all__ = ["create_app", "serve", "serving"]
