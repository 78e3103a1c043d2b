"""Fixtures of the dashboard tests: a real server subprocess on its own SQLite file, tokens made in that
file, experiments written through the REST API as a launch script would, and a signed-in httpx client."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from metadata_fixtures import Server, start_server, stop_server

from xm_slurm.api.server import tokens
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import schema, sqlite_url

# The job state columns of revision 0011 (`api.job_states`).
_JOB_STATES = sa.table(
    "jobs",
    sa.column("work_unit_id", sa.Integer),
    sa.column("state", sa.String),
    sa.column("state_reason", sa.Text),
    sa.column("exit_code", sa.Integer),
    sa.column("state_seen_at", sa.DateTime(timezone=True)),
)


@dataclasses.dataclass(frozen=True)
class Dash:
    server: Server
    store: SqlClient  # the server's SQLite file, opened by the test (tokens, expiry)

    @property
    def url(self) -> str:
        return self.server.base_url

    def write(self, method: str, path: str, body: Any = None) -> Any:
        """A REST call with the server's read-write token "tests" (as a launch script makes it)."""
        answer = httpx.request(
            method,
            f"{self.url}/api{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.server.token}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    def experiment(self, title: str, *, tags: list[str] = (), note: str | None = None) -> int:  # type: ignore[assignment]
        return int(
            self.write("PUT", "/experiment", {"title": title, "tags": list(tags), "note": note})["xid"]
        )

    def sweep(self, title: str, size: int, *, state: str) -> int:
        """An experiment of `size` units, each with one job (an array task) in `state`."""
        xid = self.experiment(title)
        units = [{"wid": w, "args": json.dumps({"lr": 0.001 * w, "seed": w})} for w in range(1, size + 1)]
        self.write("PUT", f"/experiment/{xid}/wus", units)
        ssh = json.dumps({"host": "127.0.0.1"})
        jobs = [
            {"wid": w, "job": {"name": "train", "slurm_job_id": f"9000_{w}", "slurm_ssh_config": ssh}}
            for w in range(1, size + 1)
        ]
        self.write("PUT", f"/experiment/{xid}/jobs", jobs)
        self.record_state(xid, None, state)
        return xid

    def token(self, name: str, *, scope: str = tokens.READ_ONLY) -> str:
        return tokens.create_token(self.store, name, scope=scope, expires_in=dt.timedelta(days=1))

    def token_id(self, name: str) -> int:
        return next(r.id for r in tokens.list_tokens(self.store) if r.name == name)

    def expire(self, name: str) -> None:
        """Move a token's expiry into the past (as if its day had gone by)."""
        past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        with self.store.transaction() as conn:
            conn.execute(
                sa.update(schema.api_tokens).where(schema.api_tokens.c.name == name).values(expires_at=past)
            )

    def record_state(
        self,
        xid: int,
        wid: int | None,
        state: str,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Record a unit's job's (wid None: every job's) last known state in the store, as a poller with
        write access does."""
        units = schema.work_units.c
        unit = sa.select(units.id).where(units.experiment_id == xid)
        if wid is not None:
            unit = unit.where(units.wid == wid)
        with self.store.transaction() as conn:
            conn.execute(
                sa.update(_JOB_STATES)
                .where(_JOB_STATES.c.work_unit_id.in_(unit.scalar_subquery()))
                .values(
                    state=state,
                    state_reason=reason,
                    exit_code=exit_code,
                    state_seen_at=dt.datetime.now(dt.timezone.utc),
                )
            )

    def login(self, token: str) -> httpx.Client:
        """An httpx client signed in through the login form (the token posted once, in the body)."""
        client = httpx.Client(base_url=self.url, timeout=60)
        answer = client.post("/ui/login", data={"token": token})
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/ui/"
        return client


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    server = start_server(tmp_path_factory.mktemp("dashboard"))
    store = SqlClient.open(sqlite_url(server.db_path))
    yield Dash(server=server, store=store)
    store.close()
    stop_server(server)


def screenshots_dir() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[2] / "build" / "dashboard-screenshots"
