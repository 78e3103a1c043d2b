"""Digest lookup through the registry HTTP API v2 against a real HTTP server that demands auth."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from xm_slurm.errors import PackagingError
from xm_slurm.packaging.credentials import RegistryCredentials
from xm_slurm.packaging.image_ref import parse_image_ref
from xm_slurm.packaging.registry import resolve_digest

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
USER, SECRET, TOKEN = "reader", "pa55-word", "tok-123"
BASIC = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()


def _app(base: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/token")
    async def token(request: Request, scope: str = "", service: str = "") -> Response:
        if request.headers.get("authorization") != BASIC or service != "test-registry" or not scope:
            return Response(status_code=401)
        return Response(content=f'{{"token": "{TOKEN}"}}', media_type="application/json")

    @app.api_route("/v2/{name:path}/manifests/{reference}", methods=["GET", "HEAD"])
    async def manifest(name: str, reference: str, request: Request) -> Response:
        mode = name.split("/", 1)[0]
        auth = request.headers.get("authorization", "")
        if mode == "bearer" and auth != f"Bearer {TOKEN}":
            challenge = (
                f'Bearer realm="{base[0]}/token",service="test-registry",scope="repository:{name}:pull"'
            )
            return Response(status_code=401, headers={"WWW-Authenticate": challenge})
        if mode == "basic" and auth != BASIC:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="test"'})
        if reference != "latest":
            return Response(status_code=404)
        if "application/vnd.oci.image.index.v1+json" not in request.headers.get("accept", ""):
            return Response(status_code=406)
        headers = {} if mode == "noheader" else {"Docker-Content-Digest": DIGEST}
        body = MANIFEST if request.method == "GET" else b""
        return Response(
            content=body, headers=headers, media_type="application/vnd.oci.image.manifest.v1+json"
        )

    return app


@pytest.fixture(scope="module")
def registry_host() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = [f"http://127.0.0.1:{port}"]
    server = uvicorn.Server(uvicorn.Config(_app(base), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.01):  # poll until uvicorn says it serves
        if server.started:
            started.set()
        assert thread.is_alive(), "the test registry server died"
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


CREDS = RegistryCredentials(USER, SECRET)


@pytest.mark.parametrize("mode", ["open", "bearer", "basic", "noheader"])
async def test_resolve_digest(registry_host: str, mode: str) -> None:
    ref = parse_image_ref(f"{registry_host}/{mode}/img:latest")
    assert await resolve_digest(ref, credentials=CREDS) == DIGEST


async def test_refusals_are_clear_and_keep_the_secret(registry_host: str) -> None:
    wrong = RegistryCredentials(USER, "not-the-password")
    with pytest.raises(PackagingError, match="refused a pull token") as info:
        await resolve_digest(parse_image_ref(f"{registry_host}/bearer/img:latest"), credentials=wrong)
    assert "not-the-password" not in str(info.value)
    with pytest.raises(PackagingError, match=r"denied access.*podman login"):
        await resolve_digest(parse_image_ref(f"{registry_host}/basic/img:latest"))
    with pytest.raises(PackagingError, match="does not exist"):
        await resolve_digest(parse_image_ref(f"{registry_host}/open/img:v9"))
    with pytest.raises(PackagingError, match=r"cannot reach registry 127\.0\.0\.1:9"):
        await resolve_digest(parse_image_ref("127.0.0.1:9/open/img:latest"), timeout=5)
