from __future__ import annotations

import logging

import pytest

from pydatatask import InProcessBlobRepository, InProcessMetadataRepository
from pydatatask.testing.repositories import (
    BlobRepositoryContract,
    MetadataRepositoryContract,
    assert_warned_about,
)


class TestInProcessMetadataRepository(MetadataRepositoryContract):
    @pytest.fixture
    def repo(self) -> InProcessMetadataRepository:
        return InProcessMetadataRepository()


class TestInProcessBlobRepository(BlobRepositoryContract):
    @pytest.fixture
    def repo(self) -> InProcessBlobRepository:
        return InProcessBlobRepository()


async def test_invalid_stored_ids_are_skipped_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo = InProcessMetadataRepository({"good": 1, "bad/one": 2, "": 3, "x\n": 4})
    with caplog.at_level(logging.WARNING):
        assert [job async for job in repo] == ["good"]
    assert_warned_about(caplog, "skipped 3 entries")
    assert await repo.info_all() == {"good": 1}


async def test_blob_accepts_text_initial_data() -> None:
    repo = InProcessBlobRepository({"a": "héllo", "b": b"raw"})
    async with await repo.open("a", "r") as reader:
        assert await reader.read() == "héllo"
    assert await repo.info("b") == b"raw"


async def test_a_subclass_with_its_own_tokens_is_asked_for_them() -> None:
    class Versioned(InProcessMetadataRepository):
        async def _tokens(self, jobs: list[str]) -> dict[str, str]:
            return {job: "v1" for job in jobs if job in self.data}

    plain = InProcessMetadataRepository({"a": 1})
    versioned = Versioned({"a": 1})
    assert plain.tokens_at_hand
    assert plain.token_at_hand("a") == (await plain.tokens(["a"]))["a"]
    assert not versioned.tokens_at_hand
    assert await versioned.tokens(["a"]) == {"a": "v1"}
