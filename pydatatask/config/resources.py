"""The resource kinds of pipeline files: clients and connections built from settings.

Each factory returns an async generator function for :meth:`pydatatask.Session.resource`,
which opens the client when the pipeline opens and closes it when it closes. A factory
checks at once that its backend package is installed (so ``validate`` reports a missing
extra), and imports it for real only when the session opens.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydatatask._optional import import_optional
from pydatatask.config.registry import BuildContext, Choices, Kind, RelativePath, register

if TYPE_CHECKING:
    import aiodocker
    import asyncssh
    from kubernetes_asyncio.client import ApiClient, Configuration
    from kubernetes_asyncio.config import new_client_from_config

    from pydatatask.repository.docker import DockerRegistryClient

__all__ = ["ResourceFactory"]

ResourceFactory = Callable[[], AsyncIterator[Any]]
"""An async generator function that yields one live client."""

_FilePath = Annotated[Path, RelativePath()]


def s3_resource(
    context: BuildContext,
    /,
    *,
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    region: str | None = None,
    addressing_style: Annotated[str, Choices(("auto", "path", "virtual"))] | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_attempts: int = 3,
) -> ResourceFactory:
    """Open an aiobotocore S3 client.

    :param endpoint_url: the S3 endpoint (AWS when not given).
    :param access_key: the access key id (else the usual AWS configuration).
    :param secret_key: the secret access key.
    :param session_token: a temporary session token.
    :param region: the region name.
    :param addressing_style: ``path``, ``virtual`` or ``auto`` (default: ``path`` with
        an ``endpoint_url``, else ``auto``).
    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for an answer.
    :param max_attempts: attempts per request, the first one included.
    """
    import_optional("aiobotocore", "s3")
    style = addressing_style or ("path" if endpoint_url else "auto")

    async def s3_client() -> AsyncIterator[Any]:
        sessions = import_optional("aiobotocore.session", "s3")
        config = import_optional("botocore.config", "s3").Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": style},
        )
        async with sessions.get_session().create_client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            region_name=region,
            config=config,
        ) as client:
            yield client

    return s3_client


def mongodb_resource(
    context: BuildContext, /, *, uri: str, server_selection_timeout: float = 10.0
) -> ResourceFactory:
    """Open a pymongo ``AsyncMongoClient``.

    :param uri: the connection string (``mongodb://host:port/``).
    :param server_selection_timeout: seconds to wait for a server to answer.
    """
    import_optional("pymongo", "mongodb")

    async def mongodb_client() -> AsyncIterator[Any]:
        pymongo = import_optional("pymongo", "mongodb")
        client = pymongo.AsyncMongoClient(
            uri, serverSelectionTimeoutMS=int(server_selection_timeout * 1000)
        )
        try:
            yield client
        finally:
            await client.close()

    return mongodb_client


def ssh_resource(
    context: BuildContext,
    /,
    *,
    host: str,
    port: int = 22,
    username: str | None = None,
    password: str | None = None,
    client_keys: list[_FilePath] | None = None,
    known_hosts: _FilePath | None = None,
    agent: bool = True,
    connect_timeout: float = 10.0,
) -> ResourceFactory:
    """Open an asyncssh connection, for process tasks that run their jobs on that host.

    :param host: the host name or address.
    :param port: the SSH port.
    :param username: the user to log in as (default: the local user).
    :param password: a password, when keys are not used.
    :param client_keys: private key files, relative to the pipeline file.
    :param known_hosts: the file of trusted host keys (default ``~/.ssh/known_hosts``).
    :param agent: use a running SSH agent's keys.
    :param connect_timeout: seconds to wait for the connection.
    """
    import_optional("asyncssh", "ssh")
    options: dict[str, Any] = {"connect_timeout": connect_timeout}
    if username is not None:
        options["username"] = username
    if password is not None:
        options["password"] = password
    if client_keys is not None:
        options["client_keys"] = [str(key) for key in client_keys]
    if known_hosts is not None:
        options["known_hosts"] = str(known_hosts)
    if not agent:
        options["agent_path"] = None

    async def ssh_connection() -> AsyncIterator[asyncssh.SSHClientConnection]:
        from pydatatask.executor.ssh import ssh_connection as connect

        async with connect(host, port, **options) as connection:
            yield connection

    return ssh_connection


def docker_resource(context: BuildContext, /, *, url: str | None = None) -> ResourceFactory:
    """Open an aiodocker client of a Docker engine, for container tasks.

    :param url: the engine's address (``unix:///var/run/docker.sock``; default:
        ``DOCKER_HOST`` or the local socket).
    """
    import_optional("aiodocker", "docker")

    async def docker_client() -> AsyncIterator[aiodocker.Docker]:
        docker: type[aiodocker.Docker] = import_optional("aiodocker", "docker").Docker
        async with docker(url=url) as client:
            yield client

    return docker_client


def docker_registry_resource(
    context: BuildContext,
    /,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 60.0,
) -> ResourceFactory:
    """Open a Docker registry API client, for ``docker`` repositories.

    :param username: the user name (anonymous when not given).
    :param password: the password or token.
    :param timeout: seconds allowed for each request.
    """
    import_optional("aiohttp", "docker")

    async def registry_client() -> AsyncIterator[DockerRegistryClient]:
        from pydatatask.repository.docker import DockerRegistryClient

        client = DockerRegistryClient(username=username, password=password, timeout=timeout)
        try:
            yield client
        finally:
            await client.close()

    return registry_client


def kubernetes_resource(
    build: BuildContext,
    /,
    *,
    kubeconfig: _FilePath | None = None,
    context: str | None = None,
) -> ResourceFactory:
    """Open a kubernetes-asyncio ``ApiClient``, for kube tasks.

    :param kubeconfig: the kubeconfig file (default: ``KUBECONFIG`` or
        ``~/.kube/config``, or the in-cluster configuration inside a pod).
    :param context: the kubeconfig context to use (default: its current one).
    """
    import_optional("kubernetes_asyncio", "kubernetes")

    async def kubernetes_client() -> AsyncIterator[ApiClient]:
        config = import_optional("kubernetes_asyncio.config", "kubernetes")
        client = import_optional("kubernetes_asyncio.client", "kubernetes")
        api: ApiClient
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration_type: type[Configuration] = client.Configuration
            api_client: type[ApiClient] = client.ApiClient
            configuration = configuration_type()
            # load_incluster_config has no annotations: called through the untyped module.
            config.load_incluster_config(client_configuration=configuration)
            api = api_client(configuration)
        else:
            if TYPE_CHECKING:  # checked against the package's own signature
                new_client = new_client_from_config
            else:
                new_client = config.new_client_from_config
            api = await new_client(
                config_file=None if kubeconfig is None else str(kubeconfig),
                context=context,
                persist_config=False,
            )
        async with api:
            yield api

    return kubernetes_client


register(Kind("s3", "resource", s3_resource))
register(Kind("mongodb", "resource", mongodb_resource))
register(Kind("ssh", "resource", ssh_resource))
register(Kind("docker", "resource", docker_resource))
register(Kind("docker-registry", "resource", docker_registry_resource))
register(Kind("kubernetes", "resource", kubernetes_resource))
