"""The REST server answers every route at `{base}/api/...` (xmanager-slurm 0.4.7's client) and at `{base}/...`
(0.4.8+), under the same token rules and with the same bodies (compat-04x.md item 10).

Against the real server, started as a subprocess by the CLI as tests/api does.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from metadata_fixtures import Server, start_server, stop_server

PREFIXES = ["/api", ""]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("rest-prefix"))
    yield s
    stop_server(s)


def _auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


@pytest.mark.parametrize("prefix", PREFIXES, ids=["api", "root"])
def test_the_token_rules_are_the_same_with_and_without_api(server: Server, prefix: str) -> None:
    url = f"{server.base_url}{prefix}/experiment"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer xms_wrong"}).status_code == 401
    assert httpx.put(url, json={"title": "no token"}).status_code == 401
    assert httpx.get(f"{url}/1/wu").status_code == 401
    assert httpx.get(url, headers=_auth(server)).status_code == 200
    assert httpx.get(f"{server.base_url}{prefix}/health").json() == {"status": "ok"}  # public on both


@pytest.mark.parametrize(("write", "read"), [("/api", ""), ("", "/api")], ids=["api-to-root", "root-to-api"])
def test_what_one_spelling_writes_the_other_reads_with_the_same_body(
    server: Server, write: str, read: str
) -> None:
    base, auth = server.base_url, _auth(server)
    created = httpx.put(
        f"{base}{write}/experiment", json={"title": f"via {write!r}", "tags": ["a"]}, headers=auth
    )
    assert created.status_code == 200, created.text
    xid = created.json()["xid"]
    unit = {"wid": 1, "identity": "", "args": '{"lr": 0.1}'}
    assert httpx.put(f"{base}{write}/experiment/{xid}/wu", json=unit, headers=auth).status_code == 200
    job = {"name": "train", "slurm_job_id": "3115_0", "slurm_ssh_config": '{"host": "h", "port": 22}'}
    assert httpx.put(f"{base}{read}/experiment/{xid}/wu/1/job", json=job, headers=auth).status_code == 200

    bodies = [httpx.get(f"{base}{p}/experiment/{xid}", headers=auth) for p in PREFIXES]
    assert [b.status_code for b in bodies] == [200, 200]
    assert bodies[0].json() == bodies[1].json()
    got = bodies[0].json()
    assert (got["title"], got["tags"]) == (f"via {write!r}", ["a"])
    assert got["work_units"][0]["jobs"][0]["slurm_job_id"] == "3115_0"
    units = [httpx.get(f"{base}{p}/experiment/{xid}/wu/1", headers=auth).json() for p in PREFIXES]
    assert units[0] == units[1] and units[0]["wid"] == 1


def test_an_idempotency_key_replays_across_the_two_spellings(server: Server) -> None:
    # One route behind both paths: a retry through the other spelling is the same request, not a new one.
    headers = {**_auth(server), "Idempotency-Key": f"compat-{uuid.uuid4().hex}"}
    body = {"title": "once"}
    first = httpx.put(f"{server.base_url}/api/experiment", json=body, headers=headers)
    again = httpx.put(f"{server.base_url}/experiment", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()


def test_unknown_paths_and_the_docs_stay_as_they_were(server: Server) -> None:
    auth = _auth(server)
    assert httpx.get(f"{server.base_url}/no-such-route", headers=auth).status_code == 404
    assert httpx.get(f"{server.base_url}/api/no-such-route", headers=auth).status_code == 404
    assert httpx.get(f"{server.base_url}/docs").status_code == 200
    paths = httpx.get(f"{server.base_url}/openapi.json").json()["paths"]
    assert "/api/experiment/{xid}" in paths and all(p.startswith("/api/") for p in paths)
