"""The one YAML dialect pydatatask writes and reads: safe, fast, and readable by people.

Values use YAML's safe subset. Tuples are written as lists, and a string that spans
several lines (a traceback, a log excerpt) is written as a literal block, so it reads
as it was printed rather than as one folded, escaped line.

PyYAML is imported when the first value is written or read, not with pydatatask.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

__all__ = ["YamlError", "dump", "load"]


class YamlError(ValueError):
    """A value YAML cannot represent, or text that is not valid YAML (PyYAML's message)."""


@functools.cache
def _dialect() -> tuple[Any, Any]:
    """Return the loader and dumper classes (libyaml's when available: much faster)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    base_dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        if "\n" in value.rstrip("\n"):
            # PyYAML falls back to a quoted style by itself when a literal block cannot
            # hold the text (trailing spaces on a line, some control characters).
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
        return dumper.represent_str(value)

    dumper: Any = type("_Dumper", (base_dumper,), {})
    dumper.add_representer(tuple, yaml.representer.SafeRepresenter.represent_list)
    dumper.add_representer(str, represent_str)
    return loader, dumper


def dump(value: Any) -> str:
    """Return ``value`` as YAML text, keys in their order, multi-line strings as blocks.

    :raises YamlError: for a value outside YAML's safe subset.
    """
    fast = _plain_mapping(value)
    if fast is not None:
        return fast
    import yaml

    _, dumper = _dialect()
    try:
        text: str = yaml.dump(value, Dumper=dumper, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as exc:
        raise YamlError(str(exc)) from exc
    return text


def load(data: bytes | str) -> Any:
    """Parse YAML text with a safe loader.

    :raises YamlError: for text that is not valid YAML.
    """
    import yaml

    loader, _ = _dialect()
    try:
        return yaml.load(data, Loader=loader)
    except yaml.YAMLError as exc:
        raise YamlError(str(exc)) from exc


# A mapping of plain values (a done record, most metadata) is written directly: PyYAML's
# representer costs more than the rest of writing a small file. The text differs from
# PyYAML's only in where long strings would be folded; it loads back to the same value.
_PLAIN_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_./+-]*")
_SPECIAL_WORDS = frozenset({"y", "yes", "n", "no", "true", "false", "on", "off", "null"})
_PRINTABLE_ASCII = re.compile(r"[ -~]*")


def _plain_mapping(value: Any) -> str | None:
    """Return ``value`` as block YAML if it is a dict of plain values, else None."""
    if type(value) is not dict or not value:
        return None
    lines: list[str] = []
    return "".join(lines) if _mapping_lines(value, "", lines) else None


def _mapping_lines(mapping: dict[Any, Any], indent: str, lines: list[str]) -> bool:
    for key, item in mapping.items():
        name = _scalar(key) if type(key) is str else None
        if name is None:
            return False
        kind = type(item)
        if kind is dict and item:
            lines.append(f"{indent}{name}:\n")
            if not _mapping_lines(item, indent + "  ", lines):
                return False
        elif kind is list and item:
            lines.append(f"{indent}{name}:\n")
            for element in item:
                text = _scalar(element)
                if text is None:
                    return False
                lines.append(f"{indent}- {text}\n")
        else:
            text = _scalar(item)
            if text is None:
                return False
            lines.append(f"{indent}{name}: {text}\n")
    return True


# Records repeat most of their strings (field names, code tokens, timestamps of jobs that
# end in the same millisecond), so short ones are rendered once; the cache is emptied
# when full rather than tracked for age.
_STRING_CACHE_SIZE = 4096
_STRING_CACHE_LENGTH = 64
_STRINGS: dict[str, str] = {}


def _string(value: str) -> str | None:
    """Return ``value`` as a one-line YAML scalar (noting short ones), or None."""
    if _PLAIN_WORD.fullmatch(value) and value.lower() not in _SPECIAL_WORDS:
        text = value
    elif _PRINTABLE_ASCII.fullmatch(value):
        text = "'" + value.replace("'", "''") + "'"
    else:
        return None  # a block, or PyYAML's escapes
    if len(value) <= _STRING_CACHE_LENGTH:
        if len(_STRINGS) >= _STRING_CACHE_SIZE:
            _STRINGS.clear()
        _STRINGS[value] = text
    return text


def _scalar(value: Any) -> str | None:
    """Return ``value`` as a one-line YAML scalar, or None when it is not a plain value."""
    kind = type(value)
    if kind is str:
        known = _STRINGS.get(value)
        return known if known is not None else _string(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value).lower()
        return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text
    if value is None:
        return "null"
    if kind is dict and not value:
        return "{}"
    if kind is list and not value:
        return "[]"
    return None
