"""The JSON Schema of pipeline files, generated from the registered kinds, and its checks.

:func:`json_schema` describes the file format (draft 2020-12) for editors and other
tools. :func:`check_schema` validates a parsed file with it, through the ``jsonschema``
package (the ``yaml-pipelines`` extra), and reports the first problem in the file as a
:class:`~pydatatask.config.errors.ConfigFileError` naming its line and key.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydatatask._optional import import_optional
from pydatatask.config.document import Document, KeyPath
from pydatatask.config.errors import ConfigFileError, nearest
from pydatatask.config.registry import (
    Choices,
    Kind,
    Reference,
    RelativePath,
    What,
    registered,
    typed_dict_keys,
    unwrap,
)

__all__ = ["check_schema", "json_schema"]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_APP_PATTERN = "^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
_TASK_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_-]*$"
_PATTERN_RULES = {
    _APP_PATTERN: "letters, digits, '_', '.' and '-', starting and ending with a letter or "
    "digit, at most 63",
    _TASK_NAME_PATTERN: "letters, digits, '_' and '-', starting with a letter or '_'",
}
_SECTIONS: dict[str, What] = {
    "resources": "resource",
    "repositories": "repository",
    "tasks": "task",
}
_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of pipeline files, from the registered kinds."""
    definitions: dict[str, Any] = {}
    properties: dict[str, Any] = {
        "app": {
            "type": "string",
            "pattern": _APP_PATTERN,
            "description": "names this pipeline's job folders, containers and pods "
            "(default: the name of the file's folder)",
        }
    }
    for section, what in _SECTIONS.items():
        kinds = registered(what)
        for kind in kinds:
            definitions[f"{what}-{kind.name}"] = _kind_schema(kind)
        definitions[what] = _task_schema(kinds) if what == "task" else _entry_schema(what, kinds)
        properties[section] = {
            "type": ["object", "null"],
            "additionalProperties": {"$ref": f"#/$defs/{what}"},
        }
    properties["tasks"]["propertyNames"] = {"pattern": _TASK_NAME_PATTERN}
    properties.update(
        leases={"type": "string", "description": "the repository where controllers claim jobs"},
        lease_seconds={"type": "number", "minimum": 1},
        max_concurrent_jobs={"type": "integer", "minimum": 1},
        poll_interval={"type": "number", "exclusiveMinimum": 0},
    )
    return {
        "$schema": _DRAFT,
        "title": "pydatatask pipeline file",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "$defs": definitions,
    }


def _entry_schema(what: What, kinds: list[Kind]) -> dict[str, Any]:
    names = [kind.name for kind in kinds]
    return {
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": names}},
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
                "then": {"$ref": f"#/$defs/{what}-{name}"},
            }
            for name in names
        ],
    }


def _task_schema(kinds: list[Kind]) -> dict[str, Any]:
    names = [kind.name for kind in kinds]
    return {
        "type": "object",
        "oneOf": [{"required": [name]} for name in names],
        "allOf": [
            {"if": {"required": [name]}, "then": {"$ref": f"#/$defs/task-{name}"}} for name in names
        ],
    }


def _kind_schema(kind: Kind) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required = []
    if kind.what != "task":
        properties["kind"] = {"const": kind.name}
        required.append("kind")
    for key in kind.keys.values():
        schema = annotation_schema(key.annotation)
        properties[key.name] = (
            {**schema, "description": key.description} if key.description else schema
        )
        if key.required:
            required.append(key.name)
    return {
        "type": "object",
        "description": kind.summary,
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def annotation_schema(annotation: Any) -> dict[str, Any]:
    """Return the JSON Schema of a key's values from its annotation.

    :raises TypeError: for an annotation with no JSON form.
    """
    base, markers = unwrap(annotation)
    for marker in markers:
        if isinstance(marker, Reference):
            return {"type": "string", "description": f"the name of a {marker.what}"}
        if isinstance(marker, RelativePath):
            return {"type": "string"}
        if isinstance(marker, Choices):
            return {"type": "string", "enum": list(marker.values)}
    origin = typing.get_origin(base)
    arguments = typing.get_args(base)
    if origin is typing.Union or origin is types.UnionType:
        return _union_schema(arguments)
    if origin is Literal:
        return {"enum": list(arguments)}
    if origin is dict:
        return {"type": "object", "additionalProperties": annotation_schema(arguments[1])}
    if origin is list:
        return {"type": "array", "items": annotation_schema(arguments[0])}
    if typing.is_typeddict(base):
        keys = typed_dict_keys(base)
        return {
            "type": "object",
            "properties": {name: annotation_schema(key.annotation) for name, key in keys.items()},
            "required": [name for name, key in keys.items() if key.required],
            "additionalProperties": False,
        }
    if base is Any:
        return {}
    if base in _SIMPLE_TYPES:
        return {"type": _SIMPLE_TYPES[base]}
    raise TypeError(f"no JSON Schema for {annotation!r}")


_SIMPLE_TYPES: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _union_schema(arguments: tuple[Any, ...]) -> dict[str, Any]:
    """Return the schema of a union: one ``type`` list when every arm is a plain type."""
    arms = [annotation_schema(arm) for arm in arguments if arm is not type(None)]
    if type(None) in arguments:
        arms.append({"type": "null"})
    if all(
        set(arm) <= {"type", "description"} and isinstance(arm.get("type"), str) for arm in arms
    ):
        return {"type": [arm["type"] for arm in arms]}
    return {"anyOf": arms}


def check_schema(document: Document) -> None:
    """Validate a parsed file against :func:`json_schema`.

    :raises ConfigFileError: for the first problem in the file (by line).
    :raises MissingDependencyError: when ``jsonschema`` is not installed.
    """
    jsonschema = import_optional("jsonschema", "yaml-pipelines")
    validator = jsonschema.Draft202012Validator(json_schema())
    problems = [_problem(error, document) for error in validator.iter_errors(document.data)]
    if problems:
        raise min(problems, key=_order)


def _order(problem: ConfigFileError) -> tuple[int, bool, int]:
    """Sort problems by line; on one line, a task's kind first, then the deepest key."""
    return (problem.line or 0, not problem.problem.startswith("a task "), -len(problem.key))


def _problem(error: Any, document: Document) -> ConfigFileError:
    where: KeyPath = tuple(error.absolute_path)
    check = error.validator
    if "propertyNames" in error.schema_path:
        rule = _PATTERN_RULES.get(error.validator_value, error.validator_value)
        return document.error((*where, error.instance), f"invalid name: use {rule}")
    if check == "additionalProperties":
        return _unknown_key(error, where, document)
    if check == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return document.error(where, f"missing key {missing[0]!r}")
    if check == "enum":
        return _not_one_of(error, where, document)
    if check == "type":
        problem = f"expected {_expected(error.validator_value)}, not {_type_of(error.instance)}"
        return document.error(where, problem + _misplaced_key(where, error.instance))
    if check in ("anyOf", "oneOf"):
        return _none_matched(error, where, document)
    if check == "minimum":
        return document.error(where, f"must be at least {error.validator_value}")
    if check == "exclusiveMinimum":
        return document.error(where, f"must be more than {error.validator_value}")
    if check == "pattern":
        rule = _PATTERN_RULES.get(error.validator_value, error.validator_value)
        return document.error(where, f"invalid value: use {rule}")
    return document.error(where, f"invalid value (it fails the schema's {check!r})")


def _unknown_key(error: Any, where: KeyPath, document: Document) -> ConfigFileError:
    known = list(error.schema.get("properties", {}))
    extras = [key for key in error.instance if key not in known]
    extra = min(extras, key=lambda key: document.line((*where, key)))
    task_kinds = [kind.name for kind in registered("task")]
    if len(where) == 2 and where[0] == "tasks" and extra in task_kinds:
        return document.error(where, f"a task has one kind: give one of {', '.join(task_kinds)}")
    problem = "unknown top-level key" if not where else "unknown key"
    return document.error((*where, extra), problem, nearest(extra, known))


def _not_one_of(error: Any, where: KeyPath, document: Document) -> ConfigFileError:
    choices = [str(choice) for choice in error.validator_value]
    suggestion = nearest(error.instance, choices)
    shown = f" {error.instance!r}" if document.shows(where) else ""
    if where and where[-1] == "kind" and where[0] in _SECTIONS:
        return document.error(where, f"unknown {_SECTIONS[str(where[0])]} kind{shown}", suggestion)
    return document.error(where, f"expected one of {', '.join(choices)}", suggestion)


def _none_matched(error: Any, where: KeyPath, document: Document) -> ConfigFileError:
    branches = error.validator_value
    if all(set(branch) == {"required"} for branch in branches):
        keys = [name for branch in branches for name in branch["required"]]
        if any(key in error.instance for key in keys):
            return document.error(where, f"a task has one kind: give one of {', '.join(keys)}")
        return _kindless_task(error.instance, keys, where, document)
    deeper = [sub for sub in error.context if sub.validator != "type"]
    if deeper:
        found = [_problem(sub, document) for sub in deeper]
        return min(found, key=lambda problem: (problem.line or 0, -len(problem.key)))
    expected: list[str] = []
    for branch in branches:
        kind = branch.get("type", "object")
        expected += [kind] if isinstance(kind, str) else kind
    return document.error(where, f"expected {_expected(expected)}, not {_type_of(error.instance)}")


def _misplaced_key(where: KeyPath, instance: Any) -> str:
    """Return a hint when an entry looks wrongly indented, else ``""``."""
    if len(where) != 2 or where[0] not in _SECTIONS:
        return ""
    if instance is None:
        return "; indent its keys under it"
    kinds = registered(_SECTIONS[str(where[0])])
    if where[1] == "kind" or any(where[1] in kind.keys for kind in kinds):
        return f"; {where[1]!r} is a key of an entry: indent it under its entry"
    return ""


def _kindless_task(
    instance: Any, kinds: list[str], where: KeyPath, document: Document
) -> ConfigFileError:
    """Report a task without a kind: at a key that looks like a misspelt kind, if any."""
    problem = f"a task needs one of the keys {', '.join(kinds)}"
    if not isinstance(instance, dict):
        return document.error(where, problem)
    known = {key for kind in registered("task") for key in kind.keys}
    for key in sorted(instance, key=lambda key: document.line((*where, key))):
        suggestion = None if key in known else nearest(key, kinds)
        if suggestion is not None:
            return document.error((*where, key), f"unknown key; {problem}", suggestion)
    if len(where) == 2 and where[1] in known:
        problem += f"; {where[1]!r} is a key of a task: indent it under its task"
    return document.error(where, problem)


def _expected(types_: str | list[str]) -> str:
    names = [types_] if isinstance(types_, str) else types_
    return " or ".join(_TYPE_NAMES.get(name, name) for name in names)


def _type_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
