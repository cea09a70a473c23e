"""DockerRepository against a real registry (distribution v2 on loopback)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("aiohttp")

import pydatatask
from pydatatask import BackendError, BackendUnavailableError, InvalidJobIdError, JobNotFoundError
from pydatatask.repository import docker as docker_module
from pydatatask.repository.docker import DockerRegistryClient, DockerRepository
from pydatatask.testing.repositories import RepositoryContract
from tests.servers.docker import RegistryServer, free_loopback_port, layer_of, push_image

pytestmark = pytest.mark.backend

LAYER = layer_of({"hello.txt": b"hello\n"})


@pytest_asyncio.fixture(loop_scope="function")
async def registry_client() -> AsyncIterator[DockerRegistryClient]:
    async with DockerRegistryClient(timeout=10) as client:
        yield client


def open_repository(
    server: RegistryServer, client: Any, name: str | None = None
) -> tuple[pydatatask.Session, DockerRepository]:
    session = pydatatask.Session()

    @session.resource
    async def registry() -> AsyncIterator[Any]:
        yield client

    repository = DockerRepository(registry, server.domain, name or f"test/{uuid.uuid4().hex[:12]}")
    return session, repository


async def push(repo: DockerRepository, job: str, payload: str = "value") -> str:
    tag = repo.check_job_id(job)
    labels = {"tag": tag, "payload": payload}
    return await push_image(repo.client(), repo.base_url, tag, [LAYER], labels=labels)


class TestDockerRepository(RepositoryContract):
    """The contract, with valid Docker tags (a tag cannot hold spaces or non-ASCII)."""

    @pytest_asyncio.fixture(loop_scope="function")
    async def repo(
        self, docker_registry: RegistryServer, registry_client: DockerRegistryClient
    ) -> AsyncIterator[DockerRepository]:
        session, repository = open_repository(docker_registry, registry_client)
        async with session:
            await repository.validate()
            yield repository

    async def put(self, repo: Any, job: str, payload: str = "value") -> None:
        await push(repo, job, payload)

    async def test_listing_matches_contains(self, repo: Any) -> None:
        jobs = {"alpha", "beta", "gamma-1", "with_underscore", "v1.2.3", "_lead"}
        for job in jobs:
            await self.put(repo, job)
        assert await repo.ids() == jobs
        for job in jobs:
            assert await repo.contains(job)
            assert await repo.info(job) == f"{repo.domain}/{repo.repository}:{job}"
        assert not await repo.contains("missing")
        assert set(await repo.info_all()) == jobs

    @pytest.mark.parametrize("job", ["with space", "ünïcode", ".dot", "-dash", "a" * 129, "a:b"])
    async def test_tag_rules_are_enforced(self, repo: Any, job: str) -> None:
        with pytest.raises(InvalidJobIdError):
            await repo.contains(job)


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[RegistryServer]:
    """Serve an aiohttp application on a free loopback port."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    port = free_loopback_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield RegistryServer(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


async def test_pagination_follows_next_links(
    registry_client: DockerRegistryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registry 2.8 ignores ``n``, so a server paging as the API describes stands in."""
    from aiohttp import web

    monkeypatch.setattr(docker_module, "PAGE_SIZE", 3)
    tags = sorted(f"t{index:02d}" for index in range(11))
    pages: list[dict[str, str]] = []

    async def tags_list(request: web.Request) -> web.Response:
        pages.append(dict(request.query))
        size, last = int(request.query["n"]), request.query.get("last", "")
        page = [tag for tag in tags if tag > last][:size]
        headers = {}
        if page and page[-1] != tags[-1]:
            headers["Link"] = f'</v2/paged/repo/tags/list?n={size}&last={page[-1]}>; rel="next"'
        return web.json_response({"name": "paged/repo", "tags": page}, headers=headers)

    app = web.Application()
    app.router.add_get("/v2/paged/repo/tags/list", tags_list)
    async with serving(app) as server:
        session, repo = open_repository(server, registry_client, "paged/repo")
        async with session:
            assert [job async for job in repo] == tags
    assert len(pages) == 4  # 11 tags in pages of 3
    assert pages[0] == {"n": "3"}
    assert pages[1] == {"n": "3", "last": "t02"}


async def manifest_digest(repo: DockerRepository, tag: str) -> str:
    response = await repo.client().request(
        "GET",
        f"{repo.base_url}/manifests/{tag}",
        headers={"Accept": ", ".join(docker_module.MANIFEST_MEDIA_TYPES)},
    )
    assert response.status == 200, response
    return response.headers["Docker-Content-Digest"]


async def test_delete_keeps_other_tags(
    docker_registry: RegistryServer, registry_client: DockerRegistryClient
) -> None:
    session, repo = open_repository(docker_registry, registry_client)
    async with session:
        await push(repo, "first")
        second = await push(repo, "second")
        await repo.delete("first")
        assert await repo.ids() == {"second"}
        assert await manifest_digest(repo, "second") == second
        with pytest.raises(JobNotFoundError):
            await repo.info("first")


async def test_delete_removes_one_tag_of_a_shared_manifest(
    docker_registry: RegistryServer, registry_client: DockerRegistryClient
) -> None:
    """A release tagged both ``v1`` and ``latest``: retiring ``v1`` must keep ``latest``."""
    session, repo = open_repository(docker_registry, registry_client)
    async with session:
        labels = {"release": "1"}
        digest = await push_image(repo.client(), repo.base_url, "v1", [LAYER], labels=labels)
        assert await push_image(repo.client(), repo.base_url, "latest", [LAYER], labels=labels) == (
            digest
        )
        await repo.delete("v1")
        assert await repo.ids() == {"latest"}
        assert not await repo.contains("v1")
        assert await repo.info("latest") == repo.image("latest")
        assert await manifest_digest(repo, "latest") == digest
        pulled = await repo.client().request("GET", f"{repo.base_url}/manifests/{digest}")
        manifest = pulled.json()
        for blob in [manifest["config"], *manifest["layers"]]:
            fetched = await repo.client().request("GET", f"{repo.base_url}/blobs/{blob['digest']}")
            assert fetched.status == 200
            assert len(fetched.body) == blob["size"]
        await repo.delete("v1")  # already gone: nothing happens
        assert await repo.ids() == {"latest"}


async def test_a_missing_repository_is_empty(
    docker_registry: RegistryServer, registry_client: DockerRegistryClient
) -> None:
    session, repo = open_repository(docker_registry, registry_client, "never/pushed")
    async with session:
        assert await repo.ids() == set()
        await repo.delete("anything")


async def test_a_bare_aiohttp_session_works(docker_registry: RegistryServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        session, repo = open_repository(docker_registry, http)
        async with session:
            await push(repo, "plain")
            assert await repo.ids() == {"plain"}


async def test_basic_auth(docker_auth_registry: RegistryServer) -> None:
    server = docker_auth_registry
    async with DockerRegistryClient(
        username=server.username, password=server.password, timeout=10
    ) as client:
        session, repo = open_repository(server, client)
        async with session:
            await repo.validate()
            await push(repo, "secret")
            assert await repo.ids() == {"secret"}
            await repo.delete("secret")
            assert await repo.ids() == set()
    async with DockerRegistryClient(username=server.username, password="wrong") as client:
        session, repo = open_repository(server, client)
        async with session:
            with pytest.raises(BackendError, match=r"refused access \(401\)") as caught:
                await repo.ids()
            assert server.domain in str(caught.value)
            assert not isinstance(caught.value, BackendUnavailableError)
    async with DockerRegistryClient() as client:
        session, repo = open_repository(server, client)
        async with session:
            with pytest.raises(BackendError, match="refused access"):
                await repo.validate()


async def test_bearer_token_auth(docker_registry: RegistryServer) -> None:
    """A token service in front of the registry: 401 with a Bearer challenge, then a token."""
    from aiohttp import ClientSession, web

    username, password, token = "robot", "pw", uuid.uuid4().hex
    issued: list[str] = []
    port = 0

    async def issue(request: web.Request) -> web.Response:
        import base64

        expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"errors": [{"code": "DENIED"}]}, status=401)
        issued.append(request.query.get("scope", ""))
        return web.json_response({"token": token, "expires_in": 300})

    async def proxy(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {token}":
            realm = f"http://127.0.0.1:{port}/token"
            scope = 'scope="repository:x:pull"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401,
                headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="test",{scope}'},
            )
        async with (
            ClientSession() as http,
            http.request(
                request.method,
                f"{docker_registry.url}{request.path_qs}",
                data=await request.read(),
                headers={"Content-Type": request.headers.get("Content-Type", "")},
            ) as upstream,
        ):
            body = await upstream.read()
            headers = {
                key: value
                for key, value in upstream.headers.items()
                if key.lower() in ("docker-content-digest", "link", "location", "content-type")
            }
            return web.Response(status=upstream.status, body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/token", issue)
    app.router.add_route("*", "/{tail:.*}", proxy)
    async with serving(app) as proxied:
        port = int(proxied.domain.rsplit(":", 1)[1])
        async with DockerRegistryClient(username=username, password=password) as client:
            session, repo = open_repository(proxied, client)
            async with session:
                await push(repo, "tokened")
                assert await repo.ids() == {"tokened"}
        assert issued == ["repository:x:pull"]  # one token, reused for every request
        async with DockerRegistryClient(username=username, password="bad") as client:
            session, repo = open_repository(proxied, client)
            async with session:
                with pytest.raises(BackendError, match="token service"):
                    await repo.ids()


async def test_unreachable_registry_is_unavailable(registry_client: DockerRegistryClient) -> None:
    session, repo = open_repository(
        RegistryServer(f"http://127.0.0.1:{free_loopback_port()}"), registry_client
    )
    async with session:
        with pytest.raises(BackendUnavailableError, match="could not reach"):
            await repo.contains("x")


def test_domain_decides_the_scheme() -> None:
    def accessor() -> Any:
        raise AssertionError("not called")

    assert (
        DockerRepository(accessor, "localhost:5000", "a/b").base_url
        == "http://localhost:5000/v2/a/b"
    )
    assert DockerRepository(accessor, "registry.example.com", "a").base_url.startswith("https://")
    secure = DockerRepository(accessor, "https://127.0.0.1:5000", "a/b")
    assert secure.base_url == "https://127.0.0.1:5000/v2/a/b"
    assert secure.image("tag") == "127.0.0.1:5000/a/b:tag"
