"""The SQL backend: the store's operations on a local database (SQLite by default).

Any SQLAlchemy URL works (the REST server uses this class too). Each operation runs in one transaction:
a write transaction for writes (SQLite: `BEGIN IMMEDIATE`), a read transaction otherwise; `arun` (the
async methods) runs the same in a worker thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeVar

import sqlalchemy as sa

from xm_slurm.api.base import XManagerAPI
from xm_slurm.api.operation import Operation
from xm_slurm.api.storage import engine as engines
from xm_slurm.errors import MetadataError

R = TypeVar("R")


class SqlClient(XManagerAPI):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None) -> SqlClient:
        """Open (creating and migrating if needed) `url`, by default `$XM_SLURM_STATE_DIR/db.sqlite3`."""
        return cls(engines.open_engine(url))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url.render_as_string(hide_password=True)!r})"

    def run(self, op: Operation[R]) -> R:
        with self.transaction() if op.write else self.reading() as conn:
            return op.sql(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction (SQLite: `BEGIN IMMEDIATE`, so concurrent writers queue instead of failing)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as e:
            raise MetadataError(f"the metadata database failed: {e.orig}") from e

    @contextlib.contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect().execution_options(**{engines.READ_ONLY: True}) as conn, conn.begin():
                yield conn
        except sa.exc.OperationalError as e:
            raise MetadataError(f"the metadata database failed: {e.orig}") from e

    def close(self) -> None:
        self.engine.dispose()
