"""Work unit ids reserved in the store (no cluster): requests made together share one store call, ranges
follow the order of the requests, and ids never collide with another reserver of the same experiment."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TypeVar

import pytest

from xm_slurm.api import ExperimentPatch, WorkUnitPatch
from xm_slurm.api.operation import Operation
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage.engine import sqlite_url
from xm_slurm.experiment.unit_ids import UnitIdReserver

R = TypeVar("R")


class CountingStore(SqlClient):
    """The real SQLite client, counting reservation calls."""

    reservations = 0

    def run(self, op: Operation[R]) -> R:  # every call, sync or async, runs one operation here
        if op.call.path.endswith("/wu/reserve"):
            type(self).reservations += 1
        return super().run(op)


@pytest.fixture
def api(tmp_path: Path) -> SqlClient:
    CountingStore.reservations = 0
    return CountingStore.open(sqlite_url(str(tmp_path / "db.sqlite3")))


async def test_requests_made_together_share_one_store_call_in_order(api: SqlClient) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="ids"))
    reserver = UnitIdReserver(api, xid)
    firsts = await asyncio.gather(reserver.reserve(3), reserver.reserve(1), reserver.reserve(20))
    assert firsts == [1, 4, 5]
    assert CountingStore.reservations == 1
    assert await reserver.reserve(2) == 25
    assert CountingStore.reservations == 2


async def test_two_reservers_of_one_experiment_never_share_an_id(api: SqlClient) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="ids"))
    api.insert_work_units(xid, [WorkUnitPatch(wid=7)])  # e.g. written by an older launcher
    a, b = UnitIdReserver(api, xid), UnitIdReserver(api, xid)
    got = await asyncio.gather(*(r.reserve(5) for r in (a, b, a, b)))
    ids = [first + k for first in got for k in range(5)]
    assert len(set(ids)) == 20 and min(ids) == 8


async def test_a_failed_reservation_fails_its_requests_and_the_next_one_retries(api: SqlClient) -> None:
    reserver = UnitIdReserver(api, 999)  # no such experiment
    with pytest.raises(Exception, match="999"):
        await reserver.reserve(1)
    xid = api.insert_experiment(ExperimentPatch(title="ids"))
    assert await UnitIdReserver(api, xid).reserve(1) == 1
