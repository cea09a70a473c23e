"""Template rendering: strictness, shell safety, shquote and raw, manifests, lazy values."""

from __future__ import annotations

import subprocess

import jinja2
import pytest

from pydatatask.errors import ConfigurationError
from pydatatask.templating import (
    Lazy,
    UnsafeValueError,
    referenced_names,
    render,
    render_manifest,
    required_names,
    shquote,
)

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
    assert await render("{{ x | raw }}", {"x": "<&>"}) == "<&>"


@pytest.mark.parametrize("value", [*HOSTILE, "a b", "x\ny", "~user", "*.txt", "a;b", "[x]"])
async def test_unquoted_values_must_be_shell_safe(value: str) -> None:
    with pytest.raises(UnsafeValueError) as caught:
        await render("echo {{ value }}\n", {"value": value})
    assert repr(value) in str(caught.value)
    assert "| shquote" in str(caught.value)
    assert "| raw" in str(caught.value)


@pytest.mark.parametrize(
    "value", ["run-42", "a_b.c/d:e=f+g,h@i%j", "-leading", 7, -1.5, "UPPER", "/abs/path.txt"]
)
async def test_shell_safe_values_need_no_filter(value: object) -> None:
    assert await render("echo {{ value }}", {"value": value}) == f"echo {value}"


async def test_only_interpolated_values_are_checked() -> None:
    template = (
        'echo "$(date)" `id` {{ job | shquote }}'
        "{% if job == 'a b' %} same{% endif %}"
        "{% for item in items %} {{ loop.index }}{% endfor %}\n"
    )
    text = await render(template, {"job": "a b", "items": ["x y", "$(z)"]})
    assert text == "echo \"$(date)\" `id` 'a b' same 1 2\n"


async def test_filters_after_shquote_give_plain_strings_that_are_checked() -> None:
    for template in ("{{ job | shquote | upper }}", "{{ job | shquote ~ '.txt' }}"):
        with pytest.raises(UnsafeValueError):
            await render(template, {"job": "a b"})
    assert await render("{{ (job ~ '-x') | upper }}", {"job": "a"}) == "A-X"


async def test_raw_inserts_unchecked() -> None:
    assert await render("echo {{ expr | raw }}", {"expr": "$((6 * 7))"}) == "echo $((6 * 7))"


MANIFEST = """\
metadata:
  name: {{ job }}
  labels: {job: {{ job }}, quoted: "{{ job }}", text: '{{ job }}'}
spec:
  replicas: {{ count }}
  limit: {{ count }}Mi
  args: [{{ job }}, -c, {{ job }}]
  command: {{ argv }}
  script: |
    echo {{ job | shquote }}
  {{ key }}: set
  flags: {{ flags | raw }}
"""

STRUCTURE_BREAKERS = [
    "x\n  hostNetwork: true",
    "{evil: 1}",
    "- item",
    "a: b",
    "x, y: z}",
    "'quoted'",
    '"double',
    "&anchor x",
    "*alias",
    "!!python/object:os.system",
    "# comment",
    "true",
    "12",
    "null",
    "",
    "|\n  block",
]


@pytest.mark.parametrize("value", STRUCTURE_BREAKERS)
async def test_manifest_values_never_change_its_structure(value: str) -> None:
    manifest = await render_manifest(
        MANIFEST,
        {"job": value, "count": 3, "argv": ["sh", "-c", value], "key": value, "flags": "[a, b]"},
    )
    assert manifest == {
        "metadata": {"name": value, "labels": {"job": value, "quoted": value, "text": value}},
        "spec": {
            "replicas": 3,
            "limit": "3Mi",
            "args": [value, "-c", value],
            "command": ["sh", "-c", value],
            "script": f"echo {shquote(value)}\n",
            value: "set",
            "flags": ["a", "b"],
        },
    }


async def test_macro_output_goes_in_with_raw() -> None:
    macro = "{% macro flag(value) %}--name {{ value }}{% endmacro %}"
    script = await render(macro + "run {{ flag(job) | raw }}", {"job": "j-1"})
    assert script == "run --name j-1"
    with pytest.raises(UnsafeValueError):
        await render(macro + "run {{ flag(job) | raw }}", {"job": "a b"})
    macro = "{% macro item(value) %}{name: {{ value }}, kind: x}{% endmacro %}"
    manifest = await render_manifest(macro + "items: [{{ item(job) | raw }}]", {"job": "a, b}"})
    assert manifest == {"items": [{"name": "a, b}", "kind": "x"}]}


async def test_manifest_values_that_collide_with_a_key_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="'image' twice"):
        await render_manifest("image: a\n{{ key }}: b\n", {"key": "image"})


async def test_manifest_values_are_plain_data() -> None:
    class Location:
        def __str__(self) -> str:
            return "s3://bucket/key"

    manifest = await render_manifest(
        "a: {{ where }}\nb: {{ nested }}\nc: {{ nothing }}\n",
        {"where": Location(), "nested": {"k": (1, Location())}, "nothing": None},
    )
    assert manifest == {"a": "s3://bucket/key", "b": {"k": [1, "s3://bucket/key"]}, "c": None}


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


def test_names_with_a_fallback_are_not_required() -> None:
    template = (
        "{{ cpu | default('1') }} {% if gpu is defined %}{{ gpu }}{% endif %}"
        "{{ mem | d('1Gi') }} {{ job }} {{ opt.x | default(1) }}"
        "{% for item in items %}{{ item }}{% endfor %}{% set local = 1 %}{{ local }}"
    )
    assert referenced_names(template) == {"cpu", "gpu", "mem", "job", "opt", "items"}
    assert required_names(template) == {"job", "opt", "items"}


async def test_syntax_error_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="line 1"):
        referenced_names("{{ oops")
