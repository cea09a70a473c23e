"""The YAML dialect: mappings of plain values are written directly and load back the same."""

from __future__ import annotations

import math
import random
from typing import Any

import yaml

from pydatatask import yamltext

TRICKY = [
    "",
    " ",
    "yes",
    "No",
    "ON",
    "off",
    "null",
    "Null",
    "~",
    "y",
    "true",
    "False",
    "1",
    "-1",
    "0x1f",
    "1_000",
    "1.5",
    "1e5",
    ".inf",
    "-.inf",
    ".NaN",
    "12:30:45",
    "2026-12-02",
    "2026-12-02T17:18:48.129+00:00",
    "#comment",
    "a #b",
    "a: b",
    "key:",
    "- item",
    "? q",
    "it's",
    '"quoted"',
    "<<",
    "=",
    "!tag",
    "&anchor",
    "*alias",
    "%directive",
    "@at",
    "`tick",
    "{a}",
    "[a]",
    "a,b",
    "|",
    ">",
    "trailing ",
    " leading",
    "tab\there",
    "two\nlines",
    "unicode é",
    "emoji 😀",
    "\x00",
    "plain_word",
    "path/to/file.txt",
    "f0e9e5e5141a0575",
    "#35295084bf7297e0",
    "a+b-c.d",
]
FLOATS = [0.0, -0.0, 1.0, 2.5e-05, 1e16, -1e-300, 123456789.123, math.inf, -math.inf, 1 / 3]


def _random_value(rng: random.Random, depth: int) -> Any:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return rng.choice(TRICKY)
    if choice == 1:
        return rng.choice([True, False, None])
    if choice == 2:
        return rng.choice([0, -1, 7, 2**70, -(2**40)])
    if choice == 3:
        return rng.choice(FLOATS)
    if choice == 4:
        return "".join(rng.choice("ab:#' -_.0") for _ in range(rng.randrange(6)))
    if choice == 5:
        return rng.choice([[], {}])
    if choice == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
    return _random_mapping(rng, depth + 1)


def _random_mapping(rng: random.Random, depth: int) -> dict[str, Any]:
    return {
        rng.choice([*TRICKY, "success", "attempt", "start_time"]): _random_value(rng, depth)
        for _ in range(rng.randrange(1, 6))
    }


def test_mappings_load_back_as_they_were() -> None:
    rng = random.Random(20261202)
    written_directly = 0
    for _ in range(3000):
        value = _random_mapping(rng, 0)
        text = yamltext.dump(value)
        assert yaml.safe_load(text) == value, text
        assert yamltext.load(text) == value, text
        written_directly += yamltext._plain_mapping(value) is not None
    assert written_directly > 500  # the direct path is taken, not only PyYAML's


def test_a_done_record_is_written_directly_and_reads_well() -> None:
    record = {
        "success": True,
        "attempt": 1,
        "provenance": {"code": "#35295084bf7297e0", "inputs": {"source": "f0e9e5e5141a0575"}},
        "start_time": "2026-12-02T17:18:48.129+00:00",
        "end_time": "2026-12-02T17:18:48.130+00:00",
        "duration": 2.5e-05,
    }
    text = yamltext._plain_mapping(record)
    assert text == (
        "success: true\n"
        "attempt: 1\n"
        "provenance:\n"
        "  code: '#35295084bf7297e0'\n"
        "  inputs:\n"
        "    source: f0e9e5e5141a0575\n"
        "start_time: '2026-12-02T17:18:48.129+00:00'\n"
        "end_time: '2026-12-02T17:18:48.130+00:00'\n"
        "duration: 2.5e-05\n"
    )
    assert text == yaml.safe_dump(record, sort_keys=False)


def test_what_the_direct_path_cannot_hold_goes_to_pyyaml() -> None:
    for value in (
        {"traceback": "Traceback:\n  line\n"},
        {"name": "é"},
        {"nested": [{"a": 1}]},
        {1: "integer key"},
        {"when": (1, 2)},
        [1, 2],
        "text",
        {},
    ):
        assert yamltext._plain_mapping(value) is None
        assert yamltext.load(yamltext.dump(value)) == (
            {"when": [1, 2]} if value == {"when": (1, 2)} else value
        )
    assert "traceback: |" in yamltext.dump({"traceback": "Traceback:\n  line\n"})


def test_strings_written_again_read_back_the_same_after_the_cache_fills() -> None:
    """Short strings are rendered once; the text stays the same, however many come."""
    first = [yamltext.dump({"value": text}) for text in TRICKY]
    many = [f"token-{number:05d}" for number in range(10_000)]
    for text in many:
        assert yamltext.load(yamltext.dump({"value": text})) == {"value": text}
    assert [yamltext.dump({"value": text}) for text in TRICKY] == first
    for text in TRICKY:
        assert yamltext.load(yamltext.dump({"value": text})) == {"value": text}
