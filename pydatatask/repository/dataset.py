"""Blob repositories laid out as a Hive-partitioned dataset, with a copy of the newest part.

Job ``k`` of a dataset ``NAME`` is the file (or object) ``ROOT/dataset=NAME/PARTITION=k/FILENAME``,
so the folder ``ROOT/dataset=NAME`` reads as a Hive-partitioned dataset in pyarrow,
DuckDB or Spark, with ``PARTITION`` as a column. With ``latest=True`` the value of the
greatest id is also kept at ``ROOT/latest/dataset=NAME/FILENAME``, for readers that only
want the newest data.

Ids are compared as strings, which is date order for ISO dates and timestamps
(``2024-01-31``, ``2024-01-31T0230``). A partition value uses letters, digits and
``. _ : + -`` and starts with a letter or a digit, so it needs no escaping in a path, a
key or a Hive partition value.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from pydatatask.codecs import Codec, codec_for
from pydatatask.errors import ConfigurationError, JobNotFoundError
from pydatatask.repository.base import BlobRepository
from pydatatask.repository.filesystem.files import FileRepository
from pydatatask.repository.s3 import S3BucketRepository
from pydatatask.streams import ByteReader, ByteWriter, copy_stream

__all__ = ["HiveDatasetRepository", "S3HiveDatasetRepository"]

_PARTITION_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]*")


def _check_name(role: str, value: object, *, equals: bool = True) -> str:
    """Return ``value`` if it can be one path segment of the layout, else raise."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{role} must be a non-empty string, not {value!r}")
    forbidden = "/\\\x00" + ("=" if not equals else "")
    if any(char in value for char in forbidden) or value in (".", ".."):
        raise ConfigurationError(f"{role} {value!r} cannot be one segment of a path")
    if value[0] in "._":
        # Dataset readers skip names starting with "." or "_" as hidden or metadata.
        raise ConfigurationError(f"{role} {value!r} must not start with '.' or '_'")
    return value


class _LatestWriter(ByteWriter):
    """Write through ``inner``; once its value is committed, run ``after``."""

    def __init__(self, inner: ByteWriter, after: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._after = after

    async def _write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def _commit(self) -> None:
        await self._inner.close()
        await self._after()

    async def _discard(self) -> None:
        await self._inner.abort()


class _HiveDataset(BlobRepository, abc.ABC):
    """What both layouts share: the id rule, ``latest()`` and keeping ``latest/`` current."""

    job_id_pattern = _PARTITION_VALUE
    job_id_rule = (
        "a partition value uses letters, digits and '. _ : + -' and starts with a letter or digit"
    )

    dataset: str
    partition: str
    filename: str
    keeps_latest: bool
    _latest_lock: asyncio.Lock | None = None

    def _name_layout(self, dataset: str, partition: str, filename: str, latest: bool) -> None:
        """Check and keep the names of the layout's segments.

        :raises ConfigurationError: for a name that cannot be one segment.
        """
        self.dataset = _check_name("dataset", dataset, equals=False)
        self.partition = _check_name("partition", partition, equals=False)
        self.filename = _check_name("filename", filename)
        self.keeps_latest = latest

    async def latest(self) -> str | None:
        """Return the greatest id present (in string order), or None when there is none."""
        return max(await self.ids(), default=None)

    async def refresh_latest(self) -> str | None:
        """Point ``latest/`` at the greatest id, or remove it when there is none; return that id.

        Writes and deletions through this repository do this themselves; call it after
        partitions were written or removed by other means (a process writing the path
        that ``info`` gives, for example).
        """
        async with self._lock():
            return await self._refresh_locked()

    def _lock(self) -> asyncio.Lock:
        if self._latest_lock is None:
            self._latest_lock = asyncio.Lock()
        return self._latest_lock

    async def _refresh_locked(self) -> str | None:
        greatest = await self.latest()
        if greatest is None:
            await self._remove_latest()
        else:
            await self._copy_to_latest(greatest)
        return greatest

    async def _after_write(self, job: str) -> None:
        # Serialised within the process, so an older copy never lands after a newer one.
        async with self._lock():
            greatest = await self.latest()
            if greatest is None or job >= greatest:
                await self._copy_to_latest(job)

    async def after_outside_write(self, job: str) -> None:
        """Point ``latest/`` at ``job`` if it is the greatest, as a write through this would."""
        if self.keeps_latest:
            await self._after_write(self.check_job_id(job))

    async def _open_writer(self, job: str) -> ByteWriter:
        inner = await self._open_partition_writer(job)
        if not self.keeps_latest:
            return inner

        async def after() -> None:
            await self._after_write(job)

        return _LatestWriter(inner, after)

    async def _delete(self, job: str) -> None:
        if not self.keeps_latest:
            await self._delete_partition(job)
            return
        async with self._lock():
            await self._delete_partition(job)
            greatest = await self.latest()
            if greatest is None or job > greatest:
                await self._refresh_locked()

    @abc.abstractmethod
    async def _open_partition_writer(self, job: str) -> ByteWriter:
        """Open an atomic writer of the partition file of ``job``."""

    @abc.abstractmethod
    async def _delete_partition(self, job: str) -> None:
        """Remove the partition of ``job``; an absent one is no error."""

    @abc.abstractmethod
    async def _copy_to_latest(self, job: str) -> None:
        """Replace ``latest/`` with the value of ``job``, atomically."""

    @abc.abstractmethod
    async def _remove_latest(self) -> None:
        """Remove the value under ``latest/``, if any."""


class HiveDatasetRepository(_HiveDataset):
    """A dataset in a folder: job ``k`` is ``ROOT/dataset=NAME/PARTITION=k/FILENAME``.

    ``info(job)`` is the :class:`pathlib.Path` of the partition's file, present or not.
    Listing yields the partitions whose file exists. Each file is written as
    :class:`~pydatatask.FileRepository` writes (a hidden temporary in the partition's
    folder, renamed into place when the writer closes), and dataset readers skip the
    hidden temporaries.

    With ``latest`` (the default), a write of an id greater than or equal to every id
    present, once committed, also replaces ``ROOT/latest/dataset=NAME/FILENAME``: the
    partition's file is copied to a hidden temporary beside it, which is then renamed
    over it, so after the first write that file always exists and is always whole. A
    write of an older id (a backfill) leaves it alone. ``delete(job)`` removes the
    partition's folder; if ``job`` was the greatest id, ``latest/`` is pointed at the new
    greatest id, or removed when no partition is left. Within one process these updates
    are serialised; writers in several processes may finish in an order that leaves an
    older copy, which ``refresh_latest()`` repairs.

    :param root: the folder holding ``dataset=NAME`` and ``latest``.
    :param dataset: the dataset's name.
    :param partition: the name of the partition column.
    :param filename: the name of each partition's file.
    :param latest: whether to keep ``latest/`` current.
    :param codec: the codec of ``load`` and ``save``: a name or a
        :class:`~pydatatask.codecs.Codec`; None picks it from ``filename``'s extension
        (``data.csv`` is CSV through pyarrow, ``data.parquet`` Parquet, ...).
    :raises ConfigurationError: for a dataset, partition or file name that cannot be one
        segment of the layout, or an unknown codec name.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        dataset: str,
        *,
        partition: str = "rundate",
        filename: str = "data.csv",
        latest: bool = True,
        codec: str | Codec | None = None,
    ) -> None:
        self._name_layout(dataset, partition, filename, latest)
        self.root = Path(root).absolute()
        self.dataset_path = self.root / f"dataset={dataset}"
        """The folder that reads as the Hive-partitioned dataset."""
        self.latest_path = self.root / "latest" / f"dataset={dataset}" / filename
        """Where the value of the greatest id is kept, with ``latest``."""
        self._latest_files = FileRepository(self.latest_path.parent)
        self._codec = codec_for(codec, os.path.splitext(filename)[1])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self.dataset_path)!r} {self.partition}=*>"

    def _partition_files(self, job: str) -> FileRepository:
        return FileRepository(self.dataset_path / f"{self.partition}={job}")

    def _scan_sync(self, complete: bool) -> list[str]:
        """Return the partition values found, only those with a file when ``complete``."""
        head = f"{self.partition}="
        found: list[str] = []
        try:
            entries = os.scandir(self.dataset_path)
        except (FileNotFoundError, NotADirectoryError):
            return found
        with entries:
            for entry in entries:
                if not entry.name.startswith(head) or not entry.is_dir():
                    continue
                if not complete or os.path.isfile(os.path.join(entry.path, self.filename)):
                    found.append(entry.name[len(head) :])
        return found

    async def _iter_ids(self) -> AsyncIterator[str]:
        for job in await asyncio.to_thread(self._scan_sync, True):
            yield job

    async def _contains(self, job: str) -> bool:
        return await self._partition_files(job).contains(self.filename)

    async def _info(self, job: str) -> Any:
        """Return the path of the partition's file, present or not."""
        return self.dataset_path / f"{self.partition}={job}" / self.filename

    async def before_outside_write(self, job: str) -> None:
        """Create the partition's folder, so that a job can write the file ``info`` names."""
        folder = self.dataset_path / f"{self.partition}={self.check_job_id(job)}"
        await asyncio.to_thread(os.makedirs, folder, exist_ok=True)

    async def validate(self) -> None:
        """Create the dataset's folder, and tidy what interrupted writers left behind.

        :raises BackendError: when a folder cannot be created or written.
        """
        await asyncio.to_thread(os.makedirs, self.dataset_path, exist_ok=True)
        for job in await asyncio.to_thread(self._scan_sync, False):
            if self.is_valid_job_id(job):
                await self._partition_files(job).validate()
        if self.keeps_latest:
            await self._latest_files.validate()

    async def _open_reader(self, job: str) -> ByteReader:
        try:
            return await self._partition_files(job).open(self.filename, "rb")
        except JobNotFoundError:
            raise JobNotFoundError(job, self) from None

    async def _open_partition_writer(self, job: str) -> ByteWriter:
        return await self._partition_files(job).open(self.filename, "wb")

    async def _delete_partition(self, job: str) -> None:
        files = self._partition_files(job)
        await files.delete(self.filename)
        # A folder that still holds something (another file, a live writer) stays.
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.rmdir, files.basedir)

    async def _copy_to_latest(self, job: str) -> None:
        async with (
            await self._partition_files(job).open(self.filename, "rb") as reader,
            await self._latest_files.open(self.filename, "wb") as writer,
        ):
            await copy_stream(reader, writer)

    async def _remove_latest(self) -> None:
        await self._latest_files.delete(self.filename)


class S3HiveDatasetRepository(_HiveDataset, S3BucketRepository):
    """A dataset in an S3 bucket: job ``k`` is ``PREFIX/dataset=NAME/PARTITION=k/FILENAME``.

    Everything :class:`S3BucketRepository` does holds (``info`` is the object's bucket,
    key and URLs; writes are one ``PutObject`` or a multipart upload, visible whole when
    the writer closes). Listing lists the keys under ``PREFIX/dataset=NAME/PARTITION=``.

    With ``latest`` (the default), once a write of an id greater than or equal to every
    id present is complete, the object is copied server-side (``CopyObject``, so up to
    5 GiB) to ``PREFIX/latest/dataset=NAME/FILENAME``, which S3 replaces atomically; a
    write of an older id leaves it alone. ``delete(job)`` of the greatest id copies the
    new greatest id there, or deletes it when none is left. Updates are serialised
    within one process, as for :class:`HiveDatasetRepository`.

    :param client: a zero-argument callable (a session resource) returning an
        aiobotocore S3 client, as for :class:`S3BucketRepository`.
    :param bucket: the bucket name, optionally followed by ``/`` and a key prefix.
    :param prefix: the folder of keys the dataset lives in (a ``/`` is added).
    :param append_only: say that new partitions sort after every existing one (dates
        do); ``run --forever`` then asks only for the keys after the greatest one known,
        as for :class:`S3BucketRepository`.
    :param follow_every: seconds between those requests, with ``append_only``.
    :raises ConfigurationError: as :class:`HiveDatasetRepository`, and as
        :class:`S3BucketRepository` for the bucket, the client and ``follow_every``.
    :raises MissingDependencyError: when the ``s3`` extra is not installed.
    """

    def __init__(
        self,
        client: Callable[[], Any],
        bucket: str,
        dataset: str,
        *,
        prefix: str = "",
        partition: str = "rundate",
        filename: str = "data.csv",
        latest: bool = True,
        codec: str | Codec | None = None,
        append_only: bool = False,
        follow_every: float = 1.0,
    ) -> None:
        self._name_layout(dataset, partition, filename, latest)
        super().__init__(
            client,
            bucket,
            f"/{filename}",
            prefix=prefix,
            codec=codec_for(codec, os.path.splitext(filename)[1]),
            append_only=append_only,
            follow_every=follow_every,
        )
        root = self.prefix if not self.prefix or self.prefix.endswith("/") else self.prefix + "/"
        self.dataset_prefix = f"{root}dataset={dataset}/"
        """The key prefix that reads as the Hive-partitioned dataset."""
        self.latest_key = f"{root}latest/dataset={dataset}/{filename}"
        """The key of the copy of the greatest id, with ``latest``."""
        self.prefix = f"{self.dataset_prefix}{partition}="

    async def _open_partition_writer(self, job: str) -> ByteWriter:
        return await S3BucketRepository._open_writer(self, job)

    async def _delete_partition(self, job: str) -> None:
        await S3BucketRepository._delete(self, job)

    async def _copy_to_latest(self, job: str) -> None:
        client = self._client()
        source = self._key(job)
        with self._errors(client, f"copying {source!r} to {self.latest_key!r}", job):
            await client.copy_object(
                Bucket=self.bucket,
                Key=self.latest_key,
                CopySource={"Bucket": self.bucket, "Key": source},
            )

    async def _remove_latest(self) -> None:
        client = self._client()
        with self._errors(client, f"deleting {self.latest_key!r}"):
            await client.delete_object(Bucket=self.bucket, Key=self.latest_key)
