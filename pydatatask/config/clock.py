"""The time-keyed repository kinds of pipeline files: schedules and Hive datasets."""

from __future__ import annotations

from typing import Annotated

from pydatatask.config.registry import BuildContext, Choices, Kind, register
from pydatatask.config.repositories import CodecName, FilePath, S3ClientResource
from pydatatask.repository.base import Repository

__all__: list[str] = []

Choice = Annotated[str, Choices(("all", "latest"))]


def schedule_repository(
    context: BuildContext,
    /,
    *,
    start: str,
    every: str | None = None,
    cron: str | None = None,
    tz: str = "UTC",
    end: str | None = None,
    id_format: str = "%Y-%m-%dT%H%M",
    catchup: Choice = "all",
) -> Repository:
    """List a schedule's occurrences up to now as job ids (``ScheduleRepository``).

    :param start: the first occurrence (an ISO timestamp; without a zone, in ``tz``).
    :param every: ``"Monday at 15:00"``, ``"day at 02:30"``, ``"hour"``, or a period such
        as ``"10m30s"``, ``"1d"``, ``"1w"``, ``"2M"``, ``"1Y"``.
    :param cron: a five-field cron line, in place of ``every``.
    :param tz: the time zone wall-clock times follow.
    :param end: no occurrence after this.
    :param id_format: how an occurrence is written as a job id (``strftime``).
    :param catchup: ``all`` occurrences since ``start``, or only the ``latest``.
    """
    from pydatatask.repository.schedule import ScheduleRepository

    return ScheduleRepository(
        every,
        cron=cron,
        tz=tz,
        start=start,
        end=end,
        id_format=id_format,
        catchup="latest" if catchup == "latest" else "all",
    )


def dataset_repository(
    context: BuildContext,
    /,
    *,
    path: FilePath,
    dataset: str,
    partition: str = "rundate",
    filename: str = "data.csv",
    latest: bool = True,
    codec: CodecName | None = None,
) -> Repository:
    """Keep one file per partition in a Hive layout (``HiveDatasetRepository``).

    :param path: the root folder (``ROOT/dataset=NAME/PARTITION=ID/FILENAME``).
    :param dataset: the dataset's name.
    :param partition: the partition column, whose values are the job ids.
    :param filename: the file in each partition; its extension picks the codec.
    :param latest: keep ``ROOT/latest/dataset=NAME/FILENAME`` a copy of the newest one.
    :param codec: the codec of ``load`` and ``save`` (default: from ``filename``).
    """
    from pydatatask.repository.dataset import HiveDatasetRepository

    return HiveDatasetRepository(
        path, dataset, partition=partition, filename=filename, latest=latest, codec=codec
    )


def dataset_s3_repository(
    context: BuildContext,
    /,
    *,
    resource: S3ClientResource,
    bucket: str,
    dataset: str,
    prefix: str = "",
    partition: str = "rundate",
    filename: str = "data.csv",
    latest: bool = True,
    codec: CodecName | None = None,
    append_only: bool = False,
    follow_every: float = 1.0,
) -> Repository:
    """Keep one object per partition in a Hive layout in S3 (``S3HiveDatasetRepository``).

    :param resource: the ``s3`` resource giving the client.
    :param bucket: the bucket.
    :param dataset: the dataset's name.
    :param prefix: a key prefix before ``dataset=NAME/``.
    :param partition: the partition column, whose values are the job ids.
    :param filename: the object in each partition; its extension picks the codec.
    :param latest: keep ``PREFIX/latest/dataset=NAME/FILENAME`` a copy of the newest one.
    :param codec: the codec of ``load`` and ``save`` (default: from ``filename``).
    :param append_only: new partitions sort after every existing one (see ``s3``).
    :param follow_every: seconds between requests for new partitions.
    """
    from pydatatask.repository.dataset import S3HiveDatasetRepository

    return S3HiveDatasetRepository(
        resource,
        bucket,
        dataset,
        prefix=prefix,
        partition=partition,
        filename=filename,
        latest=latest,
        codec=codec,
        append_only=append_only,
        follow_every=follow_every,
    )


register(Kind("schedule", "repository", schedule_repository))
register(Kind("dataset", "repository", dataset_repository))
register(Kind("dataset-s3", "repository", dataset_s3_repository))
