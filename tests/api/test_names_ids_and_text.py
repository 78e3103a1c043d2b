"""One rule for names, ids and text at both ends (xm_slurm.text_rules): the client refuses a bad value
before any request, the server answers 422 naming the field (never 500), on both backends.

Finding 1 of issue 21: deleting an artifact named `..` deleted the whole experiment over REST (httpx
normalised `/artifact/..` away and the server received `DELETE /api/experiment/X`).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa
from metadata_fixtures import Backend, Server

import xm_slurm
from xm_slurm.api import (
    Artifact,
    ConfigArtifact,
    ExperimentPatch,
    ExperimentUnitPatch,
    SlurmJob,
    WorkUnitPatch,
    XManagerAPI,
)
from xm_slurm.api.rest import RestClient
from xm_slurm.errors import ValidationError
from xm_slurm.text_rules import MAX_ID, MAX_TITLE

SSH = '{"host": "login", "port": 22}'
BAD_NAMES = ["..", ".", "", "a/b", "../x", "a\x00b", "a\nb", "x\ud800"]


def _experiment(api: XManagerAPI) -> int:
    xid = api.insert_experiment(ExperimentPatch(title=f"names-{uuid.uuid4().hex[:10]}"))
    api.insert_work_unit(xid, WorkUnitPatch(wid=1))
    api.insert_job(xid, 1, SlurmJob(name="j", slurm_job_id="5", slurm_ssh_config=SSH))
    api.insert_experiment_artifact(xid, Artifact(name="wandb", uri="https://w"))
    api.insert_work_unit_artifact(xid, 1, Artifact(name="ckpt", uri="file:///c"))
    api.insert_experiment_config_artifact(xid, ConfigArtifact(name="PYTHON", uri="x = 1"))
    return xid


def _intact(api: XManagerAPI, xid: int) -> None:
    exp = api.get_experiment(xid)
    assert [a.name for a in exp.artifacts] == ["wandb"]
    assert [a.name for a in exp.config_artifacts] == ["PYTHON"]
    assert [(wu.wid, [a.name for a in wu.artifacts], len(wu.jobs)) for wu in exp.work_units] == [
        (1, ["ckpt"], 1)
    ]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_deleting_a_bad_name_is_refused_and_deletes_nothing(api: XManagerAPI, name: str) -> None:
    xid = _experiment(api)
    deletes: list[Callable[[], None]] = [
        lambda: api.delete_experiment_artifact(xid, name),
        lambda: api.delete_experiment_config_artifact(xid, name),
        lambda: api.delete_work_unit_artifact(xid, 1, name),
    ]
    for delete in deletes:
        with pytest.raises(ValidationError, match="name"):
            delete()
    _intact(api, xid)


async def test_async_deletes_of_dot_dot_are_refused(api: XManagerAPI) -> None:
    xid = _experiment(api)
    with pytest.raises(ValidationError, match=r"'\.\.'"):
        await api.adelete_experiment_artifact(xid, "..")
    with pytest.raises(ValidationError, match=r"'\.\.'"):
        await api.adelete_experiment_config_artifact(xid, "..")
    with pytest.raises(ValidationError, match=r"'\.\.'"):
        await api.adelete_work_unit_artifact(xid, 1, "..")
    _intact(api, xid)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_artifacts_with_bad_names_cannot_be_made(name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        Artifact(name=name, uri="u")
    with pytest.raises(ValidationError, match="name"):
        ConfigArtifact(name=name, uri="u")  # type: ignore[arg-type]


def _plant_dot_dot_artifact(backend: Backend, xid: int) -> None:
    # As the old server accepted it (or anyone with write access to the database file).
    engine = sa.create_engine(backend.db_url)
    try:
        with engine.begin() as db:
            db.execute(
                sa.text(
                    "INSERT INTO experiment_artifacts (experiment_id, name, uri) VALUES (:xid, '..', 'x')"
                ),
                {"xid": xid},
            )
    finally:
        engine.dispose()


async def test_del_context_artifact_dot_dot_keeps_the_experiment(backend: Backend) -> None:
    xid = _experiment(backend.client)
    _plant_dot_dot_artifact(backend, xid)
    experiment = xm_slurm.get_experiment(xid)
    try:
        assert ".." in experiment.context.artifacts  # a stored row with a bad name still reads
        with pytest.raises(ValidationError, match=r"'\.\.'"):
            del experiment.context.artifacts[".."]
        await experiment.context.flush()
    finally:
        await experiment.aclose()
    exp = backend.client.get_experiment(xid)
    assert sorted(a.name for a in exp.artifacts) == ["..", "wandb"]
    assert len(exp.work_units) == 1


@pytest.mark.parametrize("bad", [0, -1, MAX_ID + 1, 10**30, True, "1", None])
def test_ids_out_of_range_are_validation_errors(api: XManagerAPI, bad: object) -> None:
    xid = _experiment(api)
    calls: list[Callable[[], object]] = [
        lambda: api.get_experiment(bad),  # type: ignore[arg-type]
        lambda: api.delete_experiment(bad),  # type: ignore[arg-type]
        lambda: api.get_work_unit(xid, bad),  # type: ignore[arg-type]
        lambda: api.insert_jobs(xid, [(bad, SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=SSH))]),  # type: ignore[list-item]
        lambda: api.replace_jobs(xid, delete_empty_units=[bad]),  # type: ignore[list-item]
        lambda: api.replace_jobs(xid, remove=[(bad, "1")]),  # type: ignore[list-item]
        lambda: api.reserve_work_unit_ids(bad, 1),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(ValidationError, match=r"1\.\.9223372036854775807"):
            call()
    with pytest.raises(ValidationError):
        WorkUnitPatch(wid=bad)  # type: ignore[arg-type]
    _intact(api, xid)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ExperimentPatch(title="a\ud800"), "title"),
        (lambda: ExperimentPatch(title="line\nbreak"), "title"),
        (lambda: ExperimentPatch(title="x" * (MAX_TITLE + 1)), "title"),
        (lambda: ExperimentPatch(tags=frozenset({"ok", "t\x00"})), "tags"),
        (lambda: ExperimentPatch(description="d\ud800"), "description"),
        (lambda: ExperimentPatch(note="n\x07"), "note"),
        (lambda: ExperimentUnitPatch(identity="id\n"), "identity"),
        (lambda: WorkUnitPatch(wid=1, args='{"a": "\ud800"}'), "args"),
        (lambda: Artifact(name="a", uri="u\x1b[2J"), "uri"),
        (lambda: SlurmJob(name="n\x00", slurm_job_id="1", slurm_ssh_config=SSH), "name"),
        (lambda: SlurmJob(name="j", slurm_job_id="1;touch x", slurm_ssh_config=SSH), "slurm_job_id"),
        (lambda: SlurmJob(name="j", slurm_job_id="1 2", slurm_ssh_config=SSH), "slurm_job_id"),
        (lambda: SlurmJob(name="j", slurm_job_id=" 1", slurm_ssh_config=SSH), "slurm_job_id"),
        (lambda: SlurmJob(name="j", slurm_job_id="pending:xyz", slurm_ssh_config=SSH), "slurm_job_id"),
    ],
)
def test_bad_text_is_refused_by_the_models(build: Callable[[], object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        build()


def test_text_that_is_fine_is_kept() -> None:
    patch = ExperimentPatch(title="ünïcødé ✓ 🚀", description="two\nlines\tand tabs", tags=frozenset({"a b"}))
    assert patch.title == "ünïcødé ✓ 🚀"
    for job_id in ("1", "1_2", "1_[0-9%2]", "1+1", "1;cluster", "1.batch"):
        assert SlurmJob(name="j", slurm_job_id=job_id, slurm_ssh_config=SSH).slurm_job_id == job_id


def test_pending_row_ids_of_the_experiment_layer_are_accepted() -> None:
    from xm_slurm.experiment.handles import PendingJob
    from xm_slurm.job_ids import SlurmJobId

    token = "xms-" + "0123456789abcdef01234567"
    for shape in (SlurmJobId(1), SlurmJobId(1, array_task=3), SlurmJobId(1, het_offset=1)):
        pending = PendingJob.of(token, 1_700_000_000.5, shape).to_string()
        assert SlurmJob(name="j", slurm_job_id=pending, slurm_ssh_config=SSH).slurm_job_id == pending


# -- the server, with raw HTTP (what a client of another version, or an attacker, can send) ---------------


def _auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def _server_experiment(server: Server) -> int:
    return _experiment(RestClient(server.base_url, server.token))


def _server_intact(server: Server, xid: int) -> None:
    _intact(RestClient(server.base_url, server.token), xid)


def _raw(server: Server, method: str, target: str, body: bytes = b"") -> tuple[int, str]:
    """Send `target` byte for byte (httpx would normalise `..` away)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode(errors="replace")


@pytest.mark.parametrize(
    "route",
    ["artifact/{name}", "config/{name}", "wu/1/artifact/{name}"],
)
@pytest.mark.parametrize("name", ["..", "%2E%2E", "%2e%2E", ".", "a%2Fb", "a/b", "", "%00"])
def test_server_refuses_bad_names_in_delete_paths(rest_server: Server, route: str, name: str) -> None:
    xid = _server_experiment(rest_server)
    status, text = _raw(rest_server, "DELETE", f"/api/experiment/{xid}/" + route.format(name=name))
    assert status == 422, text
    assert "name" in text
    _server_intact(rest_server, xid)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/experiment/{xid}/artifact", {"name": "..", "uri": "u"}, "name"),
        ("/api/experiment/{xid}/artifact", {"name": "a/b", "uri": "u"}, "name"),
        ("/api/experiment/{xid}/wu/1/artifact", {"name": ".", "uri": "u"}, "name"),
        ("/api/experiment/{xid}/artifact", {"name": "a", "uri": "u\x00"}, "uri"),
        ("/api/experiment/{xid}/wu", {"wid": 2**63}, "wid"),
        ("/api/experiment/{xid}/wu", {"wid": 10**30}, "wid"),
        (
            "/api/experiment/{xid}/jobs",
            [{"wid": 2**63, "job": {"name": "j", "slurm_job_id": "1", "slurm_ssh_config": SSH}}],
            "wid",
        ),
        (
            "/api/experiment/{xid}/wu/1/job",
            {"name": "j", "slurm_job_id": "1;touch x", "slurm_ssh_config": SSH},
            "slurm_job_id",
        ),
        (
            "/api/experiment/{xid}/wu/1/job",
            {"name": "j", "slurm_job_id": "1 2", "slurm_ssh_config": SSH},
            "slurm_job_id",
        ),
        (
            "/api/experiment/{xid}/wu/1/job",
            {"name": "a\nb", "slurm_job_id": "1", "slurm_ssh_config": SSH},
            "name",
        ),
        ("/api/experiment", {"title": "a\nb"}, "title"),
        ("/api/experiment", {"tags": ["ok", "\x00"]}, "tags"),
    ],
)
def test_server_refuses_bad_bodies_with_422(rest_server: Server, path: str, body: object, field: str) -> None:
    xid = _server_experiment(rest_server)
    response = httpx.put(rest_server.base_url + path.format(xid=xid), headers=_auth(rest_server), json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    _server_intact(rest_server, xid)


@pytest.mark.parametrize("bad", [str(2**63), str(10**30), "0", "-1"])
def test_server_refuses_huge_ids_in_paths(rest_server: Server, bad: str) -> None:
    xid = _server_experiment(rest_server)
    for method, path in [
        ("GET", f"/api/experiment/{bad}"),
        ("DELETE", f"/api/experiment/{bad}"),
        ("GET", f"/api/experiment/{xid}/wu/{bad}"),
        ("PATCH", f"/api/experiment/{xid}/wu/{bad}"),
        ("DELETE", f"/api/experiment/{xid}/wu/{bad}/artifact/ckpt"),
        ("POST", f"/api/experiment/{bad}/wu/reserve"),
    ]:
        body = b'{"count": 1}' if path.endswith("reserve") else b"{}"
        status, text = _raw(rest_server, method, path, body)
        assert status == 422, (method, path, text)
        assert "xid" in text or "wid" in text, (method, path, text)
    _server_intact(rest_server, xid)


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("PUT", "/api/experiment", '{"title": "a\\ud800"}', "title"),
        ("PUT", "/api/experiment", '{"tags": ["\\udfff"]}', "tags"),
        ("PATCH", "/api/experiment/{xid}", '{"description": "\\ud800x"}', "description"),
        ("PATCH", "/api/experiment/{xid}/wu/1", '{"args": "[\\"\\ud800\\"]"}', "args"),
        ("PATCH", "/api/experiment/{xid}/wu/1", '{"identity": "\\ud83d"}', "identity"),
        ("PUT", "/api/experiment/{xid}/artifact", '{"name": "\\ud800", "uri": "u"}', "name"),
        ("PUT", "/api/experiment", '{"title": "t", "\\ud800": 1}', "unicode"),
    ],
)
def test_server_refuses_lone_surrogates_with_422(
    rest_server: Server, method: str, path: str, raw: str, field: str
) -> None:
    xid = _server_experiment(rest_server)
    status, text = _raw(rest_server, method, path.format(xid=xid), raw.encode())
    assert status == 422, text
    assert field in text
    _server_intact(rest_server, xid)


def test_server_refuses_bad_query_text(rest_server: Server) -> None:
    response = httpx.get(
        f"{rest_server.base_url}/api/experiment",
        headers=_auth(rest_server),
        params={"title_contains": "a\x00"},
    )
    assert response.status_code == 422 and "title_contains" in response.text
