"""File repositories on a filesystem held in memory, where small operations skip threads."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pydatatask
from pydatatask import FileRepository, Repository, YamlMetadataFileRepository
from pydatatask.repository.filesystem import folder as folder_module
from pydatatask.repository.filesystem.folder import filesystem_type
from pydatatask.repository.filesystem.workers import in_worker
from pydatatask.testing.repositories import BlobRepositoryContract, MetadataRepositoryContract

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(
    not (SHM.is_dir() and os.access(SHM, os.W_OK) and filesystem_type(str(SHM)) == "tmpfs"),
    reason="no writable tmpfs at /dev/shm",
)


@pytest.fixture
def shm_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="pydatatask-test-", dir=SHM))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class TestFileRepositoryOnTmpfs(BlobRepositoryContract):
    missing_info_has_default = True

    @pytest.fixture
    async def repo(self, shm_folder: Path) -> FileRepository:
        repo = FileRepository(shm_folder / "repo", ".txt")
        await repo.validate()
        assert repo._inline_io
        return repo

    def outside(self, repo: Repository) -> Path:
        assert isinstance(repo, FileRepository)
        return repo.basedir.parent


class TestYamlMetadataFileRepositoryOnTmpfs(MetadataRepositoryContract):
    @pytest.fixture
    async def repo(self, shm_folder: Path) -> YamlMetadataFileRepository:
        repo = YamlMetadataFileRepository(shm_folder / "repo")
        await repo.validate()
        assert repo._inline_io
        return repo

    def outside(self, repo: Repository) -> Path:
        assert isinstance(repo, FileRepository)
        return repo.basedir.parent


def test_the_filesystem_of_a_path_is_its_longest_mount(tmp_path: Path) -> None:
    assert filesystem_type(str(SHM / "a" / "b")) == "tmpfs"
    assert filesystem_type("/proc/self") == "proc"
    assert filesystem_type(str(tmp_path)) not in (None, "proc")


async def test_a_pipeline_on_tmpfs_runs_without_thread_hops(
    shm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    hops: list[str] = []
    to_thread = asyncio.to_thread

    async def counted(func: object, /, *args: object, **kwargs: object) -> object:
        hops.append(getattr(func, "__qualname__", repr(func)))
        return await to_thread(func, *args, **kwargs)  # type: ignore[arg-type]

    def counted_worker(func: Any, *args: Any) -> asyncio.Future[Any]:
        hops.append(getattr(func, "__qualname__", repr(func)))
        return in_worker(func, *args)

    source = FileRepository(shm_folder / "source", ".txt")
    shouted = FileRepository(shm_folder / "shouted", ".txt")
    names = [f"doc{index}" for index in range(20)]
    (shm_folder / "source").mkdir()
    for name in names:
        (shm_folder / "source" / f"{name}.txt").write_text(name)

    @pydatatask.task(
        done=YamlMetadataFileRepository(shm_folder / "done"),
        inputs={"text": source},
        outputs={"loud": shouted},
    )
    async def shout(text: str) -> str:
        return text.upper()

    async with pydatatask.Pipeline([shout]) as pipeline:
        monkeypatch.setattr(asyncio, "to_thread", counted)
        monkeypatch.setattr(folder_module, "in_worker", counted_worker)
        report = await pydatatask.run(pipeline)
    assert report.succeeded == 20
    assert (shm_folder / "shouted" / "doc7.txt").read_text() == "DOC7"
    per_job = [hop for hop in hops if "scan" not in hop.lower() and "batch" not in hop.lower()]
    assert len(per_job) < 20, per_job  # listings may hop; the jobs' reads and writes do not


async def test_durable_records_in_memory_skip_the_syncs(
    shm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tmpfs has no disk: a durable write there makes no fsync, and is still atomic."""
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(descriptor: int) -> None:
        synced.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    records = YamlMetadataFileRepository(shm_folder / "done")
    await records.validate()
    assert records.durable
    await records.dump("job", {"success": True})
    assert await records.create("other", {"success": False})
    assert synced == []
    assert await records.info("job") == {"success": True}
    assert sorted(path.name for path in (shm_folder / "done").iterdir()) == [
        "job.yaml",
        "other.yaml",
    ]
