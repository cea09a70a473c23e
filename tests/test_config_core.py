"""Pipeline files without optional packages: the schema, substitution, the registry, errors."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pydatatask.config import ConfigFileError, json_schema, load_pipeline
from pydatatask.config import registry as config_registry
from pydatatask.config.document import read_document
from pydatatask.config.registry import BuildContext, Kind, RepositoryName, find, register
from pydatatask.errors import ConfigurationError, MissingDependencyError
from pydatatask.repository.base import Repository
from pydatatask.repository.memory import InProcessMetadataRepository


def test_the_schema_lists_every_registered_kind() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    definitions = schema["$defs"]
    repository_kinds = definitions["repository"]["properties"]["kind"]["enum"]
    for name in ("memory", "memory-blob", "file", "directory", "yaml", "s3", "yaml-s3"):
        assert name in repository_kinds
    assert {"mongodb", "docker"} <= set(repository_kinds)
    resource_kinds = definitions["resource"]["properties"]["kind"]["enum"]
    assert {"s3", "mongodb", "ssh", "docker", "kubernetes"} <= set(resource_kinds)
    for name in ("function", "process", "container", "kube"):
        task = definitions[f"task-{name}"]
        assert task["additionalProperties"] is False
        assert name in task["required"]
        assert {"inputs", "outputs", "done", "links", "timeout", "retry"} <= set(task["properties"])
    file_kind = definitions["repository-file"]
    assert file_kind["required"] == ["kind", "path"]
    assert file_kind["properties"]["extension"] == {
        "type": "string",
        "description": "appended to the job id to name its file (``.txt``).",
    }
    assert file_kind["properties"]["codec"]["anyOf"][0]["enum"][:3] == ["bytes", "text", "json"]
    assert set(schema["properties"]) == {
        "app",
        "resources",
        "repositories",
        "tasks",
        "leases",
        "lease_seconds",
        "max_concurrent_jobs",
        "poll_interval",
    }


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_references_take_settings_then_the_environment_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDT_CONFIG_BOTH", "from the environment")
    monkeypatch.setenv("PDT_CONFIG_ENVIRONMENT", "environment only")
    monkeypatch.delenv("PDT_CONFIG_NONE", raising=False)
    path = write(
        tmp_path,
        """
        both: ${PDT_CONFIG_BOTH}
        environment: "${PDT_CONFIG_ENVIRONMENT}"
        default: ${PDT_CONFIG_NONE:-the default}
        inside: "a ${PDT_CONFIG_NONE:-b} c ${PDT_CONFIG_PORT}"
        number: ${PDT_CONFIG_PORT}
        quoted: "${PDT_CONFIG_PORT}"
        literal: "echo $${HOME} $$ $HOME"
        block: |
          echo "$${PATH}" ${PDT_CONFIG_PORT}
        """,
    )
    document = read_document(path, {"PDT_CONFIG_BOTH": "from settings", "PDT_CONFIG_PORT": "22"})
    assert document.data == {
        "both": "from settings",
        "environment": "environment only",
        "default": "the default",
        "inside": "a b c 22",
        "number": 22,
        "quoted": "22",
        "literal": "echo ${HOME} $$ $HOME",
        "block": 'echo "${PATH}" 22\n',
    }
    assert document.lines[("quoted",)] == 7
    assert ("both",) in document.substituted
    assert ("literal",) not in document.substituted
    assert document.redact("it was 'from settings'") == "it was '${PDT_CONFIG_BOTH}'"


def test_a_missing_reference_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PDT_CONFIG_MISSING", raising=False)
    path = write(tmp_path, "tasks:\n  t:\n    process: |\n      cat ${PDT_CONFIG_MISSING}\n")
    with pytest.raises(ConfigFileError) as caught:
        read_document(path, None)
    assert str(caught.value) == (
        f"{path}:3: tasks.t.process: ${{PDT_CONFIG_MISSING}} is not set "
        "(give it with --set PDT_CONFIG_MISSING=VALUE or in the environment)"
    )
    assert (caught.value.line, caught.value.key) == (3, "tasks.t.process")


def test_malformed_files(tmp_path: Path) -> None:
    cases = {
        "a: ${not a name}\n": "1: a: invalid reference '${not a name}': write ${NAME} or "
        "${NAME:-default}, and $${ for a literal ${",
        "a: 1\nb: 2\na: 3\n": "3: a: the key appears twice",
        "a:\n  1: x\n": "2: a: a key must be a name: quote it",
        "a: [1,\n": "2: invalid YAML: expected the node content, but found '<stream end>'",
    }
    for text, expected in cases.items():
        path = write(tmp_path, text)
        with pytest.raises(ConfigFileError) as caught:
            read_document(path, None)
        assert str(caught.value) == f"{path}:{expected}", text
    with pytest.raises(ConfigFileError) as caught:
        read_document(tmp_path / "absent.yaml", None)
    assert (
        str(caught.value)
        == f"{tmp_path / 'absent.yaml'}: cannot read the file: No such file or directory"
    )


def test_loading_needs_the_yaml_pipelines_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    path = write(tmp_path, "repositories:\n  a: {kind: memory}\n")
    with pytest.raises(MissingDependencyError) as caught:
        load_pipeline(path)
    assert caught.value.install_hint == "pip install 'pydatatask[yaml-pipelines]'"


def test_config_file_errors_are_one_line_and_pickle() -> None:
    error = ConfigFileError("p.yaml", 3, "a.b", "unknown\nkey", "c")
    assert str(error) == "p.yaml:3: a.b: unknown key (did you mean 'c'?)"
    assert isinstance(error, ConfigurationError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.line, copy.key, copy.problem, str(copy)) == (
        "p.yaml",
        3,
        "a.b",
        "unknown key",
        str(error),
    )
    assert str(ConfigFileError("p.yaml", None, "", "cannot read")) == "p.yaml: cannot read"


def _pair(
    context: BuildContext, /, *, first: RepositoryName, limit: int = 3, note: str | None = None
) -> Repository:
    """A repository for one test.

    :param first: a repository.
    :param limit: a number.
    """
    return InProcessMetadataRepository({"first": first, "limit": limit, "app": context.app})


def test_registering_a_kind_derives_its_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_registry, "_KINDS", dict(config_registry._KINDS))
    kind = register(Kind("pair", "repository", _pair))
    assert find("repository", "pair") is kind
    assert [(key.name, key.required) for key in kind.keys.values()] == [
        ("first", True),
        ("limit", False),
        ("note", False),
    ]
    assert kind.keys["limit"].description == "a number."
    assert kind.summary == "A repository for one test."
    schema: dict[str, Any] = json_schema()["$defs"]["repository-pair"]
    assert schema["properties"]["note"] == {"type": ["string", "null"]}
    assert schema["required"] == ["kind", "first"]
    with pytest.raises(ValueError, match="already registered"):
        register(Kind("pair", "repository", _pair))
    with pytest.raises(ValueError, match="takes no key"):
        register(Kind("pair", "task", _pair))
