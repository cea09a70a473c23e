"""What pipelines and data written for pydatatask 0.4 rely on, as docs/upgrading.rst lists it.

Old names work and warn (DeprecationWarning, naming the replacement); data that 0.4
wrote reads back; a repository written against 0.4's hooks works unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

import pydatatask
from pydatatask import admin
from pydatatask.records import JobResult, Outcome, error_line, outcome
from pydatatask.templating import render

# --- done records written by 0.4 -----------------------------------------------------

STARTED = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
ENDED = datetime(2023, 5, 1, 12, 1, tzinfo=UTC)

LEGACY_RECORDS: dict[str, dict[str, Any]] = {
    # InProcessSyncTask / ExecutorTask
    "ok": {"result": "success", "start_time": STARTED, "end_time": ENDED},
    "broke": {
        "result": "exception",
        "exception": "KeyError('x')",
        "traceback": ['  File "a.py", line 1\n', "    boom\n"],
        "start_time": STARTED,
        "end_time": ENDED,
    },
    # ProcessTask
    "exited0": {"return_code": 0, "start_time": STARTED, "end_time": ENDED},
    "exited2": {"return_code": 2, "start_time": STARTED, "end_time": ENDED},
}


def test_legacy_success_records_read_as_success() -> None:
    for job in ("ok", "exited0"):
        record = LEGACY_RECORDS[job]
        assert outcome(record) is Outcome.SUCCEEDED, job
        assert JobResult.from_record(record).success, job
    result = JobResult.from_record(LEGACY_RECORDS["exited0"])
    assert result.exit_code == 0
    assert "return_code" not in result.extra
    assert result.start_time == str(STARTED)


def test_legacy_failure_records_read_as_failures() -> None:
    broke = JobResult.from_record(LEGACY_RECORDS["broke"])
    assert (broke.success, broke.exception) == (False, "KeyError('x')")
    assert broke.traceback == '  File "a.py", line 1\n    boom\n'
    assert "result" not in broke.extra
    exited = JobResult.from_record(LEGACY_RECORDS["exited2"])
    assert (exited.success, exited.exit_code) == (False, 2)
    assert outcome(LEGACY_RECORDS["broke"]) is Outcome.FAILED
    assert outcome(LEGACY_RECORDS["exited2"]) is Outcome.FAILED
    assert error_line(LEGACY_RECORDS["exited2"]) == "exit status 2"
    assert error_line(LEGACY_RECORDS["broke"]) == "KeyError('x')"


def test_success_flag_wins_over_legacy_keys() -> None:
    assert outcome({"success": False, "result": "success"}) is Outcome.FAILED
    today = JobResult.from_record({"success": True, "return_code": 3, "result": 7})
    assert today.success
    assert today.exit_code is None
    assert today.extra == {"return_code": 3, "result": 7}  # a kind's own fields
    assert outcome({"note": "marked by hand"}) is Outcome.SUCCEEDED


async def test_pipeline_reads_a_done_folder_written_by_04(tmp_path: Path) -> None:
    done_folder = tmp_path / "done"
    done_folder.mkdir()
    for job, record in LEGACY_RECORDS.items():
        (done_folder / f"{job}.yaml").write_text(yaml.safe_dump(record))
    inputs = pydatatask.InProcessMetadataRepository(
        {job: job for job in [*LEGACY_RECORDS, "fresh"]}
    )
    outputs = pydatatask.InProcessMetadataRepository()
    ran: list[str] = []

    @pydatatask.InProcessSyncTask("stage", pydatatask.YamlMetadataFileRepository(done_folder))
    async def stage(job: str, source: Any, target: Any) -> None:
        ran.append(job)
        await target.dump(job, await source.info(job))

    stage.link("source", inputs, is_input=True)
    stage.link("target", outputs, is_output=True)
    pipeline = pydatatask.Pipeline([stage], pydatatask.Session())
    async with pipeline:
        await pydatatask.run(pipeline, timeout=60)
        counts = (await admin.status(pipeline))["stage"]
    assert ran == ["fresh"]  # recorded jobs, successes and failures alike, are not rerun
    assert (counts["succeeded"], counts["failed"]) == (3, 2)


# --- Mongo documents written by 0.4 ----------------------------------------------------


@contextlib.asynccontextmanager
async def legacy_collection(uri: str) -> AsyncIterator[tuple[Any, Any]]:
    """Yield (an accessor for a fresh collection, the raw collection) on the test server."""
    pymongo = pytest.importorskip("pymongo")
    client = pymongo.AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    database = client[f"compat_{uuid.uuid4().hex[:12]}"]
    session = pydatatask.Session()

    @session.resource
    async def collection() -> AsyncIterator[Any]:
        yield database["jobs"]

    try:
        async with session:
            yield collection, database["jobs"]
    finally:
        await client.drop_database(database.name)
        await client.close()


@pytest.mark.backend
async def test_mongo_documents_written_by_04_read_as_their_value(mongo_server: Any) -> None:
    async with legacy_collection(mongo_server.uri) as (accessor, raw):
        await _check_legacy_documents(accessor, raw)


async def _check_legacy_documents(accessor: Any, raw: Any) -> None:
    await raw.insert_many(
        [
            {"_id": "old", "weh": 1, "tags": ["a", "b"]},
            {"_id": "empty"},
            {"_id": "result", "result": "success", "return_code": 0},
        ]
    )
    repo = pydatatask.MongoMetadataRepository(accessor)
    await repo.dump("new", {"weh": 2})
    await repo.dump("scalar", 5)
    assert await repo.info("old") == {"weh": 1, "tags": ["a", "b"]}
    assert await repo.info("empty") == {}
    assert await repo.info("new") == {"weh": 2}
    assert await repo.info("scalar") == 5
    assert await repo.info_all() == {
        "old": {"weh": 1, "tags": ["a", "b"]},
        "empty": {},
        "result": {"result": "success", "return_code": 0},
        "new": {"weh": 2},
        "scalar": 5,
    }
    tokens = await repo.tokens(["old", "new", "absent"])
    assert set(tokens) == {"old", "new"}
    await repo.dump("old", {"weh": 3})  # rewritten in today's layout
    assert await raw.find_one({"_id": "old"}) == {"_id": "old", "value": {"weh": 3}}
    assert (await repo.tokens(["old"]))["old"] != tokens["old"]


@pytest.mark.backend
async def test_mongo_done_collection_written_by_04_is_read_by_a_pipeline(
    mongo_server: Any,
) -> None:
    async with legacy_collection(mongo_server.uri) as (accessor, raw):
        await _check_legacy_done_collection(accessor, raw)


async def _check_legacy_done_collection(accessor: Any, raw: Any) -> None:
    await raw.insert_many(
        [
            {"_id": "a", "result": "success", "start_time": STARTED},
            {"_id": "b", "result": "exception", "exception": "ValueError()"},
        ]
    )
    ran: list[str] = []

    @pydatatask.InProcessSyncTask("stage", pydatatask.MongoMetadataRepository(accessor))
    async def stage(job: str, source: Any) -> None:
        ran.append(job)

    stage.link(
        "source", pydatatask.InProcessMetadataRepository(dict.fromkeys("abc", 1)), is_input=True
    )
    pipeline = pydatatask.Pipeline([stage], pydatatask.Session())
    async with pipeline:
        await pydatatask.run(pipeline, timeout=60)
        counts = (await admin.status(pipeline))["stage"]
    assert ran == ["c"]
    assert (counts["succeeded"], counts["failed"]) == (2, 1)


# --- repositories written against 0.4's hooks -------------------------------------------


# Typed as Any: a type checker sees the protected hooks as abstract, not that the class
# gets them when it is defined.
def _legacy_repository_class() -> type[Any]:
    with pytest.deprecated_call(match="_iter_ids, _info, _delete and _contains"):

        class LegacyRepository(pydatatask.Repository):
            def __init__(self, jobs: list[str]) -> None:
                self.jobs = jobs
                self.deleted: list[str] = []

            async def unfiltered_iter(self) -> AsyncGenerator[str, None]:
                for job in self.jobs:
                    yield job

            async def info(self, job: str) -> Any:
                return f"info of {job}"

            async def delete(self, job: str) -> None:
                self.deleted.append(job)

    return LegacyRepository


async def test_repository_with_04_hooks_works(caplog: pytest.LogCaptureFixture) -> None:
    repo: Any = _legacy_repository_class()(["foo", "bar", "a/b"])
    assert await repo.ids() == {"foo", "bar"}
    assert "'a/b'" in caplog.text  # the invalid id is skipped with a warning
    assert await repo.contains("foo")
    assert not await repo.contains("weh")
    assert await repo.info("anything") == "info of anything"
    assert await repo.info_all() == {"foo": "info of foo", "bar": "info of bar"}
    await repo.delete("foo")
    assert repo.deleted == ["foo"]
    with pytest.raises(pydatatask.InvalidJobIdError):
        await repo.contains("../x")


async def test_repository_with_04_contains_keeps_it() -> None:
    with pytest.deprecated_call():

        class WithContains(pydatatask.Repository):
            async def unfiltered_iter(self) -> AsyncGenerator[str, None]:
                yield "listed"

            async def contains(self, job: str) -> bool:
                return job == "hidden"

            async def info(self, job: str) -> Any:
                return None

            async def delete(self, job: str) -> None:
                return None

    legacy: type[Any] = WithContains
    repo = legacy()
    assert await repo.contains("hidden")
    assert not await repo.contains("listed")


async def test_metadata_repository_with_04_hooks_and_a_subclass_of_it() -> None:
    with pytest.deprecated_call():

        class DictRepository(pydatatask.MetadataRepository):
            def __init__(self) -> None:
                self.values: dict[str, Any] = {}

            async def unfiltered_iter(self) -> AsyncGenerator[str, None]:
                for job in list(self.values):
                    yield job

            async def info(self, job: str) -> Any:
                return self.values.get(job, {})

            async def delete(self, job: str) -> None:
                self.values.pop(job, None)

            async def dump(self, job: str, value: Any) -> None:
                self.values[job] = value

    class Tagged(DictRepository):
        async def info(self, job: str) -> Any:
            return {"tagged": await super().info(job)}

    legacy: type[Any] = DictRepository
    repo = legacy()
    await repo.save("a", {"x": 1})  # save goes through the 0.4 dump
    assert await repo.load("a") == {"x": 1}
    assert await repo.create("b", 2)
    assert not await repo.create("b", 3)
    assert await repo.info_all() == {"a": {"x": 1}, "b": 2}
    tagged_class: type[Any] = Tagged
    tagged = tagged_class()
    await tagged.dump("a", 1)
    assert await tagged.info_all() == {"a": {"tagged": 1}}


def test_new_style_repositories_do_not_warn() -> None:
    class Plain(pydatatask.InProcessMetadataRepository):
        pass

    assert Plain({"a": 1}).data == {"a": 1}


async def test_repository_with_04_hooks_feeds_a_pipeline() -> None:
    source = _legacy_repository_class()(["one", "two"])
    done = pydatatask.InProcessMetadataRepository()
    out = pydatatask.InProcessMetadataRepository()

    @pydatatask.InProcessSyncTask("copy", done)
    async def copy(job: str, src: Any, dst: Any) -> None:
        await dst.dump(job, await src.info(job))

    copy.link("src", source, is_input=True)
    copy.link("dst", out, is_output=True)
    pipeline = pydatatask.Pipeline([copy], pydatatask.Session())
    async with pipeline:
        await pydatatask.run(pipeline, timeout=60)
    assert out.data == {"one": "info of one", "two": "info of two"}


async def test_map_info_ignores_the_filter_as_in_04() -> None:
    repo = _legacy_repository_class()(["foo", "bar"])

    async def upper(info: str) -> str:
        return info.upper()

    async def only_foo(job: str) -> bool:
        return job == "foo"

    mapped = repo.map(upper, only_foo, allow_deletes=True)
    assert await mapped.ids() == {"foo"}
    assert not await mapped.contains("bar")
    assert await mapped.info("bar") == "INFO OF BAR"
    assert await mapped.info("absent") == "INFO OF ABSENT"
    assert await mapped.info_all() == {"foo": "INFO OF FOO"}


# --- files and directories ----------------------------------------------------------


async def test_file_and_directory_info_and_fullpath_are_str(tmp_path: Path) -> None:
    files = pydatatask.FileRepository(tmp_path / "files", ".txt")
    directories = pydatatask.DirectoryRepository(tmp_path / "dirs")
    await files.validate()
    await directories.validate()
    await files.save("a", "x")
    assert await files.info("a") == str(tmp_path / "files" / "a.txt")
    assert await files.info("absent") == str(tmp_path / "files" / "absent.txt")
    assert await files.info_all() == {"a": str(tmp_path / "files" / "a.txt")}
    assert await directories.info("d") == str(tmp_path / "dirs" / "d")
    with pytest.deprecated_call(match=r"FileRepository.fullpath\(job\).*repo.info\(job\)"):
        full = files.fullpath("a")
    assert isinstance(full, str)
    assert full == str(tmp_path / "files" / "a.txt")
    with pytest.deprecated_call(match="DirectoryRepository.fullpath"):
        path = directories.fullpath("d")
    await directories.mkdir("d")
    (path / "inside").mkdir()  # a str that joins with / as 0.4's Path did
    assert await directories.contains("d")
    with pytest.deprecated_call(), pytest.raises(pydatatask.InvalidJobIdError):
        files.fullpath("../escape")


# --- S3 info --------------------------------------------------------------------------


@pytest.mark.backend
async def test_s3_info_is_the_04_object_and_a_mapping(s3_server: Any, s3_client: Any) -> None:
    bucket = f"compat-{uuid.uuid4().hex[:12]}"
    session = pydatatask.Session()

    @session.resource
    async def client() -> AsyncIterator[Any]:
        yield s3_client

    repo = pydatatask.S3BucketRepository(client, f"{bucket}/weh/", ".weh")
    async with session:
        await repo.validate()
        try:
            await repo.save("foo", b"four")
            absent = await repo.info("bar")
            assert isinstance(absent, pydatatask.S3BucketInfo)
            assert str(absent) == f"s3://{bucket}/weh/bar.weh"
            assert absent.uri == str(absent)
            assert absent.endpoint == s3_server.endpoint_url
            assert (absent.bucket, absent.prefix, absent.suffix) == (bucket, "weh/", ".weh")
            assert absent.size is None
            assert "size" not in absent
            present = await repo.info("foo")
            assert present["bucket"] == bucket
            assert present["key"] == "weh/foo.weh"
            assert present["size"] == present.size == 4
            assert dict(present) == {
                "bucket": bucket,
                "key": "weh/foo.weh",
                "uri": f"s3://{bucket}/weh/foo.weh",
                "endpoint": s3_server.endpoint_url,
                "url": f"{s3_server.endpoint_url}/{bucket}/weh/foo.weh",
                "size": 4,
            }
            assert present == dict(present)
            assert await repo.info_all() == {"foo": present}
            script = await render("cat {{ repo }} {{ repo.bucket }}", {"repo": present})
            assert script == f"cat s3://{bucket}/weh/foo.weh {bucket}"
        finally:
            await repo.delete("foo")
            await s3_client.delete_bucket(Bucket=bucket)


# --- task.plug ------------------------------------------------------------------------


async def test_plug_links_the_outputs_of_another_task() -> None:
    source = pydatatask.InProcessMetadataRepository({"foo": "weh"})
    middle = pydatatask.InProcessMetadataRepository()
    final = pydatatask.InProcessMetadataRepository()

    @pydatatask.InProcessSyncTask("first", pydatatask.InProcessMetadataRepository())
    async def first(job: str, zero: Any, one: Any) -> None:
        await one.dump(job, await zero.info(job) + "!")

    @pydatatask.InProcessSyncTask("second", pydatatask.InProcessMetadataRepository())
    async def second(job: str, one: Any, two: Any) -> None:
        await two.dump(job, await one.info(job) + "?")

    first.link("zero", source, is_input=True)
    first.link("one", middle, is_output=True)
    with pytest.deprecated_call(match=r"Task.plug\(\) is deprecated; link"):
        second.plug(first)
    second.link("two", final, is_output=True)
    assert second.links["one"].repo is middle
    assert second.links["one"].is_input
    assert second.links["one"].required_for_start
    assert set(second.links) == {"done", "one", "two"}
    pipeline = pydatatask.Pipeline([first, second], pydatatask.Session())
    async with pipeline:
        await pydatatask.run(pipeline, timeout=60)
    assert final.data == {"foo": "weh!?"}


def test_plug_with_a_translator_and_an_allowlist() -> None:
    producer = pydatatask.InProcessSyncTask("producer", pydatatask.InProcessMetadataRepository())
    wanted = pydatatask.InProcessBlobRepository()
    producer.link("wanted", wanted, is_output=True)
    producer.link("other", pydatatask.InProcessBlobRepository(), is_output=True)
    producer.link("lock", pydatatask.InProcessMetadataRepository(), inhibits_output=True)
    consumer = pydatatask.InProcessSyncTask("consumer", pydatatask.InProcessMetadataRepository())
    translator = pydatatask.InProcessMetadataRepository({"alias": "real"})
    with pytest.deprecated_call():
        consumer.plug(producer, output_links=["wanted"], translator=translator)
    linked = consumer.links["wanted"]
    assert isinstance(linked.repo, pydatatask.RelatedItemRepository)
    assert linked.repo.base is wanted
    assert linked.is_input
    other = consumer.links["other"]  # listed out: not an input, still required (meta)
    assert not other.is_input
    assert other.required_for_start
    assert consumer.links["producer_lock"].inhibits_start
    with pytest.deprecated_call():
        consumer_without_meta = pydatatask.InProcessSyncTask(
            "bare", pydatatask.InProcessMetadataRepository()
        )
        consumer_without_meta.plug(producer, meta=False)
    assert set(consumer_without_meta.links) == {"done", "wanted", "other"}
    assert consumer_without_meta.links["wanted"].required_for_start


# --- the top-level functions of 0.4 -----------------------------------------------------


def _counting_pipeline() -> tuple[pydatatask.Pipeline, dict[str, Any]]:
    repos: dict[str, Any] = {
        "numbers": pydatatask.InProcessMetadataRepository({str(i): i for i in range(5)}),
        "blobs": pydatatask.InProcessBlobRepository(),
        "done": pydatatask.InProcessMetadataRepository(),
    }

    @pydatatask.InProcessSyncTask("task", repos["done"])
    async def task(job: str, numbers: Any, blobs: Any) -> None:
        if job == "4":
            raise ValueError("four")
        async with await blobs.open(job, "w") as writer:
            await writer.write("x" * await numbers.info(job))

    task.link("numbers", repos["numbers"], is_input=True)
    task.link("blobs", repos["blobs"], is_output=True)
    return pydatatask.Pipeline([task], pydatatask.Session()), repos


async def test_update_and_the_printing_functions(capsys: pytest.CaptureFixture[str]) -> None:
    pipeline, repos = _counting_pipeline()
    async with pipeline:
        with pytest.deprecated_call(match=r"pydatatask.update\(pipeline\).*pipeline.update"):
            await pydatatask.update(pipeline)
        await pydatatask.run(pipeline, timeout=60)
        capsys.readouterr()
        with pytest.deprecated_call(match="print_status.*status"):
            await pydatatask.print_status(pipeline, False)
        assert capsys.readouterr().out == "task\ntask.numbers 5\ntask.done 5\ntask.blobs 4\n\n"
        with pytest.deprecated_call(match="print_trace.*trace"):
            await pydatatask.print_trace(pipeline, False, ["0", "4", "nope"])
        assert capsys.readouterr().out == "task\ntask.numbers 0 4\ntask.done 0 4\ntask.blobs 0\n\n"
        with pytest.deprecated_call(match="list_data.*ls"):
            await pydatatask.list_data(pipeline, ["task.numbers", "-", "task.blobs"])
        assert capsys.readouterr().out == "4\n"
        with pytest.deprecated_call(match="cat_data.*cat"):
            await pydatatask.cat_data(pipeline, "task.numbers", "3")
        assert capsys.readouterr().out == "3\n"
    assert len(repos["done"].data) == 5


async def test_cat_inject_and_delete_data(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, repos = _counting_pipeline()
    async with pipeline:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"bytes in\n")))
        with pytest.deprecated_call(match="inject_data.*inject"):
            await pydatatask.inject_data(pipeline, "task.blobs", "9")
        assert repos["blobs"].data["9"] == b"bytes in\n"
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a: [1\n")))
        with pytest.deprecated_call(), pytest.raises(pydatatask.InputError):
            await pydatatask.inject_data(pipeline, "task.numbers", "9")
        capsysbinary.readouterr()
        with pytest.deprecated_call():
            await pydatatask.cat_data(pipeline, "task.blobs", "9")
        assert capsysbinary.readouterr().out == b"bytes in\n"
        await repos["done"].dump("9", {"success": True})
        with pytest.deprecated_call(match="delete_data.*rm"):
            await pydatatask.delete_data(pipeline, "task", True, ["9"])
        assert capsysbinary.readouterr().out == b"9 task.done\n9 task.blobs\n"
        assert "9" not in repos["blobs"].data
        assert "9" not in repos["done"].data


async def test_launch(caplog: pytest.LogCaptureFixture) -> None:
    pipeline, repos = _counting_pipeline()
    async with pipeline:
        with pytest.deprecated_call(match=r"launch\(...\).*admin.launch"):
            assert await pydatatask.launch(pipeline, "task", "1", True, True, False) is None
        assert repos["done"].data["1"]["success"] is True
        with pytest.deprecated_call():
            assert await pydatatask.launch(pipeline, "task", "1", True, True, False) == 1
        assert "force=True" in caplog.text
        with pytest.deprecated_call():
            await pydatatask.launch(pipeline, "task", "absent", sync=True, meta=True, force=True)
        assert "exception" in repos["done"].data["absent"]
        with pytest.deprecated_call():
            await pydatatask.launch(pipeline, "task", "2", meta=False)
        assert repos["blobs"].data["2"] == b"xx"
        assert "2" not in repos["done"].data
        await pydatatask.run(pipeline, timeout=60)  # "2" counts as not run: it runs again
        assert repos["done"].data["2"]["success"] is True


# --- session accessors -----------------------------------------------------------------


def test_kube_task_takes_a_podman_accessor() -> None:
    pytest.importorskip("kubernetes_asyncio")
    session = pydatatask.Session()

    @session.resource
    async def podman() -> AsyncIterator[Any]:
        yield pydatatask.PodManager("app", "default")

    task = pydatatask.KubeTask(
        "kube",
        podman=podman,
        resources=pydatatask.ResourceManager(pydatatask.Resources.parse("1", "1Gi")),
        template="apiVersion: v1\nkind: Pod\nspec: {containers: []}\n",
        logs=pydatatask.InProcessBlobRepository(),
    )
    assert set(task.links) == {"done", "logs"}
    with pytest.raises(pydatatask.LifecycleError):
        task.podman  # noqa: B018 - the accessor is called on use, and the session is closed


async def test_deprecated_functions_run_on_the_event_loop() -> None:
    # Each is a coroutine function, awaited as in 0.4.
    for name in pydatatask._DEPRECATED:
        assert asyncio.iscoroutinefunction(getattr(pydatatask, name)), name
