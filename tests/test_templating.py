"""Template rendering: strictness, shquote, lazy values."""

from __future__ import annotations

import subprocess

import jinja2
import pytest

from pydatatask.errors import ConfigurationError
from pydatatask.templating import Lazy, referenced_names, render, shquote

HOSTILE = [
    "a'; touch pwned #",
    "$(touch pwned)",
    "`touch pwned`",
    'x" y',
    "tab\there",
    "ünï cødé",
    "",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_shquote_is_one_inert_word(value: str, tmp_path) -> None:
    command = f"printf %s {shquote(value)}"
    result = subprocess.run(["sh", "-c", command], capture_output=True, cwd=tmp_path, check=True)
    assert result.stdout.decode() == value
    assert not (tmp_path / "pwned").exists()


async def test_render_basic() -> None:
    text = await render("echo {{ job | shquote }} {{ n + 1 }}\n", {"job": "a b", "n": 1})
    assert text == "echo 'a b' 2\n"


async def test_undefined_names_are_errors() -> None:
    with pytest.raises(jinja2.UndefinedError):
        await render("{{ missing }}", {})


async def test_no_autoescape() -> None:
    assert await render("{{ x }}", {"x": "<&>"}) == "<&>"


async def test_lazy_values_only_when_used() -> None:
    calls: list[str] = []

    def lazy(name: str) -> Lazy:
        async def compute() -> str:
            calls.append(name)
            return f"value of {name}"

        return Lazy(compute)

    text = await render("{{ used | shquote }}", {"used": lazy("used"), "unused": lazy("unused")})
    assert text == "'value of used'"
    assert calls == ["used"]


async def test_syntax_error_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="line 1"):
        referenced_names("{{ oops")
