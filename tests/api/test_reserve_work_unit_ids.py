"""`reserve_work_unit_ids`: fresh, disjoint work unit id ranges per experiment, on both backends, across
threads, processes and server processes sharing one database, and a retried REST reservation answers once."""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys
import uuid

import httpx
import pytest
from metadata_fixtures import Backend, Flaky, Server, start_server, stop_server

from xm_slurm.api import ExperimentPatch, WorkUnitPatch, XManagerAPI
from xm_slurm.api.rest import RestClient
from xm_slurm.errors import NotFoundError, ValidationError

WORKERS = 8
CALLS_EACH = 5
COUNT = 3


def _new_experiment(api: XManagerAPI) -> int:
    return api.insert_experiment(ExperimentPatch(title=f"reserve-{uuid.uuid4().hex[:10]}"))


def _ranges(firsts: list[int], count: int) -> list[set[int]]:
    return [set(range(first, first + count)) for first in firsts]


def _assert_disjoint(firsts: list[int], count: int) -> None:
    ids = [i for r in _ranges(firsts, count) for i in r]
    assert len(ids) == len(set(ids)), f"overlapping reservations: {sorted(firsts)}"


def test_two_reservations_never_overlap(api: XManagerAPI) -> None:
    xid = _new_experiment(api)
    first = api.reserve_work_unit_ids(xid, 5)
    second = api.reserve_work_unit_ids(xid, 2)
    assert first == 1
    assert second == 6
    assert api.reserve_work_unit_ids(_new_experiment(api), 1) == 1  # per experiment


def test_reservations_skip_existing_work_units(api: XManagerAPI) -> None:
    xid = _new_experiment(api)
    api.insert_work_units(xid, [WorkUnitPatch(wid=1), WorkUnitPatch(wid=7)])
    first = api.reserve_work_unit_ids(xid, 4)
    assert first == 8
    # A unit recorded past the high-water mark (by an older launcher choosing its own wid) is skipped too.
    api.insert_work_unit(xid, WorkUnitPatch(wid=20))
    assert api.reserve_work_unit_ids(xid, 1) == 21


def test_reserved_ids_stay_reserved_after_their_units_are_deleted(api: XManagerAPI) -> None:
    xid = _new_experiment(api)
    first = api.reserve_work_unit_ids(xid, 2)
    api.insert_work_units(xid, [WorkUnitPatch(wid=first), WorkUnitPatch(wid=first + 1)])
    api.replace_jobs(xid, delete_empty_units=[first, first + 1])
    assert api.get_experiment(xid).work_units == ()
    assert api.reserve_work_unit_ids(xid, 1) == first + 2  # never handed out twice


async def test_async_twin(api: XManagerAPI) -> None:
    xid = await api.ainsert_experiment(ExperimentPatch(title="reserve-async"))
    assert await api.areserve_work_unit_ids(xid, 10) == 1
    assert await api.areserve_work_unit_ids(xid, 1) == 11


@pytest.mark.parametrize("count", [0, -1, 1_000_001, True, "3", 2.0, None])
def test_bad_counts_are_validation_errors(api: XManagerAPI, count: object) -> None:
    xid = _new_experiment(api)
    with pytest.raises(ValidationError, match="count"):
        api.reserve_work_unit_ids(xid, count)  # type: ignore[arg-type]
    assert api.reserve_work_unit_ids(xid, 1) == 1  # nothing was reserved


def test_missing_experiment_is_not_found(api: XManagerAPI) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        api.reserve_work_unit_ids(2**62, 1)


def test_concurrent_threads_get_disjoint_ranges(api: XManagerAPI) -> None:
    xid = _new_experiment(api)

    def reserve_several(_: int) -> list[int]:
        return [api.reserve_work_unit_ids(xid, COUNT) for _ in range(CALLS_EACH)]

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        firsts = [f for chunk in pool.map(reserve_several, range(WORKERS)) for f in chunk]
    assert len(firsts) == WORKERS * CALLS_EACH
    _assert_disjoint(firsts, COUNT)
    assert sorted(firsts) == list(range(1, WORKERS * CALLS_EACH * COUNT + 1, COUNT))  # no gaps either


_RESERVE_IN_A_PROCESS = """
import json, sys
import xm_slurm.api
api = xm_slurm.api.client()
xid, calls, count = (int(a) for a in sys.argv[1:4])
print(json.dumps([api.reserve_work_unit_ids(xid, count) for _ in range(calls)]))
"""


def test_concurrent_processes_get_disjoint_ranges(backend: Backend) -> None:
    # Each process opens its own client from the environment (the SQLite file, or the REST server).
    xid = _new_experiment(backend.client)
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RESERVE_IN_A_PROCESS, str(xid), str(CALLS_EACH), str(COUNT)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    firsts: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        firsts.extend(json.loads(out))
    _assert_disjoint(firsts, COUNT)
    assert len(firsts) == WORKERS * CALLS_EACH


def test_two_server_processes_on_one_database_give_disjoint_ranges(tmp_path: pathlib.Path) -> None:
    # Two servers on one SQLite file stand for several workers of one deployment.
    servers: list[Server] = [start_server(tmp_path / "shared"), start_server(tmp_path / "shared")]
    try:
        assert servers[0].db_path == servers[1].db_path
        clients = [RestClient(s.base_url, s.token) for s in servers]
        xid = clients[0].insert_experiment(ExperimentPatch(title="two workers"))

        def reserve_several(k: int) -> list[int]:
            return [clients[k % 2].reserve_work_unit_ids(xid, COUNT) for _ in range(CALLS_EACH)]

        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            firsts = [f for chunk in pool.map(reserve_several, range(WORKERS)) for f in chunk]
        _assert_disjoint(firsts, COUNT)
        assert sorted(firsts) == list(range(1, WORKERS * CALLS_EACH * COUNT + 1, COUNT))
    finally:
        for server in servers:
            stop_server(server)


def test_a_retried_rest_reservation_returns_the_same_range(
    rest_server: Server, flaky: tuple[Flaky, str]
) -> None:
    state, url = flaky
    client = RestClient(url, rest_server.token, backoff_factor=0.01, max_backoff=0.05)
    direct = RestClient(rest_server.base_url, rest_server.token)
    xid = direct.insert_experiment(ExperimentPatch(title="retried reserve"))
    state.failures, state.forward_first = 2, True  # the server reserves, the answer is lost twice
    first = client.reserve_work_unit_ids(xid, 4)
    posts = [s for s in state.seen if s[0] == "POST"]
    assert len(posts) == 3 and len({key for _, _, key in posts}) == 1
    assert first == 1
    assert direct.reserve_work_unit_ids(xid, 1) == 5  # the retries reserved nothing more


def test_rest_route_with_one_idempotency_key_answers_once(rest_server: Server) -> None:
    auth = {"Authorization": f"Bearer {rest_server.token}"}
    xid = httpx.put(f"{rest_server.base_url}/api/experiment", headers=auth, json={"title": "key"}).json()[
        "xid"
    ]
    url = f"{rest_server.base_url}/api/experiment/{xid}/wu/reserve"
    headers = {**auth, "Idempotency-Key": f"reserve-{uuid.uuid4()}"}
    answers = [httpx.post(url, headers=headers, json={"count": 3}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json() == {"first": 1}
    assert httpx.post(url, headers=auth, json={"count": 1}).json() == {"first": 4}
    for bad in ({"count": 0}, {"count": 1_000_001}, {"count": "2"}, {}):
        refused = httpx.post(url, headers=auth, json=bad)
        assert refused.status_code == 422 and "count" in refused.text, (bad, refused.text)
