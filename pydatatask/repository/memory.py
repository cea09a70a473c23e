"""Repositories that keep their values in this process's memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from pydatatask.codecs import Codec, codec_for
from pydatatask.errors import JobNotFoundError
from pydatatask.repository.base import (
    BlobRepository,
    MetadataRepository,
    Repository,
    value_token,
)
from pydatatask.streams import ByteReader, BytesReader, ByteWriter

__all__ = ["InProcessBlobRepository", "InProcessMetadataRepository"]

_ABSENT = object()


class _DictRepository(Repository):
    """Listing, membership, lookup and deletion over the dict ``self.data``.

    Writes made through the repository are told to whoever follows its changes (a
    controller running forever); changes made to ``data`` directly are seen only at
    the next listing.
    """

    data: dict[str, Any]
    _listeners: list[Callable[[str], None]] | None = None
    """Who follows this repository's changes; None while nobody does."""

    def _changed(self, job: str) -> None:
        """Tell the followers that ``job`` was written or deleted (callers check there are)."""
        for heard in self._listeners or ():
            heard(job)

    def _changes(self) -> Callable[[asyncio.Event], AsyncIterator[set[str]]]:
        return self._follow_changes

    async def _follow_changes(self, stop: asyncio.Event) -> AsyncIterator[set[str]]:
        """Yield an empty set (it listens), then the ids written or deleted since the last yield."""
        pending: set[str] = set()
        arrived = asyncio.Event()

        def heard(job: str) -> None:
            pending.add(job)
            arrived.set()

        if self._listeners is None:
            self._listeners = []
        self._listeners.append(heard)
        try:
            yield set()
            while not stop.is_set():
                await arrived.wait()
                arrived.clear()
                jobs = set(pending)
                pending.clear()
                yield jobs
        finally:
            self._listeners.remove(heard)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({len(self.data)} items)>"

    async def _iter_ids(self) -> AsyncIterator[str]:
        for job in list(self.data):
            yield job

    async def ids(self) -> set[str]:
        """Return the set of valid ids present (checking only ids not seen valid before)."""
        return self._valid_ids()

    def _valid_ids(self) -> set[str]:
        return self._keep_valid(set(self.data), type(self).check_job_id is Repository.check_job_id)

    async def _contains(self, job: str) -> bool:
        return job in self.data

    async def _contains_many(self, jobs: list[str]) -> set[str]:
        return self.data.keys() & jobs

    async def _delete(self, job: str) -> None:
        self.data.pop(job, None)
        if self._listeners:
            self._changed(job)

    async def _info(self, job: str) -> Any:
        try:
            return self.data[job]
        except KeyError:
            raise JobNotFoundError(job, self) from None

    async def _tokens(self, jobs: list[str]) -> dict[str, str]:
        data = self.data
        return {job: value_token(data[job]) for job in jobs if job in data}

    @property
    def tokens_at_hand(self) -> bool:
        """True, unless a subclass takes its tokens its own way."""
        return type(self)._tokens is _DictRepository._tokens

    def token_at_hand(self, job: str) -> str | None:
        """Return the token of ``job``'s value, or None when it is absent."""
        value = self.data.get(job, _ABSENT)
        return None if value is _ABSENT else value_token(value)


class InProcessMetadataRepository(_DictRepository, MetadataRepository):
    """Structured values in a dict. Values are stored by reference, as a dict would.

    ``create`` is atomic among the tasks of one event loop: it checks and stores without
    yielding to another task.

    :param data: the dict to use (not copied), or None for a new empty one.
    """

    atomic_create: ClassVar[bool] = True
    """Atomic within one process's event loop only, as ``create`` checks and stores without
    yielding, and no other process or host can see the dict. Callers on other threads'
    event loops sharing one repository are not covered."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data = {} if data is None else data

    async def info_all(self) -> dict[str, Any]:
        """Return ``{job: value}`` for every valid id."""
        data = self.data
        valid = self._valid_ids()
        if len(valid) == len(data):
            return dict(data)
        return {job: data[job] for job in valid}

    async def _dump(self, job: str, value: Any) -> None:
        self.data[job] = value
        if self._listeners:
            self._changed(job)

    async def _create(self, job: str, value: Any) -> bool:
        if job in self.data:
            return False
        self.data[job] = value
        if self._listeners:
            self._changed(job)
        return True


class _MemoryWriter(ByteWriter):
    def __init__(self, repository: InProcessBlobRepository, job: str) -> None:
        self._repository = repository
        self._job = job
        self._chunks: list[bytes] = []

    async def _write(self, data: bytes) -> None:
        self._chunks.append(data)

    async def _commit(self) -> None:
        repository = self._repository
        repository.data[self._job] = b"".join(self._chunks)
        self._chunks = []
        if repository._listeners:
            repository._changed(self._job)

    async def _discard(self) -> None:
        self._chunks = []


class InProcessBlobRepository(_DictRepository, BlobRepository):
    """Byte values in a dict; ``info(job)`` is the stored bytes.

    :param data: initial values; ``str`` values are stored UTF-8 encoded.
    :param codec: the codec of ``load`` and ``save``: a name such as ``"json"`` or a
        :class:`~pydatatask.codecs.Codec`; None is the ``"bytes"`` codec.
    :raises ConfigurationError: for an unknown codec name.
    """

    def __init__(
        self, data: dict[str, bytes | str] | None = None, *, codec: str | Codec | None = None
    ) -> None:
        self.data = {
            job: value.encode("utf-8") if isinstance(value, str) else value
            for job, value in (data or {}).items()
        }
        self._codec = codec_for(codec)

    async def _open_reader(self, job: str) -> ByteReader:
        return BytesReader(await self._info(job))

    async def _open_writer(self, job: str) -> ByteWriter:
        return _MemoryWriter(self, job)
