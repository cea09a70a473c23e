from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import shlex
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pydatatask
from pydatatask import (
    BackendError,
    DirectoryRepository,
    FileRepository,
    InvalidJobIdError,
    JobNotFoundError,
    Repository,
    YamlMetadataFileRepository,
)
from pydatatask.repository.filesystem import files
from pydatatask.repository.filesystem import folder as folder_module
from pydatatask.repository.filesystem.workers import in_worker
from pydatatask.testing.repositories import (
    BlobRepositoryContract,
    MetadataRepositoryContract,
    RepositoryContract,
    assert_warned_about,
)


def _folder_of(repo: Repository) -> Path:
    assert isinstance(repo, FileRepository | DirectoryRepository)
    return repo.basedir


def _everything(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden ones included."""
    return sorted(os.listdir(folder)) if folder.exists() else []


def _write(path: Path, data: str = "value") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)


class TestFileRepository(BlobRepositoryContract):
    missing_info_has_default = True  # the path a task is to write

    @pytest.fixture(
        params=[("", False), (".txt", False), (".txt", True)],
        ids=["plain", "extension", "case-insensitive"],
    )
    def repo(self, request: pytest.FixtureRequest, tmp_path: Path) -> FileRepository:
        extension, case_insensitive = request.param
        return FileRepository(tmp_path / "repo", extension, case_insensitive=case_insensitive)

    def outside(self, repo: Repository) -> Path:
        return _folder_of(repo).parent


class TestYamlMetadataFileRepository(MetadataRepositoryContract):
    @pytest.fixture
    def repo(self, tmp_path: Path) -> YamlMetadataFileRepository:
        return YamlMetadataFileRepository(tmp_path / "repo")

    def outside(self, repo: Repository) -> Path:
        return _folder_of(repo).parent


class TestDirectoryRepository(RepositoryContract):
    missing_info_has_default = True  # the path a task is to fill

    @pytest.fixture(
        params=[("", False, False), (".d", True, True)],
        ids=["plain", "extension-discard-empty-case-insensitive"],
    )
    def repo(self, request: pytest.FixtureRequest, tmp_path: Path) -> DirectoryRepository:
        extension, case_insensitive, discard_empty = request.param
        return DirectoryRepository(
            tmp_path / "repo",
            extension,
            case_insensitive=case_insensitive,
            discard_empty=discard_empty,
        )

    def outside(self, repo: Repository) -> Path:
        return _folder_of(repo).parent

    async def put(self, repo: Repository, job: str, payload: str = "value") -> None:
        assert isinstance(repo, DirectoryRepository)
        async with repo.create(job) as path:
            await asyncio.to_thread(_write, path / "payload", payload)


class TestDirectoryRepositoryMkdir(TestDirectoryRepository):
    async def put(self, repo: Repository, job: str, payload: str = "value") -> None:
        assert isinstance(repo, DirectoryRepository)
        path = await repo.mkdir(job)
        await asyncio.to_thread(_write, path / "payload", payload)


# --- atomic writes and temporary files ------------------------------------------------


async def _fail_writing(repo: FileRepository, job: str, data: bytes) -> None:
    async with await repo.open(job, "wb") as writer:
        await writer.write(data)
        raise RuntimeError("boom")


async def _fail_creating(repo: DirectoryRepository, job: str) -> None:
    async with repo.create(job) as path:
        _write(path / "file", "two")
        raise RuntimeError("boom")


async def test_failed_and_cancelled_writes_leave_no_debris(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "repo", ".txt")
    await repo.validate()
    with pytest.raises(RuntimeError, match="boom"):
        await _fail_writing(repo, "small", b"tiny")
    with pytest.raises(RuntimeError, match="boom"):
        await _fail_writing(repo, "big", b"x" * 200_000)

    spilled = asyncio.Event()

    async def slow() -> None:
        async with await repo.open("cancelled", "wb") as writer:
            await writer.write(b"y" * 200_000)
            spilled.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(slow())
    await spilled.wait()
    assert any(name.startswith(".cancelled.txt.") for name in _everything(repo.basedir))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _everything(repo.basedir) == []


async def test_unclosed_writer_is_invisible_and_abort_cleans_up(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "repo")
    writer = await repo.open("job", "wb")
    await writer.write(b"z" * 100_000)
    assert await repo.ids() == set()
    assert [name for name in _everything(repo.basedir) if not name.startswith(".")] == []
    await writer.abort()
    assert _everything(repo.basedir) == []


async def test_hidden_and_temporary_files_are_never_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "repo"
    for name in (".job.txt.1a2b3c4d.tmp", ".hidden", ".other.txt", "real.txt", "other.bin"):
        _write(folder / name)
    (folder / "subdir.txt").mkdir()
    repo = FileRepository(folder, ".txt")
    with caplog.at_level(logging.WARNING):
        assert [job async for job in repo] == ["real"]
        assert await repo.ids() == {"real"}
        assert await repo.info_all() == {"real": str(folder / "real.txt")}
    assert caplog.records == []
    assert not await repo.contains("subdir")


async def test_ids_starting_with_a_dot_are_rejected(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "repo")
    with pytest.raises(InvalidJobIdError, match="temporary"):
        await repo.open(".job", "w")
    with pytest.raises(InvalidJobIdError):
        await YamlMetadataFileRepository(tmp_path / "yaml").dump(".x", 1)
    with pytest.raises(InvalidJobIdError):
        await DirectoryRepository(tmp_path / "dirs").mkdir(".x")
    with pytest.raises(InvalidJobIdError):
        DirectoryRepository(tmp_path / "dirs").create(".x")
    assert _everything(tmp_path) == []


async def test_ids_must_fit_in_one_file_name(tmp_path: Path) -> None:
    extension = "." + "x" * 60
    repo = FileRepository(tmp_path / "repo", extension)
    for job in ("a" * 300, "a" * 250, "a" * 199):
        with pytest.raises(InvalidJobIdError):
            await repo.open(job, "w")
        assert not repo.is_valid_job_id(job)
    job = "a" * 190  # 251 bytes with the extension
    async with await repo.open(job, "w") as writer:
        await writer.write("fits")
    assert await repo.ids() == {job}
    assert _everything(repo.basedir) == [job + extension]


async def test_long_names_get_short_enough_temporary_files(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "repo", ".txt")
    job = "é" * 100  # 200 bytes, 204 with the extension
    async with await repo.open(job, "wb") as writer:
        await writer.write(b"x" * 100_000)
        assert all(len(os.fsencode(name)) <= 255 for name in _everything(repo.basedir))
    assert await repo.ids() == {job}


# --- files -------------------------------------------------------------------------------


async def test_info_is_the_path(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "repo", ".txt")
    async with await repo.open("job", "w") as writer:
        await writer.write("hello")
    path = await repo.info("job")
    assert isinstance(path, str)  # as in pydatatask 0.4
    assert path == str(tmp_path / "repo" / "job.txt")
    with open(path) as stored:  # noqa: ASYNC230 - a test reading back one small file
        assert stored.read() == "hello"


async def test_info_names_an_output_before_it_exists(tmp_path: Path) -> None:
    """A shell step writes the path ``info`` gives; the file then is the job's value."""
    sources = FileRepository(tmp_path / "src", ".txt")
    outputs = FileRepository(tmp_path / "out dir", ".txt")
    async with await sources.open("job 1", "w") as writer:
        await writer.write("hello\n")
    await outputs.validate()
    src, dst = await sources.info("job 1"), await outputs.info("job 1")
    assert dst == str(tmp_path / "out dir" / "job 1.txt")
    assert not await outputs.contains("job 1")
    script = f"tr a-z A-Z < {shlex.quote(str(src))} > {shlex.quote(str(dst))}"
    done = await asyncio.create_subprocess_exec("sh", "-c", script)
    assert await done.wait() == 0
    assert await outputs.contains("job 1")
    async with await outputs.open("job 1", "r") as reader:
        assert await reader.read() == "HELLO\n"


async def test_info_of_an_absent_job_is_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    files = FileRepository(folder, ".txt")
    dirs = DirectoryRepository(folder, ".d")
    assert await files.info("new") == str(folder / "new.txt")
    assert await dirs.info("new") == str(folder / "new.d")
    assert await files.info_all() == {}
    assert not folder.exists()
    for repo in (files, dirs):
        for job in ("", "a/b", "..", ".hidden", "x\n"):
            with pytest.raises(InvalidJobIdError):
                await repo.info(job)
    with pytest.raises(JobNotFoundError):
        await YamlMetadataFileRepository(folder).info("new")


async def test_case_insensitive_info_prefers_an_existing_spelling(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    _write(folder / "Foo.TXT")
    (folder / "Bar.D").mkdir()
    files = FileRepository(folder, ".txt", case_insensitive=True)
    dirs = DirectoryRepository(folder, ".d", case_insensitive=True)
    assert await files.info("foo") == str(folder / "Foo.TXT")
    assert await files.info("Other") == str(folder / "Other.txt")
    assert await dirs.info("BAR") == str(folder / "Bar.D")
    assert await dirs.info("Baz") == str(folder / "Baz.d")
    assert _everything(folder) == ["Bar.D", "Foo.TXT"]


async def test_relative_folder_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    repo = FileRepository("./reports", ".txt")
    assert repo.basedir == tmp_path / "reports"
    assert repr(repo) == f"<FileRepository {str(tmp_path / 'reports')!r} extension='.txt'>"


async def test_validate_creates_the_folders(tmp_path: Path) -> None:
    for repo in (
        FileRepository(tmp_path / "a" / "b"),
        YamlMetadataFileRepository(tmp_path / "c" / "d"),
        DirectoryRepository(tmp_path / "e" / "f"),
    ):
        await repo.validate()
        assert repo.basedir.is_dir()
        await repo.validate()


async def test_validate_reports_a_file_in_the_way(tmp_path: Path) -> None:
    _write(tmp_path / "blocker")
    with pytest.raises(BackendError, match="blocker"):
        await FileRepository(tmp_path / "blocker").validate()


async def test_missing_folder_is_empty_and_created_on_write(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "deep" / "repo")
    assert await repo.ids() == set()
    assert [job async for job in repo] == []
    assert not await repo.contains("job")
    async with await repo.open("job", "w") as writer:
        await writer.write("x")
    assert await repo.ids() == {"job"}


async def test_write_modes(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "repo")
    async with await repo.open("new", "w") as writer:
        await writer.write("x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "repo" / "new").stat().st_mode) == 0o666 & ~umask
    (tmp_path / "repo" / "new").chmod(0o640)
    async with await repo.open("new", "wb") as writer:
        await writer.write(b"y" * 100_000)
    assert stat.S_IMODE((tmp_path / "repo" / "new").stat().st_mode) == 0o640


async def test_partial_reads_across_the_first_chunk(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "repo")
    data = bytes(range(256)) * 1000  # 256000 bytes: several chunks
    async with await repo.open("job", "wb") as writer:
        await writer.write(data)
    async with await repo.open("job", "rb") as reader:
        head = await reader.read(70_000)
        assert head == data[: len(head)]
        assert 0 < len(head) <= 70_000
        rest = await reader.read()
    assert head + rest == data


async def test_reading_a_closed_reader_fails(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "repo")
    async with await repo.open("job", "wb") as writer:
        await writer.write(b"x" * 200_000)
    reader = await repo.open("job", "rb")
    await reader.read(10)
    await reader.close()
    with pytest.raises(ValueError, match="closed"):
        await reader.read()


async def test_case_insensitive_lookup(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    _write(folder / "Foo.TXT", "old")
    _write(folder / "bar.txt", "bar")
    sensitive = FileRepository(folder, ".txt")
    assert await sensitive.ids() == {"bar"}
    assert not await sensitive.contains("foo")

    repo = FileRepository(folder, ".txt", case_insensitive=True)
    assert sorted([job async for job in repo]) == ["bar", "foo"]
    assert await repo.ids() == {"foo", "bar"}
    assert await repo.info_all() == {"foo": str(folder / "Foo.TXT"), "bar": str(folder / "bar.txt")}
    for job in ("foo", "FOO", "Foo"):
        assert await repo.contains(job)
        assert await repo.info(job) == str(folder / "Foo.TXT")
        async with await repo.open(job, "r") as reader:
            assert await reader.read() == "old"
    async with await repo.open("fOO", "w") as writer:
        await writer.write("new")
    assert _everything(folder) == ["Foo.TXT", "bar.txt"]
    assert (folder / "Foo.TXT").read_text() == "new"
    await repo.delete("FOO")
    assert _everything(folder) == ["bar.txt"]
    async with await repo.open("NEW", "w") as writer:
        await writer.write("created")
    assert _everything(folder) == ["NEW.txt", "bar.txt"]
    assert await repo.ids() == {"new", "bar"}


async def test_case_insensitive_duplicates_are_listed_once_and_deleted_together(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "repo"
    _write(folder / "job.txt")
    _write(folder / "JOB.Txt")
    repo = FileRepository(folder, ".txt", case_insensitive=True)
    assert [job async for job in repo] == ["job"]
    await repo.delete("job")
    assert _everything(folder) == []


async def test_symlinks_never_reach_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _write(outside / "secret", "keep")
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "link").symlink_to(outside / "secret")
    (folder / "dirlink").symlink_to(outside)
    files = FileRepository(folder)
    assert await files.contains("link")
    await files.delete("link")
    assert (outside / "secret").read_text() == "keep"
    dirs = DirectoryRepository(folder)
    assert await dirs.contains("dirlink")
    await dirs.delete("dirlink")
    assert (outside / "secret").read_text() == "keep"
    assert _everything(folder) == []


async def test_extension_must_be_a_file_name_part(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="extension"):
        FileRepository(tmp_path, "/x")


# --- thread hops -------------------------------------------------------------------------


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the worker-thread hops the filesystem repositories make, of either kind."""
    calls: list[str] = []
    original = asyncio.to_thread

    async def counting(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(func, "__name__", repr(func)))
        return await original(func, *args, **kwargs)

    def counting_worker(func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        calls.append(getattr(func, "__name__", repr(func)))
        return in_worker(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    monkeypatch.setattr(folder_module, "in_worker", counting_worker)
    return calls


async def test_small_file_costs_one_hop_each_way(tmp_path: Path, hops: list[str]) -> None:
    repo = FileRepository(tmp_path / "repo", ".txt")
    async with await repo.open("job", "w") as writer:
        await writer.write("small value")
    assert len(hops) == 1
    async with await repo.open("job", "r") as reader:
        assert await reader.read(5) == "small"
        assert await reader.read() == " value"
    assert len(hops) == 2
    async with await repo.open("job", "rb") as binary:
        assert await binary.read() == b"small value"
    assert len(hops) == 3


async def test_yaml_dump_and_info_cost_one_hop_each(tmp_path: Path, hops: list[str]) -> None:
    repo = YamlMetadataFileRepository(tmp_path / "repo")
    await repo.dump("job", {"a": [1, 2]})
    assert await repo.info("job") == {"a": [1, 2]}
    assert len(hops) == 2


async def test_listing_and_info_all_are_batched(tmp_path: Path, hops: list[str]) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    count = 2500
    for index in range(count):
        (folder / f"job{index}.yaml").write_text(f"index: {index}\n")
    repo = YamlMetadataFileRepository(folder)
    assert len([job async for job in repo]) == count
    assert len(hops) == 1 + 3  # open the folder, then three batches of entries
    hops.clear()
    assert len(await repo.ids()) == count
    assert len(hops) == 1
    hops.clear()
    everything = await repo.info_all()
    assert everything["job1234"] == {"index": 1234}
    assert len(everything) == count
    assert len(hops) == 1 + -(-count // folder_module.PARSE_BATCH)


# --- YAML --------------------------------------------------------------------------------


async def test_yaml_is_readable_as_raw_text(tmp_path: Path) -> None:
    repo = YamlMetadataFileRepository(tmp_path / "repo")
    await repo.dump("job", {"name": "ünï", "items": (1, 2)})
    async with await repo.open("job", "r") as reader:
        text = await reader.read()
    assert "ünï" in text
    async with await repo.open("injected", "w") as writer:
        await writer.write("answer: 42\n")
    assert await repo.info("injected") == {"answer": 42}
    assert await repo.info("job") == {"name": "ünï", "items": [1, 2]}
    assert (tmp_path / "repo" / "job.yaml").is_file()


async def test_yaml_malformed_file_is_a_clear_error(tmp_path: Path) -> None:
    repo = YamlMetadataFileRepository(tmp_path / "repo")
    _write(tmp_path / "repo" / "broken.yaml", "key: [unclosed\n")
    with pytest.raises(BackendError) as caught:
        await repo.info("broken")
    message = str(caught.value)
    assert "'broken'" in message
    assert str(tmp_path / "repo" / "broken.yaml") in message
    with pytest.raises(BackendError, match="broken"):
        await repo.info_all()


async def test_yaml_unrepresentable_value_keeps_the_old_one(tmp_path: Path) -> None:
    repo = YamlMetadataFileRepository(tmp_path / "repo")
    await repo.dump("job", {"version": 1})
    with pytest.raises(TypeError, match="'job'"):
        await repo.dump("job", {"version": object()})
    assert await repo.info("job") == {"version": 1}
    assert _everything(repo.basedir) == ["job.yaml"]
    with pytest.raises(TypeError):
        await repo.dump("fresh", object())
    assert await repo.ids() == {"job"}


async def test_yaml_missing_job(tmp_path: Path) -> None:
    repo = YamlMetadataFileRepository(tmp_path / "repo")
    with pytest.raises(JobNotFoundError):
        await repo.info("missing")
    with pytest.raises(JobNotFoundError):
        await repo.open("missing", "r")


# --- directories -------------------------------------------------------------------------


async def test_mkdir_returns_the_path(tmp_path: Path) -> None:
    repo = DirectoryRepository(tmp_path / "repo", ".out")
    path = await repo.mkdir("job")
    assert path == tmp_path / "repo" / "job.out"
    assert path.is_dir()
    assert await repo.info("job") == str(path)
    assert await repo.mkdir("job") == path
    assert await repo.info_all() == {"job": str(path)}


async def test_discard_empty(tmp_path: Path) -> None:
    repo = DirectoryRepository(tmp_path / "repo", discard_empty=True)
    path = await repo.mkdir("job")
    assert not await repo.contains("job")
    assert await repo.ids() == set()
    assert [job async for job in repo] == []
    assert await repo.info_all() == {}
    assert await repo.info("job") == str(path)
    _write(path / "file")
    assert await repo.contains("job")
    assert await repo.ids() == {"job"}
    await repo.mkdir("empty")
    await repo.delete("empty")
    assert _everything(repo.basedir) == ["job"]
    assert await DirectoryRepository(tmp_path / "repo").ids() == {"job"}


async def test_create_is_atomic(tmp_path: Path) -> None:
    repo = DirectoryRepository(tmp_path / "repo")
    async with repo.create("job") as path:
        assert path.name.startswith(".job.")
        assert await repo.ids() == set()
        _write(path / "nested" / "file", "one")
    assert _everything(repo.basedir) == ["job"]
    assert (tmp_path / "repo" / "job" / "nested" / "file").read_text() == "one"

    with pytest.raises(RuntimeError, match="boom"):
        await _fail_creating(repo, "job")
    assert _everything(repo.basedir) == ["job"]
    assert (tmp_path / "repo" / "job" / "nested" / "file").read_text() == "one"

    async with repo.create("job") as path:
        _write(path / "file", "three")
    assert _everything(repo.basedir) == ["job"]
    assert _everything(tmp_path / "repo" / "job") == ["file"]


async def test_cancelled_create_leaves_nothing(tmp_path: Path) -> None:
    repo = DirectoryRepository(tmp_path / "repo")
    started = asyncio.Event()

    async def slow() -> None:
        async with repo.create("job") as path:
            _write(path / "file")
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _everything(repo.basedir) == []


async def test_delete_removes_the_tree(tmp_path: Path) -> None:
    repo = DirectoryRepository(tmp_path / "repo")
    path = await repo.mkdir("job")
    _write(path / "a" / "b" / "c")
    await repo.delete("job")
    assert _everything(repo.basedir) == []
    await repo.delete("job")


async def test_case_insensitive_directories(tmp_path: Path) -> None:
    (tmp_path / "repo" / "Job").mkdir(parents=True)
    repo = DirectoryRepository(tmp_path / "repo", case_insensitive=True)
    assert await repo.ids() == {"job"}
    assert await repo.mkdir("JOB") == tmp_path / "repo" / "Job"
    async with repo.create("jOb") as path:
        _write(path / "file")
    assert _everything(repo.basedir) == ["Job"]
    await repo.delete("job")
    assert _everything(repo.basedir) == []


# --- cancellation and early exits ----------------------------------------------------------


async def test_abandoned_listing_releases_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    for index in range(1500):
        (folder / f"job{index}").touch()
    repo = FileRepository(folder)
    async for _job in repo:
        break
    listing = aiter(repo)
    assert await anext(listing)
    await listing.aclose()  # type: ignore[attr-defined]
    gc.collect()
    await asyncio.sleep(0)


async def test_work_finished_after_cancellation_is_undone() -> None:
    release = threading.Event()
    undone: list[str] = []
    finished = threading.Event()

    def slow() -> str:
        release.wait(10)
        return "resource"

    def undo(resource: str) -> None:
        undone.append(resource)
        finished.set()

    task = asyncio.create_task(folder_module._in_thread(slow, undo))
    await asyncio.sleep(0)  # let the task start its thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await asyncio.to_thread(finished.wait, 10)
    assert undone == ["resource"]


async def test_spill_after_discard_writes_nothing(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path / "repo")
    writer = files._FileWriter(repo, "job")
    # The order a cancelled writer's queued hop and its discarding hop may run in.
    writer._discard_sync()
    writer._spill_sync([b"late"])
    writer._commit_sync([b"late"])
    assert _everything(repo.basedir) == []


async def test_invalid_stored_names_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "repo"
    for name in ("good", "x" * 201, "tab\there"):
        _write(folder / name)
    repo = FileRepository(folder)
    with caplog.at_level(logging.WARNING):
        assert [job async for job in repo] == ["good"]
    assert_warned_about(caplog, "skipped 2 entries")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert await repo.ids() == {"good"}
        assert await repo.info_all() == {"good": str(folder / "good")}
    assert len([r for r in caplog.records if "skipped 2 entries" in r.getMessage()]) == 2


class _NumberedFiles(FileRepository):
    job_id_pattern = re.compile(r"[0-9]+")
    job_id_rule = "it is not a number"


@pytest.mark.parametrize("case_insensitive", [False, True])
async def test_a_folder_listing_keeps_only_the_ids_its_pattern_allows(
    tmp_path: Path, case_insensitive: bool, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("1", "22", "notanumber", "x3"):
        (tmp_path / name).write_text(name)
    repo = _NumberedFiles(tmp_path, case_insensitive=case_insensitive)
    with caplog.at_level(logging.WARNING):
        assert await repo.ids() == {"1", "22"}
    assert "'notanumber'" in caplog.text
    assert set(await repo.info_all()) == {"1", "22"}
    assert sorted([job async for job in repo]) == ["1", "22"]


async def test_folders_listed_together_are_read_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing threads take turns: several at once would pass the GIL back and forth."""
    scanning = 0
    most = 0
    real = folder_module.FolderRepository._scan_ids

    def scan(self: folder_module.FolderRepository) -> set[str]:
        nonlocal scanning, most
        scanning += 1
        most = max(most, scanning)
        time.sleep(0.05)
        try:
            return real(self)
        finally:
            scanning -= 1

    monkeypatch.setattr(folder_module.FolderRepository, "_scan_ids", scan)
    repos = [pydatatask.FileRepository(tmp_path / str(n)) for n in range(4)]
    for repo in repos:
        await repo.save("a", b"x")
    listed = await asyncio.gather(*(repo.ids() for repo in repos))
    assert listed == [{"a"}] * 4
    assert most == 1
