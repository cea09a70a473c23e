"""Turn a key's value from the file into what its kind's factory takes.

Values have passed the JSON Schema, so only what the schema cannot see is checked here:
names of repositories and resources are resolved to the objects (and checked to be of
a usable kind), and relative paths are made absolute.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal, Protocol

from pydatatask.config.document import Document, KeyPath
from pydatatask.config.registry import Choices, Reference, RelativePath, typed_dict_keys, unwrap
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.session import Resource

__all__ = ["Resolver", "convert", "describe_repository_class", "matches"]


class Resolver(Protocol):
    """Finds the entries of the file that keys name, building them when needed."""

    def repository(self, name: str, where: KeyPath) -> Repository:
        """Return the repository ``name``, named by the key at ``where``."""

    def resource(self, name: str, kinds: tuple[str, ...], where: KeyPath) -> Resource[Any]:
        """Return the resource ``name`` (of one of ``kinds``), named by the key at ``where``."""


def describe_repository_class(cls: type[Any]) -> str:
    """Return how a message names the repositories of ``cls``."""
    if cls is BlobRepository:
        return "a blob repository (file, memory-blob, s3)"
    if cls is MetadataRepository:
        return "a metadata repository (yaml, yaml-s3, mongodb, memory)"
    return "a repository"


def convert(
    value: Any, annotation: Any, where: KeyPath, document: Document, resolver: Resolver
) -> Any:
    """Return ``value`` as the factory takes it, for a key annotated ``annotation``.

    :raises ConfigFileError: for an unknown name, or a repository of the wrong kind.
    """
    if value is None:
        return None
    base, markers = unwrap(annotation)
    reference = next((marker for marker in markers if isinstance(marker, Reference)), None)
    if reference is not None:
        return _resolve(value, base, reference, where, document, resolver)
    if any(isinstance(marker, RelativePath) for marker in markers):
        return document.folder / Path(value).expanduser()
    origin = typing.get_origin(base)
    arguments = typing.get_args(base)
    if origin is typing.Union or origin is types.UnionType:
        for arm in arguments:
            if arm is not type(None) and matches(value, arm):
                return convert(value, arm, where, document, resolver)
        return value
    if origin is dict or typing.is_typeddict(base):
        keys = typed_dict_keys(base) if typing.is_typeddict(base) else None
        return {
            key: convert(
                item,
                arguments[1] if keys is None else keys[key].annotation,
                (*where, key),
                document,
                resolver,
            )
            for key, item in value.items()
        }
    if origin is list:
        return [
            convert(item, arguments[0], (*where, index), document, resolver)
            for index, item in enumerate(value)
        ]
    if base is float and isinstance(value, int):
        return float(value)
    return value


def _resolve(
    name: str,
    base: Any,
    reference: Reference,
    where: KeyPath,
    document: Document,
    resolver: Resolver,
) -> Any:
    """Return the repository or resource ``name``, checked against what the key needs."""
    if reference.what == "resource":
        return resolver.resource(name, reference.kinds, where)
    repo = resolver.repository(name, where)
    wanted = base if isinstance(base, type) else Repository
    if not isinstance(repo, wanted):
        shown = f"{name!r}" if document.shows(where) else "named here"
        raise document.error(
            where,
            f"repository {shown} is a {type(repo).__name__}; this key needs "
            f"{describe_repository_class(wanted)}",
        )
    return repo


def matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is of the type ``annotation`` describes (one arm of a union)."""
    base, markers = unwrap(annotation)
    if any(isinstance(marker, Reference | RelativePath | Choices) for marker in markers):
        return isinstance(value, str)
    origin = typing.get_origin(base)
    if origin is dict or typing.is_typeddict(base):
        return isinstance(value, dict)
    if origin is list:
        return isinstance(value, list)
    if origin is Literal:
        return value in typing.get_args(base)
    if base is Any:
        return True
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(base, type) and isinstance(value, base)
