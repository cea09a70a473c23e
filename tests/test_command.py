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
