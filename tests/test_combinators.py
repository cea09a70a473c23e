from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pydatatask import (
    AggregateAndRepository,
    AggregateOrRepository,
    BlobRepository,
    BlockingRepository,
    ConfigurationError,
    FileRepository,
    InProcessBlobRepository,
    InProcessMetadataRepository,
    InvalidJobIdError,
    JobNotFoundError,
    MapRepository,
    MetadataRepository,
    RelatedItemRepository,
    Repository,
    YamlMetadataFileRepository,
)
from pydatatask.testing.repositories import RepositoryContract, assert_warned_about


class CountingRepository(InProcessMetadataRepository):
    """An in-memory repository that counts calls to its public methods."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        super().__init__(data)
        self.calls: Counter[str] = Counter()

    async def contains(self, job: str) -> bool:
        self.calls["contains"] += 1
        return await super().contains(job)

    async def info(self, job: str) -> Any:
        self.calls["info"] += 1
        return await super().info(job)

    async def info_all(self) -> dict[str, Any]:
        self.calls["info_all"] += 1
        return await super().info_all()

    async def ids(self) -> set[str]:
        self.calls["ids"] += 1
        return await super().ids()

    async def validate(self) -> None:
        self.calls["validate"] += 1


class DigitsRepository(InProcessMetadataRepository):
    """A repository that only holds ids made of digits."""

    job_id_pattern = re.compile(r"[0-9]+")
    job_id_rule = "only digits"


class DefaultingRepository(InProcessMetadataRepository):
    """A repository whose ``info`` of an absent id is ``None``."""

    async def _info(self, job: str) -> Any:
        return self.data.get(job)


async def dump(repo: Repository, job: str, payload: Any) -> None:
    assert isinstance(repo, MetadataRepository)
    await repo.dump(job, payload)


# --- the shared contract, for every combinator ------------------------------------------


class TestAggregateAndContract(RepositoryContract):
    @pytest.fixture
    def repo(self) -> AggregateAndRepository:
        # "only-b" is in one child only, so it must never be listed.
        return AggregateAndRepository(
            a=InProcessMetadataRepository(), b=InProcessMetadataRepository({"only-b": 1})
        )

    async def put(self, repo: Repository, job: str, payload: str = "value") -> None:
        assert isinstance(repo, AggregateAndRepository)
        repo.check_job_id(job)
        for child in repo.children.values():
            await dump(child, job, payload)


class TestAggregateOrContract(RepositoryContract):
    @pytest.fixture
    def repo(self) -> AggregateOrRepository:
        return AggregateOrRepository(
            a=InProcessMetadataRepository(), b=InProcessMetadataRepository()
        )

    async def put(self, repo: Repository, job: str, payload: str = "value") -> None:
        # Every id goes into ``a``; ids of even length also into ``b``, so some overlap.
        assert isinstance(repo, AggregateOrRepository)
        repo.check_job_id(job)
        await dump(repo.children["a"], job, payload)
        if len(job) % 2 == 0:
            await dump(repo.children["b"], job, payload)


class TestBlockingContract(RepositoryContract):
    @pytest.fixture
    def repo(self) -> BlockingRepository:
        return BlockingRepository(
            InProcessMetadataRepository({"blocked": 1}),
            InProcessMetadataRepository({"blocked": 1, "only-unless": 2}),
        )

    async def put(self, repo: Repository, job: str, payload: str = "value") -> None:
        assert isinstance(repo, BlockingRepository)
        repo.check_job_id(job)
        await dump(repo.source, job, payload)


class TestRelatedItemContract(RepositoryContract):
    @pytest.fixture(params=[True, False], ids=["prefetch", "lookup"])
    def repo(self, request: pytest.FixtureRequest) -> RelatedItemRepository:
        # "dangling" names a base item that does not exist, so it must never be listed.
        return RelatedItemRepository(
            InProcessMetadataRepository({"unrelated": 1}),
            InProcessMetadataRepository({"dangling": "nowhere"}),
            allow_deletes=True,
            prefetch_lookup=request.param,
        )

    async def put(self, repo: Repository, job: str, payload: str = "value") -> None:
        assert isinstance(repo, RelatedItemRepository)
        repo.check_job_id(job)
        await dump(repo.translator, job, f"item-{job}")
        await dump(repo.base, f"item-{job}", payload)


async def _wrap(value: Any) -> dict[str, Any]:
    return {"wrapped": value}


async def _not_hidden(job: str) -> bool:
    return not job.startswith("hidden")


class TestMapContract(RepositoryContract):
    @pytest.fixture
    def repo(self) -> MapRepository:
        child = InProcessMetadataRepository({"hidden-1": 1})
        return child.map(_wrap, _not_hidden, allow_deletes=True)

    async def put(self, repo: Repository, job: str, payload: str = "value") -> None:
        assert isinstance(repo, MapRepository)
        repo.check_job_id(job)
        await dump(repo.child, job, payload)


class TestNestedContract(RepositoryContract):
    @pytest.fixture
    def repo(self) -> AggregateAndRepository:
        either = AggregateOrRepository(
            a=InProcessMetadataRepository(), b=InProcessMetadataRepository({"only-b": 1})
        )
        # "only-b" is in ``either`` but blocked in ``unblocked``, so it must never be listed.
        unblocked = BlockingRepository(
            InProcessMetadataRepository({"only-b": 1}), InProcessMetadataRepository({"only-b": 1})
        )
        return AggregateAndRepository(either=either, unblocked=unblocked)

    async def put(self, repo: Repository, job: str, payload: str = "value") -> None:
        assert isinstance(repo, AggregateAndRepository)
        repo.check_job_id(job)
        either = repo.children["either"]
        unblocked = repo.children["unblocked"]
        assert isinstance(either, AggregateOrRepository)
        assert isinstance(unblocked, BlockingRepository)
        await dump(either.children["a"], job, payload)
        await dump(unblocked.source, job, payload)


# --- AggregateAndRepository / AggregateOrRepository -------------------------------------


def _overlapping() -> tuple[InProcessMetadataRepository, InProcessMetadataRepository]:
    return (
        InProcessMetadataRepository({"1": "a1", "2": "a2", "3": "a3"}),
        InProcessMetadataRepository({"2": "b2", "3": "b3", "4": "b4"}),
    )


async def test_and_is_the_intersection() -> None:
    left, right = _overlapping()
    repo = AggregateAndRepository(left=left, right=right)
    assert [job async for job in repo] == ["2", "3"]
    assert await repo.ids() == {"2", "3"}
    assert await repo.contains("2")
    assert not await repo.contains("1")
    assert not await repo.contains("4")
    assert await repo.info("2") == {"left": "a2", "right": "b2"}
    with pytest.raises(JobNotFoundError):
        await repo.info("1")
    assert await repo.info_all() == {
        "2": {"left": "a2", "right": "b2"},
        "3": {"left": "a3", "right": "b3"},
    }


async def test_and_delete_removes_from_every_child() -> None:
    left, right = _overlapping()
    repo = AggregateAndRepository(left=left, right=right)
    await repo.delete("2")
    await repo.delete("1")
    assert set(left.data) == {"3"}
    assert set(right.data) == {"3", "4"}


async def test_or_is_the_union_listed_once() -> None:
    left, right = _overlapping()
    repo = AggregateOrRepository(left=left, right=right)
    listed = [job async for job in repo]
    assert sorted(listed) == ["1", "2", "3", "4"]
    assert await repo.ids() == {"1", "2", "3", "4"}
    assert await repo.contains("1")
    assert await repo.contains("4")
    assert not await repo.contains("5")
    assert await repo.info("1") == {"left": "a1"}
    assert await repo.info("2") == {"left": "a2", "right": "b2"}
    assert await repo.info("4") == {"right": "b4"}
    with pytest.raises(JobNotFoundError):
        await repo.info("5")
    assert await repo.info_all() == {
        "1": {"left": "a1"},
        "2": {"left": "a2", "right": "b2"},
        "3": {"left": "a3", "right": "b3"},
        "4": {"right": "b4"},
    }


async def test_or_delete_removes_from_every_child() -> None:
    left, right = _overlapping()
    repo = AggregateOrRepository(left=left, right=right)
    await repo.delete("2")
    await repo.delete("4")
    assert set(left.data) == {"1", "3"}
    assert set(right.data) == {"3"}


@pytest.mark.parametrize("cls", [AggregateAndRepository, AggregateOrRepository])
def test_aggregates_need_children(
    cls: type[AggregateAndRepository] | type[AggregateOrRepository],
) -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        cls()
    with pytest.raises(ConfigurationError, match="'oops'"):
        cls(good=InProcessMetadataRepository(), oops={"not": "a repository"})  # type: ignore[arg-type]


async def test_and_with_one_child_is_that_child() -> None:
    child = InProcessMetadataRepository({"x": 1})
    repo = AggregateAndRepository(only=child)
    assert [job async for job in repo] == ["x"]
    assert await repo.info("x") == {"only": 1}


async def test_aggregates_respect_a_narrower_child_charset() -> None:
    digits = DigitsRepository({"12": "d"})
    anything = InProcessMetadataRepository({"12": "x", "abc": "y"})
    both = AggregateAndRepository(digits=digits, anything=anything)
    with pytest.raises(InvalidJobIdError, match="only digits"):
        await both.contains("abc")
    assert await both.ids() == {"12"}

    either = AggregateOrRepository(digits=digits, anything=anything)
    assert await either.contains("abc")
    assert await either.info("abc") == {"anything": "y"}
    await either.delete("abc")
    assert "abc" not in anything.data

    only_digits = AggregateOrRepository(digits=digits)
    with pytest.raises(InvalidJobIdError, match="no child"):
        await only_digits.info("abc")


async def test_aggregate_info_checks_presence_before_a_child_default() -> None:
    defaulting = DefaultingRepository({"x": 1})
    plain = InProcessMetadataRepository({"x": 2, "y": 3})
    assert await defaulting.info("y") is None  # the child's documented default
    both = AggregateAndRepository(defaulting=defaulting, plain=plain)
    with pytest.raises(JobNotFoundError):
        await both.info("y")
    either = AggregateOrRepository(defaulting=defaulting, plain=plain)
    assert await either.info("y") == {"plain": 3}


async def test_aggregates_validate_every_child() -> None:
    children = {"a": CountingRepository(), "b": CountingRepository()}
    await AggregateAndRepository(**children).validate()
    await AggregateOrRepository(**children).validate()
    assert [child.calls["validate"] for child in children.values()] == [2, 2]


async def test_and_listing_uses_bulk_ids_not_per_id_lookups() -> None:
    first = CountingRepository({str(index): index for index in range(50)})
    second = CountingRepository({str(index): index for index in range(0, 50, 2)})
    repo = AggregateAndRepository(first=first, second=second)
    assert len([job async for job in repo]) == 25
    assert second.calls["contains"] == 0
    assert second.calls["ids"] == 1


# --- BlockingRepository -----------------------------------------------------------------


async def test_blocking_excludes_the_unless_ids() -> None:
    source = InProcessMetadataRepository({"a": 1, "b": 2, "c": 3})
    unless = InProcessMetadataRepository({"b": "done", "z": "other"})
    repo = BlockingRepository(source, unless)
    assert [job async for job in repo] == ["a", "c"]
    assert await repo.ids() == {"a", "c"}
    assert not await repo.contains("b")
    assert not await repo.contains("z")
    assert await repo.info("a") == 1
    with pytest.raises(JobNotFoundError):
        await repo.info("b")
    assert await repo.info_all() == {"a": 1, "c": 3}
    unless.data.pop("b")
    assert await repo.contains("b")


async def test_blocking_delete_goes_to_source_only() -> None:
    source = InProcessMetadataRepository({"a": 1, "b": 2})
    unless = InProcessMetadataRepository({"b": "done"})
    repo = BlockingRepository(source, unless)
    await repo.delete("a")
    await repo.delete("b")
    assert source.data == {}
    assert unless.data == {"b": "done"}


async def test_blocking_ignores_ids_unless_cannot_hold() -> None:
    repo = BlockingRepository(InProcessMetadataRepository({"abc": 1}), DigitsRepository({"1": 1}))
    assert await repo.contains("abc")
    assert await repo.info("abc") == 1


async def test_blocking_validates_both() -> None:
    source, unless = CountingRepository(), CountingRepository()
    await BlockingRepository(source, unless).validate()
    assert source.calls["validate"] == unless.calls["validate"] == 1


def test_blocking_rejects_non_repositories() -> None:
    with pytest.raises(ConfigurationError, match="unless"):
        BlockingRepository(InProcessMetadataRepository(), None)  # type: ignore[arg-type]


# --- RelatedItemRepository --------------------------------------------------------------


def _related(
    prefetch: bool, allow_deletes: bool = False
) -> tuple[RelatedItemRepository, CountingRepository, CountingRepository]:
    base = CountingRepository({"p1": {"name": "one"}, "p2": {"name": "two"}, "p9": "unused"})
    translator = CountingRepository({"k1": "p1", "k2": "p2", "k3": "p1", "gone": "p404"})
    repo = RelatedItemRepository(base, translator, allow_deletes, prefetch)
    return repo, base, translator


@pytest.mark.parametrize("prefetch", [True, False])
async def test_related_item_translates(prefetch: bool) -> None:
    repo, _, _ = _related(prefetch)
    assert sorted([job async for job in repo]) == ["k1", "k2", "k3"]
    assert await repo.ids() == {"k1", "k2", "k3"}
    assert await repo.contains("k3")
    assert not await repo.contains("gone")
    assert not await repo.contains("p1")
    assert await repo.info("k3") == {"name": "one"}
    with pytest.raises(JobNotFoundError):
        await repo.info("gone")
    assert await repo.info_all() == {
        "k1": {"name": "one"},
        "k2": {"name": "two"},
        "k3": {"name": "one"},
    }


async def test_related_item_prefetch_does_no_per_id_lookups() -> None:
    repo, base, translator = _related(prefetch=True)
    assert sorted([job async for job in repo]) == ["k1", "k2", "k3"]
    assert translator.calls == Counter(info_all=1)
    assert base.calls == Counter(ids=1)

    translator.calls.clear()
    base.calls.clear()
    await repo.info_all()
    assert translator.calls == Counter(info_all=1)
    assert base.calls == Counter(info_all=1)


async def test_related_item_without_prefetch_looks_up_each_id() -> None:
    repo, base, translator = _related(prefetch=False)
    assert sorted([job async for job in repo]) == ["k1", "k2", "k3"]
    assert translator.calls["info_all"] == 0
    assert translator.calls["info"] == 4
    assert base.calls["contains"] == 4
    assert base.calls["ids"] == 0


@pytest.mark.parametrize("prefetch", [True, False])
async def test_related_item_delete_is_a_no_op_by_default(prefetch: bool) -> None:
    repo, base, translator = _related(prefetch)
    await repo.delete("k1")
    assert "p1" in base.data
    assert await repo.contains("k1")
    assert await repo.contains("k3")
    assert translator.data["k1"] == "p1"


@pytest.mark.parametrize("prefetch", [True, False])
async def test_related_item_delete_removes_the_base_item_when_allowed(prefetch: bool) -> None:
    repo, base, translator = _related(prefetch, allow_deletes=True)
    await repo.delete("k1")
    await repo.delete("gone")
    await repo.delete("missing")
    assert "p1" not in base.data
    assert not await repo.contains("k1")
    assert not await repo.contains("k3")  # it shared the deleted item
    assert translator.data == {"k1": "p1", "k2": "p2", "k3": "p1", "gone": "p404"}


@pytest.mark.parametrize("prefetch", [True, False])
async def test_related_item_skips_invalid_translations(
    prefetch: bool, caplog: pytest.LogCaptureFixture
) -> None:
    base = InProcessMetadataRepository({"ok": 1, "a": 2})
    translator = InProcessMetadataRepository(
        {"good": "ok", "slash": "a/b", "number": 42, "mapping": {"x": 1}}
    )
    repo = RelatedItemRepository(base, translator, allow_deletes=True, prefetch_lookup=prefetch)
    with caplog.at_level(logging.WARNING):
        assert [job async for job in repo] == ["good"]
    assert_warned_about(caplog, "skipped 3 ids")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert await repo.info_all() == {"good": 1}
    assert_warned_about(caplog, "skipped 3 ids")
    for job in ("slash", "number", "mapping"):
        assert not await repo.contains(job)
        with pytest.raises(JobNotFoundError):
            await repo.info(job)
        await repo.delete(job)
    assert base.data == {"ok": 1, "a": 2}


async def test_related_item_ids_follow_the_translator_charset() -> None:
    repo = RelatedItemRepository(InProcessMetadataRepository(), DigitsRepository())
    with pytest.raises(InvalidJobIdError, match="only digits"):
        await repo.contains("abc")


async def test_related_item_is_the_kind_of_repository_its_base_is(tmp_path: Path) -> None:
    translator = InProcessMetadataRepository()
    kinds = {
        "metadata": (InProcessMetadataRepository(), True, False),
        "blob": (InProcessBlobRepository(), False, True),
        "files": (FileRepository(tmp_path / "files"), False, True),
        "yaml": (YamlMetadataFileRepository(tmp_path / "yaml"), True, True),
        "neither": (AggregateAndRepository(a=InProcessMetadataRepository()), False, False),
    }
    for name, (base, metadata, blob) in kinds.items():
        repo = RelatedItemRepository(base, translator)
        assert isinstance(repo, RelatedItemRepository), name
        assert isinstance(repo, MetadataRepository) is metadata, name
        assert isinstance(repo, BlobRepository) is blob, name
        assert hasattr(repo, "dump") is metadata, name
        assert hasattr(repo, "open") is blob, name
        assert repr(repo).startswith("<RelatedItemRepository base="), name


async def test_related_item_opens_the_translated_file(tmp_path: Path) -> None:
    """Reports stored by report id, seen through the ids of the jobs that made them."""
    reports = FileRepository(tmp_path / "reports", ".txt")
    async with await reports.open("r1", "w") as writer:
        await writer.write("first report")
    translator = InProcessMetadataRepository({"job-a": "r1", "job-b": "r2", "job-c": "no/such"})
    repo = RelatedItemRepository(reports, translator)
    assert isinstance(repo, BlobRepository)
    async with await repo.open("job-a", "r") as reader:
        assert await reader.read() == "first report"
    async with await repo.open("job-b", "wb") as binary:
        await binary.write(b"second report")
    assert await reports.ids() == {"r1", "r2"}
    async with await repo.open("job-b", "rb") as raw:
        assert await raw.read() == b"second report"
    assert await repo.info("job-a") == str(tmp_path / "reports" / "r1.txt")
    for job in ("unmapped", "job-c"):
        for mode in ("r", "rb", "w", "wb"):
            with pytest.raises(JobNotFoundError):
                await repo.open(job, mode)  # type: ignore[call-overload]
    await reports.delete("r1")
    with pytest.raises(JobNotFoundError):
        await repo.open("job-a", "r")
    with pytest.raises(InvalidJobIdError):
        await repo.open("a/b", "r")


async def test_related_item_dumps_and_creates_the_translated_item() -> None:
    base = InProcessMetadataRepository({"p1": {"name": "one"}})
    translator = InProcessMetadataRepository({"k1": "p1", "k2": "p1", "k4": "p4"})
    repo = RelatedItemRepository(base, translator)
    assert isinstance(repo, MetadataRepository)
    await repo.dump("k1", {"name": "uno"})
    assert base.data == {"p1": {"name": "uno"}}
    assert await repo.info("k2") == {"name": "uno"}
    assert await repo.create("k2", {"name": "other"}) is False
    assert await repo.create("k4", {"name": "four"}) is True
    assert base.data["p4"] == {"name": "four"}
    assert await repo.info_all() == {
        "k1": {"name": "uno"},
        "k2": {"name": "uno"},
        "k4": {"name": "four"},
    }
    with pytest.raises(JobNotFoundError):
        await repo.dump("unmapped", 1)
    with pytest.raises(JobNotFoundError):
        await repo.create("unmapped", 1)
    assert translator.data == {"k1": "p1", "k2": "p1", "k4": "p4"}


async def test_related_item_over_yaml_files_reads_values_and_text(tmp_path: Path) -> None:
    records = YamlMetadataFileRepository(tmp_path / "records")
    repo = RelatedItemRepository(records, InProcessMetadataRepository({"k": "rec"}))
    assert isinstance(repo, MetadataRepository)
    assert isinstance(repo, BlobRepository)
    await repo.dump("k", {"answer": 42})
    assert await records.info("rec") == {"answer": 42}
    async with await repo.open("k", "r") as reader:
        assert await reader.read() == "answer: 42\n"
    with pytest.raises(JobNotFoundError):
        await repo.info("other")


async def test_related_item_validates_both() -> None:
    repo, base, translator = _related(prefetch=True)
    await repo.validate()
    assert base.calls["validate"] == translator.calls["validate"] == 1


# --- MapRepository ----------------------------------------------------------------------


async def _double(value: Any) -> Any:
    return value * 2


async def _odd(job: str) -> bool:
    return int(job) % 2 == 1


async def test_map_applies_func_and_filt() -> None:
    child = InProcessMetadataRepository({"1": 10, "2": 20, "3": 30})
    repo = child.map(_double, _odd)
    assert isinstance(repo, MapRepository)
    assert sorted([job async for job in repo]) == ["1", "3"]
    assert await repo.ids() == {"1", "3"}
    assert await repo.contains("1")
    assert not await repo.contains("2")
    assert not await repo.contains("5")
    assert await repo.info("3") == 60
    assert await repo.info("2") == 40  # as in pydatatask 0.4: the filter limits listings only
    with pytest.raises(JobNotFoundError):
        await repo.info("5")
    assert await repo.info_all() == {"1": 20, "3": 60}


async def test_map_without_filt_keeps_every_id() -> None:
    child = InProcessMetadataRepository({"1": 10, "2": 20})
    repo = MapRepository(child, _double)
    assert await repo.ids() == {"1", "2"}
    assert await repo.info_all() == {"1": 20, "2": 40}


async def test_map_delete_only_when_allowed() -> None:
    child = InProcessMetadataRepository({"1": 10, "3": 30})
    await child.map(_double).delete("1")
    assert child.data == {"1": 10, "3": 30}
    await child.map(_double, allow_deletes=True).delete("1")
    assert child.data == {"3": 30}


def test_map_rejects_bad_arguments() -> None:
    child = InProcessMetadataRepository()
    with pytest.raises(ConfigurationError, match="func"):
        MapRepository(child, "not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="filt"):
        MapRepository(child, _double, 3)  # type: ignore[arg-type]


async def test_map_validates_child() -> None:
    child = CountingRepository()
    await child.map(_double).validate()
    assert child.calls["validate"] == 1


# --- composition ------------------------------------------------------------------------


async def test_combinators_nest() -> None:
    inputs = InProcessMetadataRepository({"1": "in1", "2": "in2", "3": "in3", "4": "in4"})
    extra = InProcessMetadataRepository({"5": "in5"})
    done = InProcessMetadataRepository({"2": {"success": True}})
    failed = InProcessMetadataRepository({"3": {"success": False}})
    pending = BlockingRepository(
        AggregateOrRepository(inputs=inputs, extra=extra),
        AggregateOrRepository(done=done, failed=failed),
    )
    assert await pending.ids() == {"1", "4", "5"}
    assert await pending.info("5") == {"extra": "in5"}

    async def name(value: dict[str, str]) -> str:
        return next(iter(value.values()))

    named = pending.map(name, _odd)
    assert await named.info_all() == {"1": "in1", "5": "in5"}

    translator = InProcessMetadataRepository({"alias-a": "1", "alias-b": "4"})
    related = RelatedItemRepository(named, translator)
    assert await related.ids() == {"alias-a"}  # "4" is filtered out by the map
    assert await related.info("alias-a") == "in1"

    both = AggregateAndRepository(related=related, translator=translator)
    assert await both.info_all() == {"alias-a": {"related": "in1", "translator": "1"}}


def test_reprs_name_their_parts() -> None:
    child = InProcessMetadataRepository()
    other = InProcessMetadataRepository({"x": 1})
    assert repr(AggregateAndRepository(a=child, b=other)) == (
        f"<AggregateAndRepository a={child!r}, b={other!r}>"
    )
    assert "AggregateOrRepository a=" in repr(AggregateOrRepository(a=child))
    blocking = repr(BlockingRepository(child, other))
    assert blocking == f"<BlockingRepository source={child!r} unless={other!r}>"
    related = repr(RelatedItemRepository(child, other))
    assert "base=" in related
    assert "translator=" in related
    assert "prefetch_lookup=True" in related
    mapped = repr(child.map(_double, _odd))
    assert "func=_double" in mapped
    assert "filt=_odd" in mapped


def test_read_views_offer_no_writes() -> None:
    child = InProcessMetadataRepository()
    for repo in (
        AggregateAndRepository(a=child),
        AggregateOrRepository(a=child),
        BlockingRepository(child, child),
        child.map(_double),
    ):
        assert not isinstance(repo, MetadataRepository)
        assert not hasattr(repo, "dump")
        assert not hasattr(repo, "open")
