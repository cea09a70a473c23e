# Longer than 400 lines on purpose: the repository contracts and the id checks every one
# of them calls are one protocol; split apart, each part would import the others.
"""The repository contracts and the one place where job ids are validated.

A repository maps job ids to values. Public methods check the id and then call the
protected hook a backend implements, so no backend can forget the check.

Metadata and blob repositories also load and save plain Python values: a metadata
repository stores the value itself, a blob repository stores the bytes its
:class:`~pydatatask.codecs.Codec` makes of it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import json
import logging
import re
import unicodedata
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Set,
)
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

from pydatatask import yamltext
from pydatatask.codecs import BUILTIN_CODECS, Codec, decode_value, encode_value
from pydatatask.errors import InvalidJobIdError, JobNotFoundError, UnstorableValueError
from pydatatask.streams import ByteReader, ByteWriter, OpenMode, TextReader, TextWriter

if TYPE_CHECKING:
    from pydatatask.repository.combinators import MapRepository

__all__ = [
    "MAX_JOB_ID_LENGTH",
    "BlobRepository",
    "MetadataRepository",
    "Repository",
    "all_plain",
    "check_job_id",
    "drop_invalid",
    "leaves",
    "value_token",
    "yaml_of",
]

logger = logging.getLogger(__name__)

MAX_JOB_ID_LENGTH = 200
"""The longest job id, in characters and in UTF-8 bytes, that any repository accepts."""

_MAX_NAMED_INVALID = 5

_CHECKED: dict[re.Pattern[str] | None, set[str]] = {}
"""Ids found valid so far, per pattern: listings check the same ids again and again."""
_CHECKED_LIMIT = 1 << 22
"""Past this many remembered ids (per pattern), the memory starts afresh."""


def check_job_id(job: object, pattern: re.Pattern[str] | None = None, rule: str = "") -> str:
    """Return ``job`` if it is a valid job id, else raise :class:`InvalidJobIdError`.

    Every repository accepts only non-empty strings of at most :data:`MAX_JOB_ID_LENGTH`
    characters with no path separator, only printable characters (no control, format,
    unassigned or private-use character, and no white space but the plain space, which
    may not start or end an id), and not ``.`` or ``..``. A repository may narrow this
    with ``pattern`` (a full match), described by ``rule``.
    """
    checked = _CHECKED.get(pattern)
    if checked is not None and type(job) is str and job in checked:
        return job
    job = _check_rules(job, pattern, rule)
    if type(job) is str:  # a subclass could compare equal to what it is not
        if checked is None or len(checked) >= _CHECKED_LIMIT:
            checked = _CHECKED[pattern] = set()
        checked.add(job)
    return job


_PLAIN_TEXT = re.compile(r"[A-Za-z0-9_.,:;=+@%~\n-]*")
"""Ids of these characters (printable ASCII without a separator) that do not start with
``.`` pass every rule of :func:`check_job_id` but the length and a repository's own
pattern; joined by newlines, a million of them are matched at once."""


def all_plain(jobs: Set[Any], max_length: int = MAX_JOB_ID_LENGTH) -> bool:
    """Whether every id in ``jobs`` is plain text, starts with no ``.`` and is short enough.

    Such ids pass every rule of :func:`check_job_id` (with no pattern); a million of them
    are checked in one match over their text.
    """
    try:
        joined = "\n".join(jobs)
    except TypeError:  # not all of them are strings
        return False
    return (
        joined.count("\n") == len(jobs) - 1  # no id holds a newline of its own
        and not joined.startswith((".", "\n"))
        and "\n." not in joined
        and "\n\n" not in joined
        and not joined.endswith("\n")
        and _PLAIN_TEXT.fullmatch(joined) is not None
        and max(map(len, jobs)) <= min(max_length, MAX_JOB_ID_LENGTH)
    )


def yaml_of(repo: Repository, job: str, value: Any) -> str:
    """Return ``value`` as the YAML text a YAML metadata repository stores for ``job``.

    :raises UnstorableValueError: for a value YAML cannot hold.
    """
    try:
        return yamltext.dump(value)
    except yamltext.YamlError as exc:
        raise UnstorableValueError(
            f"{repo!r}: cannot store the {type(value).__name__} value of job {job!r} "
            f"as YAML: {exc}",
            job,
            "yaml",
        ) from exc


def leaves(repo: Repository) -> Iterator[Repository]:
    """Yield the stores under ``repo``: itself, or those its views are made of, recursively."""
    parts = repo.parts()
    if not parts:
        yield repo
    for part in parts:
        yield from leaves(part)


def drop_invalid(
    ids: set[str], pattern: re.Pattern[str] | None = None, rule: str = ""
) -> list[Any]:
    """Remove from ``ids`` those :func:`check_job_id` refuses; return them.

    Ids passed before are not checked again, and plain ones are checked all at once: a
    listing of a million ids costs a set difference and one match.
    """
    checked = _CHECKED.get(pattern) or set()
    # Most ids unseen (a first listing): check them all rather than copy most of them.
    few_seen = len(checked) * 2 < len(ids)
    unchecked = ids if few_seen else ids - checked  # only read below
    if not unchecked:
        return []
    refused: list[Any] = []
    passed: Iterable[str]
    if pattern is None and all_plain(unchecked):
        passed = unchecked
    else:
        passed = []
        for job in unchecked:
            try:
                passed.append(check_job_id(job, pattern, rule))
            except InvalidJobIdError:
                refused.append(job)
        ids.difference_update(refused)
    if few_seen or len(checked) >= _CHECKED_LIMIT:
        grown = set(passed)  # a copy of a set is far cheaper than as many additions
        if len(checked) < _CHECKED_LIMIT:
            grown |= checked
        _CHECKED[pattern] = grown
    else:
        checked.update(passed)
    return refused


def _check_rules(job: object, pattern: re.Pattern[str] | None, rule: str) -> str:
    """Return ``job``, or raise :class:`InvalidJobIdError` when it breaks a rule."""
    if not isinstance(job, str):
        raise InvalidJobIdError(job, f"a job id is a str, not {type(job).__name__}")
    if not job:
        raise InvalidJobIdError(job, "it is empty")
    if len(job) > MAX_JOB_ID_LENGTH or (
        not job.isascii() and len(job.encode("utf-8", "surrogatepass")) > MAX_JOB_ID_LENGTH
    ):
        raise InvalidJobIdError(job, f"it is longer than {MAX_JOB_ID_LENGTH} characters")
    if job in (".", ".."):
        raise InvalidJobIdError(job, "it is a relative path component")
    if job[0] == " " or job[-1] == " ":
        raise InvalidJobIdError(job, "it starts or ends with a space")
    if "/" in job or "\\" in job:
        raise InvalidJobIdError(job, "it contains a path separator")
    if not job.isprintable():
        for char in job:
            if char != " " and not char.isprintable():
                kind = unicodedata.category(char)
                raise InvalidJobIdError(job, f"it contains the control character {char!r} ({kind})")
    if pattern is not None and pattern.fullmatch(job) is None:
        raise InvalidJobIdError(job, rule or f"it does not match {pattern.pattern!r}")
    return job


_PLAIN = (int, float, bool, type(None))


def value_token(value: Any) -> str:
    """Return a short hash of ``value`` that is the same in every process.

    Text and bytes are hashed as they are, numbers through their ``repr``, other values
    through their canonical JSON (keys sorted), or their ``repr`` when JSON cannot hold
    them.
    """
    kind = type(value)
    if kind is str:  # the common case first; the prefix "s" keeps "1" apart from 1
        hasher = _TEXT_HASH.copy()
        hasher.update(value.encode("utf-8", "surrogatepass"))
        return hasher.hexdigest()
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif kind in _PLAIN:
        data = repr(value).encode()
    else:
        try:
            data = json.dumps(value, sort_keys=True, default=repr).encode()
        except (TypeError, ValueError):  # keys of mixed types, or a cycle
            data = repr(value).encode()
    hasher = _HASH.copy()
    hasher.update(data)
    return hasher.hexdigest()


# Copying a hash made once costs half as much as making one (blake2b parses its options).
_HASH = hashlib.blake2b(digest_size=8)
_TEXT_HASH = hashlib.blake2b(b"s", digest_size=8)


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[str]) -> AsyncGenerator[AsyncIterator[str], None]:
    """Close an async generator when the block ends, however it ends."""
    try:
        yield iterator
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


_LIGHT_CODECS = frozenset({"bytes", "text"})
"""Codecs cheap enough to run in the event loop whatever the size."""
_INLINE_DECODE_BYTES = 1 << 16
"""Stored values up to this size are decoded in the event loop, not in a thread."""


class Repository(abc.ABC):
    """A store of values keyed by job id.

    ``async for job in repo`` lists the valid ids present; ids that break the id rules
    are skipped with one warning per listing.
    """

    job_id_pattern: ClassVar[re.Pattern[str] | None] = None
    """A narrower charset for this kind of repository, matched in full."""
    job_id_rule: ClassVar[str] = ""
    """A description of :attr:`job_id_pattern` used in error messages."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Adapt a subclass written against pydatatask 0.4's hooks to today's contract.

        A 0.4 repository implemented ``unfiltered_iter`` (every stored id), ``info``,
        ``delete``, optionally ``contains``, and for a metadata repository ``dump``, as
        public methods. Such a class gets the protected hooks (``_iter_ids``, ``_info``,
        ``_delete``, ``_contains``, ``_dump``) that call its own methods, so it can be
        instantiated and works everywhere a repository does, with one
        ``DeprecationWarning`` when the class is defined. Without its own ``contains``,
        presence is found by listing, as 0.4 did.
        """
        super().__init_subclass__(**kwargs)
        if "unfiltered_iter" in cls.__dict__ and _is_abstract(cls, "_iter_ids"):
            _adopt_legacy_hooks(cls)

    def check_job_id(self, job: object) -> str:
        """Return ``job`` if this repository can hold it, else raise :class:`InvalidJobIdError`."""
        return check_job_id(job, self.job_id_pattern, self.job_id_rule)

    def _keep_valid(
        self, found: set[str], common_rules: bool, pattern_holds: bool = False
    ) -> set[str]:
        """Drop from the listed ids ``found`` those this repository refuses; return ``found``.

        One warning names the ids skipped.

        :param common_rules: whether only :func:`check_job_id`'s rules apply to the
            listed ids: they are then checked many at once, and ids seen valid before
            are not checked again.
        :param pattern_holds: whether every listed id matches :attr:`job_id_pattern`
            already, as the listing yields no other: only the common rules are checked.
        """
        if common_rules:
            pattern = None if pattern_holds else self.job_id_pattern
            refused = drop_invalid(found, pattern, self.job_id_rule)
        else:  # a subclass's own rules: check every id
            refused = [job for job in found if not self.is_valid_job_id(job)]
            found.difference_update(refused)
        self._warn_skipped(refused)
        return found

    def is_valid_job_id(self, job: object) -> bool:
        """Whether this repository can hold ``job``."""
        try:
            self.check_job_id(job)
        except InvalidJobIdError:
            return False
        return True

    async def __aiter__(self) -> AsyncGenerator[str, None]:
        skipped: list[str] = []
        try:
            # aclosing: a caller that stops early releases the backend's cursor at once.
            async with _closing(self._iter_ids()) as stored:
                async for job in stored:
                    if self.is_valid_job_id(job):
                        yield job
                    else:
                        skipped.append(job)
        finally:
            self._warn_skipped(skipped)

    def _warn_skipped(
        self, skipped: list[Any], what: str = "entries that are not valid job ids"
    ) -> None:
        """Log one warning naming the first few entries a listing skipped."""
        if not skipped:
            return
        named = ", ".join(repr(job) for job in skipped[:_MAX_NAMED_INVALID])
        more = len(skipped) - _MAX_NAMED_INVALID
        logger.warning(
            "%r: skipped %d %s: %s%s",
            self,
            len(skipped),
            what,
            named,
            f" and {more} more" if more > 0 else "",
        )

    async def ids(self) -> set[str]:
        """Return the set of valid ids present."""
        return {job async for job in self}

    async def contains(self, job: str) -> bool:
        """Whether ``job`` is present."""
        return await self._contains(self.check_job_id(job))

    async def contains_many(self, jobs: Iterable[str]) -> set[str]:
        """Return which of ``jobs`` are present (backends may check them in one batch)."""
        return await self._contains_many([self.check_job_id(job) for job in jobs])

    async def _contains_many(self, jobs: list[str]) -> set[str]:
        return {job for job in jobs if await self._contains(job)}

    async def delete(self, job: str) -> None:
        """Remove ``job``; removing an absent id does nothing."""
        await self._delete(self.check_job_id(job))

    async def info(self, job: str) -> Any:
        """Return what templates and users see for ``job``.

        :raises JobNotFoundError: when ``job`` is absent and the class has no default.
        """
        return await self._info(self.check_job_id(job))

    async def info_all(self) -> dict[str, Any]:
        """Return ``{job: info}`` for every id present."""
        result: dict[str, Any] = {}
        async for job in self:
            try:
                result[job] = await self._info(job)
            except JobNotFoundError:
                continue  # deleted while listing
        return result

    async def tokens(self, jobs: Iterable[str]) -> dict[str, str]:
        """Return a short token of each present job's value; absent jobs are left out.

        A token changes when the value changes, and is cheap: backends take it from
        what a listing or a stat gives (a file's size and modification time, an S3
        ETag) and otherwise hash the value :meth:`info` returns. Done records keep the
        tokens of a job's inputs, so a changed input makes the job stale.
        """
        return await self._tokens([self.check_job_id(job) for job in jobs])

    @property
    def tokens_at_hand(self) -> bool:
        """Whether :meth:`token_at_hand` gives tokens without I/O (values held in memory)."""
        return False

    def token_at_hand(self, job: str) -> str | None:
        """Return the token of a valid ``job`` (None when absent), taken without I/O.

        Only where :attr:`tokens_at_hand` is true: a job's provenance is then taken
        without a round trip through the event loop.
        """
        raise NotImplementedError(f"{type(self).__name__} takes its tokens with tokens()")

    def remembered_token(self, job: str) -> str | None:
        """Return a token of a valid ``job``'s value seen a moment ago, or None to ask.

        Backends that learn tokens on the way (an S3 write's response or listing gives
        ETags) answer a starting job's provenance from them without a request. Checks
        for stale jobs ask with :meth:`tokens`, which always gives the current token.
        """
        return None

    def _changes(self) -> Callable[[asyncio.Event], AsyncIterator[set[str]]] | None:
        """Return how to follow this repository's changes as they happen, or None.

        The function returned yields sets of ids that *may* have been added, changed
        or removed, until it is cancelled (see :mod:`pydatatask.watching`). None, the
        default, means only a listing tells what changed.
        """
        return None

    async def _tokens(self, jobs: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for job in jobs:
            try:
                found[job] = value_token(await self._info(job))
            except JobNotFoundError:
                continue
        return found

    def parts(self) -> tuple[Repository, ...]:
        """Return the repositories this one is a view over; none for a store of its own."""
        return ()

    async def before_outside_write(self, job: str) -> None:  # noqa: B027 - most need nothing
        """Prepare for a job that writes ``job``'s value itself, where :meth:`info` says.

        Process, container and batch tasks call it on their output repositories before
        the job starts (a dataset creates the partition's folder).
        """

    async def after_outside_write(self, job: str) -> None:  # noqa: B027 - most need nothing
        """Take in ``job``'s value, written by a job itself, once that job succeeded.

        Process, container and batch tasks call it on their output repositories before
        the job's done record is written (a dataset updates ``latest/``).
        """

    async def validate(self) -> None:  # noqa: B027 - most backends need no setup
        """Prepare the repository for use (create folders or buckets, check access)."""

    async def _validate_before_listing(self) -> None:
        """Validate, knowing that a full listing follows; then :meth:`_finish_validation`.

        A backend may leave to that listing work it would otherwise do twice: a folder
        tidies the hidden names its listing reads anyway.
        """
        await self.validate()

    async def _finish_validation(self) -> None:  # noqa: B027 - most leave nothing undone
        """Do what :meth:`_validate_before_listing` left to a listing that did not come."""

    def map(
        self,
        func: Callable[[Any], Awaitable[Any]],
        filt: Callable[[str], Awaitable[bool]] | None = None,
        allow_deletes: bool = False,
    ) -> MapRepository:
        """Return a view whose ``info`` is ``await func(info)`` and whose ids pass ``filt``."""
        from pydatatask.repository.combinators import MapRepository

        return MapRepository(self, func, filt, allow_deletes)

    @abc.abstractmethod
    def _iter_ids(self) -> AsyncIterator[str]:
        """Yield every stored id, valid or not."""

    @abc.abstractmethod
    async def _contains(self, job: str) -> bool: ...

    @abc.abstractmethod
    async def _delete(self, job: str) -> None: ...

    @abc.abstractmethod
    async def _info(self, job: str) -> Any: ...


def _is_abstract(cls: type[Repository], name: str) -> bool:
    return bool(getattr(getattr(cls, name, None), "__isabstractmethod__", False))


def _adopt_legacy_hooks(cls: type[Repository]) -> None:
    """Give ``cls`` the protected hooks that call the 0.4 methods it defines."""
    warnings.warn(
        f"{cls.__qualname__} implements pydatatask 0.4's repository hooks (unfiltered_iter, "
        "info, delete, contains); implement _iter_ids, _info, _delete and _contains instead",
        DeprecationWarning,
        stacklevel=4,
    )
    overridden = {
        name
        for name in ("info", "delete", "contains")
        if getattr(cls, name) is not getattr(Repository, name)
    }
    cls._iter_ids = _legacy_iter_ids  # type: ignore[method-assign]
    if _is_abstract(cls, "_info") and "info" in overridden:
        cls._info = _legacy_info  # type: ignore[method-assign]
    if _is_abstract(cls, "_delete") and "delete" in overridden:
        cls._delete = _legacy_delete  # type: ignore[method-assign]
    if _is_abstract(cls, "_contains"):
        cls._contains = (  # type: ignore[method-assign]
            _legacy_contains if "contains" in overridden else _contains_by_listing
        )
    if (
        issubclass(cls, MetadataRepository)
        and _is_abstract(cls, "_dump")
        and cls.dump is not MetadataRepository.dump
    ):
        cls._dump = _legacy_dump  # type: ignore[method-assign]


# The hooks of a 0.4-style repository. Each calls the method through ``self``, so a
# subclass that overrides one of 0.4's methods is called too.


def _legacy_iter_ids(self: Any) -> AsyncIterator[str]:
    return self.unfiltered_iter()  # type: ignore[no-any-return]


async def _legacy_info(self: Repository, job: str) -> Any:
    return await self.info(job)


async def _legacy_delete(self: Repository, job: str) -> None:
    await self.delete(job)


async def _legacy_dump(self: MetadataRepository, job: str, value: Any) -> None:
    await self.dump(job, value)


async def _legacy_contains(self: Repository, job: str) -> bool:
    return await self.contains(job)


async def _contains_by_listing(self: Repository, job: str) -> bool:
    async for present in self:
        if present == job:
            return True
    return False


class MetadataRepository(Repository, abc.ABC):
    """A repository of structured values: ``info`` returns what ``dump`` stored."""

    atomic_create: ClassVar[bool] = False
    """Whether :meth:`create` is atomic among processes and hosts: exactly one of several
    concurrent callers stores its value."""

    async def dump(self, job: str, value: Any) -> None:
        """Store ``value`` for ``job``, replacing any previous value atomically."""
        await self._dump(self.check_job_id(job), value)

    async def load(self, job: str) -> Any:
        """Return the value stored for ``job``, as :meth:`~Repository.info` does.

        :raises JobNotFoundError: when ``job`` is absent.
        """
        return await self.info(job)

    async def save(self, job: str, value: Any) -> None:
        """Store ``value`` for ``job``, replacing any previous value atomically, as :meth:`dump`."""
        await self.dump(job, value)

    async def create(self, job: str, value: Any) -> bool:
        """Store ``value`` for ``job`` only if ``job`` is absent; return whether this call did.

        This default checks ``contains`` and then dumps, which is not atomic: two callers,
        in one process or in several, may both find the id absent and both store (the
        later value wins, and both return True). Repositories that can claim an id
        atomically override it, say so in their documentation and set
        :attr:`atomic_create` to True; code that relies on exactly one caller winning
        (claims, locks) should check that attribute.
        """
        return await self._create(self.check_job_id(job), value)

    async def _create(self, job: str, value: Any) -> bool:
        if await self._contains(job):
            return False
        await self._dump(job, value)
        return True

    @abc.abstractmethod
    async def _dump(self, job: str, value: Any) -> None: ...


class BlobRepository(Repository, abc.ABC):
    """A repository of byte streams, opened per job in text or binary mode.

    :meth:`load` and :meth:`save` read and write whole values through the repository's
    :attr:`codec`; a backend sets it from its ``codec=`` argument (the ``"bytes"`` codec
    when it sets none).
    """

    _codec: Codec = BUILTIN_CODECS["bytes"]

    @property
    def codec(self) -> Codec:
        """The codec that :meth:`load` and :meth:`save` use."""
        return self._codec

    async def load(self, job: str) -> Any:
        """Return the value of ``job``: its bytes decoded with :attr:`codec`.

        Decoding a large value (or any value with a codec other than ``bytes`` and
        ``text``, past 64 KiB) runs in a worker thread, so it does not stall the event loop.

        :raises JobNotFoundError: when ``job`` is absent.
        :raises CodecError: when the stored bytes cannot be decoded; the error names the
            job and the codec.
        """
        job = self.check_job_id(job)
        async with await self.open(job, "rb") as reader:
            data = await reader.read()
        if self.codec.name in _LIGHT_CODECS or len(data) <= _INLINE_DECODE_BYTES:
            return decode_value(self.codec, data, job, self)
        return await asyncio.to_thread(decode_value, self.codec, data, job, self)

    async def save(self, job: str, value: Any) -> None:
        """Store ``value`` as the value of ``job``, encoded with :attr:`codec`, atomically.

        The whole value is encoded (in a worker thread, unless the codec is ``bytes`` or
        ``text``) before anything is written, so a value the codec cannot encode stores
        nothing and the previous value stays.

        :raises CodecError: when the codec cannot encode ``value``; the error names the
            job and the codec.
        """
        job = self.check_job_id(job)
        if self.codec.name in _LIGHT_CODECS:
            data = encode_value(self.codec, value, job, self)
        else:
            data = await asyncio.to_thread(encode_value, self.codec, value, job, self)
        async with await self.open(job, "wb") as writer:
            await writer.write(data)

    @overload
    async def open(self, job: str, mode: Literal["r"]) -> TextReader: ...
    @overload
    async def open(self, job: str, mode: Literal["rb"]) -> ByteReader: ...
    @overload
    async def open(self, job: str, mode: Literal["w"]) -> TextWriter: ...
    @overload
    async def open(self, job: str, mode: Literal["wb"]) -> ByteWriter: ...
    @overload
    async def open(
        self, job: str, mode: OpenMode = "r"
    ) -> TextReader | ByteReader | TextWriter | ByteWriter: ...

    async def open(
        self, job: str, mode: OpenMode = "r"
    ) -> TextReader | ByteReader | TextWriter | ByteWriter:
        """Open ``job`` for reading (``r``, ``rb``) or atomic writing (``w``, ``wb``).

        Text modes use UTF-8 and no newline translation. A written value becomes visible
        only when the writer closes successfully.

        :raises JobNotFoundError: when reading an absent job.
        :raises ValueError: for any other mode.
        """
        job = self.check_job_id(job)
        if mode == "rb":
            return await self._open_reader(job)
        if mode == "r":
            return TextReader(await self._open_reader(job))
        if mode == "wb":
            return await self._open_writer(job)
        if mode == "w":
            return TextWriter(await self._open_writer(job))
        raise ValueError(f"unsupported mode {mode!r}: use 'r', 'rb', 'w' or 'wb'")

    @abc.abstractmethod
    async def _open_reader(self, job: str) -> ByteReader:
        """Open ``job`` for reading; raise :class:`JobNotFoundError` when absent."""

    @abc.abstractmethod
    async def _open_writer(self, job: str) -> ByteWriter:
        """Open an atomic writer for ``job``."""
