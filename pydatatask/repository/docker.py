# Longer than 400 lines on purpose: the registry client (tokens, manifests, tags) and the
# repository over it change together.
"""The tags of one image repository in a Docker registry, through the registry HTTP API v2.

Job ``k`` is the image ``domain/repository:k``; ``info(k)`` is that full image name, ready
for a container task's ``image`` template. ``registry`` is a session accessor returning a
:class:`DockerRegistryClient` (which carries credentials) or a bare
``aiohttp.ClientSession`` (no credentials)::

    @session.resource
    async def registry():
        async with pydatatask.DockerRegistryClient(username="me", password="secret") as client:
            yield client

    images = pydatatask.DockerRepository(registry, "registry.example.com", "team/tool")

``domain`` is ``host[:port]`` as it appears in image names. The API is spoken over HTTPS,
except for loopback hosts (``localhost``, ``127.x.x.x``, ``[::1]``), which use plain HTTP
as Docker itself allows; an explicit ``http://`` or ``https://`` prefix overrides this
and is left out of the image names.

Deleting a job removes that tag only. Registries delete manifests by digest, never a
tag, and deleting a manifest removes every tag naming it; so the tag is first pointed at
a small throwaway manifest of its own (an empty OCI image with a unique annotation),
which is then deleted by its digest. Other tags of the image keep their manifest. The
image the tag named stays in the registry, reachable by digest, until the registry's
garbage collection removes untagged manifests. The registry must run with deletes
enabled (``storage.delete.enabled: true``). Every registry error is translated in one
place, :meth:`DockerRegistryClient.request`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import quote, urljoin

from pydatatask._optional import import_optional
from pydatatask.errors import BackendError, BackendUnavailableError, JobNotFoundError
from pydatatask.repository.base import Repository

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "DockerRegistryClient",
    "DockerRepository",
    "RegistryResponse",
]

MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
"""The manifest formats asked for, so the registry reports the digest the tag points to."""
PAGE_SIZE = 1000
"""How many tags one listing request asks for."""

_LOOPBACK = re.compile(r"(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d+)?", re.IGNORECASE)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_MISSING_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"})


def _digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# OCI's empty descriptor: the config and only layer of the throwaway manifest of a delete.
_EMPTY_BLOB = b"{}"
_EMPTY_DESCRIPTOR = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": _digest_of(_EMPTY_BLOB),
    "size": len(_EMPTY_BLOB),
}
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _aiohttp() -> ModuleType:
    return import_optional("aiohttp", "docker")


@dataclass(frozen=True)
class RegistryResponse:
    """A registry answer, read whole (the API's bodies here are small JSON documents)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """Decode the body as JSON."""
        return json.loads(self.body or b"null")

    def error_codes(self) -> set[str]:
        """Return the ``errors[].code`` values of a registry error body."""
        try:
            errors = self.json().get("errors") or []
        except (ValueError, AttributeError):
            return set()
        return {str(error.get("code")) for error in errors if isinstance(error, dict)}


class DockerRegistryClient:
    """An HTTP client for registry API v2 that answers basic and bearer-token challenges.

    Without credentials, requests go unauthenticated. With ``username`` and ``password``,
    a ``Basic`` challenge is answered with them (and later requests send them at once);
    a ``Bearer`` challenge fetches a token from the challenge's ``realm`` for its
    ``service`` and ``scope``, using the credentials when given, and retries.

    :param session: an ``aiohttp.ClientSession`` to use; by default the client makes one
        (on first use, inside the event loop) and closes it in :meth:`close`.
    :param timeout: seconds allowed for each whole request.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._basic: str | None = None
        if username is not None:
            pair = f"{username}:{password or ''}".encode()
            self._basic = "Basic " + base64.b64encode(pair).decode("ascii")
        self._timeout = timeout
        self._use_basic: set[str] = set()
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            module = _aiohttp()
            session: type[aiohttp.ClientSession] = module.ClientSession
            client_timeout: type[aiohttp.ClientTimeout] = module.ClientTimeout
            self._session = session(
                timeout=client_timeout(total=self._timeout, connect=min(10, self._timeout))
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session if this client made it."""
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Any = None,
        missing: Callable[[], Exception] | None = None,
    ) -> RegistryResponse:
        """Send one request, answering an authentication challenge once.

        A 404 or an error code naming an unknown manifest, repository or blob returns
        the response when ``missing`` is None, else raises ``missing()``.

        :raises BackendError: when the registry refuses the credentials (401, 403) or
            answers with any other error status.
        :raises BackendUnavailableError: when it cannot be reached or does not answer in time.
        """
        registry = _registry_of(url)
        response = await self._send(method, url, headers, params, data)
        if response.status == 401:
            authorization = await self._answer(response, registry)
            if authorization is not None:
                sent = {**(headers or {}), "Authorization": authorization}
                response = await self._send(method, url, sent, params, data, auth=False)
        if response.status < 400:
            return response
        codes = response.error_codes()
        what = f"{method} {url}"
        if response.status == 404 or codes & _MISSING_CODES:
            if missing is None:
                return response
            raise missing()
        if response.status in (401, 403):
            raise BackendError(
                f"the Docker registry {registry} refused access ({response.status}) for "
                f"{what}: {_detail(response)}; check the credentials and their permissions"
            )
        if response.status in (502, 503, 504):
            raise BackendUnavailableError(
                f"the Docker registry {registry} is unavailable ({response.status}) for "
                f"{what}: {_detail(response)}"
            )
        if response.status == 405 and method == "DELETE":
            raise BackendError(
                f"the Docker registry {registry} does not allow deletes ({what}); "
                "run it with storage.delete.enabled: true"
            )
        raise BackendError(
            f"the Docker registry {registry} failed ({response.status}) for {what}: "
            f"{_detail(response)}"
        )

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        data: Any,
        auth: bool = True,
    ) -> RegistryResponse:
        sent = dict(headers or {})
        registry = _registry_of(url)
        if auth and "Authorization" not in sent:
            if registry in self._use_basic and self._basic is not None:
                sent["Authorization"] = self._basic
            else:
                token = self._cached_token(registry)
                if token is not None:
                    sent["Authorization"] = f"Bearer {token}"
        module = _aiohttp()
        connection_error: type[aiohttp.ClientConnectionError] = module.ClientConnectionError
        client_error: type[aiohttp.ClientError] = module.ClientError
        try:
            async with self._http().request(
                method, url, headers=sent, params=params, data=data, allow_redirects=True
            ) as response:
                body = b"" if method == "HEAD" else await response.read()
                return RegistryResponse(response.status, dict(response.headers), body)
        except (connection_error, TimeoutError) as exc:
            raise BackendUnavailableError(
                f"could not reach the Docker registry {registry} ({method} {url}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except client_error as exc:
            raise BackendError(
                f"the Docker registry {registry} failed ({method} {url}): {exc}"
            ) from exc

    def _cached_token(self, registry: str) -> str | None:
        now = time.monotonic()
        for (host, _), (token, expires) in self._tokens.items():
            if host == registry and expires > now:
                return token
        return None

    async def _answer(self, response: RegistryResponse, registry: str) -> str | None:
        """Return the ``Authorization`` value answering a 401 challenge, or None."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self._basic is None:
                return None
            self._use_basic.add(registry)
            return self._basic
        if scheme.lower() != "bearer":
            return None
        params = dict(_CHALLENGE_PARAM.findall(rest))
        realm = params.pop("realm", "")
        if not realm:
            return None
        scope = params.get("scope", "")
        headers = {"Authorization": self._basic} if self._basic is not None else {}
        answer = await self._send("GET", realm, headers, params, None, auth=False)
        if answer.status != 200:
            raise BackendError(
                f"the token service {realm} of the Docker registry {registry} refused "
                f"a token ({answer.status}): {_detail(answer)}"
            )
        granted = answer.json()
        token = str(granted.get("token") or granted.get("access_token") or "")
        lifetime = float(granted.get("expires_in") or 60)
        self._tokens[(registry, scope)] = (token, time.monotonic() + max(lifetime - 5, 1))
        return f"Bearer {token}"


def _registry_of(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


def _detail(response: RegistryResponse) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{error.get('code')}: {error.get('message')}" for error in errors)
    except (ValueError, AttributeError):
        return response.body[:200].decode("utf-8", "replace") or "(no detail)"


class DockerRepository(Repository):
    """The tags of one image repository in a Docker registry; ``info`` is the image name.

    :param registry: an accessor returning a :class:`DockerRegistryClient` or an
        ``aiohttp.ClientSession``.
    :param domain: ``host[:port]`` of the registry, optionally prefixed by ``http://`` or
        ``https://`` to choose the scheme.
    :param repository: the image repository's name in the registry, e.g. ``team/tool``.
    """

    job_id_pattern: ClassVar[re.Pattern[str] | None] = re.compile(
        r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
    )
    job_id_rule: ClassVar[str] = (
        "a Docker tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    )

    def __init__(
        self,
        registry: Callable[[], DockerRegistryClient | aiohttp.ClientSession],
        domain: str,
        repository: str,
    ) -> None:
        scheme, separator, host = domain.partition("://")
        if not separator:
            scheme, host = ("http" if _LOOPBACK.fullmatch(domain) else "https"), domain
        self._registry = registry
        self.domain = host.rstrip("/")
        self.repository = repository.strip("/")
        self.base_url = f"{scheme}://{self.domain}/v2/{self.repository}"
        self._wrapped: dict[int, DockerRegistryClient] = {}

    def __repr__(self) -> str:
        return f"<DockerRepository {self.domain}/{self.repository}>"

    def image(self, job: str) -> str:
        """Return the full image name of ``job``: ``domain/repository:job``."""
        return f"{self.domain}/{self.repository}:{self.check_job_id(job)}"

    def client(self) -> DockerRegistryClient:
        """Return the registry client of the open session."""
        value = self._registry()
        if isinstance(value, DockerRegistryClient):
            return value
        wrapped = self._wrapped.get(id(value))
        if wrapped is None or wrapped._session is not value:
            wrapped = self._wrapped[id(value)] = DockerRegistryClient(value)
            wrapped._owns_session = False
        return wrapped

    async def validate(self) -> None:
        """Check that the registry answers the API (and accepts the credentials).

        :raises BackendError: when it refuses the credentials or is not a v2 registry.
        :raises BackendUnavailableError: when it cannot be reached.
        """
        url = self.base_url.rsplit("/v2/", 1)[0] + "/v2/"
        response = await self.client().request("GET", url)
        if response.status == 404:
            raise BackendError(f"{self.domain} does not serve the Docker registry API v2")

    async def _iter_ids(self) -> AsyncIterator[str]:
        client = self.client()
        url: str | None = f"{self.base_url}/tags/list"
        params: Mapping[str, str] | None = {"n": str(PAGE_SIZE)}
        while url is not None:
            response = await client.request("GET", url, params=params)
            if response.status == 404:  # no image pushed to this repository yet
                return
            for tag in response.json().get("tags") or ():
                yield str(tag)
            found = _NEXT_LINK.search(response.headers.get("Link", ""))
            url, params = (urljoin(url, found.group(1)), None) if found else (None, None)

    async def _digest(self, job: str) -> str | None:
        response = await self.client().request(
            "HEAD",
            f"{self.base_url}/manifests/{job}",
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
        )
        if response.status == 404:
            return None
        return response.headers.get("Docker-Content-Digest") or ""

    async def _contains(self, job: str) -> bool:
        return await self._digest(job) is not None

    async def _info(self, job: str) -> str:
        if await self._digest(job) is None:
            raise JobNotFoundError(job, self)
        return self.image(job)

    async def _tokens(self, jobs: list[str]) -> dict[str, str]:
        """Return each present tag's manifest digest."""
        digests = await asyncio.gather(*(self._digest(job) for job in jobs))
        return {job: digest for job, digest in zip(jobs, digests, strict=True) if digest}

    async def _delete(self, job: str) -> None:
        """Point the tag at a throwaway manifest, then delete that manifest by digest."""
        if await self._digest(job) is None:
            return
        await self._upload_empty_blob()
        manifest = {
            "schemaVersion": 2,
            "mediaType": _OCI_MANIFEST,
            "config": _EMPTY_DESCRIPTOR,
            "layers": [_EMPTY_DESCRIPTOR],
            # Unique, so no other tag can name this manifest and go with it.
            "annotations": {"org.pydatatask.deleting": f"{job} {secrets.token_hex(16)}"},
        }
        body = json.dumps(manifest).encode()
        pushed = await self.client().request(
            "PUT",
            f"{self.base_url}/manifests/{job}",
            headers={"Content-Type": _OCI_MANIFEST},
            data=body,
        )
        digest = pushed.headers.get("Docker-Content-Digest") or _digest_of(body)
        await self.client().request("DELETE", f"{self.base_url}/manifests/{digest}")

    async def _upload_empty_blob(self) -> None:
        """Make sure the repository holds the empty blob the throwaway manifest names."""
        client = self.client()
        digest = _digest_of(_EMPTY_BLOB)
        found = await client.request("HEAD", f"{self.base_url}/blobs/{digest}")
        if found.status == 200:
            return
        started = await client.request("POST", f"{self.base_url}/blobs/uploads/")
        location = urljoin(self.base_url + "/", started.headers.get("Location", ""))
        separator = "&" if "?" in location else "?"
        await client.request(
            "PUT",
            f"{location}{separator}digest={quote(digest)}",
            headers={"Content-Type": "application/octet-stream"},
            data=_EMPTY_BLOB,
        )
