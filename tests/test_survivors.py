"""What a run keeps is frozen away from the garbage collector in batches, and thawed after."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import pydatatask
from pydatatask.survivors import Survivors


@pytest.fixture(autouse=True)
def _collector_as_found() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_a_full_batch_freezes_and_thaw_gives_it_back() -> None:
    survivors = Survivors(every=3)
    survivors.finished(2)
    assert gc.get_freeze_count() == 0
    kept: list[dict[str, dict[str, str]]] = [{"provenance": {}} for _ in range(10)]
    survivors.finished(1)
    assert gc.get_freeze_count() >= len(kept)
    survivors.thaw()
    assert gc.get_freeze_count() == 0


def test_a_disabled_collector_is_left_alone() -> None:
    gc.disable()
    survivors = Survivors(every=1)
    survivors.finished(5)
    assert gc.get_freeze_count() == 0


def test_objects_frozen_by_the_program_stay_frozen() -> None:
    gc.freeze()
    theirs = gc.get_freeze_count()
    survivors = Survivors(every=1)
    survivors.finished(1)
    survivors.thaw()
    assert gc.get_freeze_count() == theirs


async def test_a_run_freezes_while_it_works_and_thaws_when_it_ends() -> None:
    source = pydatatask.InProcessMetadataRepository({f"k{index}": index for index in range(60)})
    doubled = pydatatask.InProcessMetadataRepository()
    frozen_while_running: list[int] = []

    @pydatatask.task(inputs={"source": source}, outputs={"doubled": doubled})
    async def double(source: int) -> int:
        frozen_while_running.append(gc.get_freeze_count())
        return 2 * source

    pipeline = pydatatask.Pipeline([double], max_concurrent_jobs=5)
    async with pipeline:
        pipeline.scheduler.survivors.every = 10
        report = await pydatatask.run(pipeline)
        assert gc.get_freeze_count() == 0
    assert report.succeeded == 60
    assert max(frozen_while_running) > 0
    assert doubled.data["k7"] == 14
