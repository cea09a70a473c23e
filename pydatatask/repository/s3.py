# Longer than 400 lines on purpose: the blob and YAML repositories over S3 share one
# client wrapper, one translation of the client's errors, and the multipart writer.
"""Repositories stored as objects in an S3 bucket, through an aiobotocore client.

Job ``k`` is the object ``prefix + k + suffix``. The client comes from a session
accessor (for example a :class:`pydatatask.Resource`), which is called on every use, so
a repository never outlives or caches its client. Create the client with bounded
timeouts, so that an unreachable endpoint fails quickly instead of hanging::

    from botocore.config import Config

    Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"total_max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"},
    )

Every botocore error is translated in one place, ``_translate_errors``: a missing
object becomes :class:`~pydatatask.JobNotFoundError`, refused credentials a
:class:`~pydatatask.BackendError` naming the bucket, and an unreachable or silent endpoint
a :class:`~pydatatask.BackendUnavailableError` naming the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from pydatatask import yamltext
from pydatatask._optional import import_optional
from pydatatask.codecs import Codec, codec_for
from pydatatask.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    JobNotFoundError,
)
from pydatatask.repository.base import BlobRepository, MetadataRepository, yaml_of
from pydatatask.repository.s3follow import Listed, ListingMarks, follow_appends
from pydatatask.repository.s3recent import RecentETags
from pydatatask.streams import ByteReader, ByteWriter

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from botocore.exceptions import ClientError
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        CreateBucketRequestTypeDef,
        HeadObjectOutputTypeDef,
        ListObjectsV2OutputTypeDef,
        ListObjectsV2RequestTypeDef,
        ObjectTypeDef,
    )

__all__ = [
    "DEFAULT_PART_SIZE",
    "MIN_PART_SIZE",
    "S3BucketInfo",
    "S3BucketRepository",
    "YamlMetadataS3Repository",
]

logger = logging.getLogger(__name__)

MIN_PART_SIZE = 5 << 20
"""5 MiB, the smallest multipart part S3 accepts (the last part may be smaller)."""
DEFAULT_PART_SIZE = 8 << 20
"""8 MiB, how much a writer buffers before it uploads a part."""
MAX_PARTS = 10_000
"""The most parts one S3 multipart upload may have."""
INFO_CONCURRENCY = 32
"""How many objects :meth:`YamlMetadataS3Repository.info_all` fetches, or ``contains_many``
looks up, at once."""

_HEADS_BEFORE_LISTING = 32
"""Tokens of more jobs than this come from one listing of the bucket, not a HEAD each."""
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket", "NotFound", "404"})
_AUTH_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "Forbidden",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)
_BUSY_CODES = frozenset({"503", "RequestTimeout", "ServiceUnavailable", "SlowDown"})
# A conditional PutObject (If-None-Match: *) lost to an existing key (412), or to a
# concurrent conditional write of the same key (409).
_CREATE_LOST_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})


def _botocore_errors() -> ModuleType:
    """Return ``botocore.exceptions``, importing the S3 client library on first use.

    :raises MissingDependencyError: when the ``s3`` extra is not installed.
    """
    import_optional("aiobotocore", "s3")
    return import_optional("botocore.exceptions", "s3")


def _endpoint_of(client: S3Client) -> str:
    meta = getattr(client, "meta", None)
    return str(getattr(meta, "endpoint_url", None) or "the default S3 endpoint")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _client_error(
    repository: S3BucketRepository, endpoint: str, action: str, job: str | None, exc: ClientError
) -> Exception:
    """Map one botocore ``ClientError`` to the pydatatask error a caller should see."""
    code = _error_code(exc)
    message = exc.response.get("Error", {}).get("Message") or ""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    detail = f"{code} ({message})" if message and message != code else code
    where = f"bucket {repository.bucket!r} at {endpoint}"
    if job is not None and code in _MISSING_CODES:
        return JobNotFoundError(job, repository)
    if code == "NoSuchBucket":
        return BackendError(
            f"the {where} does not exist (while {action}); "
            "validate() (run when the pipeline opens) creates it"
        )
    if code in _AUTH_CODES:
        return BackendError(
            f"S3 refused access to {where} while {action}: {detail}; "
            "check the access key, the secret key and the bucket's permissions"
        )
    if code in _BUSY_CODES or status == 503:
        return BackendUnavailableError(f"S3 at {endpoint} is unavailable while {action}: {detail}")
    return BackendError(f"S3 failed while {action} in {where}: {detail}")


@contextlib.contextmanager
def _translate_errors(
    repository: S3BucketRepository, client: S3Client, action: str, job: str | None = None
) -> Iterator[None]:
    """Turn botocore errors raised inside the block into pydatatask errors.

    ``NoSuchKey`` or 404 becomes :class:`JobNotFoundError` when ``job`` is given; an
    authentication failure becomes :class:`BackendError` naming the bucket; a connection
    failure or timeout becomes :class:`BackendUnavailableError` naming the endpoint.
    """
    errors = _botocore_errors()
    try:
        yield
    except errors.ClientError as exc:
        raise _client_error(repository, _endpoint_of(client), action, job, exc) from exc
    except (errors.ConnectionError, errors.HTTPClientError) as exc:
        raise BackendUnavailableError(
            f"could not reach the S3 endpoint {_endpoint_of(client)} while {action} "
            f"(bucket {repository.bucket!r}): {exc}"
        ) from exc
    except errors.BotoCoreError as exc:
        raise BackendError(
            f"the S3 client failed while {action} (bucket {repository.bucket!r} at "
            f"{_endpoint_of(client)}): {exc}"
        ) from exc


class _S3Reader(ByteReader):
    """Stream one object's body; ``read(n)`` reads at most ``n`` bytes from the socket."""

    def __init__(
        self, repository: S3BucketRepository, client: S3Client, key: str, body: StreamingBody
    ) -> None:
        self._repository = repository
        self._client = client
        self._key = key
        self._body = body

    async def _read_some(self, n: int) -> bytes:
        with _translate_errors(self._repository, self._client, f"reading {self._key!r}"):
            data: bytes = await self._body.read(n)
        return data

    async def _release(self) -> None:
        closer = getattr(self._body, "aclose", None)
        if closer is not None:
            await closer()
        else:
            self._body.close()


class _S3Writer(ByteWriter):
    """Buffer up to one part; a small value is one PutObject, a large one a multipart upload.

    The first full part starts the multipart upload; every further full part is uploaded
    as soon as it fills, so at most one part is ever held in memory. Closing completes the
    upload (or puts the small value); failing or cancelling aborts it.
    """

    def __init__(self, repository: S3BucketRepository, key: str, part_size: int) -> None:
        self._repository = repository
        self._key = key
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self.max_buffered = 0
        """The most bytes this writer has held at once (never more than one part)."""

    @property
    def parts_uploaded(self) -> int:
        """How many multipart parts have been uploaded so far."""
        return len(self._parts)

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self._part_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            self.max_buffered = max(self.max_buffered, len(self._buffer))
            if len(self._buffer) >= self._part_size:
                await self._upload_part()

    async def _upload_part(self) -> None:
        repository = self._repository
        client = repository._client()
        upload_id = self._upload_id
        if upload_id is None:
            upload_id = await self._start_upload(client)
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise BackendError(
                f"{self._key!r} needs more than {MAX_PARTS} parts of {self._part_size} bytes; "
                "use a larger part_size"
            )
        # Copy once into immutable bytes and drop the buffer before the upload starts.
        part, self._buffer = bytes(self._buffer), bytearray()
        with _translate_errors(repository, client, f"uploading part {number} of {self._key!r}"):
            response = await client.upload_part(
                Bucket=repository.bucket,
                Key=self._key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
            )
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})

    async def _start_upload(self, client: S3Client) -> str:
        """Start the multipart upload and return its id (also kept for :meth:`_discard`)."""
        repository = self._repository
        request = asyncio.ensure_future(
            client.create_multipart_upload(
                Bucket=repository.bucket, Key=self._key, ContentType=repository.mimetype
            )
        )
        try:
            with _translate_errors(repository, client, f"starting an upload of {self._key!r}"):
                response = await asyncio.shield(request)
        except asyncio.CancelledError:
            # The server may have started the upload already: learn its id so that
            # _discard can abort it instead of leaving it behind.
            await asyncio.wait([request])
            if not request.cancelled() and request.exception() is None:
                self._upload_id = request.result()["UploadId"]
            raise
        self._upload_id = response["UploadId"]
        return self._upload_id

    async def _commit(self) -> None:
        repository = self._repository
        if self._upload_id is None:
            body, self._buffer = bytes(self._buffer), bytearray()
            client = repository._client()
            repository._recent.forget(self._key)  # until the new value's ETag is known
            with _translate_errors(repository, client, f"writing {self._key!r}"):
                written = await client.put_object(
                    Bucket=repository.bucket,
                    Key=self._key,
                    Body=body,
                    ContentType=repository.mimetype,
                )
            repository._recent.note(self._key, written.get("ETag"))
            return
        if self._buffer:
            await self._upload_part()
        client = repository._client()
        repository._recent.forget(self._key)
        with _translate_errors(repository, client, f"completing the upload of {self._key!r}"):
            completed = await client.complete_multipart_upload(
                Bucket=repository.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._upload_id = None
        repository._recent.note(self._key, completed.get("ETag"))

    async def _discard(self) -> None:
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        repository = self._repository
        try:
            client = repository._client()
            with _translate_errors(repository, client, f"aborting the upload of {self._key!r}"):
                await client.abort_multipart_upload(
                    Bucket=repository.bucket, Key=self._key, UploadId=upload_id
                )
        except BackendError as exc:
            # The original failure matters more to the caller; the bucket's lifecycle
            # rules (or a later abort) must clean this upload up.
            logger.warning(
                "could not abort multipart upload %s of %r: %s", upload_id, self._key, exc
            )


@dataclass(frozen=True, eq=False)
class S3BucketInfo(Mapping[str, Any]):
    """Where a job's object is: what ``S3BucketRepository.info(job)`` returns.

    ``str(info)`` is the object's URI ``s3://bucket/key``, so ``{{ repo }}`` in a
    template names the object. The details are attributes (``info.endpoint``, as in
    pydatatask 0.4) and also keys (``info["bucket"]``): ``bucket``, ``key``, ``uri``,
    ``endpoint``, ``url``, then ``size`` when the object exists, and
    ``incluster_endpoint`` and ``incluster_url`` when the repository has an in-cluster
    endpoint. ``prefix`` and ``suffix`` are attributes only. As a mapping it equals a
    dict with the same keys and values.
    """

    bucket: str
    """The bucket's name."""
    key: str
    """The object's key, ``prefix + job + suffix``."""
    endpoint: str | None
    """The endpoint URL of the client, or None when the client does not say."""
    prefix: str
    """The repository's key prefix."""
    suffix: str
    """The repository's key suffix."""
    size: int | None = None
    """The object's size in bytes, or None when it does not exist (yet)."""
    incluster_endpoint: str | None = None
    """The endpoint as seen from inside a cluster, when the repository was given one."""

    @property
    def uri(self) -> str:
        """The object's URI, ``s3://bucket/key``."""
        return f"s3://{self.bucket}/{self.key}"

    @property
    def url(self) -> str | None:
        """The path-style URL of the object at :attr:`endpoint`."""
        return _path_style_url(self.endpoint, self.bucket, self.key)

    @property
    def incluster_url(self) -> str | None:
        """The path-style URL of the object at :attr:`incluster_endpoint`."""
        return _path_style_url(self.incluster_endpoint, self.bucket, self.key)

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "bucket": self.bucket,
            "key": self.key,
            "uri": self.uri,
            "endpoint": self.endpoint,
            "url": self.url,
        }
        if self.size is not None:
            fields["size"] = self.size
        if self.incluster_endpoint is not None:
            fields["incluster_endpoint"] = self.incluster_endpoint
            fields["incluster_url"] = self.incluster_url
        return fields

    def __getitem__(self, name: str) -> Any:
        return self._fields()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())

    def __str__(self) -> str:
        return self.uri


class S3BucketRepository(BlobRepository):
    """Blobs stored as objects in an S3 bucket (AWS or any S3-compatible store).

    ``info(job)``, whether or not the object exists yet (so a template can name an
    output), is an :class:`S3BucketInfo`: ``str(info)`` is ``s3://bucket/key``, and its
    details (``bucket``, ``key``, ``uri``, ``endpoint``, ``url``, ``size``, ...) are
    attributes and keys.

    :param client: a zero-argument callable, usually a session resource, returning an
        aiobotocore S3 client. It is called on every use. Give the client bounded
        timeouts (botocore ``Config(connect_timeout=..., read_timeout=...,
        retries={"total_max_attempts": ..., "mode": "standard"})``) and, for most
        self-hosted stores, path-style addressing.
    :param bucket: the bucket name, optionally followed by ``/`` and a key prefix:
        ``"books"`` and ``"books/"`` are the bucket ``books``; ``"data/books/"`` is the
        bucket ``data`` with the key prefix ``books/``.
    :param suffix: appended to every key, like a file extension (``".txt"``).
    :param prefix: added after the prefix given in ``bucket``.
    :param mimetype: the ``Content-Type`` of written objects.
    :param incluster_endpoint: the endpoint as seen from inside a cluster, reported by
        :meth:`~pydatatask.Repository.info` for templates that run there.
    :param part_size: the bytes a writer buffers before uploading a multipart part (at
        least 5 MiB); a value up to this size is written with one ``PutObject``.
    :param codec: the codec of ``load`` and ``save``: a name (``"json"``, ``"csv"``, ...)
        or a :class:`~pydatatask.codecs.Codec`; None picks it from ``suffix`` as
        :class:`~pydatatask.FileRepository` does from its extension (no or another
        suffix is bytes).
    :param append_only: say that every new object's key sorts after every key already
        there (ids that are dates, sequence numbers, ULIDs, ...). A controller running
        forever then asks every ``follow_every`` seconds only for the keys after those
        it knows (``ListObjectsV2`` with ``StartAfter``), so new ids are taken in without
        listing the whole prefix (see :mod:`pydatatask.repository.s3follow`).
    :param follow_every: seconds between those requests, with ``append_only``.
    :raises ConfigurationError: for an empty bucket name, a part size below 5 MiB, a
        ``client`` that is not callable, an unknown codec name, or a ``follow_every``
        that is not a positive number.
    :raises MissingDependencyError: when the ``s3`` extra is not installed.
    """

    def __init__(
        self,
        client: Callable[[], Any],
        bucket: str,
        suffix: str = "",
        *,
        prefix: str = "",
        mimetype: str = "application/octet-stream",
        incluster_endpoint: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        codec: str | Codec | None = None,
        append_only: bool = False,
        follow_every: float = 1.0,
    ) -> None:
        _botocore_errors()
        if not callable(client):
            raise ConfigurationError(
                "client must be a zero-argument callable returning an aiobotocore S3 client "
                "(for example a session resource), not the client itself"
            )
        name, _, bucket_prefix = bucket.partition("/")
        if not name:
            raise ConfigurationError(f"no bucket name in {bucket!r}")
        if part_size < MIN_PART_SIZE:
            raise ConfigurationError(f"part_size must be at least {MIN_PART_SIZE} bytes (5 MiB)")
        if isinstance(follow_every, bool) or not (
            isinstance(follow_every, int | float) and follow_every > 0  # also refuses NaN
        ):
            raise ConfigurationError(
                f"follow_every must be a positive number of seconds, not {follow_every!r}"
            )
        # Typed for the calls made here; callers' clients need no type stubs.
        self._client: Callable[[], S3Client] = client
        self.bucket = name
        self.prefix = bucket_prefix + prefix
        self.suffix = suffix
        self.mimetype = mimetype
        self.incluster_endpoint = incluster_endpoint
        self.part_size = part_size
        self._codec = codec_for(codec, suffix)
        self.append_only = append_only
        self.follow_every = follow_every
        self._recent = RecentETags()
        self._listed: Listed | None = None
        """What the last complete listing tells a follower (``append_only``); None before one."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} s3://{self.bucket}/{self.prefix}*{self.suffix}>"

    def object_key(self, job: str) -> str:
        """Return the key that stores ``job``.

        :raises InvalidJobIdError: when ``job`` is not a valid id.
        """
        return self._key(self.check_job_id(job))

    def _key(self, job: str) -> str:
        return f"{self.prefix}{job}{self.suffix}"

    def _job_of(self, key: str) -> str | None:
        """Return the id stored at ``key``, or None for keys that hold no job of this repository."""
        if not key.startswith(self.prefix) or not key.endswith(self.suffix):
            return None
        if len(key) <= len(self.prefix) + len(self.suffix):
            return None  # a folder marker
        job = key[len(self.prefix) : len(key) - len(self.suffix)]
        return None if "/" in job else job  # "/": an object in a "subfolder"

    def _errors(
        self, client: S3Client, action: str, job: str | None = None
    ) -> contextlib.AbstractContextManager[None]:
        return _translate_errors(self, client, action, job)

    async def _iter_objects(self) -> AsyncIterator[tuple[str, ObjectTypeDef]]:
        """Yield ``(job, listing entry)`` page by page, holding one page at a time.

        With ``append_only``, a listing that runs to its end notes where a follower may
        start (``_listed``).
        """
        marks = ListingMarks() if self.append_only else None
        async for page in self._pages():
            if marks is not None:
                marks.note(page)
            for entry in page.get("Contents", ()):
                job = self._job_of(entry["Key"])
                if job is not None:
                    yield job, entry
        if marks is not None:
            self._listed = marks.listed()

    async def _pages(self, start_after: str = "") -> AsyncIterator[ListObjectsV2OutputTypeDef]:
        """Yield the listing's pages, their entries in key order, after ``start_after``."""
        request: ListObjectsV2RequestTypeDef = {"Bucket": self.bucket, "Prefix": self.prefix}
        if start_after:
            request["StartAfter"] = start_after
        if "/" not in self.suffix:
            # Objects in "subfolders" are grouped server-side instead of listed one by one.
            request["Delimiter"] = "/"
        while True:
            client = self._client()
            with self._errors(client, "listing objects"):
                page = await client.list_objects_v2(**request)
            self._recent.note_listed(page.get("Contents", ()))
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            request["ContinuationToken"] = token

    def _changes(self) -> Callable[[asyncio.Event], AsyncIterator[set[str]]] | None:
        """With ``append_only``, follow the keys after those already known."""
        if not self.append_only:
            return None
        return functools.partial(follow_appends, self)

    async def _iter_ids(self) -> AsyncIterator[str]:
        async for job, _entry in self._iter_objects():
            yield job

    async def _head(self, job: str) -> tuple[S3Client, HeadObjectOutputTypeDef]:
        client = self._client()
        key = self._key(job)
        with self._errors(client, f"reading {key!r}", job):
            response = await client.head_object(Bucket=self.bucket, Key=key)
        return client, response

    async def _tokens(self, jobs: list[str]) -> dict[str, str]:
        """Return each present job's ETag: from one listing for many jobs, else a HEAD each.

        An object written through this repository a moment ago needs no HEAD: its write's
        response gave its ETag (see :mod:`pydatatask.repository.s3recent`).
        """
        if len(jobs) > _HEADS_BEFORE_LISTING:
            wanted = set(jobs)
            return {
                job: entry["ETag"].strip('"')
                async for job, entry in self._iter_objects()
                if job in wanted and "ETag" in entry
            }

        async def etag(job: str) -> str | None:
            recent = self._written_recently(job)
            if recent is not None:
                return recent
            try:
                _, response = await self._head(job)
            except JobNotFoundError:
                return None
            return response.get("ETag", "").strip('"') or None

        tags = await asyncio.gather(*(etag(job) for job in jobs))
        return {job: tag for job, tag in zip(jobs, tags, strict=True) if tag is not None}

    def remembered_token(self, job: str) -> str | None:
        """Return the ETag a write's response or a listing gave for ``job`` a moment ago."""
        return self._recent.token(self._key(job))

    def _written_recently(self, job: str) -> str | None:
        """Return the ETag of ``job`` if this repository wrote it a moment ago."""
        self._client()  # a closed session's repository is not used, even without a request
        return self._recent.get(self._key(job))

    async def _contains(self, job: str) -> bool:
        if self._written_recently(job) is not None:
            return True
        try:
            await self._head(job)
        except JobNotFoundError:
            return False
        return True

    async def _contains_many(self, jobs: list[str]) -> set[str]:
        """Return the present ones among ``jobs``, :data:`INFO_CONCURRENCY` HEADs at a time."""
        found: set[str] = set()

        async def look(job: str) -> None:
            if await self._contains(job):
                found.add(job)

        await _run_bounded(_each(jobs), look, INFO_CONCURRENCY)
        return found

    async def _delete(self, job: str) -> None:
        client = self._client()
        key = self._key(job)
        self._recent.forget(key)
        with contextlib.suppress(JobNotFoundError), self._errors(client, f"deleting {key!r}", job):
            await client.delete_object(Bucket=self.bucket, Key=key)

    def _describe(self, client: S3Client, key: str, size: int | None) -> S3BucketInfo:
        return S3BucketInfo(
            bucket=self.bucket,
            key=key,
            endpoint=getattr(getattr(client, "meta", None), "endpoint_url", None),
            prefix=self.prefix,
            suffix=self.suffix,
            size=size,
            incluster_endpoint=self.incluster_endpoint,
        )

    async def _info(self, job: str) -> Any:
        """Return where ``job`` is stored, present or not, as an :class:`S3BucketInfo`."""
        try:
            client, response = await self._head(job)
        except JobNotFoundError:
            return self._describe(self._client(), self._key(job), None)
        return self._describe(client, self._key(job), response.get("ContentLength"))

    async def info_all(self) -> dict[str, Any]:
        """Return ``{job: info}`` for every id present, from the listing alone."""
        client = self._client()
        result: dict[str, Any] = {}
        async for job, entry in self._iter_objects():
            if self.is_valid_job_id(job):
                result[job] = self._describe(client, entry["Key"], entry.get("Size"))
        return result

    async def validate(self) -> None:
        """Create the bucket when it is missing, and check that the client may use it.

        :raises BackendError: when the credentials are refused or the bucket cannot be created.
        :raises BackendUnavailableError: when the endpoint cannot be reached in time.
        """
        errors = _botocore_errors()
        client = self._client()
        with self._errors(client, "checking the bucket"):
            try:
                await client.head_bucket(Bucket=self.bucket)
            except errors.ClientError as exc:
                code = _error_code(exc)
                if code in _AUTH_CODES:
                    # HeadBucket answers a bare 403; a listing names the actual problem.
                    await client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                    return
                if code not in _MISSING_BUCKET_CODES:
                    raise
            else:
                return
        await self._create_bucket(client, errors)

    async def _create_bucket(self, client: S3Client, errors: ModuleType) -> None:
        request: CreateBucketRequestTypeDef = {"Bucket": self.bucket}
        region = getattr(client.meta, "region_name", None)
        if region and region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": region}
        logger.info("creating bucket %r at %s", self.bucket, _endpoint_of(client))
        with self._errors(client, "creating the bucket"):
            try:
                await client.create_bucket(**request)
            except errors.ClientError as exc:
                if _error_code(exc) != "BucketAlreadyOwnedByYou":
                    raise

    async def _open_reader(self, job: str) -> ByteReader:
        client = self._client()
        key = self._key(job)
        with self._errors(client, f"reading {key!r}", job):
            response = await client.get_object(Bucket=self.bucket, Key=key)
        return _S3Reader(self, client, key, response["Body"])

    async def _open_writer(self, job: str) -> ByteWriter:
        return _S3Writer(self, self._key(job), self.part_size)


class YamlMetadataS3Repository(S3BucketRepository, MetadataRepository):
    """Structured values stored as YAML objects in an S3 bucket.

    ``info(job)`` is the parsed object and ``dump(job, value)`` writes it with one
    ``PutObject``. Being a blob repository too, ``open(job, "r")`` reads the raw YAML.
    Arguments are as for :class:`S3BucketRepository`.

    ``create(job, value)`` is atomic among processes and hosts: it is one conditional
    ``PutObject`` with ``If-None-Match: *``, which the server refuses (412
    ``PreconditionFailed``, or 409 ``ConditionalRequestConflict`` while another
    conditional write of the key is in progress) when the key exists. The store must
    support conditional writes, as AWS S3 and current S3-compatible stores do.
    """

    atomic_create: ClassVar[bool] = True
    """Atomic, as ``create`` is one conditional ``PutObject`` with ``If-None-Match`` ``*``."""

    def __init__(
        self,
        client: Callable[[], Any],
        bucket: str,
        suffix: str = ".yaml",
        *,
        prefix: str = "",
        mimetype: str = "text/yaml",
        append_only: bool = False,
        follow_every: float = 1.0,
    ) -> None:
        super().__init__(
            client,
            bucket,
            suffix,
            prefix=prefix,
            mimetype=mimetype,
            append_only=append_only,
            follow_every=follow_every,
        )

    # Both a metadata and a blob repository: values are the YAML objects, as for ``info``.
    async def load(self, job: str) -> Any:
        """Return the stored value, as ``info`` does.

        :raises JobNotFoundError: when ``job`` is absent.
        :raises BackendError: when the object is not valid YAML.
        """
        return await MetadataRepository.load(self, job)

    async def save(self, job: str, value: Any) -> None:
        """Store ``value`` with one ``PutObject``, as ``dump`` does."""
        await MetadataRepository.save(self, job, value)

    async def _info(self, job: str) -> Any:
        """Return the stored value.

        :raises JobNotFoundError: when ``job`` is absent.
        :raises BackendError: when the object is not valid YAML.
        """
        async with await self._open_reader(job) as reader:
            raw = await reader.read()
        try:
            return yamltext.load(raw)
        except yamltext.YamlError as exc:
            raise BackendError(
                f"s3://{self.bucket}/{self._key(job)} is not valid YAML: {exc}"
            ) from exc

    async def _dump(self, job: str, value: Any) -> None:
        body = yaml_of(self, job, value)
        client = self._client()
        key = self._key(job)
        self._recent.forget(key)
        with self._errors(client, f"writing {key!r}"):
            written = await client.put_object(
                Bucket=self.bucket, Key=key, Body=body.encode("utf-8"), ContentType=self.mimetype
            )
        self._recent.note(key, written.get("ETag"))

    async def _create(self, job: str, value: Any) -> bool:
        body = yaml_of(self, job, value)
        errors = _botocore_errors()
        client = self._client()
        key = self._key(job)
        with self._errors(client, f"creating {key!r}"):
            try:
                written = await client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body.encode("utf-8"),
                    ContentType=self.mimetype,
                    IfNoneMatch="*",
                )
            except errors.ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if _error_code(exc) in _CREATE_LOST_CODES or status == 412:
                    return False
                raise
        self._recent.note(key, written.get("ETag"))
        return True

    async def info_all(self) -> dict[str, Any]:
        """Return ``{job: value}`` for every id, fetching up to 32 objects at once."""
        result: dict[str, Any] = {}

        async def fetch(job: str) -> None:
            with contextlib.suppress(JobNotFoundError):  # deleted while listing
                result[job] = await self._info(job)

        await _run_bounded(aiter(self), fetch, INFO_CONCURRENCY)
        return result


def _path_style_url(endpoint: str | None, bucket: str, key: str) -> str | None:
    if endpoint is None:
        return None
    return f"{endpoint.rstrip('/')}/{bucket}/{quote(key)}"


async def _each(jobs: list[str]) -> AsyncIterator[str]:
    for job in jobs:
        yield job


async def _run_bounded(
    jobs: AsyncIterator[str],
    work: Callable[[str], Coroutine[Any, Any, None]],
    limit: int,
) -> None:
    """Run ``work(job)`` for every job, at most ``limit`` at once, while listing continues."""
    pending: set[asyncio.Task[None]] = set()

    async def settle(until: str) -> None:
        nonlocal pending
        done, pending = await asyncio.wait(pending, return_when=until)
        failures = [task.exception() for task in done]
        for failure in failures:
            if failure is not None:
                raise failure

    try:
        async for job in jobs:
            if len(pending) >= limit:
                await settle(asyncio.FIRST_COMPLETED)
            pending.add(asyncio.create_task(work(job)))
        if pending:
            await settle(asyncio.ALL_COMPLETED)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
