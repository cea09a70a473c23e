# Just over 400 lines: one collection as a repository, and following its change stream,
# which needs the same driver differences (pymongo async or motor) handled in one place.
"""A metadata repository stored in a MongoDB collection, one document per job.

Each job is the document ``{"_id": job, "value": value}``, so ``info(job)`` returns
exactly what ``dump`` stored. A document of any other shape is read as pydatatask 0.4
wrote it, ``{"_id": job, **value}``: its value is the document without ``_id``. The
collection comes from a session accessor and may belong to either of the two asyncio
drivers:

- :class:`pymongo.AsyncMongoClient` (recommended), whose collections are
  ``pymongo.asynchronous.collection.AsyncCollection``;
- motor's ``AsyncIOMotorClient``. Motor is deprecated in favour of PyMongo's async API
  and reaches end of life on 14 May 2026; it keeps working here for existing code.

Only the operations both drivers share are used: ``find``, ``find_one``,
``insert_one``, ``replace_one``, ``delete_one``, ``watch`` and ``database.command``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, cast

from pydatatask._optional import import_optional
from pydatatask.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    JobNotFoundError,
    UnstorableValueError,
)
from pydatatask.repository.base import MetadataRepository, value_token

if TYPE_CHECKING:
    import bson
    import bson.codec_options as bson_codec_options
    import bson.errors as bson_errors
    import bson.int64 as bson_int64
    import bson.raw_bson as bson_raw
    import motor.motor_asyncio
    import pymongo
    import pymongo.asynchronous.collection
    import pymongo.errors as pymongo_errors
    from pymongo.client_options import ClientOptions

    _Collection = (
        pymongo.asynchronous.collection.AsyncCollection[Any]
        | motor.motor_asyncio.AsyncIOMotorCollection[Any]
    )
else:
    bson = import_optional("bson", "mongodb")
    bson_codec_options = import_optional("bson.codec_options", "mongodb")
    bson_errors = import_optional("bson.errors", "mongodb")
    bson_int64 = import_optional("bson.int64", "mongodb")
    bson_raw = import_optional("bson.raw_bson", "mongodb")
    pymongo = import_optional("pymongo", "mongodb")
    pymongo_errors = import_optional("pymongo.errors", "mongodb")

__all__ = ["MAX_DOCUMENT_SIZE", "MongoMetadataRepository"]

logger = logging.getLogger(__name__)

MAX_DOCUMENT_SIZE = 16 * 1024 * 1024
"""The largest BSON document MongoDB stores, in bytes, including ``_id`` and field names."""

_VALUE = "value"
_TOKEN_BATCH = 10_000
"""Jobs whose values are read to hash them in one query."""
_BACKSTOP_GRACE = 5.0
_CHANGE_FIELDS = [{"$project": {"operationType": 1, "documentKey": 1}}]
"""A change stream sends only what names the document, never the document itself."""
_STREAM_ENDINGS = frozenset({"drop", "rename", "dropDatabase", "invalidate"})


class MongoMetadataRepository(MetadataRepository):
    """Store structured values in a MongoDB collection, one document per job.

    ``collection`` is a session accessor (for example a :class:`~pydatatask.Resource`)
    that returns an async collection of :class:`pymongo.AsyncMongoClient` or of motor;
    it is called on every use, so the repository can be built before the session opens.
    ``subcollection`` selects ``collection()[subcollection]``, the collection named
    ``<collection>.<subcollection>``.

    Values are what BSON can hold: dicts with string keys, lists (tuples come back as
    lists), strings, ints up to 64 bits, floats, booleans, ``None``, bytes and
    datetimes (stored with millisecond precision, returned naive in UTC unless the
    client is ``tz_aware``). ``dump`` replaces a job's document in one atomic
    ``replace_one`` with ``upsert``. ``create`` is one ``insert_one``, which the server
    refuses with a duplicate key error when the job's ``_id`` exists, so it is atomic
    among processes and hosts.

    ``validate`` runs a ``ping`` on the collection's database and fails after
    ``validate_timeout`` seconds. Every other operation is bounded only by the client's
    own timeouts, so create the client with ``serverSelectionTimeoutMS``,
    ``connectTimeoutMS`` and ``timeoutMS``.

    Documents whose ``_id`` is not a string, or not a valid job id, are not listed.

    :raises UnstorableValueError: from ``dump`` when the value cannot be encoded as BSON
        (a :class:`TypeError`).
    :raises BackendError: when the value's document would exceed
        :data:`MAX_DOCUMENT_SIZE`, or when the server rejects an operation.
    :raises BackendUnavailableError: when the server cannot be reached in time.
    :raises ConfigurationError: when ``subcollection`` is not a valid collection name.
    """

    atomic_create: ClassVar[bool] = True
    """Atomic, as ``create`` is one ``insert_one``, refused when the ``_id`` exists."""

    def __init__(
        self,
        collection: Callable[[], Any],
        subcollection: str | None = None,
        *,
        validate_timeout: float = 10.0,
    ) -> None:
        if subcollection is not None and (
            not subcollection or "$" in subcollection or "\0" in subcollection
        ):
            raise ConfigurationError(
                f"invalid MongoDB subcollection name {subcollection!r}: it must be non-empty "
                "and contain no '$' or NUL"
            )
        # Typed for the calls made here; callers' collections need no type stubs.
        self._collection_accessor: Callable[[], _Collection] = collection
        self.subcollection = subcollection
        self.validate_timeout = validate_timeout

    def __repr__(self) -> str:
        name = getattr(self._collection_accessor, "name", None) or repr(self._collection_accessor)
        suffix = f"[{self.subcollection!r}]" if self.subcollection is not None else ""
        return f"<MongoMetadataRepository {name}{suffix}>"

    def collection(
        self,
    ) -> (
        pymongo.asynchronous.collection.AsyncCollection[Any]
        | motor.motor_asyncio.AsyncIOMotorCollection[Any]
    ):
        """Return the live collection this repository stores its documents in.

        :raises LifecycleError: when the accessor's session is closed.
        """
        collection = self._collection_accessor()
        if self.subcollection is not None:
            collection = collection[self.subcollection]
        return collection

    def _target(self) -> _Collection:
        """Return the collection, decoding with this repository's codec options."""
        collection = self.collection()
        return collection.with_options(codec_options=_value_codec_options(collection))

    @contextlib.contextmanager
    def _translated(
        self, collection: _Collection, action: str, job: str | None = None
    ) -> Iterator[None]:
        """Turn the driver's errors raised inside the block into pydatatask errors."""
        try:
            yield
        except (pymongo_errors.PyMongoError, bson_errors.BSONError) as exc:
            subject = f" job {job!r}" if job is not None else ""
            where = f"{self!r} ({_collection_name(collection)})"
            if isinstance(exc, pymongo_errors.DocumentTooLarge):
                raise BackendError(
                    f"{where}: cannot {action}{subject}: its document is too large for "
                    f"MongoDB: {exc}"
                ) from exc
            if isinstance(exc, bson_errors.InvalidDocument):
                raise UnstorableValueError(
                    f"{where}: cannot {action}{subject}: "
                    f"the value cannot be encoded as BSON: {exc}",
                    job or "",
                    "bson",
                ) from exc
            if isinstance(exc, pymongo_errors.ConnectionFailure) or getattr(exc, "timeout", False):
                raise BackendUnavailableError(
                    f"{where}: cannot {action}{subject}: the MongoDB server at "
                    f"{_servers(collection)} could not be reached in time: {exc}"
                ) from exc
            raise BackendError(f"{where}: cannot {action}{subject}: {exc}") from exc

    async def _iter_ids(self) -> AsyncIterator[str]:
        collection = self._target()
        foreign = 0
        with self._translated(collection, "list the jobs"):
            cursor = collection.find({}, {"_id": 1})
            try:
                async for document in cursor:
                    job = document.get("_id")
                    if isinstance(job, str):
                        yield job
                    else:
                        foreign += 1
            finally:
                await _maybe_await(cursor.close())
        if foreign:
            logger.warning("%r: skipped %d documents whose _id is not a string", self, foreign)

    def _changes(self) -> Callable[[asyncio.Event], AsyncIterator[set[str]]]:
        """Follow the collection's change stream (MongoDB needs a replica set for one)."""
        return self._follow_changes

    async def _follow_changes(self, stop: asyncio.Event) -> AsyncIterator[set[str]]:
        """Yield an empty set once the stream is open, then each changed document's id.

        :raises BackendError: when the server gives no change stream (a standalone
            MongoDB), or when the collection is dropped or renamed, which ends the stream.
        """
        collection = self.collection()
        with self._translated(collection, "follow the changes"):
            opened: Any = collection.watch(_CHANGE_FIELDS)
            stream = await opened if inspect.isawaitable(opened) else opened
            async with stream:  # open now with either driver
                yield set()
                async for change in stream:
                    key = change.get("documentKey", {}).get("_id")
                    if isinstance(key, str):
                        yield {key}
                    elif change.get("operationType") in _STREAM_ENDINGS:
                        raise BackendError(
                            f"{self!r}: its change stream ended with "
                            f"{change['operationType']!r} (the collection or its database "
                            "was dropped or renamed)"
                        )
                    if stop.is_set():
                        return

    async def _contains(self, job: str) -> bool:
        collection = self._target()
        with self._translated(collection, "look up", job):
            document = await collection.find_one({"_id": job}, {"_id": 1})
        return document is not None

    async def _delete(self, job: str) -> None:
        collection = self._target()
        with self._translated(collection, "delete", job):
            await collection.delete_one({"_id": job})

    async def _info(self, job: str) -> Any:
        collection = self._target()
        with self._translated(collection, "read", job):
            document = await collection.find_one({"_id": job})
        if document is None:
            raise JobNotFoundError(job, self)
        return self._value_of(document)

    async def _tokens(self, jobs: list[str]) -> dict[str, str]:
        """Hash each present job's value, reading the documents in batches of one query."""
        collection = self._target()
        found: dict[str, str] = {}
        for start in range(0, len(jobs), _TOKEN_BATCH):
            batch = jobs[start : start + _TOKEN_BATCH]
            with self._translated(collection, "read the values to hash"):
                cursor = collection.find({"_id": {"$in": batch}})
                try:
                    async for document in cursor:
                        job = document["_id"]
                        found[job] = value_token(self._value_of(document))
                finally:
                    await _maybe_await(cursor.close())
        return found

    async def info_all(self) -> dict[str, Any]:
        """Return ``{job: value}`` for every valid id, in one query."""
        collection = self._target()
        result: dict[str, Any] = {}
        with self._translated(collection, "read every job"):
            cursor = collection.find({})
            try:
                async for document in cursor:
                    job = document.get("_id")
                    if self.is_valid_job_id(job):
                        result[job] = self._value_of(document)
            finally:
                await _maybe_await(cursor.close())
        return result

    async def _dump(self, job: str, value: Any) -> None:
        collection = self._target()
        raw_document = self._encode(collection, job, value)
        with self._translated(collection, "store", job):
            await collection.replace_one({"_id": job}, raw_document, upsert=True)

    async def _create(self, job: str, value: Any) -> bool:
        collection = self._target()
        raw_document = self._encode(collection, job, value)
        with self._translated(collection, "create", job):
            try:
                await collection.insert_one(raw_document)
            except pymongo_errors.DuplicateKeyError:
                return False
        return True

    async def validate(self) -> None:
        """Ping the server so connection problems show when the pipeline opens.

        :raises BackendUnavailableError: when the server does not answer within
            ``validate_timeout`` seconds.
        """
        collection = self._target()
        with self._translated(collection, "reach the server"):
            try:
                # The driver's own deadline ends the attempt cleanly; cancelling it from
                # outside can leave a half-open socket, so that is only a backstop.
                deadline = self._validate_deadline(collection)
                async with asyncio.timeout(deadline + _BACKSTOP_GRACE):
                    with pymongo.timeout(deadline):
                        await collection.database.command("ping")
            except TimeoutError as exc:
                raise BackendUnavailableError(
                    f"{self!r} ({_collection_name(collection)}): the MongoDB server at "
                    f"{_servers(collection)} did not answer a ping within "
                    f"{deadline + _BACKSTOP_GRACE:g} s"
                ) from exc

    def _validate_deadline(self, collection: _Collection) -> float:
        """Return ``validate_timeout``, shortened to the client's own timeouts.

        A driver deadline replaces the client's server selection timeout, so without
        this a client configured to give up sooner would wait the whole time.
        """
        limits: list[float | None] = [self.validate_timeout]
        try:
            # motor's type stubs declare this property a method.
            options = cast("ClientOptions", collection.database.client.options)
            limits += [options.server_selection_timeout, options.timeout]
        except AttributeError:
            pass
        return min(limit for limit in limits if limit is not None and limit > 0)

    def _encode(self, collection: _Collection, job: str, value: Any) -> bson_raw.RawBSONDocument:
        """Encode the job's document once, checking that BSON can hold it and that it fits.

        The server may not enforce the size limit itself, so it is checked here.
        """
        options = collection.codec_options
        try:
            data = bson.encode({"_id": job, _VALUE: value}, codec_options=options)
        except (bson_errors.InvalidDocument, OverflowError) as exc:
            raise UnstorableValueError(
                f"{self!r}: cannot store the {type(value).__name__} value of job {job!r}: "
                f"it cannot be encoded as BSON: {exc}",
                job,
                "bson",
            ) from exc
        if len(data) > MAX_DOCUMENT_SIZE:
            raise BackendError(
                f"{self!r}: cannot store job {job!r}: its document is {len(data)} bytes of "
                f"BSON, more than MongoDB's limit of {MAX_DOCUMENT_SIZE} bytes"
            )
        return bson_raw.RawBSONDocument(data)

    @staticmethod
    def _value_of(document: dict[str, Any]) -> Any:
        """Return the value a stored document holds.

        ``{_id, value}`` is this repository's layout. Any other document is read as
        pydatatask 0.4 stored it, ``{_id, **value}``, so data written by 0.4 stays
        readable: its value is the document without ``_id``. (A 0.4 value that was
        exactly ``{"value": x}`` therefore reads as ``x``.)
        """
        if len(document) == 2 and _VALUE in document:
            return document[_VALUE]
        return {key: item for key, item in document.items() if key != "_id"}


class _Int64AsInt(bson_codec_options.TypeDecoder):
    """Decode BSON's 64-bit integers as plain ints, the type that was stored."""

    bson_type = bson_int64.Int64

    def transform_bson(self, value: Any) -> int:
        return int(value)


_TYPE_REGISTRY = bson_codec_options.TypeRegistry([_Int64AsInt()])


def _value_codec_options(collection: _Collection) -> bson_codec_options.CodecOptions[Any]:
    """Return the collection's codec options with plain dicts and ints for values.

    The client's time zone and UUID settings are kept; its document class and custom
    types are not, so that ``info`` returns the same kinds of value ``dump`` was given.
    """
    return collection.codec_options.with_options(document_class=dict, type_registry=_TYPE_REGISTRY)


async def _maybe_await(result: Any) -> None:
    """Await ``result`` when the driver returned an awaitable (pymongo) rather than None."""
    if inspect.isawaitable(result):
        await result


def _collection_name(collection: _Collection) -> str:
    return str(getattr(collection, "full_name", collection))


def _servers(collection: _Collection) -> str:
    """Name the servers the collection's client talks to, as ``host:port`` pairs.

    The client's ``address`` is unknown while nothing answers (and is a coroutine in
    PyMongo's async client), so the seed list from the topology is used instead.
    """
    try:
        description = collection.database.client.topology_description
        addresses = list(description.server_descriptions())
    except (AttributeError, TypeError):
        return "an unknown address"
    if not addresses:
        return "an unknown address"
    return ", ".join(f"{host}:{port}" for host, port in addresses)
