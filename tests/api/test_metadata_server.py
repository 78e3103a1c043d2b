"""The REST server itself: authentication, validation errors, OpenAPI, routes, tokens stored hashed."""

from __future__ import annotations

import hashlib
import sqlite3

import httpx
import pytest
from metadata_fixtures import Server

from xm_slurm.api.rest import RestClient
from xm_slurm.errors import ConfigurationError

# The metadata routes our REST client calls, each under {base}/api; the server must document every one.
REST_ROUTES = {
    ("get", "/api/experiment/{xid}"),
    ("delete", "/api/experiment/{xid}"),
    ("put", "/api/experiment"),
    ("patch", "/api/experiment/{xid}"),
    ("put", "/api/experiment/{xid}/wu"),
    ("patch", "/api/experiment/{xid}/wu/{wid}"),
    ("put", "/api/experiment/{xid}/wu/{wid}/job"),
    ("put", "/api/experiment/{xid}/wu/{wid}/artifact"),
    ("delete", "/api/experiment/{xid}/wu/{wid}/artifact/{name}"),
    ("put", "/api/experiment/{xid}/artifact"),
    ("delete", "/api/experiment/{xid}/artifact/{name}"),
    ("put", "/api/experiment/{xid}/config"),
    ("delete", "/api/experiment/{xid}/config/{name}"),
}


def _auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def test_openapi_documents_every_rest_route(rest_server: Server) -> None:
    schema = httpx.get(f"{rest_server.base_url}/openapi.json").json()
    routes = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert routes >= REST_ROUTES
    assert httpx.get(f"{rest_server.base_url}/docs").status_code == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer xms_not-a-token"}, {"Authorization": "Basic x"}]
)
def test_requests_without_a_valid_token_get_401(rest_server: Server, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/api/experiment"),
        ("PUT", "/api/experiment"),
        ("DELETE", "/api/experiment/1"),
    ]:
        response = httpx.request(method, f"{rest_server.base_url}{path}", headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"


def test_rest_client_with_a_bad_token_says_which_variable(rest_server: Server) -> None:
    client = RestClient(rest_server.base_url, "xms_wrong")
    with pytest.raises(ConfigurationError, match="XM_SLURM_REST_API_TOKEN"):
        client.list_experiments()


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/api/experiment", "not json at all", "json"),
        ("/api/experiment", {"title": 5}, "title"),
        ("/api/experiment", {"title": "t", "colour": "red"}, "colour"),
        ("/api/experiment/1/wu", {"wid": 0}, "wid"),
        ("/api/experiment/1/wu", {"identity": "x"}, "wid"),
        ("/api/experiment/1/config", {"name": "YAML", "uri": "x"}, "GRAPHVIZ"),
        (
            "/api/experiment/1/wu/1/job",
            {"name": "j", "slurm_job_id": 5, "slurm_ssh_config": "{}"},
            "slurm_job_id",
        ),
    ],
)
def test_bad_bodies_get_a_clear_4xx(rest_server: Server, path: str, body: object, expected: str) -> None:
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    response = httpx.put(
        f"{rest_server.base_url}{path}",
        headers={**_auth(rest_server), "Content-Type": "application/json"},
        **kwargs,  # type: ignore[arg-type]
    )
    assert response.status_code == 422, response.text
    assert expected in response.text.lower() or expected in response.text


def test_tokens_are_stored_hashed(rest_server: Server) -> None:
    db = sqlite3.connect(rest_server.db_path)
    try:
        stored = [row[0] for row in db.execute("SELECT token_sha256 FROM api_tokens")]
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert hashlib.sha256(rest_server.token.encode()).hexdigest() in stored
    assert rest_server.token not in dump


def test_same_idempotency_key_replays_instead_of_writing_twice(rest_server: Server) -> None:
    url = f"{rest_server.base_url}/api/experiment"
    headers = {**_auth(rest_server), "Idempotency-Key": "test-key-replay-1"}
    first = httpx.put(url, headers=headers, json={"title": "once"})
    second = httpx.put(url, headers=headers, json={"title": "once"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    other = httpx.put(url, headers=headers, json={"title": "a different request"})
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
