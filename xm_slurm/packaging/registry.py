"""Resolve an image tag to its manifest digest, and read its run configuration, through the registry HTTP API v2.

`HEAD /v2/<name>/manifests/<tag>` with the manifest types we accept; the digest comes from the
`Docker-Content-Digest` header (or, if a registry omits it, from hashing the manifest body).
Handles anonymous and Basic access and the Bearer token dance (`WWW-Authenticate: Bearer
realm=...`). `fetch_config` follows manifest -> (platform manifest of an index) -> config blob.
Loopback registries (localhost, 127.0.0.1) are spoken to over plain HTTP, as docker
and podman do for them; every other registry over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import httpx

from xm_slurm.errors import PackagingError
from xm_slurm.packaging.credentials import RegistryCredentials
from xm_slurm.packaging.image_config import ImageConfig, parse_config
from xm_slurm.packaging.image_ref import ImageReference

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ACCEPT = ", ".join(MANIFEST_TYPES)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def _base_url(ref: ImageReference) -> str:
    scheme = "http" if ref.is_loopback else "https"
    return f"{scheme}://{ref.api_host}"


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


async def _bearer_token(
    http: httpx.AsyncClient, params: dict[str, str], ref: ImageReference, creds: RegistryCredentials | None
) -> str:
    realm = params.get("realm")
    if not realm:
        raise PackagingError(f"registry {ref.domain} asked for a token but named no realm")
    query = {"scope": params.get("scope") or f"repository:{ref.api_repository}:pull"}
    if params.get("service"):
        query["service"] = params["service"]
    auth = httpx.BasicAuth(creds.username, creds.password) if creds else None
    resp = await http.get(realm, params=query, auth=auth)
    if resp.status_code != 200:
        raise PackagingError(
            f"registry {ref.domain} refused a pull token for {ref.api_repository} (HTTP {resp.status_code}); "
            "log in with `podman login` / `docker login`"
        )
    body = resp.json()
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str):
        raise PackagingError(f"registry {ref.domain} answered a token request without a token")
    return token


async def _send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    ref: ImageReference,
    credentials: RegistryCredentials | None,
) -> httpx.Response:
    """One request; on a 401 challenge, authorize (`headers` keeps the token for later requests) and retry."""
    resp = await http.request(method, url, headers=headers)
    if resp.status_code == 401:
        scheme, params = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if scheme == "bearer":
            token = await _bearer_token(http, params, ref, credentials)
            headers["Authorization"] = f"Bearer {token}"
        elif scheme == "basic" and credentials is not None:
            basic = f"{credentials.username}:{credentials.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
        else:
            return resp
        resp = await http.request(method, url, headers=headers)
    return resp


def _check(resp: httpx.Response, ref: ImageReference) -> None:
    if resp.status_code == 404:
        raise PackagingError(f"image {ref} does not exist in registry {ref.domain}")
    if resp.status_code in (401, 403):
        raise PackagingError(
            f"registry {ref.domain} denied access to {ref} (HTTP {resp.status_code}); "
            "log in with `podman login` / `docker login` so the auth file has credentials"
        )
    if resp.status_code != 200:
        raise PackagingError(f"registry {ref.domain} answered HTTP {resp.status_code} for {ref}")


def _unreachable(ref: ImageReference, e: httpx.HTTPError, what: str) -> PackagingError:
    return PackagingError(f"cannot reach registry {ref.domain} to {what} {ref}: {type(e).__name__}: {e}")


async def ping(
    ref: ImageReference,
    *,
    credentials: RegistryCredentials | None = None,
    timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """`GET /v2/` (the API root a push starts with) of `ref`'s registry; its HTTP status (200, or 401/403
    when it wants other credentials). Raises `PackagingError` when it does not answer (or answers 5xx)."""
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=True) as http:
            resp = await _send(http, "GET", f"{_base_url(ref)}/v2/", {}, ref, credentials)
    except httpx.HTTPError as e:
        raise PackagingError(
            f"registry {ref.domain} does not answer ({type(e).__name__}: {e or 'no answer'}); "
            f"an image tagged {ref} could not be pushed there"
        ) from None
    if resp.status_code >= 500:
        raise PackagingError(f"registry {ref.domain} answered HTTP {resp.status_code} to GET /v2/")
    return resp.status_code


async def resolve_digest(
    ref: ImageReference,
    *,
    credentials: RegistryCredentials | None = None,
    timeout: float = 20.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """The digest (`sha256:...`) the registry serves for `ref`'s tag (or its digest, checked)."""
    url = f"{_base_url(ref)}/v2/{ref.api_repository}/manifests/{ref.reference}"
    headers = {"Accept": _ACCEPT}
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=True) as http:
            resp = await _send(http, "HEAD", url, headers, ref, credentials)
            if resp.status_code == 200 and not resp.headers.get("Docker-Content-Digest"):
                # Some registries leave the header off HEAD answers: hash the manifest itself.
                resp = await http.get(url, headers=headers)
                if resp.status_code == 200:
                    return "sha256:" + hashlib.sha256(resp.content).hexdigest()
    except httpx.HTTPError as e:
        raise _unreachable(ref, e, "resolve") from None
    _check(resp, ref)
    digest = resp.headers.get("Docker-Content-Digest", "")
    if not digest.startswith("sha256:"):
        raise PackagingError(f"registry {ref.domain} gave no usable digest for {ref} (got {digest!r})")
    return digest


def _pick_platform(index: dict[str, Any], ref: ImageReference, platform: str) -> str:
    """The digest of `platform`'s manifest in an image index (multi-arch image)."""
    os_name, _, arch = platform.partition("/")
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    for entry in entries:
        p = entry.get("platform") or {}
        if p.get("os") == os_name and p.get("architecture") == arch and isinstance(entry.get("digest"), str):
            return str(entry["digest"])
    found = sorted(
        {
            f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}"
            for m in entries
        }
    )
    raise PackagingError(f"image {ref} has no {platform} variant (it has: {', '.join(found) or 'none'})")


async def fetch_config(
    ref: ImageReference,
    *,
    credentials: RegistryCredentials | None = None,
    timeout: float = 20.0,
    transport: httpx.AsyncBaseTransport | None = None,
    platform: str = "linux/amd64",
) -> ImageConfig:
    """The run configuration (ENTRYPOINT, CMD, WORKDIR) of `ref`, from its config blob (registry API v2)."""
    base = f"{_base_url(ref)}/v2/{ref.api_repository}"
    headers = {"Accept": _ACCEPT}
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=True) as http:
            resp = await _send(http, "GET", f"{base}/manifests/{ref.reference}", headers, ref, credentials)
            _check(resp, ref)
            manifest = resp.json()
            if isinstance(manifest, dict) and "manifests" in manifest:
                digest = _pick_platform(manifest, ref, platform)
                resp = await _send(http, "GET", f"{base}/manifests/{digest}", headers, ref, credentials)
                _check(resp, ref)
                manifest = resp.json()
            config = manifest.get("config") if isinstance(manifest, dict) else None
            if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
                raise PackagingError(
                    f"image {ref}: the registry served a manifest without a config (an old schema 1 "
                    "image?); push it again with a current podman or docker"
                )
            blob_headers = {k: v for k, v in headers.items() if k != "Accept"}
            resp = await _send(
                http, "GET", f"{base}/blobs/{config['digest']}", blob_headers, ref, credentials
            )
            _check(resp, ref)
            blob = resp.json()
    except httpx.HTTPError as e:
        raise _unreachable(ref, e, "read the configuration of") from None
    except ValueError:  # JSON
        raise PackagingError(f"registry {ref.domain} served unreadable JSON for {ref}") from None
    if not isinstance(blob, dict):
        raise PackagingError(f"registry {ref.domain} served an image config for {ref} that is not an object")
    return parse_config(blob.get("config"), where=f"image {ref}")
