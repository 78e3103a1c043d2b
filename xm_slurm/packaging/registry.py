"""Resolve an image tag to its manifest digest through the registry HTTP API v2.

`HEAD /v2/<name>/manifests/<tag>` with the manifest types we accept; the digest comes from the
`Docker-Content-Digest` header (or, if a registry omits it, from hashing the manifest body).
Handles anonymous and Basic access and the Bearer token dance (`WWW-Authenticate: Bearer
realm=...`). Loopback registries (localhost, 127.0.0.1) are spoken to over plain HTTP, as docker
and podman do for them; every other registry over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import re

import httpx

from xm_slurm.errors import PackagingError
from xm_slurm.packaging.credentials import RegistryCredentials
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
            resp = await http.head(url, headers=headers)
            if resp.status_code == 401:
                scheme, params = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                if scheme == "bearer":
                    token = await _bearer_token(http, params, ref, credentials)
                    headers["Authorization"] = f"Bearer {token}"
                elif scheme == "basic" and credentials is not None:
                    basic = f"{credentials.username}:{credentials.password}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
                resp = await http.head(url, headers=headers)
            if resp.status_code == 200 and not resp.headers.get("Docker-Content-Digest"):
                # Some registries leave the header off HEAD answers: hash the manifest itself.
                resp = await http.get(url, headers=headers)
                if resp.status_code == 200:
                    return "sha256:" + hashlib.sha256(resp.content).hexdigest()
    except httpx.HTTPError as e:
        raise PackagingError(
            f"cannot reach registry {ref.domain} to resolve {ref}: {type(e).__name__}: {e}"
        ) from None
    if resp.status_code == 404:
        raise PackagingError(f"image {ref} does not exist in registry {ref.domain}")
    if resp.status_code in (401, 403):
        raise PackagingError(
            f"registry {ref.domain} denied access to {ref} (HTTP {resp.status_code}); "
            "log in with `podman login` / `docker login` so the auth file has credentials"
        )
    if resp.status_code != 200:
        raise PackagingError(f"registry {ref.domain} answered HTTP {resp.status_code} for {ref}")
    digest = resp.headers.get("Docker-Content-Digest", "")
    if not digest.startswith("sha256:"):
        raise PackagingError(f"registry {ref.domain} gave no usable digest for {ref} (got {digest!r})")
    return digest
