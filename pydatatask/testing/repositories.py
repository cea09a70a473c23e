# Longer than 400 lines on purpose: the contract suites live in one module, so that a
# backend's tests subclass them from one import.
"""Behaviour every repository must show, as pytest test classes that backends subclass.

A backend's test module subclasses one of the contracts, :class:`RepositoryContract`,
:class:`BlobRepositoryContract` or :class:`MetadataRepositoryContract`, and gives it a
``repo`` fixture returning an empty repository; the inherited tests then check listing,
membership, idempotent deletion, missing ids, round trips, atomic writes, ``load`` and
``save``, and invalid ids::

    import pytest
    from pydatatask.testing.repositories import BlobRepositoryContract

    class TestMyBlobRepository(BlobRepositoryContract):
        @pytest.fixture
        def repo(self, tmp_path):
            return MyBlobRepository(tmp_path)

For combinators, which are written through their children, override
:meth:`RepositoryContract.put`; for repositories stored in a folder, override
:meth:`RepositoryContract.outside`, so that the tests of invalid ids check that nothing
escapes the folder.

This module needs pytest and pytest-asyncio (``pip install 'pydatatask[testing]'``),
with pytest-asyncio's ``asyncio_mode = "auto"``: the tests are coroutines without
marks. ``import pydatatask`` does not import it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from pydatatask.errors import CodecError, InvalidJobIdError, JobNotFoundError
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository

INVALID_IDS = ["", "a/b", "..", ".", "x\n", "a" * 300, "a\\b", "tab\there", "nul\x00"]
TRAVERSAL_IDS = ["../escape", "../../etc/passwd", "/abs", "..\\escape", "sub/../../x"]

# A value for each built-in codec that its load gives back equal; a table codec loads a
# pyarrow.Table, compared through its rows.
CODEC_SAMPLES: dict[str, Any] = {
    "bytes": b"\x00raw \xff bytes",
    "text": "héllo wörld\nsecond line 😀\n",
    "json": {"name": "x", "values": [1, 2.5, "three", None, True], "nested": {"é": "ü"}},
    "yaml": {"name": "x", "text": "two\nlines\n", "values": [1, 2.5, None]},
    "pickle": {"set": {1, 2}, "tuple": (1, "a"), "complex": 1 + 2j},
    "csv": [{"n": 1, "word": "one"}, {"n": 2, "word": "two"}],
    "parquet": [{"n": 1, "word": "one"}, {"n": 2, "word": "two"}],
}


class RepositoryContract:
    """Listing, membership, deletion and id validation."""

    #: True when ``info`` of an absent id returns a documented default instead of raising.
    missing_info_has_default = False

    async def put(self, repo: Repository, job: str, payload: str = "value") -> None:
        """Store something under ``job`` (through the children for combinators)."""
        if isinstance(repo, MetadataRepository):
            await repo.dump(job, payload)
        elif isinstance(repo, BlobRepository):
            async with await repo.open(job, "w") as writer:
                await writer.write(payload)
        else:
            raise NotImplementedError(f"override put() for {type(repo).__name__}")

    def outside(self, repo: Repository) -> Path | None:
        """Return a folder that must never change, for repositories stored in a folder."""
        return None

    async def _write(self, repo: Repository, job: str) -> None:
        """Write ``job`` to the repository itself when it can be written, else :meth:`put` it."""
        if isinstance(repo, MetadataRepository):
            await repo.dump(job, "x")
        elif isinstance(repo, BlobRepository):
            await repo.open(job, "w")
        else:
            await self.put(repo, job)

    async def test_empty_lists_nothing(self, repo: Repository) -> None:
        """An empty repository lists no ids and no infos."""
        assert [job async for job in repo] == []
        assert await repo.ids() == set()
        assert await repo.info_all() == {}

    async def test_listing_matches_contains(self, repo: Repository) -> None:
        """Iteration, ``ids``, ``contains`` and ``info_all`` agree on the ids."""
        jobs = {"alpha", "beta", "gamma-1", "with space", "ünïcode"}
        for job in jobs:
            await self.put(repo, job)
        listed = [job async for job in repo]
        assert sorted(listed) == sorted(jobs)
        assert await repo.ids() == jobs
        for job in jobs:
            assert await repo.contains(job)
        assert not await repo.contains("missing")
        assert set(await repo.info_all()) == jobs

    async def test_contains_many_names_exactly_the_present_ids(self, repo: Repository) -> None:
        """``contains_many`` agrees with ``contains``, for more ids than a batch holds."""
        present = {f"job{number:02d}" for number in range(0, 80, 2)}
        for job in present:
            await self.put(repo, job)
        asked = [f"job{number:02d}" for number in range(80)] + ["job04", "missing"]
        assert await repo.contains_many(asked) == present
        assert await repo.contains_many([]) == set()

    async def test_delete_is_idempotent(self, repo: Repository) -> None:
        """Deleting an absent or deleted id succeeds and touches nothing else."""
        await self.put(repo, "gone")
        await self.put(repo, "kept")
        await repo.delete("missing")
        await repo.delete("gone")
        await repo.delete("gone")
        assert not await repo.contains("gone")
        assert await repo.ids() == {"kept"}

    async def test_info_of_missing(self, repo: Repository) -> None:
        """``info`` of an absent id raises ``JobNotFoundError``, a ``KeyError``."""
        if self.missing_info_has_default:
            before = _snapshot(self.outside(repo))
            await repo.info("missing")
            assert not await repo.contains("missing")
            assert await repo.ids() == set()
            assert _snapshot(self.outside(repo)) == before
            return
        with pytest.raises(JobNotFoundError) as caught:
            await repo.info("missing")
        assert isinstance(caught.value, KeyError)
        assert "missing" in str(caught.value)

    async def test_tokens_change_with_the_value(self, repo: Repository) -> None:
        """``tokens`` gives present jobs a token that changes when their value changes."""
        jobs = [f"job-{number}" for number in range(40)]  # enough for a backend's bulk path
        for job in jobs:
            await self.put(repo, job, f"value of {job}")
        one_by_one = {job: (await repo.tokens([job]))[job] for job in jobs[:3]}
        together = await repo.tokens([*jobs, "missing"])
        assert set(together) == set(jobs)
        assert all(isinstance(token, str) and token for token in together.values())
        assert {job: together[job] for job in jobs[:3]} == one_by_one
        await self.put(repo, jobs[0], "a new and longer value")
        after = await repo.tokens(jobs[:2])
        assert after[jobs[0]] != together[jobs[0]]
        assert after[jobs[1]] == together[jobs[1]]
        with pytest.raises(InvalidJobIdError):
            await repo.tokens(["../escape"])
        if repo.tokens_at_hand:  # the same tokens, taken without I/O
            assert {job: repo.token_at_hand(job) for job in jobs[:2]} == after
            assert repo.token_at_hand("missing") is None

    @pytest.mark.parametrize("job", INVALID_IDS + TRAVERSAL_IDS)
    async def test_invalid_ids_are_rejected(self, repo: Repository, job: str) -> None:
        """Reads and deletes of an invalid id raise ``InvalidJobIdError``."""
        for call in (repo.contains, repo.info, repo.delete):
            with pytest.raises(InvalidJobIdError):
                await call(job)

    @pytest.mark.parametrize("job", INVALID_IDS + TRAVERSAL_IDS)
    async def test_invalid_ids_are_rejected_on_write(self, repo: Repository, job: str) -> None:
        """Writes of an invalid id raise ``InvalidJobIdError`` and store nothing."""
        outside = self.outside(repo)
        before = _snapshot(outside)
        with pytest.raises(InvalidJobIdError):
            await self._write(repo, job)
        if isinstance(repo, MetadataRepository):
            with pytest.raises(InvalidJobIdError):
                await repo.create(job, "x")
        assert _snapshot(outside) == before
        assert await repo.ids() == set()


class BlobRepositoryContract(RepositoryContract):
    """Streaming reads and atomic writes, in text and binary modes."""

    async def test_text_round_trip(self, repo: BlobRepository) -> None:
        """Text written in mode ``w`` reads back unchanged in mode ``r``."""
        text = "héllo wörld €\nsecond line 😀\r\n"
        async with await repo.open("doc", "w") as writer:
            assert await writer.write(text) == len(text)
        async with await repo.open("doc", "r") as reader:
            assert await reader.read() == text

    async def test_binary_round_trip(self, repo: BlobRepository) -> None:
        """Bytes written in several calls read back unchanged."""
        data = bytes(range(256)) * 4
        async with await repo.open("bin", "wb") as writer:
            await writer.write(data[:100])
            await writer.write(data[100:])
        async with await repo.open("bin", "rb") as reader:
            assert await reader.read() == data

    async def test_read_n_returns_at_most_n_and_advances(self, repo: BlobRepository) -> None:
        """``read(n)`` returns 1 to ``n`` bytes at a time, and nothing at the end."""
        async with await repo.open("job", "wb") as writer:
            await writer.write(b"0123456789")
        async with await repo.open("job", "rb") as reader:
            parts = []
            while chunk := await reader.read(3):
                assert 1 <= len(chunk) <= 3
                parts.append(chunk)
            assert b"".join(parts) == b"0123456789"
            assert await reader.read() == b""

    async def test_text_read_splits_multibyte_characters(self, repo: BlobRepository) -> None:
        """``read(1)`` in text mode returns whole characters, multi-byte ones too."""
        text = "é€😀" * 50
        async with await repo.open("job", "w") as writer:
            await writer.write(text)
        async with await repo.open("job", "r") as reader:
            chars = []
            while char := await reader.read(1):
                assert len(char) == 1
                chars.append(char)
        assert "".join(chars) == text

    async def test_large_value_streams(self, repo: BlobRepository) -> None:
        """A value of several MiB streams through bounded reads and writes."""
        blocks = [bytes([index]) * (1 << 20) for index in range(3)]  # 3 MiB in all
        async with await repo.open("big", "wb") as writer:
            for block in blocks:
                await writer.write(block)
        expected = b"".join(blocks)
        position = 0
        async with await repo.open("big", "rb") as reader:
            while chunk := await reader.read(100_000):
                assert len(chunk) <= 100_000
                assert chunk == expected[position : position + len(chunk)]
                position += len(chunk)
        assert position == len(expected)

    async def test_open_missing_raises(self, repo: BlobRepository) -> None:
        """Opening an absent id for reading raises ``JobNotFoundError``."""
        with pytest.raises(JobNotFoundError):
            await repo.open("missing", "rb")
        with pytest.raises(JobNotFoundError):
            await repo.open("missing", "r")

    async def test_bad_mode_is_rejected(self, repo: BlobRepository) -> None:
        """An unknown mode raises ``ValueError``."""
        with pytest.raises(ValueError, match="mode"):
            await repo.open("job", "a")  # type: ignore[call-overload]

    async def test_value_invisible_until_close(self, repo: BlobRepository) -> None:
        """A value being written is not listed until its writer closes."""
        writer = await repo.open("pending", "wb")
        await writer.write(b"x" * 200_000)
        assert not await repo.contains("pending")
        assert await repo.ids() == set()
        await writer.close()
        assert await repo.contains("pending")

    async def test_failed_writer_keeps_old_value(self, repo: BlobRepository) -> None:
        """A writer that fails leaves the previous value in place."""
        await self.put(repo, "job", "old")

        async def fail_while_writing() -> None:
            async with await repo.open("job", "w") as writer:
                await writer.write("new" * 100_000)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await fail_while_writing()
        async with await repo.open("job", "r") as reader:
            assert await reader.read() == "old"
        assert await repo.ids() == {"job"}

    async def test_failed_writer_leaves_nothing(self, repo: BlobRepository) -> None:
        """A writer that fails leaves no new id behind."""

        async def fail_while_writing() -> None:
            async with await repo.open("job", "wb") as writer:
                await writer.write(b"partial" * 100_000)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await fail_while_writing()
        assert not await repo.contains("job")
        assert [job async for job in repo] == []

    async def test_cancelled_writer_keeps_old_value(self, repo: BlobRepository) -> None:
        """A cancelled writer leaves the previous value in place."""
        await self.put(repo, "job", "old")
        started = asyncio.Event()

        async def slow_writer() -> None:
            async with await repo.open("job", "wb") as writer:
                await writer.write(b"n" * 300_000)
                started.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(slow_writer())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with await repo.open("job", "r") as reader:
            assert await reader.read() == "old"
        assert await repo.ids() == {"job"}

    async def test_load_gives_back_what_save_stored(self, repo: BlobRepository) -> None:
        """``save`` stores the bytes its codec makes of a value; ``load`` decodes them."""
        name = repo.codec.name
        if name not in CODEC_SAMPLES:
            pytest.skip(f"no sample value for the {name!r} codec")
        if name in ("csv", "parquet"):
            pytest.importorskip("pyarrow")
        value = CODEC_SAMPLES[name]
        await repo.save("job", value)
        loaded = await repo.load("job")
        assert (loaded.to_pylist() if name in ("csv", "parquet") else loaded) == value
        async with await repo.open("job", "rb") as reader:
            assert await reader.read() == repo.codec.encode(value)
        assert await repo.ids() == {"job"}
        with pytest.raises(JobNotFoundError):
            await repo.load("missing")

    async def test_save_of_a_value_the_codec_refuses_stores_nothing(
        self, repo: BlobRepository
    ) -> None:
        """A value no built-in codec can encode raises ``CodecError`` and changes nothing."""
        if repo.codec.name not in CODEC_SAMPLES:
            pytest.skip(f"a {repo.codec.name!r} codec may encode anything")
        await self.put(repo, "job", "old")
        refused = threading.Lock()  # neither bytes, text, JSON, YAML, a table nor picklable
        for job in ("job", "new"):
            with pytest.raises(CodecError) as caught:
                await repo.save(job, refused)
            assert caught.value.job == job
            assert caught.value.codec == repo.codec.name
            assert repr(job) in str(caught.value)
        async with await repo.open("job", "r") as reader:
            assert await reader.read() == "old"
        assert await repo.ids() == {"job"}

    async def test_writer_rejects_wrong_type(self, repo: BlobRepository) -> None:
        """A binary writer refuses text with ``TypeError``."""
        writer = await repo.open("job", "wb")
        with pytest.raises(TypeError):
            await writer.write("text")  # type: ignore[arg-type]
        await writer.abort()
        assert not await repo.contains("job")


class MetadataRepositoryContract(RepositoryContract):
    """Structured values come back as they were dumped."""

    VALUES: list[Any] = [
        {"a": 1, "nested": {"list": [1, 2.5, "three", None, True]}},
        [1, "two", {"three": 3}],
        42,
        "a string",
        3.25,
        True,
        None,
    ]

    async def test_round_trip(self, repo: MetadataRepository) -> None:
        """Every value of ``VALUES`` comes back from ``info`` and ``info_all``."""
        for index, value in enumerate(self.VALUES):
            await repo.dump(f"job{index}", value)
        for index, value in enumerate(self.VALUES):
            assert await repo.info(f"job{index}") == value
        everything = await repo.info_all()
        assert everything == {f"job{index}": value for index, value in enumerate(self.VALUES)}

    async def test_load_and_save_are_info_and_dump(self, repo: MetadataRepository) -> None:
        """``save`` stores a value as ``dump`` does and ``load`` returns it as ``info``."""
        value = {"a": [1, "two", None]}
        await repo.save("job", value)
        assert await repo.load("job") == value
        assert await repo.info("job") == value
        await repo.dump("job", 2)
        assert await repo.load("job") == 2
        if not self.missing_info_has_default:
            with pytest.raises(JobNotFoundError):
                await repo.load("missing")
        with pytest.raises(InvalidJobIdError):
            await repo.save("a/b", value)
        assert await repo.ids() == {"job"}

    async def test_dump_replaces(self, repo: MetadataRepository) -> None:
        """``dump`` replaces the stored value."""
        await repo.dump("job", {"version": 1})
        await repo.dump("job", {"version": 2})
        assert await repo.info("job") == {"version": 2}
        assert await repo.ids() == {"job"}

    async def test_create_stores_only_when_absent(self, repo: MetadataRepository) -> None:
        """``create`` stores a value only when the id is absent, and says so."""
        assert await repo.create("job", {"owner": "first"}) is True
        assert await repo.create("job", {"owner": "second"}) is False
        assert await repo.info("job") == {"owner": "first"}
        await repo.dump("other", 1)
        assert await repo.create("other", 2) is False
        assert await repo.info("other") == 1
        await repo.delete("job")
        assert await repo.create("job", {"owner": "third"}) is True
        assert await repo.info("job") == {"owner": "third"}
        assert await repo.ids() == {"job", "other"}


def _snapshot(folder: Path | None) -> list[str] | None:
    if folder is None:
        return None
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def assert_warned_about(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Assert one warning record mentions ``text``."""
    records = [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]
    assert len(records) == 1, caplog.text
