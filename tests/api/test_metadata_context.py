"""The experiment context writes through (in order, off the event loop), reloads, and reports failures."""

from __future__ import annotations

import asyncio
import pathlib
import threading
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from metadata_fixtures import Backend, hold_write_lock

from xm_slurm.api import ExperimentPatch, WorkUnitPatch, XManagerAPI
from xm_slurm.api import operation as ops
from xm_slurm.api.operation import Operation
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import sqlite_url
from xm_slurm.errors import MetadataError, ValidationError
from xm_slurm.experiment.context import ExperimentContext, WriteQueue

R = TypeVar("R")


async def test_changes_are_written_through(api: XManagerAPI) -> None:
    xid = await api.ainsert_experiment(ExperimentPatch(title="ctx"))
    await api.ainsert_work_units(xid, [WorkUnitPatch(wid=1), WorkUnitPatch(wid=2)])
    ctx = ExperimentContext(api, xid, title="ctx")
    ctx.annotations.tags.add("baseline")
    ctx.annotations.tags |= {"lr-sweep", "v2"}
    ctx.annotations.tags.discard("v2")
    ctx.annotations.description = "a description"
    ctx.annotations.note = "a note"
    ctx.annotations.title = "renamed"
    ctx.artifacts["wandb"] = "https://wandb.ai/x"
    ctx.artifacts["tmp"] = "file:///tmp"
    del ctx.artifacts["tmp"]
    ctx.python_config = "lr = 1e-3"
    ctx.graphviz_config = "digraph { a -> b }"
    ctx.graphviz_config = None
    wu = ctx.work_unit(2)
    wu.artifacts["ckpt"] = "file:///ckpt/1"
    wu.artifacts["ckpt"] = "file:///ckpt/2"  # order holds: the last write wins
    await ctx.flush()

    exp = await api.aget_experiment(xid)
    assert exp.tags == {"baseline", "lr-sweep"}
    assert (exp.title, exp.description, exp.note) == ("renamed", "a description", "a note")
    assert {a.name: a.uri for a in exp.artifacts} == {"wandb": "https://wandb.ai/x"}
    assert {a.name: a.uri for a in exp.config_artifacts} == {"PYTHON": "lr = 1e-3"}
    assert {a.name: a.uri for a in exp.work_units[1].artifacts} == {"ckpt": "file:///ckpt/2"}
    assert exp.work_units[0].artifacts == ()

    # Reload (as get_experiment(xid) does) and keep going from the stored state.
    again = ExperimentContext.from_experiment(api, exp)
    assert set(again.annotations.tags) == {"baseline", "lr-sweep"}
    assert "baseline" in again.annotations.tags and len(again.annotations.tags) == 2
    assert dict(again.artifacts) == {"wandb": "https://wandb.ai/x"}
    assert again.python_config == "lr = 1e-3" and again.graphviz_config is None
    assert again.annotations.title == "renamed"
    again.annotations.tags.add("reloaded")
    again.annotations.tags.update(["u1"], {"u2", "baseline"})  # as set.update
    again.work_unit(1, {}).artifacts["log"] = "file:///log"
    await again.flush()
    exp = await api.aget_experiment(xid)
    assert exp.tags == {"baseline", "lr-sweep", "reloaded", "u1", "u2"}
    assert exp.work_units[0].artifacts[0].uri == "file:///log"


async def test_failed_writes_surface_at_flush(api: XManagerAPI) -> None:
    ctx = ExperimentContext(api, 10**9)  # no such experiment
    ctx.annotations.tags.add("x")
    ctx.artifacts["a"] = "u"
    with pytest.raises(MetadataError, match=r"set tags.*(and 1 more)"):
        await ctx.flush()
    await ctx.flush()  # reported once


def test_bad_values_are_refused_before_queueing(api: XManagerAPI) -> None:
    ctx = ExperimentContext(api, 1)
    with pytest.raises(ValidationError):
        ctx.annotations.tags.add(3)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ctx.annotations.tags.update(["ok", 4])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        ctx.artifacts["a"] = 5  # type: ignore[assignment]
    with pytest.raises(ValidationError):
        ctx.annotations.title = None  # type: ignore[assignment]
    assert len(ctx.artifacts) == 0 and len(ctx.annotations.tags) == 0


async def test_writes_do_not_block_the_event_loop(api: XManagerAPI, backend: Backend) -> None:
    xid = await api.ainsert_experiment(ExperimentPatch(title="loop"))
    ctx = ExperimentContext(api, xid)
    with hold_write_lock(backend):  # the database cannot take writes for now
        ctx.annotations.tags.add("queued")  # returns at once although the write must wait
        flush = asyncio.create_task(ctx.flush())
        await asyncio.sleep(0)
        assert not flush.done() and "queued" in ctx.annotations.tags
    await flush
    assert (await api.aget_experiment(xid)).tags == {"queued"}


class _RecordingClient(SqlClient):
    """A real SQLite client that also notes which operations it ran, and on which thread."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.ran: list[tuple[Operation[Any], str]] = []

    def run(self, op: Operation[R]) -> R:
        self.ran.append((op, threading.current_thread().name))
        return super().run(op)


def test_write_queue_keeps_order_from_sync_code(state_dir: pathlib.Path) -> None:
    client = _RecordingClient(SqlClient.open(sqlite_url(state_dir / "db.sqlite3")).engine)
    xid = client.insert_experiment(ExperimentPatch(title="order"))
    queue = WriteQueue(client)
    writes = [ops.update_experiment(xid, ExperimentPatch(title=f"title {i}")) for i in range(200)]
    client.ran.clear()
    for i, op in enumerate(writes):
        queue.put(f"write {i}", op)
    queue.flush_sync()
    assert [op for op, _ in client.ran] == writes  # one by one, in the order they were put
    assert {thread for _, thread in client.ran} == {"xm-slurm-metadata-writes"}
    assert client.get_experiment(xid).title == "title 199"
    queue.close()
