"""Script templates are shell-safe by default, and unknown template names show on open."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import pydatatask as pdt
from pydatatask.cli import run_cli

HOSTILE = "a$(touch PWNED)b"
SPACED = "with space"
SAFE = ["safe-1", "run_2.v3"]


def script_task(tmp_path: Path, name: str, template: str) -> pdt.ProcessTask:
    """A ProcessTask whose script runs in ``tmp_path/work`` and whose stdout is kept."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return pdt.ProcessTask(
        name,
        pdt.LocalLinuxManager("safety", tmp_path / "jobs"),
        resource_manager=None,
        job_resources=pdt.Resources.parse(1, "16Mi"),
        pids=pdt.YamlMetadataFileRepository(tmp_path / name / "pids"),
        template=f"cd {shlex.quote(str(work))}\n{template}",
        done=pdt.YamlMetadataFileRepository(tmp_path / name / "done"),
        stdout=pdt.FileRepository(tmp_path / name / "out", ".txt"),
    )


def books(tmp_path: Path) -> pdt.FileRepository:
    folder = tmp_path / "inputs"
    folder.mkdir()
    for job in [*SAFE, HOSTILE, SPACED]:
        (folder / f"{job}.txt").write_text(job)
    return pdt.FileRepository(folder, ".txt")


def output(tmp_path: Path, task: str, job: str) -> str:
    return (tmp_path / task / "out" / f"{job}.txt").read_text()


def pwned(tmp_path: Path) -> list[Path]:
    return list(tmp_path.rglob("PWNED"))


async def test_unsafe_values_fail_their_job_and_never_reach_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    task = script_task(tmp_path, "echo", "echo {{ job }} {{ inputs }}\n")
    task.link("inputs", books(tmp_path), is_input=True)
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        report = await pdt.run(pipeline, timeout=60)
        records = await task.done.info_all()
    assert (report.succeeded, report.failed) == (2, 2)
    assert pwned(tmp_path) == []
    assert sorted(path.name for path in (tmp_path / "echo" / "out").iterdir()) == [
        f"{job}.txt" for job in sorted(SAFE)
    ]
    for job in SAFE:
        assert records[job]["success"] is True
        assert output(tmp_path, "echo", job) == f"{job} {tmp_path / 'inputs' / job}.txt\n"
    for job in (HOSTILE, SPACED):
        record = records[job]
        assert record["success"] is False
        assert record["exception"].startswith("UnsafeValueError: ")
        assert repr(job) in record["exception"]
        assert "| shquote" in record["exception"]


async def test_shquote_makes_any_value_one_inert_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    task = script_task(
        tmp_path, "quoted", "printf '%s|' {{ job | shquote }} {{ inputs | shquote }}\n"
    )
    task.link("inputs", books(tmp_path), is_input=True)
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        report = await pdt.run(pipeline, timeout=60)
    assert (report.succeeded, report.failed) == (4, 0)
    assert pwned(tmp_path) == []
    for job in [*SAFE, HOSTILE, SPACED]:
        assert output(tmp_path, "quoted", job) == f"{job}|{tmp_path / 'inputs' / job}.txt|"


async def test_raw_inserts_a_value_unchecked(tmp_path: Path) -> None:
    expressions = pdt.InProcessMetadataRepository({"answer": "$((6 * 7))"})
    checked = script_task(tmp_path, "checked", "echo {{ expr }}\n")
    trusted = script_task(tmp_path, "trusted", "echo {{ expr | raw }}\n")
    for task in (checked, trusted):
        task.link("expr", expressions, is_input=True)
    pipeline = pdt.Pipeline([checked, trusted])
    async with pipeline:
        await pdt.run(pipeline, timeout=60)
        refused = await checked.done.info("answer")
    assert output(tmp_path, "trusted", "answer") == "42\n"
    assert refused["success"] is False
    assert "'$((6 * 7))'" in refused["exception"]


def misspelt(tmp_path: Path) -> pdt.Pipeline:
    task = script_task(tmp_path, "writer", "echo {{ job }} > {{ outptu }}\n")
    task.link("ready", pdt.InProcessMetadataRepository({"j": 1}), is_input=True)
    task.link("output", pdt.FileRepository(tmp_path / "output", ".txt"), is_output=True)
    return pdt.Pipeline([task])


async def test_an_unknown_template_name_is_reported_on_open(tmp_path: Path) -> None:
    pipeline = misspelt(tmp_path)
    with pytest.raises(pdt.ConfigurationError) as caught:
        async with pipeline:
            pytest.fail("the pipeline opened")
    message = str(caught.value)
    assert "'writer'" in message
    assert "'outptu'" in message
    for name in ("'output'", "'job'", "'task'", "'env'", "'environ'", "'stdout'", "'ready'"):
        assert name in message


def test_the_cli_reports_an_unknown_template_name_as_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(misspelt(tmp_path), ["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "'outptu'" in err


async def test_globals_and_names_set_in_the_template_are_known(tmp_path: Path) -> None:
    task = script_task(
        tmp_path,
        "counter",
        "{% set name = job ~ '-' ~ task %}"
        "{% for index in range(2) %}echo {{ name }} {{ loop.index }}\n{% endfor %}",
    )
    task.link("ready", pdt.InProcessMetadataRepository({"j": 1}), is_input=True)
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        report = await pdt.run(pipeline, timeout=60)
    assert report.succeeded == 1
    assert output(tmp_path, "counter", "j") == "j-counter 1\nj-counter 2\n"


async def test_an_unsafe_value_is_not_retried(tmp_path: Path) -> None:
    task = pdt.ProcessTask(
        "retried",
        pdt.LocalLinuxManager("safety", tmp_path / "jobs"),
        template="echo {{ job }}",
        done=pdt.YamlMetadataFileRepository(tmp_path / "done"),
        ready=pdt.InProcessMetadataRepository({HOSTILE: 1}),
        retry=pdt.RetryPolicy(max_attempts=3, backoff=0.01, jitter=0),
    )
    pipeline = pdt.Pipeline([task])
    async with pipeline:
        report = await pdt.run(pipeline, timeout=60)
        record = await task.done.info(HOSTILE)
    assert (report.launched, report.failed) == (1, 1)
    assert record["attempt"] == 1
    assert "retry_at" not in record
    assert record["exception"].startswith("UnsafeValueError: ")
