"""Folder repositories across crashes and processes: durable records, leftovers, claims."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pydatatask import (
    DirectoryRepository,
    FileRepository,
    InProcessSyncTask,
    Pipeline,
    YamlMetadataFileRepository,
    run,
)

# Writes past the in-memory buffer, so a temporary file exists, then waits for a line
# on stdin before committing.
WRITER = textwrap.dedent(
    """
    import asyncio, sys
    import pydatatask as pdt

    async def main():
        repo = pdt.FileRepository(sys.argv[1])
        writer = await repo.open(sys.argv[2], "wb")
        await writer.write(b"x" * 200_000)
        print("writing", flush=True)
        sys.stdin.readline()
        await writer.close()
        print("committed", flush=True)

    asyncio.run(main())
    """
)

# Waits for a line on stdin, then tries to claim one id; prints whether it won.
CLAIMER = textwrap.dedent(
    """
    import asyncio, sys
    import pydatatask as pdt

    async def main():
        repo = pdt.YamlMetadataFileRepository(sys.argv[1])
        print("ready", flush=True)
        sys.stdin.readline()
        won = await repo.create("job", {"owner": int(sys.argv[2])})
        print(won, flush=True)

    asyncio.run(main())
    """
)

AN_HOUR_AGO = time.time() - 3600


def hidden(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def backdate(path: Path) -> None:
    """Make ``path`` look as old as a temporary left by a crash long ago."""
    os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Python processes started by a test, killed if the test leaves them running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def start(processes: list[subprocess.Popen[str]], script: str, *args: str) -> Any:
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    processes.append(process)
    return process


def expect(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == line


# --- durable records -----------------------------------------------------------------


@pytest.fixture
def disk_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record fsyncs (by the path synced) and renames, in order."""
    events: list[tuple[str, str]] = []
    fsync, replace, link = os.fsync, os.replace, os.link

    def recording_fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def recording_replace(source: str, target: str) -> None:
        events.append(("rename", os.path.basename(target)))
        replace(source, target)

    def recording_link(source: str, target: str) -> None:
        events.append(("rename", os.path.basename(target)))
        link(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    monkeypatch.setattr(os, "link", recording_link)
    return events


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name descriptors")
async def test_done_records_reach_the_disk(tmp_path: Path, disk_events: list[Any]) -> None:
    records = YamlMetadataFileRepository(tmp_path / "done")
    await records.validate()
    for store in (records.dump, records.create):
        disk_events.clear()
        await store("job", {"success": True})
        (fsync_kind, synced_file), renamed, (fsync_folder, synced_folder) = disk_events
        assert (fsync_kind, fsync_folder) == ("fsync", "fsync")
        assert os.path.basename(synced_file).startswith(".job.yaml.")  # the temporary
        assert renamed == ("rename", "job.yaml")
        assert synced_folder == str(tmp_path / "done")
        await records.delete("job")


async def test_plain_file_writes_are_not_synced(tmp_path: Path, disk_events: list[Any]) -> None:
    files = FileRepository(tmp_path / "files")
    async with await files.open("job", "wb") as writer:
        await writer.write(b"y" * 200_000)
    assert disk_events == [("rename", "job")]


# --- leftovers of interrupted writes ---------------------------------------------------


def test_validate_removes_the_temporary_of_a_killed_writer(
    tmp_path: Path, processes: list[Any]
) -> None:
    folder = tmp_path / "repo"
    writer = start(processes, WRITER, str(folder), "k73")
    expect(writer, "writing")
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    (temp,) = hidden(folder)
    assert temp.startswith(".k73.")
    backdate(folder / temp)

    repo = FileRepository(folder)
    asyncio.run(repo.validate())
    assert hidden(folder) == []
    assert asyncio.run(repo.ids()) == set()


def test_validate_spares_a_live_writer_in_another_process(
    tmp_path: Path, processes: list[Any]
) -> None:
    folder = tmp_path / "repo"
    writer = start(processes, WRITER, str(folder), "job")
    expect(writer, "writing")
    (temp,) = hidden(folder)
    backdate(folder / temp)  # slow, not dead: its lock, not its age, protects it

    repo = FileRepository(folder)
    asyncio.run(repo.validate())
    assert hidden(folder) == [temp]
    writer.stdin.write("\n")
    writer.stdin.flush()
    expect(writer, "committed")
    assert writer.wait() == 0
    assert (folder / "job").read_bytes() == b"x" * 200_000
    assert hidden(folder) == []


async def test_validate_spares_a_live_writer_in_this_process(tmp_path: Path) -> None:
    repo = YamlMetadataFileRepository(tmp_path / "repo")
    writer = await repo.open("job", "w")
    await writer.write("note: " + "z" * 200_000 + "\n")
    (temp,) = hidden(repo.basedir)
    backdate(repo.basedir / temp)
    await repo.validate()
    assert hidden(repo.basedir) == [temp]
    await writer.close()
    assert await repo.info("job") == {"note": "z" * 200_000}
    assert hidden(repo.basedir) == []


async def test_validate_spares_a_live_directory_being_created(tmp_path: Path) -> None:
    repo = DirectoryRepository(tmp_path / "repo")
    async with repo.create("job") as path:
        (path / "file").write_text("content")
        backdate(path)
        await repo.validate()
        assert path.is_dir()
    assert (tmp_path / "repo" / "job" / "file").read_text() == "content"
    assert hidden(repo.basedir) == []


async def test_validate_removes_unlocked_leftovers_once_old(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "job").mkdir()
    # What writers, deletions and replacements killed half-way leave behind.
    (folder / ".job.0a1b2c3d.tmp").write_text("partial")
    (folder / ".job.1a1b2c3d.tmp").mkdir()
    (folder / ".job.1a1b2c3d.tmp" / "file").write_text("partial")
    (folder / ".gone.2a1b2c3d.del").mkdir()
    (folder / ".gone.2a1b2c3d.del" / "file").write_text("deleted")
    (folder / ".job.3a1b2c3d.old").mkdir()  # set aside, and "job" is back in place
    (folder / ".lost.4a1b2c3d.old").mkdir()  # set aside, "lost" never replaced: keep
    # Not ours: the user's hidden files and a temporary made an instant ago.
    (folder / ".hidden").write_text("mine")
    (folder / ".config.tmp").write_text("mine")
    (folder / ".fresh.5a1b2c3d.tmp").write_text("being created")
    for name in hidden(folder):
        if name != ".fresh.5a1b2c3d.tmp":
            backdate(folder / name)

    await DirectoryRepository(folder).validate()
    assert hidden(folder) == [".config.tmp", ".fresh.5a1b2c3d.tmp", ".hidden", ".lost.4a1b2c3d.old"]
    assert os.listdir(folder / "job") == []


def _leave_a_killed_writers_temporary(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kept.txt").write_text("kept")
    leftover = folder / ".kept.txt.0a1b2c3d.tmp"
    leftover.write_text("partial")
    backdate(leftover)
    return leftover


@pytest.mark.parametrize("case_insensitive", [False, True])
async def test_a_listing_after_open_tidies_what_validation_left(
    tmp_path: Path, case_insensitive: bool
) -> None:
    repo = FileRepository(tmp_path / "files", ".txt", case_insensitive)
    leftover = _leave_a_killed_writers_temporary(repo.basedir)
    await repo._validate_before_listing()
    assert leftover.exists()  # left to the listing, which reads every name anyway
    assert await repo.ids() == {"kept"}
    assert not leftover.exists()
    await repo._finish_validation()  # nothing left to do
    assert os.listdir(repo.basedir) == ["kept.txt"]


async def test_a_pipeline_tidies_its_folders_whether_or_not_it_lists_them(tmp_path: Path) -> None:
    inputs = FileRepository(tmp_path / "inputs", ".txt")
    outputs = FileRepository(tmp_path / "outputs", ".txt")
    logs = FileRepository(tmp_path / "logs", ".txt")  # written, never read: never listed
    done = YamlMetadataFileRepository(tmp_path / "done")

    @InProcessSyncTask("copy", done)
    async def copy(job: str, inputs: Any, outputs: Any, logs: Any) -> None:
        await outputs.save(job, await inputs.load(job))

    copy.link("inputs", inputs, is_input=True)
    copy.link("outputs", outputs, is_output=True)
    copy.link("logs", logs, is_output=True)
    leftovers = [_leave_a_killed_writers_temporary(repo.basedir) for repo in (inputs, logs)]
    pipeline = Pipeline([copy])
    async with pipeline:
        assert not leftovers[1].exists()  # never listed: tidied when validated
        assert leftovers[0].exists()
        await run(pipeline)
        assert not leftovers[0].exists()  # tidied by the first listing
    assert await outputs.load("kept") == "kept"

    # Opened and closed with no listing: tidied when the pipeline closes.
    again = _leave_a_killed_writers_temporary(inputs.basedir)
    async with pipeline:
        assert again.exists()
    assert not again.exists()


# --- claims --------------------------------------------------------------------------


async def test_concurrent_creates_in_one_process_have_one_winner(tmp_path: Path) -> None:
    repo = YamlMetadataFileRepository(tmp_path / "claims")
    results = await asyncio.gather(*(repo.create("job", {"owner": n}) for n in range(40)))
    assert results.count(True) == 1
    assert await repo.info("job") == {"owner": results.index(True)}
    assert os.listdir(repo.basedir) == ["job.yaml"]


def test_concurrent_creates_across_processes_have_one_winner(
    tmp_path: Path, processes: list[Any]
) -> None:
    folder = tmp_path / "claims"
    claimers = [start(processes, CLAIMER, str(folder), str(n)) for n in range(8)]
    for claimer in claimers:
        expect(claimer, "ready")
    for claimer in claimers:
        claimer.stdin.write("\n")
        claimer.stdin.flush()
    results = []
    for claimer in claimers:
        out, _ = claimer.communicate()
        assert claimer.returncode == 0
        results.append(out.strip())
    assert results.count("True") == 1, results
    assert results.count("False") == len(claimers) - 1
    winner = results.index("True")
    repo = YamlMetadataFileRepository(folder)
    assert asyncio.run(repo.info("job")) == {"owner": winner}
    assert os.listdir(folder) == ["job.yaml"]
