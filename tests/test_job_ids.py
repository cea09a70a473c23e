from __future__ import annotations

import re

import pytest

from pydatatask import InvalidJobIdError
from pydatatask.repository.base import MAX_JOB_ID_LENGTH, check_job_id


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
