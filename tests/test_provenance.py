"""Provenance and stale results, through the command line of a pipeline on files."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

import pydatatask
from pydatatask import admin
from pydatatask.provenance import ChangeKind, find_stale

SCRIPT = Path(__file__).with_name("stale_pipeline.py")


def _environment(base: Path, version: str | None = None, **more: str) -> dict[str, str]:
    env = dict(os.environ, STALE_BASE=str(base), **more)
    env.pop("STALE_SHOUT_VERSION", None)
    if version is not None:
        env["STALE_SHOUT_VERSION"] = version
    return env


def _cli(
    base: Path, *args: str, version: str | None = None, script: Path = SCRIPT
) -> subprocess.CompletedProcess[str]:
    env = _environment(base, version)
    done = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _json(base: Path, *args: str, version: str | None = None, script: Path = SCRIPT) -> Any:
    return json.loads(_cli(base, *args, "--json", version=version, script=script).stdout)


def _seed(base: Path, books: dict[str, str]) -> None:
    (base / "books").mkdir(parents=True, exist_ok=True)
    for job, text in books.items():
        (base / "books" / f"{job}.txt").write_text(text)


def _edit(path: Path, text: str) -> None:
    """Change a file's content and make sure its modification time moves too."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    if path.stat().st_mtime_ns == before:  # a coarse clock: move it by hand
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def _effects(base: Path) -> Counter[str]:
    """Return what ran since the last call, as ``TASK JOB`` lines, and forget it."""
    log = base / "effects.log"
    if not log.exists():
        return Counter()
    found = Counter(log.read_text().splitlines())
    log.unlink()
    return found


def _stale(base: Path, version: str | None = None, script: Path = SCRIPT) -> dict[str, int]:
    counts = _json(base, "status", version=version, script=script)
    return {task: counts[task]["stale"] for task in counts}


def test_records_carry_the_code_and_input_tokens(tmp_path: Path) -> None:
    _seed(tmp_path, {"a": "one two", "b": "three"})
    _cli(tmp_path, "run")
    shout = yaml.safe_load((tmp_path / "done_shout" / "a.yaml").read_text())
    book = (tmp_path / "books" / "a.txt").stat()
    assert shout["provenance"] == {
        "code": shout["provenance"]["code"],
        "inputs": {"book": f"{book.st_size}-{book.st_mtime_ns}"},
    }
    assert shout["provenance"]["code"].startswith("#")
    count = yaml.safe_load((tmp_path / "done_count" / "a.yaml").read_text())
    assert set(count["provenance"]["inputs"]) == {"shout"}
    assert _stale(tmp_path) == {"shout": 0, "count": 0}


def test_an_edited_input_makes_exactly_its_chain_stale(tmp_path: Path) -> None:
    _seed(tmp_path, {"a": "one two", "b": "three", "c": "four five six"})
    _cli(tmp_path, "run")
    assert len(_effects(tmp_path)) == 6
    old = (tmp_path / "done_shout" / "b.yaml").read_text()
    _edit(tmp_path / "books" / "b.txt", "three and more")

    status = _json(tmp_path, "status")
    assert (status["shout"]["stale"], status["shout"]["succeeded"]) == (1, 2)
    assert (status["count"]["stale"], status["count"]["succeeded"]) == (1, 2)
    why = _cli(tmp_path, "why", "shout", "b").stdout
    old_token = yaml.safe_load(old)["provenance"]["inputs"]["book"]
    assert f"input shout.book changed ({old_token} -> " in why
    assert "'run --rerun-stale' runs it again" in why
    assert "upstream task 'shout' job 'b' is stale" in _cli(tmp_path, "why", "count", "b").stdout

    assert _json(tmp_path, "run")["launched"] == 0  # a plain run leaves stale jobs alone
    assert not _effects(tmp_path)
    assert _json(tmp_path, "plan") == []
    planned = _json(tmp_path, "plan", "--rerun-stale")
    assert [(entry["task"], entry["job"], entry["now"]) for entry in planned] == [
        ("shout", "b", True),
        ("count", "b", False),
    ]
    assert planned[0]["change"]["change"] == "input"

    report = _json(tmp_path, "run", "--rerun-stale")
    assert (report["launched"], report["succeeded"]) == (2, 2)
    assert _effects(tmp_path) == Counter({"shout b": 1, "count b": 1})
    assert (tmp_path / "shouts" / "b.txt").read_text() == "THREE AND MORE"
    assert yaml.safe_load((tmp_path / "counts" / "b.yaml").read_text()) == {"words": 3}
    assert _stale(tmp_path) == {"shout": 0, "count": 0}
    assert _json(tmp_path, "run", "--rerun-stale")["launched"] == 0


def test_a_new_version_makes_the_task_and_its_downstream_stale(tmp_path: Path) -> None:
    _seed(tmp_path, {"a": "one", "b": "two"})
    _cli(tmp_path, "run", version="v1")
    _effects(tmp_path)
    assert _stale(tmp_path, version="v1") == {"shout": 0, "count": 0}
    assert _stale(tmp_path, version="v2") == {"shout": 2, "count": 2}
    why = _cli(tmp_path, "why", "shout", "a", version="v2").stdout
    assert "the code of task 'shout' changed (v1 -> v2)" in why
    _cli(tmp_path, "run", "--rerun-stale", version="v2")
    assert _effects(tmp_path) == Counter({"shout a": 1, "shout b": 1, "count a": 1, "count b": 1})
    assert _stale(tmp_path, version="v2") == {"shout": 0, "count": 0}


def test_an_edited_body_makes_the_task_and_its_downstream_stale(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    shutil.copy(SCRIPT, script)
    _seed(tmp_path, {"a": "one", "b": "two"})
    _cli(tmp_path, "run", script=script)
    assert _stale(tmp_path, script=script) == {"shout": 0, "count": 0}
    text = script.read_text()
    script.write_text(text.replace("return book.upper()", "return book.upper() + '!'"))
    assert _stale(tmp_path, script=script) == {"shout": 2, "count": 2}
    _effects(tmp_path)
    _cli(tmp_path, "run", "--rerun-stale", script=script)
    assert len(_effects(tmp_path)) == 4
    assert (tmp_path / "shouts" / "a.txt").read_text() == "ONE!"


def test_records_without_provenance_are_never_stale(tmp_path: Path) -> None:
    _seed(tmp_path, {"a": "one", "b": "two"})
    _cli(tmp_path, "run")
    for record in [
        *(tmp_path / "done_shout").glob("*.yaml"),
        *(tmp_path / "done_count").glob("*.yaml"),
    ]:
        content = yaml.safe_load(record.read_text())
        del content["provenance"]
        record.write_text(yaml.safe_dump(content))
    _edit(tmp_path / "books" / "a.txt", "changed")
    assert _stale(tmp_path, version="another") == {"shout": 0, "count": 0}
    assert _json(tmp_path, "run", "--rerun-stale")["launched"] == 0


def test_the_plan_is_what_run_launches(tmp_path: Path) -> None:
    _seed(tmp_path, {"a": "one", "b": "two"})
    _cli(tmp_path, "run")
    _effects(tmp_path)
    _seed(tmp_path, {"c": "three"})  # a new input
    _edit(tmp_path / "books" / "a.txt", "one again")  # and an edited one

    planned = _json(tmp_path, "plan")
    assert [(entry["task"], entry["job"], entry["reason"]) for entry in planned] == [
        ("shout", "c", "new"),
        ("count", "c", "new"),
    ]
    _cli(tmp_path, "run")
    assert set(_effects(tmp_path)) == {f"{e['task']} {e['job']}" for e in planned}

    planned = _json(tmp_path, "plan", "--rerun-stale")
    _cli(tmp_path, "run", "--rerun-stale")
    assert set(_effects(tmp_path)) == {f"{e['task']} {e['job']}" for e in planned}
    assert {f"{e['task']} {e['job']}" for e in planned} == {"shout a", "count a"}


def test_a_rerun_upstream_job_makes_its_downstream_stale(tmp_path: Path) -> None:
    """Running an upstream job again (``rm`` and ``run``) makes what used it stale."""
    _seed(tmp_path, {"a": "one", "b": "two"})
    _cli(tmp_path, "run")
    _cli(tmp_path, "rm", "shout", "a")
    _cli(tmp_path, "run")  # shout a runs again; count a stays done, and is now stale
    assert _stale(tmp_path) == {"shout": 0, "count": 1}
    why = _cli(tmp_path, "why", "count", "a").stdout
    assert "input count.shout changed" in why  # the new file has a new modification time


async def test_a_job_run_again_upstream_makes_its_downstream_stale_in_memory() -> None:
    """The upstream job ran again and wrote the same value: no input changed, yet it ran."""
    source = pydatatask.InProcessMetadataRepository({"x": 1})
    middle = pydatatask.InProcessMetadataRepository()
    final = pydatatask.InProcessMetadataRepository()

    @pydatatask.task(inputs={"number": source}, outputs={"value": middle})
    async def first(number: int) -> int:
        return number

    @pydatatask.task(inputs={"value": middle}, outputs={"copy": final})
    async def second(value: int) -> int:
        return value

    async with pydatatask.Pipeline([first, second]) as pipeline:
        await pydatatask.run(pipeline)
        await admin.rm(pipeline, "first", ["x"])
        await asyncio.sleep(0.01)  # records keep milliseconds: let the clock move past them
        await pydatatask.run(pipeline)  # first x runs again, with the same result
        why = await admin.why(pipeline, "second", "x")
        assert "upstream task 'first' job 'x' ran again after it" in why[0]
        assert (await admin.status(pipeline))["second"]["stale"] == 1
        report = await pydatatask.run(pipeline, rerun_stale=True)
        assert report.launched == 1
        assert (await admin.status(pipeline))["second"]["stale"] == 0


async def test_staleness_in_memory_follows_the_values() -> None:
    """In memory, an input's token is a hash of its value: the same value is not a change."""
    source = pydatatask.InProcessMetadataRepository({"x": 1, "y": 2})
    doubled = pydatatask.InProcessMetadataRepository()

    @pydatatask.task(inputs={"number": source}, outputs={"double": doubled})
    async def double(number: int) -> int:
        return number * 2

    async with pydatatask.Pipeline([double]) as pipeline:
        await pydatatask.run(pipeline)
        records = {"double": await double.done.info_all()}
        assert await find_stale(pipeline, records) == {"double": {}}
        await source.dump("x", 1)  # written again, unchanged
        await source.dump("y", 3)
        records = {"double": await double.done.info_all()}
        stale = await find_stale(pipeline, records)
        assert list(stale["double"]) == ["y"]
        assert stale["double"]["y"].kind is ChangeKind.INPUT
        report = await pydatatask.run(pipeline, rerun_stale=True)
        assert report.launched == 1
        assert await doubled.info("y") == 6


@pytest.mark.backend  # pipeline files need the yaml-pipelines extra
def test_a_pipeline_file_gives_a_version_and_a_script_hashes_its_template(tmp_path: Path) -> None:
    """``version:`` in pipeline.yaml, and a process task's script as its code token."""
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("one two")
    pipeline_file = tmp_path / "pipeline.yaml"

    def write(version: str, script: str) -> None:
        pipeline_file.write_text(
            f"""
repositories:
  books: {{kind: file, path: books, extension: .txt}}
  shouts: {{kind: file, path: shouts, extension: .txt}}
  copies: {{kind: file, path: copies, extension: .txt}}
tasks:
  shout:
    function: stale_pipeline:shout
    version: "{version}"
    inputs: {{book: books}}
    outputs: {{shout: shouts}}
  copy:
    process: "{script}"
    inputs: {{shout: shouts}}
    outputs: {{copy: copies}}
"""
        )

    def command(*args: str) -> Any:
        env = dict(os.environ, STALE_BASE=str(tmp_path), PYTHONPATH=str(SCRIPT.parent))
        done = subprocess.run(
            [sys.executable, "-m", "pydatatask", "-f", str(pipeline_file), *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    write("1", "cp {{ shout }} {{ copy }}")
    assert command("run")["succeeded"] == 2
    record = yaml.safe_load((tmp_path / ".pydatatask" / "done" / "shout" / "a.yaml").read_text())
    assert record["provenance"]["code"] == "1"
    assert {task: counts["stale"] for task, counts in command("status").items()} == {
        "shout": 0,
        "copy": 0,
    }
    write("1", "cat {{ shout }} > {{ copy }}")
    assert {task: counts["stale"] for task, counts in command("status").items()} == {
        "shout": 0,
        "copy": 1,
    }
    write("2", "cat {{ shout }} > {{ copy }}")
    assert {task: counts["stale"] for task, counts in command("status").items()} == {
        "shout": 1,
        "copy": 1,
    }
    assert command("run", "--rerun-stale")["launched"] == 2


def test_two_controllers_rerun_each_stale_job_once(tmp_path: Path) -> None:
    """Two ``run --rerun-stale`` at once, sharing leases: every stale job runs once."""
    books = {f"book{number:02d}": f"words of book {number}" for number in range(16)}
    _seed(tmp_path, books)
    env = _environment(tmp_path, "v1", STALE_LEASES="1", STALE_SLEEP="0.05")
    first = subprocess.run(
        [sys.executable, str(SCRIPT), "run"], env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    _effects(tmp_path)
    env["STALE_SHOUT_VERSION"] = "v2"  # every shout, and so every count, is stale now
    controllers = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "run", "--rerun-stale", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    reports = []
    for controller in controllers:
        out, err = controller.communicate(timeout=300)
        assert controller.returncode == 0, err
        reports.append(json.loads(out))
    assert _effects(tmp_path) == Counter(
        {f"{task} {job}": 1 for task in ("shout", "count") for job in books}
    )
    assert sum(report["succeeded"] for report in reports) == 2 * len(books)
    assert _stale(tmp_path, version="v2") == {"shout": 0, "count": 0}
