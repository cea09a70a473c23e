# Longer than 400 lines on purpose: claims, their renewal, takeover and release share one
# clock and one store protocol, whose rules read best in one place.
"""Leases: claims that let several controllers share one pipeline, each job run once.

Claims live in one metadata repository whose ``create`` is atomic (exactly one of
several concurrent callers stores its value). Two kinds of entries are kept there:

- **A heartbeat per controller** (``~controller.NONCE``), rewritten by that controller
  alone every third of ``lease_seconds``. It says until when (wall clock) the
  controller's claims stand. One write per controller per interval renews every claim
  it holds, however many jobs it runs.
- **A claim per job and generation** (``TASK.JOB.GENERATION``), created only if absent,
  naming the heartbeat it hangs on. Generation 0 is a job's first claim; a controller
  takes over a claim whose heartbeat expired (or whose controller died on this host) by
  creating the next generation, which only one controller can do. Claims are only ever
  created and deleted, never rewritten, so no compare-and-set is needed.

**Expired is final.** A controller's own clock (the boot-time clock, which keeps
counting while the process is stopped or the machine sleeps) says its claims stand for
80 % of the lease after the start of its last renewal that completed in time; a late
renewal does not bring an expired lease back. A controller that cannot renew in time
loses every claim at once: it stops following its jobs (leaving processes and
containers running for the next holder), writes no done record, and starts afresh
under a new heartbeat. The 20 % left over covers the time a done record takes to
write and the clocks of two hosts disagreeing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydatatask.controller import ControllerId
from pydatatask.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    JobNotFoundError,
)
from pydatatask.records import read_records
from pydatatask.repository.base import MAX_JOB_ID_LENGTH, MetadataRepository, Repository
from pydatatask.repository.filesystem import YamlMetadataFileRepository

__all__ = ["SUPPORTED", "Claim", "Holder", "Leases"]

logger = logging.getLogger(__name__)

SUPPORTED = (
    "YamlMetadataFileRepository, YamlMetadataS3Repository, MongoMetadataRepository "
    "or (for one process) InProcessMetadataRepository"
)
"""The repositories that can hold leases, as named in error messages."""

_OWN_SHARE = 0.8
"""The part of a lease for which its controller trusts its own claims."""
_RENEWALS_PER_LEASE = 3
_HEARTBEAT_PREFIX = "~controller."


def _unsynced(repo: MetadataRepository) -> MetadataRepository:
    """Return the lease repository, writing without disk syncs where it can.

    Claims and heartbeats need not survive a crash of the machine: every controller on
    it dies too, and a claim lost or cut short stands for no one.
    """
    if isinstance(repo, YamlMetadataFileRepository) and repo.durable:
        return YamlMetadataFileRepository(repo.basedir, repo.extension, durable=False)
    return repo


def _boot_clock() -> float:
    """Return seconds on a clock that never jumps and counts while the process is stopped."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


@dataclass(frozen=True)
class Claim:
    """A claim on one job won by this controller."""

    task: str
    job: str
    generation: int
    heartbeat: str
    """The key of the heartbeat the claim hangs on; the claim stands while it does."""
    taken_over: bool
    """Whether an earlier holder's claim expired, so what it left running is re-adopted."""


@dataclass(frozen=True)
class Holder:
    """Another controller holds the job's claim."""

    controller: ControllerId | None

    def __str__(self) -> str:
        return str(self.controller or "another controller")


class Leases:
    """The claims of one controller in a shared lease repository.

    :param repo: where claims live; its ``create`` must be atomic.
    :param lease_seconds: how long claims stand without renewal.
    :param on_lost: called when this controller's claims expired before it could renew
        them (the lease repository was unreachable, or the process was stopped).
    :param clock: the wall clock (seconds since the epoch) written into heartbeats.
    :raises ConfigurationError: for a repository that cannot hold leases, or a lease
        shorter than a second.
    """

    def __init__(
        self,
        repo: Repository,
        lease_seconds: float,
        on_lost: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(repo, MetadataRepository) or not repo.atomic_create:
            raise ConfigurationError(
                f"leases need a repository that creates entries atomically ({SUPPORTED}), "
                f"not {type(repo).__name__}"
            )
        if not lease_seconds >= 1:
            raise ConfigurationError(f"lease_seconds must be at least 1, not {lease_seconds!r}")
        self.repo: MetadataRepository = _unsynced(repo)
        self.lease_seconds = float(lease_seconds)
        self.on_lost = on_lost
        self._clock = clock
        self._heartbeat: str | None = None
        self._valid_until = 0.0
        self._beats: dict[str, float] = {}
        """Heartbeat key -> its expiry (wall clock) as last read: it only ever grows."""
        self._expired: set[str] = set()
        """Heartbeats read when already expired: their claims stand for no one, for good."""
        self._retired: str | None = None
        """A heartbeat whose claims were lost, deleted when the next one starts."""
        self._starting = asyncio.Lock()
        self._closing = asyncio.Event()
        self._renewing: asyncio.Task[None] | None = None
        self._unreachable = False

    @property
    def interval(self) -> float:
        """Seconds between two renewals."""
        return self.lease_seconds / _RENEWALS_PER_LEASE

    # ------------------------------------------------------------ heartbeat

    async def _beat(self) -> bool:
        """Write this controller's heartbeat; return whether its claims still stand."""
        assert self._heartbeat is not None
        started, wall = _boot_clock(), self._clock()
        await self.repo.dump(
            self._heartbeat,
            {
                "controller": ControllerId.current().as_record(),
                "expires": wall + self.lease_seconds,
                "renewed": datetime.fromtimestamp(wall, UTC).isoformat(),
            },
        )
        if _boot_clock() > self._valid_until:  # too late: others may have taken over
            return False
        self._valid_until = started + self.lease_seconds * _OWN_SHARE
        return True

    async def _begin(self) -> None:
        """Start a fresh heartbeat (after a loss, or at the first claim)."""
        if self._retired is not None:
            await self.repo.delete(self._retired)  # its claims expire for everyone at once
            self._retired = None
        self._heartbeat = f"{_HEARTBEAT_PREFIX}{secrets.token_hex(8)}"
        self._valid_until = _boot_clock() + self.lease_seconds * _OWN_SHARE
        written = False
        try:
            written = await self._beat()
        finally:
            if not written:  # no claim may hang on it; it goes when the next one starts
                self._retired, self._heartbeat, self._valid_until = self._heartbeat, None, 0.0
        if not written:
            raise BackendUnavailableError("the lease repository answered too slowly to use")
        if self._renewing is None:
            self._renewing = asyncio.get_running_loop().create_task(self._renew_forever())
            await self._sweep()

    async def _sweep(self) -> None:
        """Delete the heartbeats of controllers gone for more than a lease (at start and close).

        A controller killed outright leaves its heartbeat behind; the claims hanging on
        it are taken over and deleted by others, so only the heartbeat would stay. A
        heartbeat expired that long ago stands for no one, present or not.
        """
        try:
            keys = [key for key in await self.repo.ids() if key.startswith(_HEARTBEAT_PREFIX)]
            gone_before = self._clock() - self.lease_seconds
            for key in keys:
                if key != self._heartbeat and await self._expires(key) < gone_before:
                    await self.repo.delete(key)
        except (BackendError, OSError) as exc:
            logger.debug("cannot remove the heartbeats of stopped controllers: %s", exc)

    async def _renew_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._closing.wait()
            if self._closing.is_set():
                return
            try:
                if self._heartbeat is None:
                    async with self._starting:
                        if self._heartbeat is None:
                            await self._begin()
                elif not await self._beat():
                    self._lose("it could not be renewed in time")
                    continue
            except (BackendError, OSError) as exc:
                if not self._unreachable:
                    logger.warning("cannot renew the leases in %r: %s", self.repo, exc)
                self._unreachable = True
                if self._heartbeat is not None and _boot_clock() > self._valid_until:
                    self._lose("the lease repository cannot be reached")
                continue
            if self._unreachable:
                logger.warning("the leases in %r can be renewed again", self.repo)
                self._unreachable = False

    def _lose(self, why: str) -> None:
        logger.warning(
            "this controller's leases expired (%s): its running jobs are left to others", why
        )
        self._retired, self._heartbeat = self._heartbeat, None
        self._valid_until = 0.0
        self.on_lost()

    def holds(self, claim: Claim) -> bool:
        """Whether ``claim`` still stands, so its job may be recorded."""
        return claim.heartbeat == self._heartbeat and _boot_clock() < self._valid_until

    async def close(self) -> None:
        """Stop renewing and delete the heartbeat: claims left behind expire at once.

        Jobs left running elsewhere (a process with ``on_exit="detach"``) are then taken
        over, and re-adopted, by the next controller without waiting for the lease.
        """
        renewing, self._renewing = self._renewing, None
        if renewing is not None and not renewing.done():
            # Let a renewal under way end first: a write cancelled midway may still land
            # (in a thread, or on the server) after the heartbeat is deleted.
            self._closing.set()
            try:
                async with asyncio.timeout(self.lease_seconds):
                    await asyncio.shield(renewing)
            except TimeoutError:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
            self._closing.clear()
        if self._heartbeat is not None or self._retired is not None:
            await self._sweep()  # those left by controllers killed since this one started
        for heartbeat in (self._heartbeat, self._retired):
            if heartbeat is None:
                continue
            try:
                await self.repo.delete(heartbeat)
            except (BackendError, OSError) as exc:
                logger.warning("could not remove this controller's heartbeat: %s", exc)
        self._heartbeat = self._retired = None

    # --------------------------------------------------------------- claims

    def _key(self, task: str, job: str, generation: int) -> str:
        key = f"{task}.{job}.{generation}"
        if len(key) > MAX_JOB_ID_LENGTH - 4 or not self.repo.is_valid_job_id(key):
            digest = hashlib.sha256(job.encode("utf-8", "surrogatepass")).hexdigest()[:40]
            key = f"{task}.~{digest}.{generation}"
        return key

    async def claim(self, task: str, job: str) -> Claim | Holder:
        """Win the claim on ``task``'s ``job``, or return who holds it.

        :raises BackendError: when the lease repository cannot be reached or used.
        """
        heartbeat = await self._current_heartbeat()
        generation = 0
        while True:
            key = self._key(task, job, generation)
            mine = {
                "task": task,
                "job": job,
                "generation": generation,
                "controller": ControllerId.current().as_record(),
                "heartbeat": heartbeat,
                "claimed": datetime.fromtimestamp(self._clock(), UTC).isoformat(),
            }
            if await self.repo.create(key, mine):
                return Claim(task, job, generation, heartbeat, taken_over=generation > 0)
            try:
                entry = await self.repo.info(key)
            except JobNotFoundError:
                if generation > 0:  # released while we looked: start from the first
                    generation = 0
                continue
            # Any generation whose claim stands holds the job, not only the newest: a
            # release deletes the oldest first, so a new first generation may stand
            # under a newer one that is being (or, if its holder died, was never) deleted.
            holder = await self._standing_holder(entry)
            if holder is not None:
                return holder
            if (
                isinstance(entry, dict)
                and entry.get("heartbeat") == heartbeat
                and not await self.repo.contains(self._key(task, job, generation + 1))
            ):
                return Claim(task, job, generation, heartbeat, taken_over=False)
            generation += 1

    async def _current_heartbeat(self) -> str:
        """Return the heartbeat new claims hang on, starting one if there is none."""
        async with self._starting:
            if self._heartbeat is not None and _boot_clock() >= self._valid_until:
                self._lose("it was not renewed in time")
            if self._heartbeat is None:
                await self._begin()
            assert self._heartbeat is not None
            return self._heartbeat

    async def _standing_holder(self, entry: Any) -> Holder | None:
        """Return the holder of a claim entry while its claim stands; None once it expired."""
        if not isinstance(entry, dict):
            return None  # not a claim this library wrote: it stands for no one
        controller = ControllerId.from_record(entry.get("controller"))
        heartbeat = entry.get("heartbeat")
        if controller is None or not isinstance(heartbeat, str):
            return None
        if heartbeat == self._heartbeat:
            return None  # this controller's own, under its current heartbeat
        if controller.host == ControllerId.current().host and not controller.is_alive():
            return None  # it died: no need to wait for its lease
        if await self._expires(heartbeat) > self._clock():
            return Holder(controller)
        return None

    async def _expires(self, heartbeat: str) -> float:
        """Return when the heartbeat's claims expire (wall clock); 0 for a missing one."""
        known = self._beats.get(heartbeat)
        if known is not None and (known > self._clock() or heartbeat in self._expired):
            # A future expiry still holds, as an expiry only moves later; one already
            # past when it was read is final, as its controller stopped trusting its
            # claims before then (a past one cached earlier may have been renewed since).
            return known
        try:
            value = await self.repo.info(heartbeat)
        except JobNotFoundError:
            return 0.0
        try:
            expires = float(value["expires"]) if isinstance(value, dict) else 0.0
        except (KeyError, TypeError, ValueError):
            expires = 0.0
        self._beats[heartbeat] = expires
        if expires <= self._clock():
            self._expired.add(heartbeat)
        return expires

    async def release(self, claim: Claim) -> None:
        """Give a claim up, oldest generation first, so the job can be claimed at once.

        Oldest first: once the first generation is gone, the next controller wins the job
        by creating it again, and its claim stands above the newer generations still
        being deleted (or left behind, if this controller dies midway). Deleting the
        newest first would let one controller take the older ones over while another
        creates the first generation afresh. A claim that no longer stands is left
        alone: another controller may hold the job now.
        """
        if not self.holds(claim):
            return
        for generation in range(claim.generation + 1):
            await self.repo.delete(self._key(claim.task, claim.job, generation))

    async def standing(self) -> dict[tuple[str, str], ControllerId]:
        """Return every claim that stands now, by (task, job), with its holder.

        One listing of the lease repository, whose size follows the jobs running now,
        not the jobs ever done.
        """
        entries = await read_records(self.repo)
        expiry: dict[str, float] = {}
        claims: list[tuple[int, tuple[str, str], dict[str, Any]]] = []
        for key, entry in entries.items():
            if not isinstance(entry, dict):
                continue
            if key.startswith(_HEARTBEAT_PREFIX):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    expiry[key] = float(entry["expires"])
                continue
            task, job, generation = entry.get("task"), entry.get("job"), entry.get("generation")
            if not (isinstance(task, str) and isinstance(job, str) and isinstance(generation, int)):
                continue  # not a claim this library wrote
            claims.append((generation, (task, job), entry))
        now, here = self._clock(), ControllerId.current().host
        found: dict[tuple[str, str], ControllerId] = {}
        # The newest generation that stands names the holder (an older one may stand
        # under a newer one being given back).
        for _, pair, entry in sorted(claims, key=lambda claim: claim[0], reverse=True):
            if pair in found:
                continue
            controller = ControllerId.from_record(entry.get("controller"))
            if controller is None or expiry.get(str(entry.get("heartbeat")), 0.0) <= now:
                continue
            if controller.host == here and not controller.is_alive():
                continue
            found[pair] = controller
        return found

    async def holder_of(self, task: str, job: str) -> Holder | None:
        """Return who holds ``task``'s ``job`` now, without claiming it; None if no one."""
        generation = 0
        while True:
            try:
                found = await self.repo.info(self._key(task, job, generation))
            except JobNotFoundError:
                return None
            holder = await self._standing_holder(found)
            if holder is not None:
                return holder
            generation += 1
