"""Pipeline files: running them, their schema, and the errors of broken ones."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

import pydatatask  # noqa: E402
from pydatatask.config import ConfigFileError, json_schema, load_pipeline, validate_file  # noqa: E402

pytestmark = pytest.mark.backend

FILES = Path(__file__).resolve().parent / "config_files"
GOOD = FILES / "good"
BROKEN = FILES / "broken"
QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"

LOCAL_STEPS = textwrap.dedent(
    """
    import pydatatask


    def summary(job, book):
        return f"{job}: {len(book.split())} words\\n"


    # A task defined in Python: the file keeps its function and version, and wires it anew.
    @pydatatask.task(version="2", inputs={"summary": pydatatask.InProcessBlobRepository()})
    def tally(summary):
        return {"characters": len(summary)}
    """
)


async def test_function_and_process_tasks_run_end_to_end(tmp_path: Path) -> None:
    shutil.copy(GOOD / "local.yaml", tmp_path / "pipeline.yaml")
    (tmp_path / "local_steps.py").write_text(LOCAL_STEPS)
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "zen.txt").write_text("Beautiful is better than ugly.\n")
    (tmp_path / "books" / "rain.txt").write_text("The rain in Spain\n")

    pipeline = load_pipeline(tmp_path / "pipeline.yaml", settings={"GREETING": "hi there"})
    assert sorted(pipeline.tasks) == ["shout", "summary", "tally"]
    assert pipeline.max_concurrent_jobs == 4
    async with pipeline:
        report = await pydatatask.run(pipeline, timeout=60)
    assert (report.launched, report.succeeded, report.failed) == (6, 6, 0)

    assert (tmp_path / "summaries" / "zen.txt").read_text() == "zen: 5 words\n"
    assert (tmp_path / "shouted" / "zen.txt").read_text() == "ZEN: 5 WORDS\nhi there\n"
    assert (tmp_path / "shouted" / "rain.txt").read_text() == "RAIN: 4 WORDS\nhi there\n"
    lengths = yaml.safe_load((tmp_path / "lengths" / "rain.yaml").read_text())
    assert lengths == {"characters": len("rain: 4 words\n")}
    assert yaml.safe_load((tmp_path / "results" / "zen.yaml").read_text())["success"] is True
    # Tasks without done record under .pydatatask/done/TASK beside the file.
    tally = yaml.safe_load((tmp_path / ".pydatatask" / "done" / "tally" / "zen.yaml").read_text())
    assert tally["success"] is True
    assert tally["version"] == "2"
    assert (tmp_path / ".pydatatask" / "done" / "shout" / "rain.yaml").exists()


async def test_the_default_of_a_setting_applies_when_it_is_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GREETING", raising=False)
    shutil.copy(GOOD / "local.yaml", tmp_path / "pipeline.yaml")
    (tmp_path / "local_steps.py").write_text(LOCAL_STEPS)
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "one.txt").write_text("one\n")
    pipeline = load_pipeline(tmp_path / "pipeline.yaml")
    async with pipeline:
        await pipeline.materialize("shout", "one")
    assert (tmp_path / "shouted" / "one.txt").read_text() == "ONE: 1 WORDS\nhello\n"


def test_every_kind_builds_without_connecting() -> None:
    pipeline = load_pipeline(GOOD / "every_kind.yaml")
    kinds = {name: type(task).__name__ for name, task in pipeline.tasks.items()}
    assert kinds == {
        "values": "ValueTask",
        "remote": "ProcessTask",
        "boxed": "ContainerTask",
        "pod": "KubeTask",
        "batch": "SlurmTask",
    }
    batch: Any = pipeline.tasks["batch"]
    assert type(batch.ready).__name__ == "ScheduleRepository"
    assert type(batch.links["stdout"].repo).__name__ == "HiveDatasetRepository"
    remote = pipeline.tasks["remote"]
    assert type(remote.links["dst"].repo).__name__ == "S3BucketRepository"
    assert remote.links["known"].required_for_start is False
    assert type(pipeline.tasks["pod"].done).__name__ == "MongoMetadataRepository"
    assert type(pipeline.leases).__name__ == "YamlMetadataFileRepository"
    assert not pipeline.session.is_open


GOOD_FILES = sorted(GOOD.glob("*.yaml")) + ([QUICKSTART] if QUICKSTART.exists() else [])


@pytest.mark.parametrize("path", GOOD_FILES, ids=lambda path: path.name)
def test_the_schema_accepts_every_good_file(path: Path) -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())
    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema())


def test_the_schema_rejects_every_broken_file_it_can_see() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    for name in ("unknown_top_level_key", "unknown_kind", "unknown_repository_key", "wrong_type"):
        assert list(validator.iter_errors(yaml.safe_load((BROKEN / f"{name}.yaml").read_text())))


BROKEN_FILES = {
    "unknown_top_level_key": "4: task: unknown top-level key (did you mean 'tasks'?)",
    "unknown_kind": "3: repositories.books.kind: unknown repository kind 'fiel' "
    "(did you mean 'file'?)",
    "unknown_repository_key": "5: repositories.books.extention: unknown key "
    "(did you mean 'extension'?)",
    "wrong_type": "9: tasks.shout.max_concurrent: expected an integer, not a string",
    "unknown_repository_name": "8: tasks.shout.inputs.src: unknown repository 'bookz' "
    "(did you mean 'books'?)",
    "unknown_resource": "6: repositories.raw.resource: unknown resource 'stor' "
    "(did you mean 'store'?)",
    "cycle": "5: tasks.forth: tasks depend on each other in a cycle: forth -> again -> forth",
    "missing_variable": "4: repositories.books.path: ${PYDATATASK_TEST_UNSET_FOLDER} is not "
    "set (give it with --set PYDATATASK_TEST_UNSET_FOLDER=VALUE or in the environment)",
    "yaml_syntax": "3: invalid YAML: expected ',' or '}', but got ':' "
    "(while parsing a flow mapping on line 2)",
    "function_not_importable": "8: tasks.summary.function: cannot import "
    "'pydatatask_no_such_module:summary': ModuleNotFoundError: "
    "No module named 'pydatatask_no_such_module'",
    "function_attribute_typo": "5: tasks.summary.function: cannot import "
    "'json:JSONDecodr': 'json' has no 'JSONDecodr' (did you mean 'JSONDecoder'?)",
    "task_kind_typo": "6: tasks.shout.proces: unknown key; a task needs one of the keys "
    "container, function, kube, process, slurm (did you mean 'process'?)",
    "misindented_task_key": "8: tasks.outputs: a task needs one of the keys container, "
    "function, kube, process, slurm; 'outputs' is a key of a task: indent it under its task",
    "misindented_repository": "2: repositories.books: expected a mapping, not nothing; "
    "indent its keys under it",
    "unknown_template_name": "6: tasks.shout.process: the template uses scr, not defined here; "
    "it can use done, dst, env, environ, job, pids, src, task (did you mean 'src'?)",
}


def test_there_is_one_expectation_per_broken_file() -> None:
    assert sorted(path.stem for path in BROKEN.glob("*.yaml")) == sorted(BROKEN_FILES)


@pytest.mark.parametrize("name", sorted(BROKEN_FILES))
def test_a_broken_file_names_its_line_and_key(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYDATATASK_TEST_UNSET_FOLDER", raising=False)
    path = BROKEN / f"{name}.yaml"
    with pytest.raises(ConfigFileError) as caught:
        validate_file(path)
    message = f"{path}:{BROKEN_FILES[name]}"
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
    assert caught.value.path == str(path)
    assert caught.value.line == int(BROKEN_FILES[name].partition(":")[0])
    assert isinstance(caught.value, pydatatask.ConfigurationError)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problem_of(path: Path, settings: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigFileError) as caught:
        validate_file(path, settings)
    return str(caught.value).removeprefix(f"{path}:")


def test_more_problems_name_their_line_and_key(tmp_path: Path) -> None:
    repositories = """
        repositories:
          books: {kind: file, path: books, extension: .txt}
          done: {kind: file, path: done}
        """
    cases = {
        "tasks:\n  t:\n    inputs: {}\n": "2: tasks.t: a task needs one of the keys "
        "container, function, kube, process, slurm",
        "tasks:\n  t: {process: x, function: 'a:b'}\n": "2: tasks.t: a task has one kind: "
        "give one of container, function, kube, process, slurm",
        "tasks:\n  t: {process: 'cat {{ nope }}', inputs: {src: books}}\n": "2: tasks.t.process: "
        "the template uses nope, not defined here; it can use done, env, environ, job, pids, "
        "src, task",
        "tasks:\n  t: {process: x, done: done}\n": "2: tasks.t.done: repository 'done' is a "
        "FileRepository; this key needs a metadata repository (yaml, yaml-s3, mongodb, memory)",
        "tasks:\n  t: {process: x, inputs: {a: books}, outputs: {a: books}}\n": "2: "
        "tasks.t.outputs.a: this link name is used twice",
        "tasks:\n  t: {process: x, retry: {max_attempts: 2, backof: 1}}\n": "2: "
        "tasks.t.retry.backof: unknown key (did you mean 'backoff'?)",
        "leases: books\n": "1: leases: a FileRepository cannot hold leases: name a yaml, "
        "yaml-s3, mongodb or memory repository",
        "app: -no\n": "1: app: invalid value: use letters, digits, '_', '.' and '-', "
        "starting and ending with a letter or digit, at most 63",
    }
    lines = len(textwrap.dedent(repositories).splitlines())
    for tail, expected in cases.items():
        path = write(tmp_path, textwrap.dedent(repositories) + tail)
        line, _, rest = expected.partition(":")
        assert problem_of(path) == f"{int(line) + lines}:{rest}", tail


def test_resources_and_repositories_of_the_wrong_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        resources:
          db: {kind: mongodb, uri: "mongodb://127.0.0.1:9/"}
        repositories:
          raw: {kind: s3, resource: db, bucket: raw}
        """,
    )
    assert problem_of(path) == (
        "5: repositories.raw.resource: resource 'db' is a mongodb resource; this key needs s3"
    )


def test_repositories_that_name_each_other_in_a_cycle(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        repositories:
          base: {kind: memory}
          one: {kind: blocking, source: two, unless: base}
          two: {kind: any-of, repositories: {first: one, second: base}}
        """,
    )
    assert problem_of(path) == (
        "5: repositories.two.repositories.first: repositories name each other in a cycle: "
        "one -> two -> one"
    )


def test_a_substituted_value_never_shows_in_a_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        repositories:
          books: {kind: file, path: books, extension: "${EXTENSION}"}
          other: {kind: file, path: other}
        tasks:
          t: {process: x, inputs: {src: "${SOURCE}"}}
        """,
    )
    secret = "s3cr3t/value"
    with pytest.raises(ConfigFileError) as caught:
        validate_file(path, {"EXTENSION": secret, "SOURCE": "b00ks"})
    # Not even the chained error a traceback would show holds the value.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    problem = str(caught.value).removeprefix(f"{path}:")
    assert secret not in problem
    assert (
        problem == "3: repositories.books: extension '${EXTENSION}' cannot be part of a file name"
    )
    problem = problem_of(path, {"EXTENSION": ".txt", "SOURCE": "b00ks"})
    assert problem == "6: tasks.t.inputs.src: unknown repository (did you mean 'books'?)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "repositories:\n  a: {kind: file, path: a, codec: jsn}\n",
            "2: repositories.a.codec: expected one of bytes, text, json, yaml, pickle, csv, "
            "parquet (did you mean 'json'?)",
        ),
        ("repositories:\n  a: {path: a}\n", "2: repositories.a: missing key 'kind'"),
        (
            "repositories:\n  a: {kind: memory, data: [1]}\n",
            "2: repositories.a.data: expected a mapping or nothing, not a list",
        ),
        ("repositories: [a]\n", "1: repositories: expected a mapping or nothing, not a list"),
        ("lease_seconds: 0\n", "1: lease_seconds: must be at least 1"),
        ("poll_interval: 0\n", "1: poll_interval: must be more than 0"),
        ("max_concurrent_jobs: 1.5\n", "1: max_concurrent_jobs: expected an integer, not a number"),
        (
            "tasks:\n  t: {process: x, retry: often}\n",
            "2: tasks.t.retry: expected an integer or a mapping, not a string",
        ),
        (
            "tasks:\n  t: {process: x, merge_stderr: 1}\n",
            "2: tasks.t.merge_stderr: expected true or false, not an integer",
        ),
        ("tasks:\n  t: {process: [x]}\n", "2: tasks.t.process: expected a string, not a list"),
    ],
)
def test_schema_problems_read_as_sentences(tmp_path: Path, text: str, expected: str) -> None:
    assert problem_of(write(tmp_path, text)) == expected
