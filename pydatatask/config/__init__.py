"""Declarative pipelines: build a :class:`~pydatatask.Pipeline` from a ``pipeline.yaml``.

::

    pipeline = pydatatask.config.load_pipeline("pipeline.yaml", settings={"BUCKET": "raw"})

The file names resources (clients built from settings), repositories and tasks, each by
a registered kind (see :func:`register`); :func:`json_schema` is the
file format, and every problem is a :class:`ConfigFileError` naming the file, line and
key. Checking a file needs the ``jsonschema`` package, from the ``yaml-pipelines`` extra.
"""

from __future__ import annotations

from pydatatask.config import clock as _clock  # noqa: F401 - registers the dataset kinds
from pydatatask.config import tasks as _tasks  # noqa: F401 - registers the task kinds
from pydatatask.config.errors import ConfigFileError
from pydatatask.config.loader import load_pipeline, validate_file
from pydatatask.config.registry import BuildContext, Kind, find, register, registered
from pydatatask.config.schema import json_schema

__all__ = [
    "BuildContext",
    "ConfigFileError",
    "Kind",
    "find",
    "json_schema",
    "load_pipeline",
    "register",
    "registered",
    "validate_file",
]
