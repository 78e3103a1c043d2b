"""The REST client over real sockets: bounded retries on connection errors and 502/503/504 only, no
duplicate rows when a retried write had reached the server, and the token never shown."""

from __future__ import annotations

import logging
import socket
import threading
import traceback
import uuid
from collections.abc import Iterator

import pytest
from metadata_fixtures import Flaky, Server

from xm_slurm.api import Artifact, ExperimentPatch, SlurmJob, WorkUnitPatch
from xm_slurm.api.rest import RestClient
from xm_slurm.errors import MetadataError

SECRET = "xms_SECRET-do-not-print-" + uuid.uuid4().hex


def _client(url: str, token: str, **kw: object) -> RestClient:
    return RestClient(url, token, backoff_factor=0.01, max_backoff=0.05, **kw)  # type: ignore[arg-type]


def test_lost_answers_are_retried_without_duplicate_rows(
    rest_server: Server, flaky: tuple[Flaky, str]
) -> None:
    state, url = flaky
    client = _client(url, rest_server.token)
    direct = _client(rest_server.base_url, rest_server.token)
    title = f"retried-{uuid.uuid4().hex}"

    state.failures, state.forward_first = 2, True
    xid = client.insert_experiment(ExperimentPatch(title=title))
    puts = [s for s in state.seen if s[0] == "PUT"]
    assert len(puts) == 3 and len({key for _, _, key in puts}) == 1  # one key, reused by the retries
    assert [s.xid for s in direct.list_experiments(title_contains=title)] == [xid]

    client.insert_work_unit(xid, WorkUnitPatch(wid=1))
    state.failures = 2
    client.insert_jobs(xid, [(1, SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config="{}"))])
    client.insert_experiment_artifact(xid, Artifact(name="a", uri="u"))
    state.failures = 2
    client.delete_experiment_artifact(xid, "a")  # the replay answers as the first delete did, not 404
    exp = direct.get_experiment(xid)
    assert len(exp.work_units[0].jobs) == 1 and exp.artifacts == ()


async def test_async_retries_without_duplicates(rest_server: Server, flaky: tuple[Flaky, str]) -> None:
    state, url = flaky
    client = _client(url, rest_server.token)
    title = f"retried-async-{uuid.uuid4().hex}"
    state.failures, state.forward_first = 2, True
    xid = await client.ainsert_experiment(ExperimentPatch(title=title))
    assert [s.xid for s in await client.alist_experiments(title_contains=title)] == [xid]
    assert len([s for s in state.seen if s[0] == "PUT"]) == 3
    await client.aclose()


def test_503_before_the_server_is_retried(rest_server: Server, flaky: tuple[Flaky, str]) -> None:
    state, url = flaky
    state.failures = 2
    title = f"unavailable-{uuid.uuid4().hex}"
    xid = _client(url, rest_server.token).insert_experiment(ExperimentPatch(title=title))
    assert [
        s.xid for s in _client(rest_server.base_url, rest_server.token).list_experiments(title_contains=title)
    ] == [xid]


@pytest.mark.parametrize("status", [500, 400])
def test_other_errors_are_not_retried(rest_server: Server, flaky: tuple[Flaky, str], status: int) -> None:
    state, url = flaky
    state.failures, state.status = 1, status
    with pytest.raises(MetadataError, match=f"HTTP {status}"):
        _client(url, rest_server.token).insert_experiment(ExperimentPatch(title="x"))
    assert len(state.seen) == 1


def test_retries_are_bounded(rest_server: Server, flaky: tuple[Flaky, str]) -> None:
    state, url = flaky
    state.failures = 100
    with pytest.raises(MetadataError, match="HTTP 503"):
        _client(url, rest_server.token, max_tries=4).insert_experiment(ExperimentPatch(title="x"))
    assert len(state.seen) == 4


@pytest.fixture
def hanging_up() -> Iterator[tuple[str, list[int]]]:
    """A real listener that accepts connections and closes them at once; counts the attempts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    stop.set()
    listener.close()


def test_connection_errors_are_retried_then_reported(hanging_up: tuple[str, list[int]]) -> None:
    url, accepted = hanging_up
    with pytest.raises(MetadataError, match="cannot reach the metadata server"):
        _client(url, SECRET, max_tries=3).list_experiments()
    assert len(accepted) == 3


def _assert_secret_absent(error: BaseException) -> None:
    text = str(error) + repr(error) + "".join(traceback.format_exception(error))
    assert SECRET not in text


def test_the_token_never_appears_in_errors_reprs_or_logs(
    rest_server: Server,
    flaky: tuple[Flaky, str],
    hanging_up: tuple[str, list[int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    state, proxy_url = flaky
    hang_url, _ = hanging_up
    errors: list[BaseException] = []
    for url, prepare in [
        (rest_server.base_url, None),  # 401: the server refuses the token
        (hang_url, None),  # connection errors after retries
        (proxy_url, 500),  # a server error with a body
    ]:
        if prepare:
            state.failures, state.status = 1, prepare
        client = _client(url, SECRET, max_tries=2)
        assert SECRET not in repr(client) and SECRET not in str(vars(client))
        with pytest.raises(MetadataError) as caught:
            client.insert_experiment(ExperimentPatch(title="x"))
        errors.append(caught.value)
    for error in errors:
        _assert_secret_absent(error)
    assert "HTTP Request" in caplog.text  # httpx did log, at DEBUG/INFO, without the token
    assert SECRET not in caplog.text
