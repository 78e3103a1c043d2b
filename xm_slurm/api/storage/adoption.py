"""Adopting a SQLite store written by xmanager-slurm 0.4.7 (it has no `alembic_version` table).

`engine.open_engine` asks `inspect_store` about an existing file before opening it. A 0.4.7 store is copied
beside itself (`write_backup`, byte for byte, 0600), then `convert` rewrites its rows into the tables of our
revision `ADOPTED_REVISION` in one write transaction, and the normal migrations run on top. What 0.4.7 kept
differently: tags as one `"a,b"` text, every artifact in one `artifacts` table with a `type` (`experiment`,
`config`, `work_unit`) and link tables, jobs in `slurm_jobs` with an INTEGER id column that also holds array
tasks as text (`"3115_0"`), no creation time (adopted experiments get the adoption time). Ids (xid, row ids)
and every value are kept as stored; rows that belong to nothing (a unit of a deleted experiment, an unlinked
artifact) are left out with a warning and stay in the backup.

Anything else (our tables without `alembic_version`, 0.4.7 tables with other columns, rows that cannot be
mapped, a file that is not SQLite) is refused with a `MetadataError` naming the file, before anything is
written: such a file is left byte-identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import pathlib
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from xm_slurm.errors import MetadataError

log = logging.getLogger(__name__)

LEGACY_VERSION = "0.4.7"
#: The revision whose tables `convert` writes; the migrations after it run as for any store at it.
ADOPTED_REVISION = "0001"
_SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 60.0

#: 0.4.7's tables and their columns, in an order that drops children before their parents.
LEGACY_TABLES: dict[str, tuple[str, ...]] = {
    "work_unit_artifacts": ("id", "experiment_id", "work_unit_id"),
    "experiment_artifacts": ("id", "experiment_id"),
    "slurm_jobs": ("id", "work_unit_id", "name", "slurm_job_id", "slurm_ssh_config"),
    "artifacts": ("id", "name", "uri", "type"),
    "work_units": ("id", "experiment_id", "wid", "identity", "args"),
    "experiments": ("id", "title", "description", "note", "tags"),
}
#: Tables only our schema has: present without a revision, they are a migration that stopped half-way.
_OURS_ONLY = frozenset(
    {"experiment_tags", "jobs", "experiment_config_artifacts", "api_tokens", "idempotency_keys"}
)

# Our revision-0001 tables, as that revision made them (not `schema.py`, which follows head).
_experiments = sa.table(
    "experiments",
    sa.column("id", sa.Integer),
    sa.column("title", sa.Text),
    sa.column("description", sa.Text),
    sa.column("note", sa.Text),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_tags = sa.table("experiment_tags", sa.column("experiment_id", sa.Integer), sa.column("tag", sa.Text))
_work_units = sa.table(
    "work_units",
    sa.column("id", sa.Integer),
    sa.column("experiment_id", sa.Integer),
    sa.column("wid", sa.Integer),
    sa.column("identity", sa.Text),
    sa.column("args", sa.Text),
)
_jobs = sa.table(
    "jobs",
    sa.column("id", sa.Integer),
    sa.column("work_unit_id", sa.Integer),
    sa.column("name", sa.Text),
    sa.column("slurm_job_id", sa.Text),
    sa.column("slurm_ssh_config", sa.Text),
)


def _artifact_table(name: str, owner: str) -> sa.TableClause:
    return sa.table(name, sa.column(owner, sa.Integer), sa.column("name", sa.Text), sa.column("uri", sa.Text))


_ARTIFACT_TABLES = {
    "experiment": _artifact_table("experiment_artifacts", "experiment_id"),
    "config": _artifact_table("experiment_config_artifacts", "experiment_id"),
    "work_unit": _artifact_table("work_unit_artifacts", "work_unit_id"),
}

Query = Callable[[str], list[tuple[Any, ...]]]


class _Refused(Exception):
    """What makes a store impossible to adopt (worded into a MetadataError naming the file)."""


@dataclasses.dataclass
class AdoptedRows:
    """The rows of our revision-0001 tables made from a 0.4.7 store, and what was left out."""

    experiments: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    tags: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    work_units: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    jobs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    artifacts: dict[str, list[dict[str, Any]]] = dataclasses.field(
        default_factory=lambda: {kind: [] for kind in _ARTIFACT_TABLES}
    )
    left_out: list[str] = dataclasses.field(default_factory=list)


# -- what the file is --------------------------------------------------------------------------------------


def _refusal(path: pathlib.Path, problem: str) -> MetadataError:
    return MetadataError(
        f"cannot open the metadata store {path}: {problem}. The file is left unchanged. Move it aside "
        f"(e.g. `mv {path} {path}.old`) to start a new store there"
    )


def _tables(query: Query) -> dict[str, tuple[str, ...]]:
    names = [r[0] for r in query("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        n: tuple(r[1] for r in query(f'PRAGMA table_info("{n}")'))
        for n in names
        if not n.startswith("sqlite_")
    }


def _is_legacy(tables: dict[str, tuple[str, ...]], has_revision: bool) -> bool:
    """True for a 0.4.7 store, False for ours or an empty file; `_Refused` for anything in between."""
    if "alembic_version" in tables:
        if has_revision or set(tables) == {"alembic_version"}:
            return False
        raise _Refused("it has an empty alembic_version table and other tables: a migration stopped half-way")
    if not tables:
        return False
    ours = sorted(_OURS_ONLY & set(tables))
    if ours:
        raise _Refused(
            f"it holds tables of this version ({', '.join(ours)}) but no alembic_version table, so its "
            "revision is unknown (a migration stopped half-way?)"
        )
    if set(tables) != set(LEGACY_TABLES):
        raise _Refused(
            f"its tables ({', '.join(sorted(tables))}) are neither this version's nor those of xmanager-slurm "
            f"{LEGACY_VERSION} ({', '.join(sorted(LEGACY_TABLES))})"
        )
    for name, columns in LEGACY_TABLES.items():
        if set(tables[name]) != set(columns):
            raise _Refused(
                f"its table {name} has columns ({', '.join(tables[name])}), not those xmanager-slurm "
                f"{LEGACY_VERSION} writes ({', '.join(columns)})"
            )
    return True


def _classify(query: Query) -> bool:
    tables = _tables(query)
    has_revision = "alembic_version" in tables and bool(query("SELECT version_num FROM alembic_version"))
    return _is_legacy(tables, has_revision)


def inspect_store(path: pathlib.Path) -> bool:
    """True if `path` is a 0.4.7 store to adopt; False if it is missing, empty or ours. Reads only.

    Raises MetadataError (naming the file and what to do) for a file that is not SQLite, a half-migrated store,
    or a 0.4.7-looking store whose tables or rows cannot be mapped."""
    try:
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return False
    except OSError as e:
        raise _refusal(path, f"it cannot be read ({e.strerror})") from None
    if not header:
        return False  # an empty file is a new store
    if header != _SQLITE_MAGIC:
        raise _refusal(path, "it is not a SQLite database")
    try:
        # The busy timeout: another process may hold the file a moment (switching it to WAL, adopting it).
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as e:
        raise _refusal(path, f"SQLite cannot open it ({e})") from None
    try:
        query: Query = lambda sql: db.execute(sql).fetchall()  # noqa: E731
        if not _classify(query):
            return False
        read_rows(query)  # refuses rows it cannot map before anything is written
        return True
    except _Refused as e:
        raise _refusal(path, str(e)) from None
    except sqlite3.OperationalError as e:
        if "locked" not in str(e) and "busy" not in str(e):
            raise _refusal(path, f"SQLite cannot read it ({e})") from None
        raise MetadataError(
            f"the metadata store {path} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s ({e}); "
            "try again when that process is done"
        ) from None
    except sqlite3.DatabaseError as e:
        raise _refusal(path, f"SQLite cannot read it ({e})") from None
    finally:
        db.close()


# -- the rows ----------------------------------------------------------------------------------------------


def _split_tags(value: object, xid: int) -> list[str]:
    """0.4.7 joined an experiment's tags with ","; empty pieces are not tags."""
    if value is None:
        return []
    if not isinstance(value, str):
        raise _Refused(f"experiment {xid} has tags {value!r:.100}, not a text")
    return sorted({tag for tag in value.split(",") if tag})


def _job_id(value: object, row_id: int) -> str:
    """0.4.7's INTEGER column holds a plain job as a number and an array task as text ("3115_0")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise _Refused(f"slurm_jobs row {row_id} has slurm_job_id {value!r:.100}, not a Slurm job id")
    return str(value)


def _dedupe(
    rows: Iterable[dict[str, Any]], key: tuple[str, ...], what: str, *, ignore: str = ""
) -> list[dict[str, Any]]:
    """One row per `key`: copies equal but for the `ignore` field collapse; copies that differ are refused."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[f] for f in key)
        first = seen.setdefault(k, row)
        if {f: v for f, v in first.items() if f != ignore} != {f: v for f, v in row.items() if f != ignore}:
            raise _Refused(f"two {what} rows have the same {', '.join(key)} {k!r:.100} but differ")
    return list(seen.values())


def _read_experiments(query: Query, rows: AdoptedRows) -> None:
    created = dt.datetime.now(dt.timezone.utc)  # 0.4.7 kept no creation time
    for xid, title, description, note, tags in query(
        "SELECT id, title, description, note, tags FROM experiments ORDER BY id"
    ):
        rows.experiments.append(
            {"id": xid, "title": title or "", "description": description, "note": note, "created_at": created}
        )
        rows.tags.extend({"experiment_id": xid, "tag": tag} for tag in _split_tags(tags, xid))


def _read_units_and_jobs(query: Query, rows: AdoptedRows) -> dict[int, int]:
    """Work units and jobs; returns each kept unit's experiment (by the unit's row id)."""
    xids = {e["id"] for e in rows.experiments}
    units: dict[int, int] = {}
    for row_id, xid, wid, identity, args in query(
        "SELECT id, experiment_id, wid, identity, args FROM work_units ORDER BY id"
    ):
        if xid not in xids:
            rows.left_out.append(f"work unit row {row_id} (its experiment {xid} does not exist)")
            continue
        if not isinstance(wid, int) or isinstance(wid, bool):
            raise _Refused(f"work_units row {row_id} has wid {wid!r:.100}, not an integer")
        units[row_id] = xid
        unit = {"id": row_id, "experiment_id": xid, "wid": wid, "identity": identity or "", "args": args}
        rows.work_units.append(unit)
    _dedupe(rows.work_units, ("experiment_id", "wid"), "work_units")
    _dedupe([u for u in rows.work_units if u["identity"]], ("experiment_id", "identity"), "work_units")
    for row_id, unit_id, name, job_id, ssh in query(
        "SELECT id, work_unit_id, name, slurm_job_id, slurm_ssh_config FROM slurm_jobs ORDER BY id"
    ):
        if unit_id not in units:
            rows.left_out.append(f"job row {row_id} (its work unit row {unit_id} does not exist)")
            continue
        job = {
            "id": row_id,
            "work_unit_id": unit_id,
            "name": name or "",
            "slurm_job_id": _job_id(job_id, row_id),
            "slurm_ssh_config": "null" if ssh is None else ssh,  # as stored: both 0.4.x forms read
        }
        rows.jobs.append(job)
    rows.jobs = _dedupe(rows.jobs, ("work_unit_id", "name", "slurm_job_id"), "slurm_jobs", ignore="id")
    return units


def _read_artifacts(query: Query, rows: AdoptedRows, units: dict[int, int]) -> None:
    xids = {e["id"] for e in rows.experiments}
    for row_id, name, uri, kind, linked_xid, unit_xid, unit_id in query(
        "SELECT a.id, a.name, a.uri, a.type, ea.experiment_id, wa.experiment_id, wa.work_unit_id "
        "FROM artifacts a LEFT JOIN experiment_artifacts ea ON ea.id = a.id "
        "LEFT JOIN work_unit_artifacts wa ON wa.id = a.id ORDER BY a.id"
    ):
        if kind not in _ARTIFACT_TABLES:
            raise _Refused(
                f"artifact row {row_id} has type {kind!r:.100}; {LEGACY_VERSION} writes "
                f"{', '.join(sorted(_ARTIFACT_TABLES))}"
            )
        if not isinstance(name, str) or not name or not isinstance(uri, str):
            raise _Refused(
                f"artifact row {row_id} has name {name!r:.100} and uri {uri!r:.100}: both must be text"
            )
        if kind == "work_unit":
            if unit_id not in units or (unit_xid is not None and units[unit_id] != unit_xid):
                rows.left_out.append(f"artifact row {row_id} {name!r:.100} (no work unit of its experiment)")
                continue
            rows.artifacts[kind].append({"work_unit_id": unit_id, "name": name, "uri": uri})
        elif linked_xid in xids:
            rows.artifacts[kind].append({"experiment_id": linked_xid, "name": name, "uri": uri})
        else:
            rows.left_out.append(f"artifact row {row_id} {name!r:.100} (linked to no experiment)")
    for kind, found in rows.artifacts.items():
        owner = "work_unit_id" if kind == "work_unit" else "experiment_id"
        rows.artifacts[kind] = _dedupe(found, (owner, "name"), f"{kind} artifact")


def read_rows(query: Query) -> AdoptedRows:
    """A 0.4.7 store's rows as rows of our revision-0001 tables (`_Refused` for rows that cannot be mapped)."""
    rows = AdoptedRows()
    _read_experiments(query, rows)
    units = _read_units_and_jobs(query, rows)
    _read_artifacts(query, rows, units)
    return rows


# -- writing -----------------------------------------------------------------------------------------------


def backup_path(path: pathlib.Path, now: dt.datetime) -> pathlib.Path:
    return path.with_name(f"{path.name}.bak-{LEGACY_VERSION}-{now.strftime('%Y%m%dT%H%M%SZ')}")


def write_backup(path: pathlib.Path) -> pathlib.Path:
    """Copy the store beside itself (0600, never over an existing file) before anything changes it."""
    base = backup_path(path, dt.datetime.now(dt.timezone.utc))
    for n in range(100):
        target = base if n == 0 else base.with_name(f"{base.name}.{n}")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "wb") as out, path.open("rb") as src:
            shutil.copyfileobj(src, out)
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size:  # committed pages still in the WAL: copy through SQLite
            with (
                contextlib.closing(sqlite3.connect(path)) as src_db,
                contextlib.closing(sqlite3.connect(target)) as dst_db,
            ):
                src_db.backup(dst_db)
        return target
    raise MetadataError(f"cannot write a backup of {path}: {base} and 99 numbered copies exist")


def convert(
    conn: sa.Connection, path: pathlib.Path, create_schema: Callable[[sa.Connection], None]
) -> AdoptedRows | None:
    """In `conn`'s write transaction: replace the 0.4.7 tables by ours (made by `create_schema`) holding
    the same rows. None if another process adopted the store meanwhile."""
    query: Query = lambda sql: [tuple(r) for r in conn.exec_driver_sql(sql).fetchall()]  # noqa: E731
    try:
        if not _classify(query):
            return None
        rows = read_rows(query)
    except _Refused as e:
        raise _refusal(path, str(e)) from None
    for name in LEGACY_TABLES:
        conn.exec_driver_sql(f'DROP TABLE "{name}"')
    create_schema(conn)
    for table, values in (
        (_experiments, rows.experiments),
        (_tags, rows.tags),
        (_work_units, rows.work_units),
        (_jobs, rows.jobs),
        *((_ARTIFACT_TABLES[kind], rows.artifacts[kind]) for kind in _ARTIFACT_TABLES),
    ):
        if values:
            conn.execute(sa.insert(table), values)
    if rows.left_out:
        log.warning(
            "adopting %s: left out %d row(s) that belong to nothing (kept in the backup): %s",
            path,
            len(rows.left_out),
            "; ".join(rows.left_out[:10]),
        )
    return rows
