"""The repository kinds of pipeline files, each a factory over its keys and one registration.

Backend classes are imported inside their factories, so reading a file that uses no
S3, MongoDB or registry repository needs none of those packages.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, cast

from pydatatask.codecs import BUILTIN_CODECS
from pydatatask.config.registry import (
    BuildContext,
    Choices,
    Kind,
    Reference,
    RelativePath,
    RepositoryName,
    register,
)
from pydatatask.repository.base import Repository
from pydatatask.session import Resource

__all__ = ["CodecName", "FilePath", "S3ClientResource"]

CodecName = Annotated[str, Choices(tuple(BUILTIN_CODECS))]
"""The name of a built-in codec."""
FilePath = Annotated[Path, RelativePath()]
"""A path relative to the pipeline file's folder."""
S3ClientResource = Annotated[Resource[Any], Reference("resource", ("s3",))]
"""A key naming an ``s3`` resource, whose value is the S3 client."""
_MongoClient = Annotated[Resource[Any], Reference("resource", ("mongodb",))]
_RegistryClient = Annotated[Resource[Any], Reference("resource", ("docker-registry",))]


def memory_repository(
    context: BuildContext, /, *, data: dict[str, Any] | None = None
) -> Repository:
    """Keep structured values in this process's memory (``InProcessMetadataRepository``).

    :param data: the initial values, by job id.
    """
    from pydatatask.repository.memory import InProcessMetadataRepository

    return InProcessMetadataRepository(dict(data or {}))


def memory_blob_repository(
    context: BuildContext,
    /,
    *,
    data: dict[str, str] | None = None,
    codec: CodecName | None = None,
) -> Repository:
    """Keep byte values in this process's memory (``InProcessBlobRepository``).

    :param data: the initial values, by job id, stored UTF-8 encoded.
    :param codec: the codec of ``load`` and ``save`` (default ``bytes``).
    """
    from pydatatask.repository.memory import InProcessBlobRepository

    return InProcessBlobRepository(dict(data or {}), codec=codec)


def file_repository(
    context: BuildContext,
    /,
    *,
    path: FilePath,
    extension: str = "",
    case_insensitive: bool = False,
    codec: CodecName | None = None,
) -> Repository:
    """Keep one file per job in a folder (``FileRepository``).

    :param path: the folder, relative to the pipeline file.
    :param extension: appended to the job id to name its file (``.txt``).
    :param case_insensitive: match the extension and file names in any case.
    :param codec: the codec of ``load`` and ``save`` (default: from the extension).
    """
    from pydatatask.repository.filesystem import FileRepository

    return FileRepository(path, extension, case_insensitive, codec=codec)


def directory_repository(
    context: BuildContext,
    /,
    *,
    path: FilePath,
    extension: str = "",
    case_insensitive: bool = False,
    discard_empty: bool = False,
) -> Repository:
    """Keep one directory per job in a folder (``DirectoryRepository``).

    :param path: the folder, relative to the pipeline file.
    :param extension: appended to the job id to name its directory.
    :param case_insensitive: match names in any case.
    :param discard_empty: an empty directory does not count as present.
    """
    from pydatatask.repository.filesystem import DirectoryRepository

    return DirectoryRepository(path, extension, case_insensitive, discard_empty)


def yaml_repository(
    context: BuildContext,
    /,
    *,
    path: FilePath,
    extension: str = ".yaml",
    durable: bool = True,
) -> Repository:
    """Keep one YAML file per job in a folder (``YamlMetadataFileRepository``).

    :param path: the folder, relative to the pipeline file.
    :param extension: appended to the job id to name its file.
    :param durable: sync each value to disk before it counts as stored.
    """
    from pydatatask.repository.filesystem import YamlMetadataFileRepository

    return YamlMetadataFileRepository(path, extension, durable=durable)


def s3_repository(
    context: BuildContext,
    /,
    *,
    resource: S3ClientResource,
    bucket: str,
    suffix: str = "",
    prefix: str = "",
    mimetype: str = "application/octet-stream",
    incluster_endpoint: str | None = None,
    codec: CodecName | None = None,
    append_only: bool = False,
    follow_every: float = 1.0,
) -> Repository:
    """Keep one object per job in an S3 bucket (``S3BucketRepository``).

    :param resource: the ``s3`` resource giving the client.
    :param bucket: the bucket, optionally followed by ``/`` and a key prefix.
    :param suffix: appended to the job id to name its object (``.txt``).
    :param prefix: a key prefix, after the one given in ``bucket``.
    :param mimetype: the ``Content-Type`` of written objects.
    :param incluster_endpoint: the endpoint as seen from inside a cluster.
    :param codec: the codec of ``load`` and ``save`` (default: from the suffix).
    :param append_only: new keys sort after every existing one, so ``run --forever``
        asks only for the keys after the greatest it knows.
    :param follow_every: seconds between those requests.
    """
    from pydatatask.repository.s3 import S3BucketRepository

    return S3BucketRepository(
        resource,
        bucket,
        suffix,
        prefix=prefix,
        mimetype=mimetype,
        incluster_endpoint=incluster_endpoint,
        codec=codec,
        append_only=append_only,
        follow_every=follow_every,
    )


def yaml_s3_repository(
    context: BuildContext,
    /,
    *,
    resource: S3ClientResource,
    bucket: str,
    suffix: str = ".yaml",
    prefix: str = "",
    mimetype: str = "text/yaml",
    append_only: bool = False,
    follow_every: float = 1.0,
) -> Repository:
    """Keep one YAML object per job in an S3 bucket (``YamlMetadataS3Repository``).

    :param resource: the ``s3`` resource giving the client.
    :param bucket: the bucket, optionally followed by ``/`` and a key prefix.
    :param suffix: appended to the job id to name its object.
    :param prefix: a key prefix, after the one given in ``bucket``.
    :param mimetype: the ``Content-Type`` of written objects.
    :param append_only: new keys sort after every existing one (see ``s3``).
    :param follow_every: seconds between requests for new keys.
    """
    from pydatatask.repository.s3 import YamlMetadataS3Repository

    return YamlMetadataS3Repository(
        resource,
        bucket,
        suffix,
        prefix=prefix,
        mimetype=mimetype,
        append_only=append_only,
        follow_every=follow_every,
    )


class _CollectionAccessor:
    """Return ``client()[database][collection]`` of a session's MongoDB client."""

    def __init__(self, client: Resource[Any], database: str, collection: str) -> None:
        self.client = client
        self.name = f"{database}.{collection}"
        self.database = database
        self.collection = collection

    def __call__(self) -> Any:
        return self.client()[self.database][self.collection]


def mongodb_repository(
    context: BuildContext,
    /,
    *,
    resource: _MongoClient,
    database: str,
    collection: str,
) -> Repository:
    """Keep one document per job in a MongoDB collection (``MongoMetadataRepository``).

    :param resource: the ``mongodb`` resource giving the client.
    :param database: the database name.
    :param collection: the collection name.
    """
    from pydatatask.repository.mongodb import MongoMetadataRepository

    return MongoMetadataRepository(_CollectionAccessor(resource, database, collection))


def docker_repository(
    context: BuildContext,
    /,
    *,
    resource: _RegistryClient,
    domain: str,
    repository: str,
) -> Repository:
    """List the tags of one image repository in a Docker registry (``DockerRepository``).

    :param resource: the ``docker-registry`` resource giving the registry client.
    :param domain: ``host[:port]`` of the registry, optionally with ``http://``.
    :param repository: the image repository's name in the registry.
    """
    from pydatatask.repository.docker import DockerRepository

    return DockerRepository(resource, domain, repository)


def all_of_repository(
    context: BuildContext, /, *, repositories: dict[str, RepositoryName]
) -> Repository:
    """Show the ids present in every one of some repositories (``AggregateAndRepository``).

    :param repositories: the repositories, each under the name its ``info`` is given.
    """
    from pydatatask.repository.combinators import AggregateAndRepository

    return AggregateAndRepository(**repositories)


def any_of_repository(
    context: BuildContext, /, *, repositories: dict[str, RepositoryName]
) -> Repository:
    """Show the ids present in any of some repositories (``AggregateOrRepository``).

    :param repositories: the repositories, each under the name its ``info`` is given.
    """
    from pydatatask.repository.combinators import AggregateOrRepository

    return AggregateOrRepository(**repositories)


def blocking_repository(
    context: BuildContext, /, *, source: RepositoryName, unless: RepositoryName
) -> Repository:
    """Show the ids of one repository that are not in another (``BlockingRepository``).

    :param source: the repository whose ids are shown.
    :param unless: the repository whose ids are hidden.
    """
    from pydatatask.repository.combinators import BlockingRepository

    return BlockingRepository(source, unless)


def related_repository(
    context: BuildContext,
    /,
    *,
    base: RepositoryName,
    translator: RepositoryName,
    allow_deletes: bool = False,
    prefetch_lookup: bool = True,
) -> Repository:
    """Show the items of ``base`` that ``translator`` names (``RelatedItemRepository``).

    :param base: the repository holding the items.
    :param translator: the repository whose value for an id names its item in ``base``.
    :param allow_deletes: let ``delete`` remove the base item.
    :param prefetch_lookup: read the whole translator once per listing.
    """
    from pydatatask.repository.combinators import RelatedItemRepository

    return RelatedItemRepository(base, translator, allow_deletes, prefetch_lookup)


def _awaitable(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Return ``func`` as an async function (a plain function's result is returned as is)."""
    if inspect.iscoroutinefunction(func):
        return cast(Callable[..., Awaitable[Any]], func)

    async def call(*args: Any) -> Any:
        result = func(*args)
        return await result if inspect.isawaitable(result) else result

    return call


def map_repository(
    context: BuildContext,
    /,
    *,
    base: RepositoryName,
    function: str,
    filter: str | None = None,
    allow_deletes: bool = False,
) -> Repository:
    """Show another repository through a function of its items (``repo.map``).

    :param base: the repository shown.
    :param function: ``module:attribute``, imported as a ``function`` task's: a function
        (``def`` or ``async def``) of an item's ``info`` that returns this view's ``info``.
    :param filter: ``module:attribute``: a function of a job id; only the ids for which
        it returns true are listed (default: every id of ``base``).
    :param allow_deletes: let ``delete`` remove the base item.
    """
    from pydatatask.config.tasks import InvalidValueError, import_function

    func = import_function(function, context.folder, "function")
    filt = None if filter is None else import_function(filter, context.folder, "filter")
    for key, found in (("function", func), ("filter", filt)):
        if found is not None and not callable(found):
            raise InvalidValueError(key, f"{type(found).__name__} is not a function")
    return base.map(_awaitable(func), None if filt is None else _awaitable(filt), allow_deletes)


register(Kind("memory", "repository", memory_repository))
register(Kind("memory-blob", "repository", memory_blob_repository))
register(Kind("file", "repository", file_repository))
register(Kind("directory", "repository", directory_repository))
register(Kind("yaml", "repository", yaml_repository))
register(Kind("s3", "repository", s3_repository))
register(Kind("yaml-s3", "repository", yaml_s3_repository))
register(Kind("mongodb", "repository", mongodb_repository))
register(Kind("docker", "repository", docker_repository))
register(Kind("all-of", "repository", all_of_repository))
register(Kind("any-of", "repository", any_of_repository))
register(Kind("blocking", "repository", blocking_repository))
register(Kind("related", "repository", related_repository))
register(Kind("map", "repository", map_repository))
