from __future__ import annotations

import re

import pytest

from pydatatask import InvalidJobIdError
from pydatatask.repository import base
from pydatatask.repository.base import MAX_JOB_ID_LENGTH, check_job_id, drop_invalid


@pytest.mark.parametrize(
    "job",
    ["a", "book-1", "with space", "ünïcode", "x" * MAX_JOB_ID_LENGTH, "a.b", "...x", "日本"],
)
def test_valid_ids(job: str) -> None:
    assert check_job_id(job) == job


@pytest.mark.parametrize(
    ("job", "reason"),
    [
        ("", "empty"),
        ("a/b", "separator"),
        ("a\\b", "separator"),
        ("..", "relative"),
        (".", "relative"),
        ("x\n", "control"),
        ("\x00", "control"),
        ("zero\u200bwidth", "control"),
        ("x" * (MAX_JOB_ID_LENGTH + 1), "longer"),
        ("é" * (MAX_JOB_ID_LENGTH // 2 + 1), "longer"),
        (42, "str"),
        (None, "str"),
    ],
)
def test_invalid_ids(job: object, reason: str) -> None:
    with pytest.raises(InvalidJobIdError, match=reason):
        check_job_id(job)


def test_pattern_narrows_the_charset() -> None:
    pattern = re.compile(r"[a-z0-9]+")
    assert check_job_id("abc123", pattern) == "abc123"
    with pytest.raises(InvalidJobIdError, match="lower-case"):
        check_job_id("ABC", pattern, "only lower-case letters and digits")


@pytest.mark.parametrize("job", [" ", "  ", " lead", "trail "])
def test_an_id_may_not_start_or_end_with_a_space(job: str) -> None:
    with pytest.raises(InvalidJobIdError, match="starts or ends with a space"):
        check_job_id(job)
    assert check_job_id("inner space") == "inner space"


def _listing(prefix: str, count: int) -> set[str]:
    return {f"{prefix}-{number}" for number in range(count)}


@pytest.mark.parametrize("plain", [True, False], ids=["plain ids", "ids with spaces"])
def test_listings_drop_invalid_ids_whatever_was_seen_before(plain: bool) -> None:
    prefix = "listed" if plain else "listed with space"
    bad = {"a/b", "..", "x" * (MAX_JOB_ID_LENGTH + 1), "tab\there"}
    first = _listing(prefix, 1000) | bad
    assert sorted(drop_invalid(first)) == sorted(bad)  # all unseen: checked in one go
    assert first == _listing(prefix, 1000)
    again = _listing(prefix, 1200) | {"a/b"}  # mostly seen: only the new ones are checked
    assert drop_invalid(again) == ["a/b"]
    assert again == _listing(prefix, 1200)
    assert drop_invalid(_listing(prefix, 1200)) == []


def test_a_full_cache_of_seen_ids_starts_again_without_losing_a_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base, "_CHECKED", {})
    monkeypatch.setattr(base, "_CHECKED_LIMIT", 100)
    drop_invalid(_listing("full", 150))  # the cache now holds more than its limit
    assert len(base._CHECKED[None]) == 150
    later = _listing("full", 150) | _listing("next", 10) | {"a/b"}
    assert drop_invalid(later) == ["a/b"]
    assert base._CHECKED[None] >= _listing("next", 10)
    assert len(base._CHECKED[None]) < 150 + 10 + 1  # it started again rather than grow
