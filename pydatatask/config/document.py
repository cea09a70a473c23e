"""Read a pipeline file: its YAML data, the line of every key, and ``${NAME}`` substituted.

A reference ``${NAME}`` or ``${NAME:-default}`` in any string value is replaced by the
setting ``NAME`` (settings win), else the environment variable, else the default; a
reference with none of these is an error naming it. ``$${`` stands for a literal
``${`` (a shell script's own ``$${HOME}``). A plain (unquoted) value that is exactly one
reference is then read as YAML reads it, so ``port: ${PORT}`` is a number; a quoted one
stays a string. Substituted values never appear in error messages (see
:meth:`Document.redact`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pydatatask.config.errors import ConfigFileError

__all__ = ["Document", "KeyPath", "key_name", "read_document"]

KeyPath = tuple[str | int, ...]
"""Where a value is in the file: the keys (and list indexes) leading to it."""

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME_AND_DEFAULT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_SHORTEST_REDACTED = 3
"""Substituted values shorter than this are not hidden in messages: they would hide
digits and words that are not secret, and say little about a secret themselves."""


def key_name(where: KeyPath) -> str:
    """Return the dotted name of a key path: ``tasks.summary.inputs``, ``a.b[0]``."""
    text = ""
    for part in where:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass
class Document:
    """A parsed pipeline file, with what is needed to point at its lines."""

    path: str
    """The file, as the caller named it (used in messages)."""
    folder: Path
    """The absolute folder holding the file; relative paths in it start here."""
    data: Any = field(repr=False)
    """The parsed data, references substituted."""
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)
    """The line (from 1) of each key and list item."""
    substituted: set[KeyPath] = field(default_factory=set, repr=False)
    """The values that came from a substitution: messages do not repeat them."""
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    """Substituted values from settings or the environment, each with its variable."""

    def line(self, where: KeyPath) -> int:
        """Return the line of ``where``, or of the nearest enclosing key that has one."""
        while where and where not in self.lines:
            where = where[:-1]
        return self.lines.get(where, 1)

    def error(self, where: KeyPath, problem: str, suggestion: str | None = None) -> ConfigFileError:
        """Return the error for ``problem`` at ``where``."""
        return ConfigFileError(self.path, self.line(where), key_name(where), problem, suggestion)

    def redact(self, text: str) -> str:
        """Replace every substituted setting or environment value in ``text`` by ``${NAME}``."""
        for value in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(value, "${" + self.secrets[value] + "}")
        return text

    def shows(self, where: KeyPath) -> bool:
        """Whether a message may repeat the value at ``where`` (it was not substituted)."""
        return where not in self.substituted


def read_document(path: str | os.PathLike[str], settings: Mapping[str, str] | None) -> Document:
    """Read and parse the pipeline file at ``path``, substituting references.

    :raises ConfigFileError: when the file cannot be read, is not valid YAML, has a key
        that is not a string or appears twice in one mapping, or uses a reference that
        is not set.
    """
    display = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(display, None, "", "the file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigFileError(display, None, "", f"cannot read the file: {exc.strerror}") from None
    document = Document(display, Path(path).absolute().parent, None)
    # The pure-Python loader: its messages are the same wherever the file is checked.
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _Walker(document, loader, settings or {}).walk(node, ())
            document.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not YAML"
        context = exc.context_mark
        if exc.problem and exc.context and context and mark and context.line != mark.line:
            problem += f" ({exc.context} on line {context.line + 1})"
        raise ConfigFileError(
            display, None if mark is None else mark.line + 1, "", f"invalid YAML: {problem}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(display, None, "", f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return document


class _Walker:
    """Record the line of every key and substitute references, node by node."""

    def __init__(self, document: Document, loader: Any, settings: Mapping[str, str]) -> None:
        self.document = document
        self.loader = loader
        self.settings = settings
        self.visited: set[int] = set()

    def walk(self, node: yaml.Node, where: KeyPath) -> None:
        # An alias is the same node object again: substitute it once.
        if id(node) in self.visited:
            return
        self.visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, where)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.document.lines[(*where, index)] = item.start_mark.line + 1
                self.walk(item, (*where, index))
        elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "$" in node.value:
            self._substitute(node, where)

    def _walk_mapping(self, node: yaml.MappingNode, where: KeyPath) -> None:
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.walk(value_node, where)
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                raise ConfigFileError(
                    self.document.path, line, key_name(where), "a key must be a name: quote it"
                )
            key: str = key_node.value
            if key in seen:
                raise ConfigFileError(
                    self.document.path, line, key_name((*where, key)), "the key appears twice"
                )
            seen.add(key)
            self.document.lines[(*where, key)] = line
            self.walk(value_node, (*where, key))

    def _substitute(self, node: yaml.ScalarNode, where: KeyPath) -> None:
        original: str = node.value
        whole = False

        def replace(match: re.Match[str]) -> str:
            nonlocal whole
            if match.group(1) is None:  # "$${": a literal "${"
                return "${"
            whole = match.span() == (0, len(original))
            return self._lookup(match, where)

        value = _REFERENCE.sub(replace, original)
        if value == original:
            return
        node.value = value
        if "${" in original.replace("$${", ""):
            self.document.substituted.add(where)
        if whole and node.style is None:  # a plain scalar: read it as YAML would
            node.tag = self.loader.resolve(yaml.ScalarNode, value, (True, False))

    def _lookup(self, match: re.Match[str], where: KeyPath) -> str:
        parsed = _NAME_AND_DEFAULT.fullmatch(match.group(1))
        if parsed is None:
            raise self.document.error(
                where,
                f"invalid reference {match.group(0)!r}: write ${{NAME}} or ${{NAME:-default}}, "
                "and $${ for a literal ${",
            )
        name, default = parsed.group(1), parsed.group(2)
        if name in self.settings:
            value = str(self.settings[name])
        elif name in os.environ:
            value = os.environ[name]
        elif default is not None:
            return default
        else:
            raise self.document.error(
                where,
                f"${{{name}}} is not set (give it with --set {name}=VALUE or in the environment)",
            )
        if len(value) >= _SHORTEST_REDACTED:
            self.document.secrets[value] = name
        return value
