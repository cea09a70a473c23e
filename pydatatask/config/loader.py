"""Build a :class:`~pydatatask.Pipeline` from a pipeline file (``pipeline.yaml``).

The file is read (:mod:`~pydatatask.config.document`), checked against the JSON Schema
(:mod:`~pydatatask.config.schema`), and then built entry by entry: resources, then
repositories (each built when first named, so they may name each other), then tasks,
with the checks the schema cannot make: names of repositories and resources, kinds of
repositories, link names, template names, and cycles. Every problem is a
:class:`~pydatatask.config.errors.ConfigFileError` naming the file, line and key.
"""

from __future__ import annotations

import contextlib
import keyword
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydatatask.config import repositories as _repositories  # noqa: F401 - registers its kinds
from pydatatask.config import resources as _resources  # noqa: F401 - registers its kinds
from pydatatask.config.convert import convert
from pydatatask.config.document import Document, KeyPath, read_document
from pydatatask.config.errors import nearest
from pydatatask.config.registry import BuildContext, Kind, find
from pydatatask.config.schema import check_schema
from pydatatask.config.tasks import InvalidValueError
from pydatatask.errors import ConfigurationError, PipelineValidationError
from pydatatask.pipeline import Pipeline
from pydatatask.repository.base import MetadataRepository, Repository
from pydatatask.session import Resource, Session
from pydatatask.task.base import Task
from pydatatask.task.external import ExternalTask
from pydatatask.templating import environment, required_names

__all__ = ["load_pipeline", "validate_file"]

_PIPELINE_OPTIONS = ("lease_seconds", "max_concurrent_jobs", "poll_interval")
_TAKEN_LINK_NAMES = frozenset({"job", "done"})


def load_pipeline(
    path: str | os.PathLike[str], settings: Mapping[str, str] | None = None
) -> Pipeline:
    """Build the pipeline a pipeline file describes; it is not opened.

    ``${NAME}`` and ``${NAME:-default}`` in the file's strings take the value of
    ``settings[NAME]``, else of the environment variable, else the default. Relative
    paths are relative to the file's folder, which is also put first on ``sys.path``
    for ``function:`` tasks.

    :raises ConfigFileError: for any problem of the file, with its line and key.
    :raises MissingDependencyError: when ``jsonschema`` (the ``yaml-pipelines`` extra),
        or the package of a backend the file uses, is not installed.
    """
    document = read_document(path, settings)
    check_schema(document)
    return _Builder(document).build()


def validate_file(path: str | os.PathLike[str], settings: Mapping[str, str] | None = None) -> None:
    """Check a pipeline file as :func:`load_pipeline` does, connecting to nothing.

    :raises ConfigFileError: for any problem of the file, with its line and key.
    :raises MissingDependencyError: as for :func:`load_pipeline`.
    """
    load_pipeline(path, settings)


def default_app(document: Document) -> str:
    """Return the application name of a file without ``app``: its folder's name, cleaned."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", document.folder.name).strip("-_.")
    return name[:63].rstrip("-_.") or "pipeline"


class _Builder:
    """Builds the entries of one file; it is the resolver of the names keys give."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.data: dict[str, Any] = document.data
        self.session = Session()
        self.app: str = self.data.get("app") or default_app(document)
        self.resources: dict[str, tuple[Resource[Any], str]] = {}
        self.repositories: dict[str, Repository] = {}
        self.building: list[str] = []

    def section(self, name: str) -> dict[str, Any]:
        return self.data.get(name) or {}

    def build(self) -> Pipeline:
        for name in self.section("resources"):
            self._build_resource(name)
        for name in self.section("repositories"):
            self.repository(name, ("repositories", name))
        tasks = [self._build_task(name, spec) for name, spec in self.section("tasks").items()]
        leases = self._leases()
        options = {key: self.data[key] for key in _PIPELINE_OPTIONS if key in self.data}
        with self._wrapping(()):
            pipeline = Pipeline(tasks, self.session, leases=leases, **options)
        self._check_cycles(pipeline)
        return pipeline

    # ------------------------------------------------------------------ entries

    def _context(self, name: str) -> BuildContext:
        return BuildContext(name, self.document.folder, self.app)

    def _keys(self, kind: Kind, spec: Mapping[str, Any], where: KeyPath) -> dict[str, Any]:
        return {
            key: convert(value, kind.keys[key].annotation, (*where, key), self.document, self)
            for key, value in spec.items()
            if key != "kind" or kind.what == "task"
        }

    def _build_resource(self, name: str) -> None:
        where: KeyPath = ("resources", name)
        spec = self.section("resources")[name]
        kind = _kind("resource", spec["kind"])
        keys = self._keys(kind, spec, where)
        with self._wrapping(where):
            factory = kind.factory(self._context(name), **keys)
        accessor = self.session.resource(factory)
        accessor.name = name
        self.resources[name] = (accessor, kind.name)

    def repository(self, name: str, where: KeyPath) -> Repository:
        """Return the repository ``name``, building it first if needed.

        :raises ConfigFileError: for an unknown name, or repositories naming each other.
        """
        if name in self.repositories:
            return self.repositories[name]
        specs = self.section("repositories")
        if name not in specs:
            raise self._unknown("repository", name, where, specs)
        if name in self.building:
            cycle = [*self.building[self.building.index(name) :], name]
            raise self.document.error(
                where, f"repositories name each other in a cycle: {' -> '.join(cycle)}"
            )
        self.building.append(name)
        try:
            entry: KeyPath = ("repositories", name)
            kind = _kind("repository", specs[name]["kind"])
            keys = self._keys(kind, specs[name], entry)
            with self._wrapping(entry):
                repo: Repository = kind.factory(self._context(name), **keys)
        finally:
            self.building.pop()
        self.repositories[name] = repo
        return repo

    def resource(self, name: str, kinds: tuple[str, ...], where: KeyPath) -> Resource[Any]:
        """Return the resource ``name``, which must be of one of ``kinds`` (any when empty).

        :raises ConfigFileError: for an unknown name or a resource of another kind.
        """
        if name not in self.resources:
            raise self._unknown("resource", name, where, self.section("resources"))
        accessor, kind = self.resources[name]
        if kinds and kind not in kinds:
            shown = f"{name!r}" if self.document.shows(where) else "named here"
            raise self.document.error(
                where, f"resource {shown} is a {kind} resource; this key needs {' or '.join(kinds)}"
            )
        return accessor

    def _build_task(self, name: str, spec: Mapping[str, Any]) -> Task:
        where: KeyPath = ("tasks", name)
        kind = next(kind for key in spec if (kind := find("task", key)) is not None)
        self._check_link_names(spec, where)
        keys = self._keys(kind, spec, where)
        with self._wrapping(where):
            task: Task = kind.factory(self._context(name), **keys)
        if isinstance(task, ExternalTask):
            self._check_templates(task, kind, where)
        return task

    def _leases(self) -> Repository | None:
        name = self.data.get("leases")
        if name is None:
            return None
        repo = self.repository(name, ("leases",))
        if not isinstance(repo, MetadataRepository) or not repo.atomic_create:
            raise self.document.error(
                ("leases",),
                f"a {type(repo).__name__} cannot hold leases: name a yaml, yaml-s3, mongodb "
                "or memory repository",
            )
        return repo

    # ------------------------------------------------------------------ checks

    def _unknown(
        self, what: str, name: str, where: KeyPath, known: Mapping[str, Any]
    ) -> ConfigurationError:
        shown = f" {name!r}" if self.document.shows(where) else ""
        return self.document.error(where, f"unknown {what}{shown}", nearest(name, known))

    def _check_link_names(self, spec: Mapping[str, Any], where: KeyPath) -> None:
        used: set[str] = set()
        for section in ("inputs", "outputs", "links"):
            for name in spec.get(section) or {}:
                problem = _link_name_problem(name, used)
                if problem is not None:
                    raise self.document.error((*where, section, name), problem)
                used.add(name)

    def _check_templates(self, task: ExternalTask[Any, Any], kind: Kind, where: KeyPath) -> None:
        """Report a template name that is not defined now, as opening the pipeline would."""
        known = {"job", *task.reserved_names, *task.links}
        for what, template in task.templates().items():
            key = "image" if what.startswith("image") else kind.name
            with self._wrapping((*where, key)):
                unknown = required_names(template) - known - environment().globals.keys()
            if unknown:
                names = ", ".join(sorted(unknown))
                raise self.document.error(
                    (*where, key),
                    f"the {what} uses {names}, not defined here; it can use "
                    f"{', '.join(sorted(known))}",
                    nearest(min(unknown), known),
                )

    def _check_cycles(self, pipeline: Pipeline) -> None:
        try:
            pipeline.topological_order()
        except PipelineValidationError:
            cycle = _find_cycle(pipeline, key=lambda name: self.document.line(("tasks", name)))
            raise self.document.error(
                ("tasks", cycle[0]),
                f"tasks depend on each other in a cycle: {' -> '.join([*cycle, cycle[0]])}",
            ) from None

    @contextlib.contextmanager
    def _wrapping(self, where: KeyPath) -> Iterator[None]:
        """Report what a constructor or factory rejects as a problem at ``where``.

        The original error stays chained as the cause, unless its message held a
        substituted value: then it is dropped, so that no traceback shows the value.
        """
        try:
            yield
        except InvalidValueError as exc:
            problem = self.document.redact(exc.problem)
            error = self.document.error((*where, exc.key), problem)
            raise error from (exc if problem == exc.problem else None)
        except (ConfigurationError, TypeError, ValueError) as exc:
            problem = self.document.redact(str(exc))
            error = self.document.error(where, problem)
            raise error from (exc if problem == str(exc) else None)


def _link_name_problem(name: str, earlier: set[str]) -> str | None:
    """Return why ``name`` cannot name a link (``earlier``: names used before), or None."""
    if not name.isidentifier() or keyword.iskeyword(name):
        return "a link name must be a Python identifier"
    if name in _TAKEN_LINK_NAMES:
        return f"{name!r} cannot name a link: it is the task's own"
    if name in earlier:
        return "this link name is used twice"
    return None


def _kind(what: Any, name: str) -> Kind:
    found = find(what, name)
    assert found is not None, "the schema admits only registered kinds"
    return found


def _find_cycle(pipeline: Pipeline, key: Any) -> list[str]:
    """Return the tasks of one dependency cycle, starting at the one ``key`` orders first."""
    downstream: dict[str, list[str]] = {name: [] for name in pipeline.tasks}
    for edge in pipeline.edges:
        downstream[edge.upstream].append(edge.downstream)
    for start in sorted(pipeline.tasks, key=key):
        path = [start]
        seen = {start}
        stack = [iter(sorted(downstream[start], key=key))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                seen.discard(path.pop())
            elif following == start:
                return path
            elif following not in seen:
                path.append(following)
                seen.add(following)
                stack.append(iter(sorted(downstream[following], key=key)))
    return sorted(pipeline.tasks, key=key)
