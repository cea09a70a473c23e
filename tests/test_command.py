"""The ``pydatatask`` command, run as a user runs it: validate, schema, errors, commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BROKEN = Path(__file__).resolve().parent / "config_files" / "broken"
COMMAND = str(Path(sys.executable).with_name("pydatatask"))

pytestmark = pytest.mark.backend  # the pipeline file format needs the yaml-pipelines extra


def pydatatask(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_schema_is_json_that_accepts_the_example() -> None:
    done = pydatatask("schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text()), schema)


def test_a_broken_file_is_one_line_with_its_place_and_exit_two() -> None:
    path = BROKEN / "unknown_repository_key.yaml"
    for command in ("validate", "run", "status"):
        done = pydatatask("-f", str(path), command)
        assert done.returncode == 2, command
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"error: {path}:5: repositories.books.extention:")
        assert "did you mean 'extension'?" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_missing_setting_is_named_and_a_secret_never_printed(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "repositories:\n"
        "  store: {kind: file, path: '${ROOT}/${TOKEN}', extension: .txt}\n"
        "  done: {kind: yaml, path: '${MISSING}/done'}\n"
    )
    done = pydatatask("--set", "TOKEN=s3cr3t-value", "--set", "ROOT=here", "validate", cwd=tmp_path)
    assert done.returncode == 2
    assert "MISSING" in done.stderr
    assert "s3cr3t-value" not in done.stderr + done.stdout


def test_no_file_and_bad_usage(tmp_path: Path) -> None:
    missing = pydatatask("status", cwd=tmp_path)  # pipeline.yaml by default
    assert missing.returncode == 2
    assert "pipeline.yaml" in missing.stderr
    assert pydatatask("--set", "oops", "status", cwd=tmp_path).returncode == 2
    assert pydatatask(cwd=tmp_path).returncode == 2
    helped = pydatatask("--help")
    assert helped.returncode == 0
    assert "validate" in helped.stdout
    verbose = pydatatask("-v", "schema")  # the log option of the other commands is accepted
    assert verbose.returncode == 0, verbose.stderr
    assert json.loads(verbose.stdout)["title"] == "pydatatask pipeline file"


def test_the_help_of_a_command_needs_no_file(tmp_path: Path) -> None:
    for command in ("run", "status", "validate", "schema"):
        helped = pydatatask(command, "--help", cwd=tmp_path)  # no pipeline.yaml here
        assert helped.returncode == 0, helped.stderr
        assert helped.stdout.startswith("usage: pydatatask"), command
        assert helped.stderr == ""
    assert "--json" in pydatatask("run", "-h", cwd=tmp_path).stdout


CALLER = """
import json, subprocess, sys

def run_pipeline(command, *options):
    finished = subprocess.run(
        [*command, "run", "--json", *options], capture_output=True, text=True
    )
    lines = finished.stdout.splitlines()
    if finished.returncode in (0, 1) and lines:
        return finished.returncode, json.loads(lines[-1])
    raise RuntimeError(f"exit status {finished.returncode}: {finished.stderr.strip()}")

try:
    import pydatatask
except ImportError:
    pass
else:
    raise SystemExit("the caller must not see pydatatask")
command = sys.argv[1:]
first = run_pipeline(command)
second = run_pipeline(command)
print(json.dumps({"first": first, "second": second}))
"""


def test_an_orchestrator_reads_the_outcome_of_run_json(tmp_path: Path) -> None:
    """A caller with only the standard library (not even pydatatask) runs the command."""
    (tmp_path / "inbox").mkdir()
    for name, text in {"good": "hello\n", "bad": ""}.items():
        (tmp_path / "inbox" / f"{name}.txt").write_text(text)
    (tmp_path / "pipeline.yaml").write_text(
        "repositories:\n"
        "  inbox: {kind: file, path: inbox, extension: .txt}\n"
        "  upper: {kind: file, path: '${OUT:-upper}', extension: .txt}\n"
        "tasks:\n"
        "  shout:\n"
        "    process: 'test -s {{ src }} && tr a-z A-Z < {{ src }} > {{ dst }}'\n"
        "    inputs: {src: inbox}\n"
        "    outputs: {dst: upper}\n"
    )
    (tmp_path / "caller.py").write_text(CALLER)
    command = [COMMAND, "-f", str(tmp_path / "pipeline.yaml"), "--set", "OUT=shouted"]
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(tmp_path / "caller.py"), *command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    status, summary = outcome["first"]
    assert status == 1
    assert (summary["launched"], summary["succeeded"], summary["failed"]) == (2, 1, 1)
    assert summary["failed_jobs"] == [["shout", "bad"]]
    assert "shout bad" in summary["errors"]
    assert outcome["second"] == [0, EMPTY_RUN]
    assert (tmp_path / "shouted" / "good.txt").read_text() == "HELLO\n"


EMPTY_RUN = {
    "launched": 0,
    "succeeded": 0,
    "failed": 0,
    "handed_over": 0,
    "failed_jobs": [],
    "errors": {},
    "timed_out": False,
    "unreadable_jobs": [],
}


@pytest.mark.parametrize("command", ["validate", "status"])
def test_a_missing_extra_is_one_line_and_exit_two(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pydatatask.command import run_command

    path = tmp_path / "pipeline.yaml"
    path.write_text("resources:\n  store: {kind: s3, endpoint_url: 'http://127.0.0.1:9'}\n")
    monkeypatch.setitem(sys.modules, "aiobotocore", None)  # as if the s3 extra were missing
    assert run_command(["-f", str(path), command]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == (
        f"error: {path}: the 'aiobotocore' package is needed for this backend; "
        "install it with: pip install 'pydatatask[s3]'\n"
    )


def test_an_unknown_command_is_refused_with_every_known_one(tmp_path: Path) -> None:
    refused = pydatatask("stauts", cwd=tmp_path)  # no pipeline.yaml here either
    assert refused.returncode == 2
    assert "invalid choice: 'stauts'" in refused.stderr
    assert "'validate'" in refused.stderr
    assert "'status'" in refused.stderr
