"""Values through codecs: load and save on files, memory and S3, and the codecs themselves."""

from __future__ import annotations

import datetime
import json
import os
import pickle
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

import pydatatask
from pydatatask import (
    ConfigurationError,
    FileRepository,
    InProcessBlobRepository,
    InProcessMetadataRepository,
    JobNotFoundError,
    MissingDependencyError,
    RelatedItemRepository,
    UnstorableValueError,
    YamlMetadataFileRepository,
)
from pydatatask.codecs import BUILTIN_CODECS, EXTENSION_CODECS, Codec, codec_for
from pydatatask.errors import CodecError
from pydatatask.repository.base import BlobRepository, MetadataRepository
from pydatatask.repository.dataset import HiveDatasetRepository, S3HiveDatasetRepository

Make = Callable[..., Awaitable[BlobRepository]]
"""``await make(codec=None, extension="")``: a new, empty blob repository."""

TABLE_CODECS = ("csv", "parquet")
ROWS = [
    {"n": 1, "word": "one", "ratio": 0.5, "flag": True},
    {"n": 2, "word": "two, with a comma", "ratio": 1.25, "flag": False},
]

# One value per codec that its load gives back equal (tables compared by their rows).
ROUND_TRIPS = [
    pytest.param("bytes", b"\x00\x01 raw \xff", id="bytes"),
    pytest.param("bytes", b"", id="bytes-empty"),
    pytest.param("text", "héllo wörld\nline 2 😀\r\n", id="text"),
    pytest.param("text", "", id="text-empty"),
    pytest.param("json", {"name": "x", "list": [1, 2.5, None, True], "é": {"ü": "ß"}}, id="json"),
    pytest.param("json", [1, "two", None], id="json-list"),
    pytest.param(
        "yaml",
        {"when": datetime.date(2024, 1, 2), "text": "multi\nline\n", "list": [1, None]},
        id="yaml",
    ),
    pytest.param(
        "pickle", {"set": {1, 2}, "tuple": (1, "a"), "complex": 1 + 2j, "b": b"x"}, id="pickle"
    ),
    pytest.param("csv", ROWS, id="csv", marks=pytest.mark.backend),
    pytest.param("csv", [], id="csv-empty", marks=pytest.mark.backend),
    pytest.param("parquet", ROWS, id="parquet", marks=pytest.mark.backend),
    pytest.param("parquet", [], id="parquet-empty", marks=pytest.mark.backend),
]

# A value each codec cannot encode.
REFUSED = [
    pytest.param("bytes", "a str", id="bytes-str"),
    pytest.param("text", b"bytes", id="text-bytes"),
    pytest.param("json", object(), id="json-object"),
    pytest.param("json", float("nan"), id="json-nan"),
    pytest.param("yaml", object(), id="yaml-object"),
    pytest.param("pickle", threading.Lock(), id="pickle-lock"),
    pytest.param("csv", {"n": 1}, id="csv-dict", marks=pytest.mark.backend),
    pytest.param("csv", [{"n": 1}, "x"], id="csv-bad-row", marks=pytest.mark.backend),
    pytest.param("csv", [{"n": [1, 2]}], id="csv-nested", marks=pytest.mark.backend),
    pytest.param("parquet", "text", id="parquet-str", marks=pytest.mark.backend),
]

# Stored bytes each codec cannot decode.
CORRUPT = [
    pytest.param("text", b"\xff\xfe not UTF-8", id="text"),
    pytest.param("json", b"{not json", id="json"),
    pytest.param("yaml", b"key: [unclosed", id="yaml"),
    pytest.param("pickle", b"not a pickle", id="pickle"),
    pytest.param("csv", b"a,b\n1,2,3\n", id="csv", marks=pytest.mark.backend),
    pytest.param("parquet", b"PAR1 garbage PAR1", id="parquet", marks=pytest.mark.backend),
]

EXTENSIONS = [
    ("", "bytes"),
    (".bin", "bytes"),
    (".txt", "text"),
    (".json", "json"),
    (".yaml", "yaml"),
    (".yml", "yaml"),
    (".pkl", "pickle"),
    (".pickle", "pickle"),
    (".csv", "csv"),
    (".parquet", "parquet"),
    (".JSON", "json"),
    (".json.gz", "bytes"),
]


def _needs_tables(name: str) -> None:
    if name in TABLE_CODECS:
        pytest.importorskip("pyarrow")


def _plain(name: str, loaded: Any) -> Any:
    """Return a loaded value in a comparable form: tables as their rows."""
    return loaded.to_pylist() if name in TABLE_CODECS else loaded


def _reversing_codec() -> Codec:
    return Codec(
        lambda value: str(value).encode("utf-8")[::-1],
        lambda data: data[::-1].decode("utf-8"),
        name="reversed",
    )


async def _raw(repo: BlobRepository, job: str) -> bytes:
    async with await repo.open(job, "rb") as reader:
        return await reader.read()


async def _store_raw(repo: BlobRepository, job: str, data: bytes) -> None:
    async with await repo.open(job, "wb") as writer:
        await writer.write(data)


class CodecSuite:
    """What every blob backend does with codecs; subclasses give the ``make`` fixture."""

    has_extension: ClassVar[bool] = True

    async def stored_names(self, repo: BlobRepository) -> list[str]:
        """Every name the backend holds, temporary ones included."""
        return sorted(await repo.ids())

    @pytest.mark.parametrize(("name", "value"), ROUND_TRIPS)
    async def test_round_trip(self, make: Make, name: str, value: Any) -> None:
        _needs_tables(name)
        repo = await make(codec=name)
        assert repo.codec is BUILTIN_CODECS[name]
        await repo.save("job", value)
        assert _plain(name, await repo.load("job")) == value
        assert await _raw(repo, "job") == BUILTIN_CODECS[name].encode(value)
        assert await repo.ids() == {"job"}

    async def test_save_replaces(self, make: Make) -> None:
        repo = await make(codec="json")
        await repo.save("job", {"version": 1})
        await repo.save("job", {"version": 2})
        assert await repo.load("job") == {"version": 2}

    @pytest.mark.backend  # the tables extra
    async def test_table_types_round_trip(self, make: Make) -> None:
        pyarrow = pytest.importorskip("pyarrow")
        table = pyarrow.table({"n": [1, 2, 3], "word": ["a", "b", "c"]})
        for name in TABLE_CODECS:
            repo = await make(codec=name)
            await repo.save("table", table)
            assert (await repo.load("table")).equals(table)
            await repo.save("batch", table.to_batches()[0])
            assert (await repo.load("batch")).equals(table)
            await repo.save("tuple", tuple(ROWS))
            assert (await repo.load("tuple")).to_pylist() == ROWS

    @pytest.mark.backend  # the tables extra
    async def test_dataframe(self, make: Make) -> None:
        pytest.importorskip("pyarrow")
        pandas = pytest.importorskip("pandas")
        frame = pandas.DataFrame(ROWS)
        for name in TABLE_CODECS:
            repo = await make(codec=name)
            await repo.save("frame", frame)
            loaded = await repo.load("frame")
            assert loaded.to_pylist() == ROWS
            pandas.testing.assert_frame_equal(loaded.to_pandas(), frame, check_dtype=False)

    @pytest.mark.parametrize(("extension", "name"), EXTENSIONS)
    async def test_extension_picks_the_codec(self, make: Make, extension: str, name: str) -> None:
        if not self.has_extension:
            pytest.skip("this repository has no extension")
        repo = await make(extension=extension)
        assert repo.codec.name == name

    async def test_codec_overrides_the_extension(self, make: Make) -> None:
        if not self.has_extension:
            pytest.skip("this repository has no extension")
        repo = await make(codec="json", extension=".txt")
        await repo.save("job", {"a": 1})
        assert await _raw(repo, "job") == b'{"a": 1}\n'

    async def test_default_is_bytes(self, make: Make) -> None:
        repo = await make()
        assert repo.codec.name == "bytes"
        await repo.save("job", bytearray(b"abc"))
        assert await repo.load("job") == b"abc"

    @pytest.mark.parametrize(("name", "value"), REFUSED)
    async def test_refused_value_stores_nothing(self, make: Make, name: str, value: Any) -> None:
        _needs_tables(name)
        repo = await make(codec=name)
        await _store_raw(repo, "job", b"previous")
        before = await self.stored_names(repo)
        for job in ("job", "fresh"):
            with pytest.raises(CodecError) as caught:
                await repo.save(job, value)
            error = caught.value
            assert isinstance(error, ValueError)
            assert isinstance(error, pydatatask.PydatataskError)
            assert (error.job, error.codec) == (job, name)
            assert repr(job) in str(error)
            assert repr(name) in str(error)
        assert await _raw(repo, "job") == b"previous"
        assert not await repo.contains("fresh")
        assert await self.stored_names(repo) == before

    @pytest.mark.parametrize(("name", "data"), CORRUPT)
    async def test_corrupt_data_raises_on_load(self, make: Make, name: str, data: bytes) -> None:
        _needs_tables(name)
        repo = await make(codec=name)
        await _store_raw(repo, "job", data)
        with pytest.raises(CodecError) as caught:
            await repo.load("job")
        assert (caught.value.job, caught.value.codec) == ("job", name)
        assert "'job'" in str(caught.value)
        assert caught.value.__cause__ is not None
        assert await _raw(repo, "job") == data

    async def test_load_of_a_missing_job(self, make: Make) -> None:
        repo = await make(codec="json")
        with pytest.raises(JobNotFoundError):
            await repo.load("missing")

    async def test_invalid_ids(self, make: Make) -> None:
        repo = await make(codec="json")
        for job in ("", "a/b", ".."):
            with pytest.raises(pydatatask.InvalidJobIdError):
                await repo.save(job, 1)
            with pytest.raises(pydatatask.InvalidJobIdError):
                await repo.load(job)
        assert await repo.ids() == set()

    async def test_custom_codec(self, make: Make) -> None:
        codec = _reversing_codec()
        repo = await make(codec=codec, extension=".json")
        assert repo.codec is codec
        await repo.save("job", "abc")
        assert await _raw(repo, "job") == b"cba"
        assert await repo.load("job") == "abc"
        await _store_raw(repo, "bad", b"\xff")
        with pytest.raises(CodecError, match="'reversed' codec") as caught:
            await repo.load("bad")
        assert caught.value.codec == "reversed"

    async def test_custom_encode_must_return_bytes(self, make: Make) -> None:
        def loose(value: Any) -> Any:
            return str(value)

        repo = await make(codec=Codec(loose, bytes.decode, name="loose"))
        with pytest.raises(CodecError, match="returned str, not bytes"):
            await repo.save("job", 1)
        assert not await repo.contains("job")

    async def test_missing_pyarrow_names_the_extra(
        self, make: Make, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # None in sys.modules makes the import fail as if pyarrow were not installed.
        monkeypatch.setitem(sys.modules, "pyarrow", None)
        repo = await make(codec="parquet")
        with pytest.raises(MissingDependencyError, match=r"pydatatask\[tables\]"):
            await repo.save("job", ROWS)
        assert not await repo.contains("job")
        await _store_raw(repo, "job", b"PAR1")
        with pytest.raises(MissingDependencyError):
            await repo.load("job")


class TestFileRepositoryCodecs(CodecSuite):
    @pytest.fixture
    def make(self, tmp_path: Path) -> Make:
        count = 0

        async def make(codec: Any = None, extension: str = "") -> BlobRepository:
            nonlocal count
            count += 1
            return FileRepository(tmp_path / f"repo{count}", extension, codec=codec)

        return make

    async def stored_names(self, repo: BlobRepository) -> list[str]:
        assert isinstance(repo, FileRepository)
        return sorted(os.listdir(repo.basedir)) if repo.basedir.exists() else []

    async def test_refused_value_leaves_no_temporary_file(self, tmp_path: Path) -> None:
        repo = FileRepository(tmp_path / "repo", ".json")
        await repo.save("job", {"a": 1})
        with pytest.raises(CodecError):
            await repo.save("job", {"a": object()})
        with pytest.raises(CodecError):
            await repo.save("other", {1, 2})
        assert os.listdir(tmp_path / "repo") == ["job.json"]
        assert (tmp_path / "repo" / "job.json").read_text() == '{"a": 1}\n'

    @pytest.mark.backend  # the tables extra
    async def test_parquet_file_is_plain_parquet(self, tmp_path: Path) -> None:
        pytest.importorskip("pyarrow")
        parquet = pytest.importorskip("pyarrow.parquet")
        repo = FileRepository(tmp_path, ".parquet")
        await repo.save("rows", ROWS)
        assert parquet.read_table(tmp_path / "rows.parquet").to_pylist() == ROWS

    @pytest.mark.backend  # the tables extra
    async def test_csv_file_is_plain_csv(self, tmp_path: Path) -> None:
        pytest.importorskip("pyarrow")
        repo = FileRepository(tmp_path, ".csv")
        await repo.save("rows", [{"n": 1, "word": "a, b"}])
        assert (tmp_path / "rows.csv").read_text() == '"n","word"\n1,"a, b"\n'

    async def test_case_insensitive_extension(self, tmp_path: Path) -> None:
        (tmp_path / "upper.JSON").write_text('{"from": "disk"}')
        repo = FileRepository(tmp_path, ".json", case_insensitive=True)
        assert await repo.load("upper") == {"from": "disk"}

    async def test_unknown_codec_is_a_configuration_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="unknown codec 'xml'") as caught:
            FileRepository(tmp_path, codec="xml")
        for name in BUILTIN_CODECS:
            assert repr(name) in str(caught.value)


class TestInProcessBlobRepositoryCodecs(CodecSuite):
    has_extension = False

    @pytest.fixture
    def make(self) -> Make:
        async def make(codec: Any = None, extension: str = "") -> BlobRepository:
            return InProcessBlobRepository(codec=codec)

        return make

    async def stored_names(self, repo: BlobRepository) -> list[str]:
        assert isinstance(repo, InProcessBlobRepository)
        return sorted(repo.data)

    async def test_initial_data_loads_through_the_codec(self) -> None:
        repo = InProcessBlobRepository({"a": '{"x": 1}'}, codec="json")
        assert await repo.load("a") == {"x": 1}
        assert await repo.info("a") == b'{"x": 1}'


@pytest.mark.backend
class TestS3BucketRepositoryCodecs(CodecSuite):
    @pytest_asyncio.fixture(loop_scope="function")
    async def make(
        self, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
    ) -> AsyncIterator[Make]:
        s3 = pytest.importorskip("pydatatask.repository.s3")
        session = pydatatask.Session()

        async def reuse() -> AsyncIterator[Any]:
            yield s3_client

        accessor = session.resource(reuse)
        count = 0

        async def make(codec: Any = None, extension: str = "") -> BlobRepository:
            nonlocal count
            count += 1
            repo: BlobRepository = s3.S3BucketRepository(
                accessor, f"{s3_shared_bucket}/{s3_prefix}{count}/", extension, codec=codec
            )
            await repo.validate()
            return repo

        async with session:
            yield make

    async def stored_names(self, repo: BlobRepository) -> list[str]:
        s3_repo: Any = repo  # the S3 class is imported only when this suite runs
        client = s3_repo._client()
        page = await client.list_objects_v2(Bucket=s3_repo.bucket, Prefix=s3_repo.prefix)
        return sorted(entry["Key"] for entry in page.get("Contents", ()))


class TestHiveDatasetCodecs(CodecSuite):
    """A dataset's partitions go through its codec; its extension is the file name's."""

    @pytest.fixture
    def make(self, tmp_path: Path) -> Make:
        count = 0

        async def make(codec: Any = None, extension: str = "") -> BlobRepository:
            nonlocal count
            count += 1
            return HiveDatasetRepository(
                tmp_path / f"root{count}", "values", filename=f"data{extension}", codec=codec
            )

        return make

    async def stored_names(self, repo: BlobRepository) -> list[str]:
        """Every file and folder under the dataset's root, ``latest`` included."""
        assert isinstance(repo, HiveDatasetRepository)
        return sorted(str(path.relative_to(repo.root)) for path in repo.root.rglob("*"))

    async def test_refused_value_keeps_latest(self, tmp_path: Path) -> None:
        repo = HiveDatasetRepository(tmp_path, "values", filename="data.json")
        await repo.save("2024-01-01", {"day": 1})
        with pytest.raises(CodecError) as caught:
            await repo.save("2024-01-02", {"day": object()})
        assert (caught.value.job, caught.value.codec) == ("2024-01-02", "json")
        assert await repo.ids() == {"2024-01-01"}
        assert await repo.latest() == "2024-01-01"
        assert json.loads(repo.latest_path.read_text()) == {"day": 1}
        assert not (repo.dataset_path / "rundate=2024-01-02").exists()


@pytest.mark.backend
class TestS3HiveDatasetCodecs(CodecSuite):
    @pytest_asyncio.fixture(loop_scope="function")
    async def make(
        self, s3_shared_bucket: str, s3_prefix: str, s3_client: Any
    ) -> AsyncIterator[Make]:
        pytest.importorskip("aiobotocore")
        session = pydatatask.Session()

        async def reuse() -> AsyncIterator[Any]:
            yield s3_client

        accessor = session.resource(reuse)
        count = 0

        async def make(codec: Any = None, extension: str = "") -> BlobRepository:
            nonlocal count
            count += 1
            repo = S3HiveDatasetRepository(
                accessor,
                s3_shared_bucket,
                "values",
                prefix=f"{s3_prefix}{count}",
                filename=f"data{extension}",
                codec=codec,
            )
            await repo.validate()
            return repo

        async with session:
            yield make

    async def stored_names(self, repo: BlobRepository) -> list[str]:
        """Every key under the dataset's root, ``latest`` included."""
        assert isinstance(repo, S3HiveDatasetRepository)
        root = repo.dataset_prefix.rpartition("dataset=")[0]
        client = repo._client()
        page = await client.list_objects_v2(Bucket=repo.bucket, Prefix=root)
        return sorted(entry["Key"] for entry in page.get("Contents", ()))


# --- metadata repositories and views -------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), ROUND_TRIPS)
async def test_in_process_metadata_stores_any_value(name: str, value: Any) -> None:
    repo = InProcessMetadataRepository()
    await repo.save("job", value)
    assert await repo.load("job") is value  # stored by reference, as a dict would
    assert await repo.info("job") is value


async def test_in_process_metadata_stores_any_object() -> None:
    repo = InProcessMetadataRepository()
    lock = threading.Lock()
    await repo.save("lock", lock)
    assert await repo.load("lock") is lock
    with pytest.raises(JobNotFoundError):
        await repo.load("missing")


@pytest.mark.backend  # the tables extra
async def test_in_process_metadata_stores_tables() -> None:
    repo = InProcessMetadataRepository()
    pyarrow = pytest.importorskip("pyarrow")
    table = pyarrow.table({"n": [1]})
    await repo.save("table", table)
    assert await repo.load("table") is table


async def test_yaml_file_repository_loads_its_objects(tmp_path: Path) -> None:
    repo = YamlMetadataFileRepository(tmp_path)
    assert repo.codec.name == "yaml"
    await repo.save("job", {"a": [1, 2], "text": "two\nlines\n"})
    assert await repo.load("job") == {"a": [1, 2], "text": "two\nlines\n"}
    assert await repo.info("job") == await repo.load("job")
    with pytest.raises(TypeError) as caught:
        await repo.save("job", {"a": object()})
    assert isinstance(caught.value, UnstorableValueError)
    assert (caught.value.job, caught.value.codec) == ("job", "yaml")
    assert await repo.load("job") == {"a": [1, 2], "text": "two\nlines\n"}
    assert sorted(os.listdir(tmp_path)) == ["job.yaml"]


async def test_related_items_forward_load_and_save(tmp_path: Path) -> None:
    base = FileRepository(tmp_path, ".json")
    translator = InProcessMetadataRepository({"alias": "item", "nowhere": "a/b"})
    view = RelatedItemRepository(base, translator)
    assert isinstance(view, BlobRepository)
    assert view.codec is base.codec
    await view.save("alias", {"through": "view"})
    assert await base.load("item") == {"through": "view"}
    assert await view.load("alias") == {"through": "view"}
    assert (tmp_path / "item.json").read_text() == '{"through": "view"}\n'
    with pytest.raises(CodecError) as caught:
        await view.save("alias", object())
    assert caught.value.job == "item"
    for job in ("unmapped", "nowhere"):
        with pytest.raises(JobNotFoundError):
            await view.save(job, 1)
        with pytest.raises(JobNotFoundError):
            await view.load(job)
    assert await base.ids() == {"item"}


async def test_related_items_over_metadata(tmp_path: Path) -> None:
    translator = InProcessMetadataRepository({"alias": "item"})
    memory = RelatedItemRepository(InProcessMetadataRepository(), translator)
    assert isinstance(memory, MetadataRepository)
    assert not isinstance(memory, BlobRepository)
    await memory.save("alias", {"a": 1})
    assert await memory.load("alias") == {"a": 1}
    # A YAML file repository is both kinds; its values are its YAML objects either way.
    yaml_base = YamlMetadataFileRepository(tmp_path)
    view = RelatedItemRepository(yaml_base, translator)
    assert isinstance(view, MetadataRepository)
    await view.save("alias", {"b": [2]})
    assert await yaml_base.info("item") == {"b": [2]}
    assert await view.load("alias") == {"b": [2]}


async def test_read_views_have_no_load_or_save() -> None:
    repo = InProcessBlobRepository(codec="json")

    async def same(value: Any) -> Any:
        return value

    for view in (repo.map(same), pydatatask.AggregateAndRepository(one=repo)):
        assert not hasattr(view, "load")
        assert not hasattr(view, "save")


# --- the codecs themselves ------------------------------------------------------------------


@pytest.mark.parametrize(("extension", "name"), EXTENSIONS)
def test_codec_for_an_extension(extension: str, name: str) -> None:
    assert codec_for(None, extension) is BUILTIN_CODECS[name]


def test_every_extension_names_a_builtin_codec() -> None:
    assert set(EXTENSION_CODECS.values()) <= set(BUILTIN_CODECS)
    assert list(BUILTIN_CODECS) == ["bytes", "text", "json", "yaml", "pickle", "csv", "parquet"]


def test_codec_for_names_and_codecs() -> None:
    codec = _reversing_codec()
    assert codec_for(codec, ".json") is codec
    assert codec_for("text", ".json") is BUILTIN_CODECS["text"]
    with pytest.raises(ConfigurationError, match=r"unknown codec 'JSONL'.*'parquet'"):
        codec_for("JSONL")
    with pytest.raises(ConfigurationError, match="not int"):
        codec_for(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown codec"):
        InProcessBlobRepository(codec="nope")


def test_codec_functions_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match="decode must be callable"):
        Codec(bytes, "not a function")  # type: ignore[arg-type]
    assert repr(BUILTIN_CODECS["json"]) == "Codec(name='json')"
    assert Codec(bytes, bytes).name == "custom"


def test_codec_error_survives_pickling() -> None:
    error = CodecError("message", "job", "json")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.job, copy.codec) == ("message", "job", "json")


def test_json_is_strict_utf8() -> None:
    data = BUILTIN_CODECS["json"].encode({"é": 1})
    assert data == '{"é": 1}\n'.encode()
    assert BUILTIN_CODECS["json"].decode(data) == {"é": 1}
