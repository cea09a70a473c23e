"""The kinds a pipeline file can name, one registration each.

A :class:`Kind` is a name, what it builds (a ``repository``, a ``task`` or a
``resource``) and a factory. The keys the kind accepts in the file are the factory's
keyword parameters, read from its signature: their annotations give their types (and so
the JSON Schema of the file), a parameter without a default is a required key, and
``**options: Unpack[SomeTypedDict]`` adds the keys of that ``TypedDict``. The factory's
one positional-only parameter receives a :class:`BuildContext`. Adding a kind is one
line::

    register(Kind("file", "repository", file_repository))

Annotations may carry markers with ``typing.Annotated``: :class:`Reference` (the
value names a repository or resource of the file, and the factory receives the object),
:class:`RelativePath` (a path relative to the file's folder, received as an absolute
:class:`~pathlib.Path`) and :class:`Choices` (one of a few strings).

A task kind's name is also its key: a task is of kind ``process`` when it has the key
``process`` (its script), so the factory of a task kind has a parameter of that name.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydatatask.repository.base import Repository

__all__ = [
    "BuildContext",
    "Choices",
    "Key",
    "Kind",
    "Reference",
    "RelativePath",
    "RepositoryName",
    "What",
    "find",
    "register",
    "registered",
    "unwrap",
]

What = Literal["repository", "task", "resource"]
"""What a kind builds."""


@dataclass(frozen=True)
class Reference:
    """Marks a key whose value names another entry of the file.

    :param what: ``"repository"`` or ``"resource"``.
    :param kinds: for a resource, the kinds of resource the key accepts (all when empty).
    """

    what: Literal["repository", "resource"]
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class RelativePath:
    """Marks a path, relative to the folder of the file; ``~`` is the home folder."""


@dataclass(frozen=True)
class Choices:
    """Marks a string that must be one of ``values``."""

    values: tuple[str, ...]


RepositoryName = Annotated[Repository, Reference("repository")]
"""A key naming a repository of the file; the factory receives the repository."""


@dataclass(frozen=True)
class BuildContext:
    """What a factory knows besides its keys.

    :param name: the name of the entry being built (the task's name, say).
    :param folder: the absolute folder of the pipeline file.
    :param app: the pipeline's application name, for executors that label their jobs.
    """

    name: str
    folder: Path
    app: str


@dataclass(frozen=True)
class Key:
    """One key a kind accepts: its name, annotation, whether it must be given, and what it is."""

    name: str
    annotation: Any
    required: bool
    description: str = ""


@dataclass(frozen=True)
class Kind:
    """One kind of repository, task or resource that a pipeline file can name.

    :param name: the name used in the file (``kind: NAME``, or the key of a task kind).
    :param what: ``"repository"``, ``"task"`` or ``"resource"``.
    :param factory: ``factory(context, /, **keys)`` returns the built object (for a
        resource, an async generator function for :meth:`pydatatask.Session.resource`).
    """

    name: str
    what: What
    factory: Callable[..., Any]

    @functools.cached_property
    def keys(self) -> dict[str, Key]:
        """The keys the kind accepts, from the factory's signature, in its order."""
        return _keys_of(self.factory)

    @property
    def summary(self) -> str:
        """The first line of the factory's documentation."""
        return (inspect.getdoc(self.factory) or "").partition("\n")[0]


_KINDS: dict[tuple[str, str], Kind] = {}


def register(kind: Kind) -> Kind:
    """Make ``kind`` known to pipeline files; return it.

    :raises ValueError: when a kind of that name is registered for the same ``what``, or
        a task kind's factory takes no key named after the kind.
    """
    if (kind.what, kind.name) in _KINDS:
        raise ValueError(f"a {kind.what} kind named {kind.name!r} is already registered")
    if kind.what == "task" and kind.name not in kind.keys:
        raise ValueError(f"the factory of task kind {kind.name!r} takes no key {kind.name!r}")
    _KINDS[(kind.what, kind.name)] = kind
    return kind


def registered(what: What) -> list[Kind]:
    """Return the kinds registered for ``what``, sorted by name."""
    return sorted((kind for kind in _KINDS.values() if kind.what == what), key=lambda k: k.name)


def find(what: What, name: str) -> Kind | None:
    """Return the kind ``name`` of ``what``, or None."""
    return _KINDS.get((what, name))


def unwrap(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """Return an annotation without ``typing.Annotated``, and its markers."""
    if typing.get_origin(annotation) is Annotated:
        base, *markers = typing.get_args(annotation)
        inner, more = unwrap(base)
        return inner, (*tuple(markers), *more)
    return annotation, ()


def _keys_of(factory: Callable[..., Any]) -> dict[str, Key]:
    hints = typing.get_type_hints(factory, include_extras=True)
    described = _parameter_docs(inspect.getdoc(factory) or "")
    keys: dict[str, Key] = {}
    for parameter in inspect.signature(factory).parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL):
            continue
        annotation = hints[parameter.name]
        if parameter.kind is parameter.VAR_KEYWORD:
            if typing.get_origin(annotation) is not typing.Unpack:
                raise TypeError(f"{factory.__qualname__}: **{parameter.name} needs Unpack[...]")
            (options,) = typing.get_args(annotation)
            keys.update(typed_dict_keys(options))
            continue
        required = parameter.default is parameter.empty
        keys[parameter.name] = Key(
            parameter.name, annotation, required, described.get(parameter.name, "")
        )
    return keys


def typed_dict_keys(options: Any) -> dict[str, Key]:
    """Return the keys of a ``TypedDict`` (``Required``/``NotRequired`` respected)."""
    described = _parameter_docs(inspect.getdoc(options) or "")
    keys = {}
    for name, annotation in typing.get_type_hints(options, include_extras=True).items():
        required = bool(options.__total__)
        origin = typing.get_origin(annotation)
        if origin is typing.Required or origin is typing.NotRequired:
            required = origin is typing.Required
            (annotation,) = typing.get_args(annotation)
        keys[name] = Key(name, annotation, required, described.get(name, ""))
    return keys


_PARAM = re.compile(r"^:param (\w+):\s*(.*)$")


def _parameter_docs(doc: str) -> dict[str, str]:
    """Return ``{name: text}`` of the ``:param name: text`` entries of a docstring."""
    found: dict[str, str] = {}
    current: str | None = None
    for line in doc.splitlines():
        match = _PARAM.match(line.strip())
        if match:
            current = match.group(1)
            found[current] = match.group(2)
        elif current is not None and line.startswith((" ", "\t")) and line.strip():
            found[current] += " " + line.strip()
        else:
            current = None
    return found
