"""Open a database: private files, SQLite tuned for several writer processes, schema migrated to head.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with `BEGIN IMMEDIATE` so that
concurrent launch processes queue for the write lock instead of failing with "database is locked" when a read
transaction tries to upgrade. Migrations run inside such a transaction, so processes opening a fresh file at the
same time migrate it exactly once.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import stat
import time
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from xm_slurm.api.storage import adoption
from xm_slurm.errors import ConfigurationError, MetadataError
from xm_slurm.paths import local_state_dir

log = logging.getLogger(__name__)
MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent / "migrations"
DB_FILENAME = "db.sqlite3"
BUSY_TIMEOUT_MS = 60_000
READ_ONLY = "xm_slurm_read_only"  # execution option: start a deferred (read) transaction


def default_state_dir() -> pathlib.Path:
    """This machine's state folder (`paths.local_state_dir`: `$XM_SLURM_STATE_DIR`, else
    `~/.local/state/xm-slurm`, as in 0.4.x; `XDG_STATE_HOME` is not read)."""
    return local_state_dir()


def default_sqlite_path() -> pathlib.Path:
    return default_state_dir() / DB_FILENAME


def sqlite_url(path: os.PathLike[str] | str) -> str:
    return f"sqlite:///{pathlib.Path(path).resolve()}"


def _make_private(path: pathlib.Path) -> None:
    """Create the folder (0700) and the database file (0600); tighten the file (and its WAL files) if looser."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder == default_state_dir() and stat.S_IMODE(folder.stat().st_mode) & 0o077:
        folder.chmod(0o700)  # our own state folder; a folder the user points at is left as it is
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and stat.S_IMODE(p.stat().st_mode) & 0o077:
            p.chmod(0o600)


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL. The switch takes an exclusive lock, and SQLite answers "database is locked"
    at once (without the busy handler, to avoid a deadlock) while another process switches or migrates a
    fresh file; so wait for it here, up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _configure_sqlite(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's implicit transactions are off).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


#: Key of the advisory lock every PostgreSQL write transaction holds ("xmslurm" in ASCII).
WRITE_LOCK_KEY = 0x786D736C75726D


def _configure_postgresql(engine: sa.Engine) -> None:
    """Writers queue as under SQLite's BEGIN IMMEDIATE: each write transaction first takes one advisory
    lock (released at its commit or rollback), so the operations' check-then-write steps (identity lookups,
    idempotent job inserts, artifact upserts, migrations of a fresh database) never interleave under READ
    COMMITTED. Readers take no lock."""

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if not conn.get_execution_options().get(READ_ONLY, False):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Migrate the schema to `revision` in one (write-locked) transaction."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def create_engine(url: str) -> sa.Engine:
    """An engine for `url` (SQLite gets its file made private and tuned), without migrating."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as e:
        raise ConfigurationError(f"not a database URL: {url!r} (e.g. sqlite:////path/db.sqlite3)") from e
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError(f"SQLite database URL {url!r} must name a file")
        _make_private(pathlib.Path(parsed.database))
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if "+" not in parsed.drivername:  # plain postgresql:// means psycopg 3, the driver of our extra
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            engine = sa.create_engine(parsed, pool_pre_ping=True)
        except ModuleNotFoundError as e:
            raise ConfigurationError(
                f"PostgreSQL needs its driver ({e.name} is not installed): "
                "pip install 'xmanager-slurm[server,postgres]'"
            ) from e
        _configure_postgresql(engine)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True)


def _sqlite_file(url: str) -> pathlib.Path | None:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None  # create_engine words the error
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return pathlib.Path(parsed.database)


def _adopt(engine: sa.Engine, path: pathlib.Path, backup: pathlib.Path) -> None:
    """Rewrite a 0.4.7 store into our tables and migrate it to head, in one write transaction."""
    try:
        with engine.begin() as conn:
            rows = adoption.convert(
                conn, path, lambda c: command.upgrade(alembic_config(c), adoption.ADOPTED_REVISION)
            )
            if rows is not None:
                command.upgrade(alembic_config(conn), "head")
    except sa.exc.DBAPIError as e:  # rolled back: the store holds what it held
        raise MetadataError(
            f"adopting {path} (a store of xmanager-slurm {adoption.LEGACY_VERSION}) failed and was rolled "
            f"back: {e.orig}. Its copy from before is {backup}"
        ) from e


def open_engine(url: str | None = None) -> sa.Engine:
    """An engine with the schema at head. `url` defaults to the SQLite file in the state folder.

    A SQLite store written by xmanager-slurm 0.4.7 is adopted first (`adoption`: a backup copy beside it,
    then its rows in our tables); a file that is neither ours nor 0.4.7's is refused, untouched."""
    url = url or sqlite_url(default_sqlite_path())
    path = _sqlite_file(url)
    legacy = path if path is not None and adoption.inspect_store(path) else None  # before create_engine
    if legacy is not None:
        backup = adoption.write_backup(legacy)
        log.warning(
            "adopting %s, a store of xmanager-slurm %s (its copy: %s)",
            legacy,
            adoption.LEGACY_VERSION,
            backup,
        )
    engine = create_engine(url)
    if legacy is not None:
        _adopt(engine, legacy, backup)
    if current_revision(engine) != head_revision():
        upgrade(engine)
    return engine
