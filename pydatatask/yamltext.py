"""The one YAML dialect pydatatask writes and reads: safe, fast, and readable by people.

Values use YAML's safe subset. Tuples are written as lists, and a string that spans
several lines (a traceback, a log excerpt) is written as a literal block, so it reads
as it was printed rather than as one folded, escaped line.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["LOADER", "dump", "load"]

# libyaml is much faster; the pure-Python classes behave the same.
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""A safe loader class (libyaml's when available)."""

_BASE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value.rstrip("\n"):
        # PyYAML falls back to a quoted style by itself when a literal block cannot
        # hold the text (trailing spaces on a line, some control characters).
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_str(value)


_DUMPER: Any = type("_Dumper", (_BASE_DUMPER,), {})
_DUMPER.add_representer(tuple, yaml.representer.SafeRepresenter.represent_list)
_DUMPER.add_representer(str, _represent_str)


def dump(value: Any) -> str:
    """Return ``value`` as YAML text, keys in their order, multi-line strings as blocks.

    :raises yaml.YAMLError: for a value outside YAML's safe subset.
    """
    text: str = yaml.dump(value, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
    return text


def load(data: bytes | str) -> Any:
    """Parse YAML text with a safe loader.

    :raises yaml.YAMLError: for text that is not valid YAML.
    """
    return yaml.load(data, Loader=LOADER)
