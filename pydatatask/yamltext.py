"""The one YAML dialect pydatatask writes and reads: safe, fast, and readable by people.

Values use YAML's safe subset. Tuples are written as lists, and a string that spans
several lines (a traceback, a log excerpt) is written as a literal block, so it reads
as it was printed rather than as one folded, escaped line.

PyYAML is imported when the first value is written or read, not with pydatatask.
"""

from __future__ import annotations

import functools
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
