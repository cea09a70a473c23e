# Longer than 400 lines on purpose: every combinator is here, because they share the
# rules for narrowing ids and for what a view may write or delete.
"""Repositories built from other repositories: intersections, unions, exclusions and views.

Every combinator here but :class:`RelatedItemRepository` is a read view, offering no
``dump``, ``open``, ``load`` or ``save``: a value is written into the underlying
repositories, and the combinator shows it from then on. A :class:`RelatedItemRepository`
offers the value methods of its base, reading and writing the item each id translates
to. ``delete`` is forwarded as each class documents.

Ids are checked once, by the public methods of :class:`Repository`, against
:meth:`~pydatatask.Repository.check_job_id`; each combinator narrows that check to the
ids its underlying repositories can hold, so a combinator rejects exactly what would be
rejected below it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, cast

from pydatatask.codecs import Codec
from pydatatask.errors import ConfigurationError, InvalidJobIdError, JobNotFoundError
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.streams import ByteReader, ByteWriter

__all__ = [
    "AggregateAndRepository",
    "AggregateOrRepository",
    "BlockingRepository",
    "MapRepository",
    "RelatedItemRepository",
]

logger = logging.getLogger(__name__)

_MISSING: Any = object()


def _require_repository(role: str, value: object) -> Repository:
    if not isinstance(value, Repository):
        raise ConfigurationError(f"{role} must be a Repository, not {type(value).__name__}")
    return value


def _require_children(owner: str, children: dict[str, Repository]) -> Mapping[str, Repository]:
    if not children:
        raise ConfigurationError(f"{owner} needs at least one child repository")
    for name, child in children.items():
        _require_repository(f"{owner} child {name!r}", child)
    return MappingProxyType(dict(children))


def _describe(children: Mapping[str, Repository]) -> str:
    return ", ".join(f"{name}={child!r}" for name, child in children.items())


async def _info_or_missing(repo: Repository, job: str) -> Any:
    """Return ``repo.info(job)``, or :data:`_MISSING` if it vanished since it was listed."""
    try:
        return await repo.info(job)
    except JobNotFoundError:
        return _MISSING


class AggregateAndRepository(Repository):
    """The ids present in every child; ``info(job)`` is ``{name: child.info(job)}``.

    An id is valid here only when every child can hold it. ``delete`` removes the id from
    every child.

    :raises ConfigurationError: when no child is given.
    """

    def __init__(self, **children: Repository) -> None:
        self.children: Mapping[str, Repository] = _require_children(type(self).__name__, children)
        """The child repositories by name, in the order given."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {_describe(self.children)}>"

    def parts(self) -> tuple[Repository, ...]:
        """Return the children."""
        return tuple(self.children.values())

    def check_job_id(self, job: object) -> str:
        """Return ``job`` if every child can hold it, else raise :class:`InvalidJobIdError`."""
        checked = super().check_job_id(job)
        for child in self.children.values():
            child.check_job_id(checked)
        return checked

    async def _iter_ids(self) -> AsyncIterator[str]:
        # One bulk listing per child rather than one lookup per id and child.
        first, *rest = self.children.values()
        others = await asyncio.gather(*(child.ids() for child in rest))
        async for job in first:
            if all(job in ids for ids in others):
                yield job

    async def ids(self) -> set[str]:
        """Return the ids present in every child."""
        first, *rest = await asyncio.gather(*(child.ids() for child in self.children.values()))
        return first.intersection(*rest)

    async def _contains(self, job: str) -> bool:
        found = await asyncio.gather(*(child.contains(job) for child in self.children.values()))
        return all(found)

    async def _info(self, job: str) -> dict[str, Any]:
        # Check presence first: a child may document a default info for absent ids.
        if not await self._contains(job):
            raise JobNotFoundError(job, self)
        values = await asyncio.gather(
            *(_info_or_missing(child, job) for child in self.children.values())
        )
        if any(value is _MISSING for value in values):
            raise JobNotFoundError(job, self)
        return dict(zip(self.children, values, strict=True))

    async def info_all(self) -> dict[str, dict[str, Any]]:
        """Return ``{job: {name: info}}`` for every id present in every child."""
        names = list(self.children)
        everything = await asyncio.gather(*(child.info_all() for child in self.children.values()))
        first, *rest = everything
        return {
            job: {name: values[job] for name, values in zip(names, everything, strict=True)}
            for job in first
            if all(job in values for values in rest)
        }

    async def _delete(self, job: str) -> None:
        await asyncio.gather(*(child.delete(job) for child in self.children.values()))

    async def validate(self) -> None:
        """Validate every child."""
        await asyncio.gather(*(child.validate() for child in self.children.values()))


class AggregateOrRepository(Repository):
    """The ids present in any child; ``info(job)`` is ``{name: info}`` of the children holding it.

    An id is valid here when at least one child can hold it; children that cannot hold
    it are skipped. Listing yields each id once. ``delete`` removes the id from every
    child that can hold it.

    :raises ConfigurationError: when no child is given.
    """

    def __init__(self, **children: Repository) -> None:
        self.children: Mapping[str, Repository] = _require_children(type(self).__name__, children)
        """The child repositories by name, in the order given."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {_describe(self.children)}>"

    def parts(self) -> tuple[Repository, ...]:
        """Return the children."""
        return tuple(self.children.values())

    def check_job_id(self, job: object) -> str:
        """Return ``job`` if some child can hold it, else raise :class:`InvalidJobIdError`."""
        checked = super().check_job_id(job)
        if any(child.is_valid_job_id(checked) for child in self.children.values()):
            return checked
        raise InvalidJobIdError(checked, "no child repository can hold it")

    def _holders(self, job: str) -> dict[str, Repository]:
        return {name: child for name, child in self.children.items() if child.is_valid_job_id(job)}

    async def _iter_ids(self) -> AsyncIterator[str]:
        seen: set[str] = set()
        for child in self.children.values():
            async for job in child:
                if job not in seen:
                    seen.add(job)
                    yield job

    async def ids(self) -> set[str]:
        """Return the ids present in any child."""
        sets = await asyncio.gather(*(child.ids() for child in self.children.values()))
        return set().union(*sets)

    async def _contains(self, job: str) -> bool:
        found = await asyncio.gather(
            *(child.contains(job) for child in self._holders(job).values())
        )
        return any(found)

    async def _info(self, job: str) -> dict[str, Any]:
        holders = self._holders(job)
        # Check presence first: a child may document a default info for absent ids.
        found = await asyncio.gather(*(child.contains(job) for child in holders.values()))
        present = [name for name, here in zip(holders, found, strict=True) if here]
        values = await asyncio.gather(*(_info_or_missing(holders[name], job) for name in present))
        result = dict(zip(present, values, strict=True))
        result = {name: value for name, value in result.items() if value is not _MISSING}
        if not result:
            raise JobNotFoundError(job, self)
        return result

    async def info_all(self) -> dict[str, dict[str, Any]]:
        """Return ``{job: {name: info}}`` for every id present in any child."""
        everything = await asyncio.gather(*(child.info_all() for child in self.children.values()))
        result: dict[str, dict[str, Any]] = {}
        for name, values in zip(self.children, everything, strict=True):
            for job, value in values.items():
                result.setdefault(job, {})[name] = value
        return result

    async def _delete(self, job: str) -> None:
        await asyncio.gather(*(child.delete(job) for child in self._holders(job).values()))

    async def validate(self) -> None:
        """Validate every child."""
        await asyncio.gather(*(child.validate() for child in self.children.values()))


class BlockingRepository(Repository):
    """The ids of ``source`` that are not in ``unless``; ``info`` is the source's.

    ``info`` of a blocked id raises :class:`JobNotFoundError`; any other id behaves as it
    does in ``source``. ``delete`` is forwarded to ``source`` only: ``unless`` is never
    changed through this view.
    """

    def __init__(self, source: Repository, unless: Repository) -> None:
        self.source = _require_repository("BlockingRepository source", source)
        """The repository whose ids are shown."""
        self.unless = _require_repository("BlockingRepository unless", unless)
        """The repository whose ids are hidden."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} source={self.source!r} unless={self.unless!r}>"

    def parts(self) -> tuple[Repository, ...]:
        """Return ``source`` and ``unless``."""
        return (self.source, self.unless)

    def check_job_id(self, job: object) -> str:
        """Return ``job`` if ``source`` can hold it, else raise :class:`InvalidJobIdError`."""
        return self.source.check_job_id(super().check_job_id(job))

    async def _blocked(self, job: str) -> bool:
        return self.unless.is_valid_job_id(job) and await self.unless.contains(job)

    async def _iter_ids(self) -> AsyncIterator[str]:
        blocked = await self.unless.ids()
        async for job in self.source:
            if job not in blocked:
                yield job

    async def ids(self) -> set[str]:
        """Return the ids of ``source`` that are not in ``unless``."""
        shown, blocked = await asyncio.gather(self.source.ids(), self.unless.ids())
        return shown - blocked

    async def _contains(self, job: str) -> bool:
        return await self.source.contains(job) and not await self._blocked(job)

    async def _info(self, job: str) -> Any:
        if await self._blocked(job):
            raise JobNotFoundError(job, self)
        return await self.source.info(job)

    async def info_all(self) -> dict[str, Any]:
        """Return the source's ``{job: info}`` without the blocked ids."""
        everything, blocked = await asyncio.gather(self.source.info_all(), self.unless.ids())
        return {job: value for job, value in everything.items() if job not in blocked}

    async def _delete(self, job: str) -> None:
        await self.source.delete(job)

    async def validate(self) -> None:
        """Validate ``source`` and ``unless``."""
        await asyncio.gather(self.source.validate(), self.unless.validate())


class RelatedItemRepository(Repository):
    """Ids of ``translator`` shown as the ``base`` items they name.

    Id ``k`` is present when ``k`` is in ``translator`` and ``await translator.info(k)``
    is an id present in ``base``; ``info(k)`` is ``await base.info(translator.info(k))``.

    A translated value that is not a valid id of ``base`` (wrong type, bad characters)
    makes ``k`` absent: listings skip it with one warning, ``contains`` is false and
    ``info`` raises :class:`JobNotFoundError`.

    With ``prefetch_lookup`` (the default) a listing makes one ``translator.info_all()``
    and one ``base.ids()`` call (``info_all`` one ``base.info_all()``) instead of a lookup
    per id; turn it off when the translator is much larger than what is read of it.

    ``delete(k)`` is a no-op unless ``allow_deletes`` is true, because the base item may
    be shared by other ids and deleting through a view must not destroy shared data.
    With ``allow_deletes`` it deletes the related base item; ``translator`` is never
    changed.

    The view offers the value methods of ``base``, with ``k`` translated: over a
    :class:`MetadataRepository` it is one too (``dump(k, value)`` and
    ``create(k, value)`` write the base item ``k`` names), and over a
    :class:`BlobRepository` it is one too (``open(k, mode)`` in every mode, and the
    base's ``codec``), so ``isinstance`` tells what a view supports. Over either,
    ``load(k)`` and ``save(k, value)`` are the base's, with its codec. ``info(k)`` is
    whatever ``base.info`` gives for the translated id, including a default the base
    documents for absent ids. Reading or writing an id the translator does not map to a
    valid base id raises :class:`JobNotFoundError`, as does reading a base item that is
    absent.
    """

    def __new__(
        cls,
        base: Repository,
        translator: Repository,
        allow_deletes: bool = False,
        prefetch_lookup: bool = True,
    ) -> RelatedItemRepository:
        """Make the view a metadata and/or blob repository when ``base`` is one."""
        kind = cls
        if cls is RelatedItemRepository:
            kind = _RELATED_KINDS[
                isinstance(base, MetadataRepository), isinstance(base, BlobRepository)
            ]
        return super().__new__(kind)

    def __init__(
        self,
        base: Repository,
        translator: Repository,
        allow_deletes: bool = False,
        prefetch_lookup: bool = True,
    ) -> None:
        self.base = _require_repository("RelatedItemRepository base", base)
        """The repository holding the items."""
        self.translator = _require_repository("RelatedItemRepository translator", translator)
        """The repository whose ``info(k)`` is the id of ``k``'s item in :attr:`base`."""
        self.allow_deletes = allow_deletes
        self.prefetch_lookup = prefetch_lookup

    def __repr__(self) -> str:
        # The kinds chosen by __new__ are private: show the public class they stand for.
        kind = next(cls for cls in type(self).__mro__ if not cls.__name__.startswith("_"))
        return (
            f"<{kind.__name__} base={self.base!r} translator={self.translator!r}"
            f" allow_deletes={self.allow_deletes} prefetch_lookup={self.prefetch_lookup}>"
        )

    def parts(self) -> tuple[Repository, ...]:
        """Return ``translator`` (whose ids this view lists) and ``base``."""
        return (self.translator, self.base)

    def check_job_id(self, job: object) -> str:
        """Return ``job`` if ``translator`` can hold it, else raise :class:`InvalidJobIdError`."""
        return self.translator.check_job_id(super().check_job_id(job))

    async def _target(self, job: str) -> str | None:
        """Return the base id ``job`` translates to, or None when there is none."""
        # Check presence first: the translator may document a default info for absent ids.
        if not await self.translator.contains(job):
            return None
        return await self._lookup(job, None)

    async def _lookup(self, job: str, invalid: list[str] | None) -> str | None:
        try:
            target = await self.translator.info(job)
        except JobNotFoundError:
            return None
        if not self.base.is_valid_job_id(target):
            if invalid is None:
                logger.debug("%r: %r translates to %r, not a valid id", self, job, target)
            else:
                invalid.append(job)
            return None
        return str(target)

    async def _require_target(self, job: str) -> str:
        """Return the base id ``job`` translates to; raise :class:`JobNotFoundError` if none."""
        target = await self._target(job)
        if target is None:
            raise JobNotFoundError(job, self)
        return target

    def _valid_targets(self, mapping: dict[str, Any]) -> dict[str, str]:
        valid: dict[str, str] = {}
        invalid: list[str] = []
        for job, target in mapping.items():
            if self.base.is_valid_job_id(target):
                valid[job] = target
            else:
                invalid.append(job)
        self._warn_invalid(invalid)
        return valid

    def _warn_invalid(self, invalid: list[str]) -> None:
        self._warn_skipped(invalid, f"ids whose translation is not a valid id of {self.base!r}")

    async def _slow_pairs(self) -> AsyncIterator[tuple[str, str]]:
        """Yield ``(job, base id)`` for every id present, looking each one up."""
        invalid: list[str] = []
        try:
            async for job in self.translator:
                target = await self._lookup(job, invalid)
                if target is not None and await self.base.contains(target):
                    yield job, target
        finally:
            self._warn_invalid(invalid)

    async def _iter_ids(self) -> AsyncIterator[str]:
        if self.prefetch_lookup:
            mapping, present = await asyncio.gather(self.translator.info_all(), self.base.ids())
            for job, target in self._valid_targets(mapping).items():
                if target in present:
                    yield job
        else:
            async for job, _ in self._slow_pairs():
                yield job

    async def _contains(self, job: str) -> bool:
        target = await self._target(job)
        return target is not None and await self.base.contains(target)

    async def _info(self, job: str) -> Any:
        return await self.base.info(await self._require_target(job))

    async def info_all(self) -> dict[str, Any]:
        """Return ``{k: base info}`` for every id present."""
        if self.prefetch_lookup:
            mapping, items = await asyncio.gather(self.translator.info_all(), self.base.info_all())
            return {
                job: items[target]
                for job, target in self._valid_targets(mapping).items()
                if target in items
            }
        result: dict[str, Any] = {}
        async for job, target in self._slow_pairs():
            value = await _info_or_missing(self.base, target)
            if value is not _MISSING:
                result[job] = value
        return result

    async def _delete(self, job: str) -> None:
        if not self.allow_deletes:
            return
        target = await self._target(job)
        if target is not None:
            await self.base.delete(target)

    async def validate(self) -> None:
        """Validate ``base`` and ``translator``."""
        await asyncio.gather(self.base.validate(), self.translator.validate())


# The kinds RelatedItemRepository.__new__ picks from; each is chosen only for a base of
# its kind, which is what makes the casts below true.


class _RelatedValueRepository(RelatedItemRepository):
    """``load`` and ``save`` of a base that holds values, with the id translated."""

    async def load(self, job: str) -> Any:
        """Return ``base.load`` of the item ``job`` translates to.

        :raises JobNotFoundError: when ``job`` translates to no item, or it is absent.
        """
        target = await self._require_target(self.check_job_id(job))
        return await cast(MetadataRepository | BlobRepository, self.base).load(target)

    async def save(self, job: str, value: Any) -> None:
        """Store ``value`` with ``base.save`` as the item ``job`` translates to.

        :raises JobNotFoundError: when ``job`` translates to no valid id of ``base``.
        """
        target = await self._require_target(self.check_job_id(job))
        await cast(MetadataRepository | BlobRepository, self.base).save(target, value)


class _RelatedMetadataRepository(_RelatedValueRepository, MetadataRepository):
    """A :class:`RelatedItemRepository` whose base is a :class:`MetadataRepository`."""

    async def _dump(self, job: str, value: Any) -> None:
        target = await self._require_target(job)
        await cast(MetadataRepository, self.base).dump(target, value)

    async def _create(self, job: str, value: Any) -> bool:
        target = await self._require_target(job)
        return await cast(MetadataRepository, self.base).create(target, value)


class _RelatedBlobRepository(_RelatedValueRepository, BlobRepository):
    """A :class:`RelatedItemRepository` whose base is a :class:`BlobRepository`."""

    @property
    def codec(self) -> Codec:
        """The codec of ``base``, which ``load`` and ``save`` use."""
        return cast(BlobRepository, self.base).codec

    async def _open_reader(self, job: str) -> ByteReader:
        target = await self._require_target(job)
        return await cast(BlobRepository, self.base).open(target, "rb")

    async def _open_writer(self, job: str) -> ByteWriter:
        target = await self._require_target(job)
        return await cast(BlobRepository, self.base).open(target, "wb")


class _RelatedBlobMetadataRepository(_RelatedBlobRepository, _RelatedMetadataRepository):
    """A :class:`RelatedItemRepository` whose base is both (a YAML file repository)."""


_RELATED_KINDS: dict[tuple[bool, bool], type[RelatedItemRepository]] = {
    (False, False): RelatedItemRepository,
    (True, False): _RelatedMetadataRepository,
    (False, True): _RelatedBlobRepository,
    (True, True): _RelatedBlobMetadataRepository,
}


class MapRepository(Repository):
    """A view of ``child`` whose ``info`` is ``await func(info)`` and whose ids pass ``filt``.

    This is what :meth:`Repository.map` returns. Ids are the child's ids for which
    ``await filt(job)`` is true (all of them when ``filt`` is None). ``info(job)`` is
    ``await func(await child.info(job))`` for any id, as in pydatatask 0.4: ``filt``
    decides what is listed and contained, not what can be looked up, so an absent id
    behaves as it does in ``child``. ``delete`` is forwarded to ``child`` only when
    ``allow_deletes`` is true and is otherwise a no-op, so a view cannot destroy the data
    it shows.
    """

    def __init__(
        self,
        child: Repository,
        func: Callable[[Any], Awaitable[Any]],
        filt: Callable[[str], Awaitable[bool]] | None = None,
        allow_deletes: bool = False,
    ) -> None:
        self.child = _require_repository("MapRepository child", child)
        """The repository this view shows."""
        if not callable(func):
            raise ConfigurationError(f"MapRepository func must be callable, not {func!r}")
        if filt is not None and not callable(filt):
            raise ConfigurationError(f"MapRepository filt must be callable or None, not {filt!r}")
        self.func = func
        self.filt = filt
        self.allow_deletes = allow_deletes

    def __repr__(self) -> str:
        func = getattr(self.func, "__qualname__", repr(self.func))
        filt = "" if self.filt is None else f" filt={getattr(self.filt, '__qualname__', self.filt)}"
        return f"<{type(self).__name__} child={self.child!r} func={func}{filt}>"

    def parts(self) -> tuple[Repository, ...]:
        """Return the child."""
        return (self.child,)

    def check_job_id(self, job: object) -> str:
        """Return ``job`` if ``child`` can hold it, else raise :class:`InvalidJobIdError`."""
        return self.child.check_job_id(super().check_job_id(job))

    async def _passes(self, job: str) -> bool:
        return self.filt is None or await self.filt(job)

    async def _iter_ids(self) -> AsyncIterator[str]:
        async for job in self.child:
            if await self._passes(job):
                yield job

    async def ids(self) -> set[str]:
        """Return the child's ids that pass ``filt``."""
        jobs = await self.child.ids()
        if self.filt is None:
            return jobs
        return {job for job in jobs if await self._passes(job)}

    async def _contains(self, job: str) -> bool:
        return await self.child.contains(job) and await self._passes(job)

    async def _info(self, job: str) -> Any:
        return await self.func(await self.child.info(job))

    async def info_all(self) -> dict[str, Any]:
        """Return ``{job: await func(info)}`` for every id that passes ``filt``."""
        result: dict[str, Any] = {}
        # One at a time: func is user code that may not expect to run concurrently.
        for job, value in (await self.child.info_all()).items():
            if await self._passes(job):
                result[job] = await self.func(value)
        return result

    async def _delete(self, job: str) -> None:
        if self.allow_deletes:
            await self.child.delete(job)

    async def validate(self) -> None:
        """Validate ``child``."""
        await self.child.validate()
