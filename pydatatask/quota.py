"""Quotas: how much CPU and memory jobs may use at once, and how often they may launch.

A :class:`Resources` value is an amount (cores, bytes, launches). A
:class:`ResourceManager` holds one quota and the ledger of what running jobs reserved
from it; several tasks may share one manager, so their jobs compete for one budget::

    quota = ResourceManager(Resources.parse(cpu="4", mem="8Gi", launches=20))
    task_a = ProcessTask(..., resource_manager=quota, job_resources=Resources.parse("1", "1Gi"))
    task_b = ProcessTask(..., resource_manager=quota, job_resources=Resources.parse("500m", "2Gi"))

A task keeps the ledger of its own jobs in a :class:`TaskQuota`: the scheduler reserves
each job's share before it launches, and the task corrects it once the job's spec says
what it really asks.

Quantities follow Kubernetes: ``"100m"`` is a tenth of a core, ``"512Mi"`` is 512 MiB,
``"1G"`` is 10**9 bytes, plain numbers and ``"1e9"`` are accepted too.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from pydatatask.errors import ConfigurationError, QuotaExceededError

__all__ = ["Quota", "ResourceManager", "Resources", "TaskQuota", "parse_quantity"]

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "K": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"\s*(?P<number>[+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkKMGTPE]?)\s*"
)


def parse_quantity(value: str | float, what: str = "quantity") -> Decimal:
    """Parse a Kubernetes-style quantity (``"100m"``, ``"1Gi"``, ``"1e9"``, ``2``, ``0.5``).

    :raises ConfigurationError: for anything else, or a negative amount, naming the value.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"invalid {what} {value!r}: expected a number or a quantity")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ConfigurationError(f"invalid {what} {value!r}: must be a finite number >= 0")
        return Decimal(str(value))
    if not isinstance(value, str):
        raise ConfigurationError(
            f"invalid {what} {value!r}: expected a number or a string like '500m' or '1Gi'"
        )
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise ConfigurationError(
            f"invalid {what} {value!r}: expected a number with an optional suffix "
            "(m, k, M, G, T, Ki, Mi, Gi, Ti, ...), like '500m', '2', '1.5Gi' or '1e9'"
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # the pattern should make this impossible
        raise ConfigurationError(f"invalid {what} {value!r}") from exc
    return number * _SUFFIXES[match["suffix"]]


@dataclass(frozen=True)
class Resources:
    """An amount of resources: CPU in cores, memory in bytes, and a number of launches.

    ``launches`` matters only for a quota: the most jobs that may start within the
    manager's sliding window (``None``: no limit). ``a <= b`` means ``a`` fits within
    ``b`` for CPU and memory.
    """

    cpu: float = 0.0
    memory: int = 0
    launches: int | None = None

    @classmethod
    def parse(
        cls, cpu: str | float = 0, mem: str | float = 0, launches: int | None = None
    ) -> Resources:
        """Build resources from Kubernetes-style quantities: ``Resources.parse("250m", "1Gi")``.

        Memory is rounded up to whole bytes.

        :raises ConfigurationError: for an unparsable or negative quantity.
        """
        cores = parse_quantity(cpu, "cpu quantity")
        memory = parse_quantity(mem, "memory quantity")
        if launches is not None and (
            isinstance(launches, bool) or not isinstance(launches, int) or launches < 0
        ):
            raise ConfigurationError(f"invalid launches {launches!r}: expected an int >= 0")
        return cls(cpu=float(cores), memory=math.ceil(memory), launches=launches)

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.memory + other.memory, self.launches)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.memory - other.memory, self.launches)

    def fits_within(self, other: Resources) -> bool:
        """Whether this much CPU and memory fits within ``other``'s."""
        # A tiny tolerance keeps sums of fractional cores like 0.1 + 0.2 from tipping over.
        return self.cpu <= other.cpu + 1e-9 and self.memory <= other.memory

    def __le__(self, other: Resources) -> bool:
        return self.fits_within(other)

    def __lt__(self, other: Resources) -> bool:
        return self.fits_within(other) and (self.cpu, self.memory) != (other.cpu, other.memory)

    def __str__(self) -> str:
        launches = "" if self.launches is None else f", {self.launches} launches"
        return f"cpu={self.cpu:g}, memory={self.memory} bytes{launches}"


Quota = Resources
"""A quota is a :class:`Resources` value given to a :class:`ResourceManager`."""


class ResourceManager:
    """A quota shared by the jobs of one or more tasks, and the ledger of what they hold.

    It limits the sum of CPU and memory of the jobs running at once, and (when the
    quota sets ``launches``) how many jobs start within a sliding ``window``.

    :param quota: the whole budget.
    :param window: the period over which launches are counted.
    :raises ConfigurationError: for a window that is not positive.
    """

    def __init__(self, quota: Resources, window: timedelta | float = timedelta(minutes=1)) -> None:
        seconds = window.total_seconds() if isinstance(window, timedelta) else float(window)
        if seconds <= 0:
            raise ConfigurationError(f"the launch window must be positive, not {window!r}")
        if not isinstance(quota, Resources):
            raise ConfigurationError(f"a quota is a Resources value, not {type(quota).__name__}")
        self.quota = quota
        self.window = seconds
        self._held: dict[Hashable, Resources] = {}
        self._used = Resources()
        self._launches: deque[float] = deque()
        self._longest_window = seconds

    def __repr__(self) -> str:
        return f"<ResourceManager quota=({self.quota}) in use=({self._used})>"

    @property
    def used(self) -> Resources:
        """What the jobs holding a reservation use now."""
        return self._used

    def holds(self, key: Hashable) -> bool:
        """Whether ``key`` holds a reservation."""
        return key in self._held

    def try_reserve(
        self, key: Hashable, resources: Resources, *, window: timedelta | float | None = None
    ) -> bool:
        """Reserve ``resources`` for ``key`` and count one launch; False when it must wait.

        Reserving again for a key that already holds a reservation returns True and
        changes nothing. ``window`` overrides the manager's launch window for this call.

        :raises QuotaExceededError: when ``resources`` exceed the whole quota, so that the
            job could never start.
        """
        if key in self._held:
            return True
        if not resources.fits_within(self.quota):
            raise QuotaExceededError(
                f"a job needing ({resources}) can never start within the quota ({self.quota})"
            )
        if not (self._used + resources).fits_within(self.quota):
            return False
        if self.quota.launches is not None:
            span = self.window if window is None else _as_seconds(window)
            self._longest_window = max(self._longest_window, span)
            now = time.monotonic()
            self._forget_launches(now)
            recent = sum(1 for when in self._launches if when > now - span)
            if recent >= self.quota.launches:
                return False
            self._launches.append(now)
        self._take(key, resources)
        return True

    def claim(self, key: Hashable, resources: Resources) -> None:
        """Record ``resources`` for a job that already runs, even past the quota.

        Used for jobs an earlier controller started: they run whether or not they fit,
        and later jobs must wait for them. No launch is counted.
        """
        if key not in self._held:
            self._take(key, resources)

    def release(self, key: Hashable) -> None:
        """Give back what ``key`` holds; releasing an unknown key does nothing."""
        resources = self._held.pop(key, None)
        if resources is not None:
            self._used = self._used - resources

    def next_launch_in(self) -> float | None:
        """Seconds until the launch limit admits one more launch (0 now, None: no limit)."""
        if self.quota.launches is None:
            return None
        now = time.monotonic()
        self._forget_launches(now)
        if len(self._launches) < self.quota.launches or not self._launches:
            return 0.0
        return max(0.0, self._launches[-self.quota.launches] + self.window - now)

    def _take(self, key: Hashable, resources: Resources) -> None:
        self._held[key] = resources
        self._used = self._used + resources

    def _forget_launches(self, now: float) -> None:
        while self._launches and self._launches[0] <= now - self._longest_window:
            self._launches.popleft()


class TaskQuota:
    """What one task's jobs hold of a shared :class:`ResourceManager`, job by job.

    The scheduler calls :meth:`reserve` before it launches a job and :meth:`release`
    after; nothing else waits for room. A job is charged the task's ``estimate`` until
    its rendered spec says what it asks (:meth:`settle`), which then becomes the
    estimate. Jobs found running after a restart are charged what they hold
    (:meth:`adopt`), without counting a launch.

    :param manager: the shared quota (None: no quota; every reservation succeeds).
    :param owner: the task's name, which keys its jobs in the ledger.
    :param estimate: what one job holds (None: unknown until a spec is rendered; until
        then one job runs at a time).
    :param window: the period over which launches are counted (None: the manager's).
    """

    def __init__(
        self,
        manager: ResourceManager | None,
        owner: str,
        estimate: Resources | None,
        window: timedelta | float | None = None,
    ) -> None:
        self.manager = manager
        self.owner = owner
        self.estimate = estimate
        self.window = window
        self._jobs: set[str] = set()
        self._adopted: dict[str, Resources | None] = {}

    def reserve(self, job: str) -> bool:
        """Charge ``job``'s share; False when the quota has no room for it now.

        :raises QuotaExceededError: when one job needs more than the whole quota.
        """
        if self.manager is None:
            return True
        key = (self.owner, job)
        if job in self._adopted:  # it runs already: account for it, count no launch
            self.manager.claim(key, self._adopted.pop(job) or self.estimate or Resources())
        elif self.estimate is None and self._jobs:
            return False  # the first job's spec tells what the next ones need
        elif not self.manager.try_reserve(key, self.estimate or Resources(), window=self.window):
            return False
        self._jobs.add(job)
        return True

    def adopt(self, job: str, holds: Resources | None) -> None:
        """Note that ``job`` already runs, holding ``holds`` (None: the estimate)."""
        self._adopted[job] = holds

    def settle(self, job: str, asks: Resources) -> None:
        """Charge ``job`` what its spec asks instead of the estimate, even past the quota.

        Later jobs wait until there is room again.

        :raises QuotaExceededError: when it asks for more than the whole quota; the
            job then holds nothing.
        """
        if self.manager is None:
            return
        key = (self.owner, job)
        self.manager.release(key)
        if not asks.fits_within(self.manager.quota):
            self._jobs.discard(job)
            raise QuotaExceededError(
                f"{self.owner} job {job!r} asks for ({asks}), more than the whole quota "
                f"({self.manager.quota})"
            )
        self.estimate = asks
        self.manager.claim(key, asks)
        self._jobs.add(job)

    def release(self, job: str) -> None:
        """Give back what ``job`` holds; releasing a job that holds nothing does nothing."""
        if self.manager is not None:
            self.manager.release((self.owner, job))
        self._jobs.discard(job)
        self._adopted.pop(job, None)


def _as_seconds(window: timedelta | float) -> float:
    seconds = window.total_seconds() if isinstance(window, timedelta) else float(window)
    if seconds <= 0:
        raise ConfigurationError(f"the launch window must be positive, not {window!r}")
    return seconds
