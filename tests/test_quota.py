"""Resources, quantities and the resource manager's ledger."""

from __future__ import annotations

import time

import pytest

from pydatatask.errors import ConfigurationError, QuotaExceededError
from pydatatask.quota import Quota, ResourceManager, Resources, TaskQuota, parse_quantity


@pytest.mark.parametrize(
    ("cpu", "cores"),
    [("100m", 0.1), ("2", 2.0), (0.5, 0.5), (3, 3.0), ("1.5", 1.5), ("250m", 0.25)],
)
def test_cpu_quantities(cpu: str | float, cores: float) -> None:
    assert Resources.parse(cpu, 0).cpu == pytest.approx(cores)


@pytest.mark.parametrize(
    ("mem", "size"),
    [
        ("1Gi", 2**30),
        ("512Mi", 512 * 2**20),
        ("1G", 10**9),
        ("1500M", 1_500_000_000),
        ("1e9", 10**9),
        (4096, 4096),
        ("1Ki", 1024),
        ("1k", 1000),
        ("0.5Ki", 512),
    ],
)
def test_memory_quantities(mem: str | int, size: int) -> None:
    assert Resources.parse(0, mem).memory == size


@pytest.mark.parametrize("bad", ["", "abc", "1 Gi", "1GB", "-1", "1..2", "G1", "nan"])
def test_bad_quantities_name_the_value(bad: str) -> None:
    with pytest.raises(ConfigurationError, match=repr(bad).replace("\\", "\\\\")):
        parse_quantity(bad, "memory quantity")


def test_bad_launches() -> None:
    with pytest.raises(ConfigurationError):
        Resources.parse(1, 1, launches=-1)  # type: ignore[arg-type]


def test_arithmetic_and_fit() -> None:
    small, big = Resources.parse("500m", "1Gi"), Resources.parse("2", "4Gi")
    assert small + small == Resources(1.0, 2 * 2**30)
    assert big - small == Resources(1.5, 3 * 2**30)
    assert small <= big
    assert small < big
    assert not big <= small
    assert Resources.parse("100m", 0) + Resources.parse("200m", 0) <= Resources.parse("300m", 0)
    assert Quota is Resources


def test_manager_limits_the_sum_of_running_jobs() -> None:
    manager = ResourceManager(Resources.parse(2, "2Gi"))
    job = Resources.parse(1, "1Gi")
    assert manager.try_reserve("a", job)
    assert manager.try_reserve("a", job)  # idempotent for a holder
    assert manager.try_reserve("b", job)
    assert not manager.try_reserve("c", job)
    manager.release("a")
    manager.release("a")  # idempotent
    manager.release("unknown")
    assert manager.try_reserve("c", job)
    assert manager.used == Resources(2.0, 2 * 2**30)


def test_memory_alone_can_be_the_limit() -> None:
    manager = ResourceManager(Resources.parse(8, "1Gi"))
    assert manager.try_reserve(1, Resources.parse("1", "600Mi"))
    assert not manager.try_reserve(2, Resources.parse("1", "600Mi"))


def test_a_job_bigger_than_the_quota_raises() -> None:
    manager = ResourceManager(Resources.parse(2, "1Gi"))
    with pytest.raises(QuotaExceededError) as caught:
        manager.try_reserve("huge", Resources.parse(3, "1Mi"))
    assert "cpu=3" in str(caught.value)
    assert "cpu=2" in str(caught.value)


def test_launch_window() -> None:
    manager = ResourceManager(Resources.parse(100, "100Gi", launches=2), window=0.3)
    tiny = Resources.parse("1m", 1)
    assert manager.try_reserve("a", tiny)
    assert manager.try_reserve("b", tiny)
    manager.release("a")
    manager.release("b")
    assert not manager.try_reserve("c", tiny)  # resources are free, launches are not
    wait = manager.next_launch_in()
    assert wait is not None
    assert 0 < wait <= 0.3
    time.sleep(wait + 0.01)
    assert manager.try_reserve("c", tiny)


def test_claim_counts_no_launch_and_may_exceed() -> None:
    manager = ResourceManager(Resources.parse(1, "1Gi", launches=1))
    job = Resources.parse(1, "1Gi")
    manager.claim("old1", job)
    manager.claim("old2", job)
    assert manager.used == Resources(2.0, 2 * 2**30)
    assert not manager.try_reserve("new", job)
    manager.release("old1")
    manager.release("old2")
    assert manager.try_reserve("new", job)


def test_bad_window() -> None:
    with pytest.raises(ConfigurationError):
        ResourceManager(Resources(), window=0)


def test_task_quota_charges_the_estimate_per_job() -> None:
    manager = ResourceManager(Resources.parse(2, "2Gi", launches=10))
    quota = TaskQuota(manager, "t", Resources.parse(1, "1Gi"))
    assert quota.reserve("a")
    assert quota.reserve("b")
    assert not quota.reserve("c")
    quota.release("a")
    quota.release("a")  # idempotent
    assert quota.reserve("c")
    assert manager.used == Resources(2.0, 2 * 2**30)


def test_task_quota_learns_what_a_job_asks() -> None:
    manager = ResourceManager(Resources.parse(2, "1Gi"))
    quota = TaskQuota(manager, "t", None)
    assert quota.reserve("first")
    assert not quota.reserve("second")  # one at a time until a spec says what a job needs
    quota.settle("first", Resources.parse("500m", "1Mi"))
    assert quota.estimate == Resources.parse("500m", "1Mi")
    assert quota.reserve("second")
    quota.settle("second", Resources.parse(2, "1Mi"))  # more than reserved: held anyway
    assert manager.used.cpu == pytest.approx(2.5)
    assert not quota.reserve("third")  # later jobs wait for room
    with pytest.raises(QuotaExceededError, match="more than the whole quota"):
        quota.settle("second", Resources.parse(3, "1Mi"))
    assert manager.used == Resources.parse("500m", "1Mi")


def test_task_quota_adopts_running_jobs_without_a_launch() -> None:
    manager = ResourceManager(Resources.parse(1, "1Gi", launches=1))
    quota = TaskQuota(manager, "t", Resources.parse(1, "1Gi"))
    quota.adopt("old", Resources.parse(2, "1Gi"))
    assert quota.reserve("old")  # it runs already: charged, even past the quota
    assert manager.used.cpu == 2
    quota.release("old")
    assert quota.reserve("new")  # no launch was counted for the adopted job
    assert TaskQuota(None, "free", None).reserve("anything")
