"""The metadata operations as functions of an open transaction (`sa.Connection`).

Both the SQL client and the REST server call these, the server inside the same transaction that records the
request's idempotency key. Checks run before writes so that errors are clear (and, under SQLite's
`BEGIN IMMEDIATE`, free of races); the unique constraints are the last line of defence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from xm_slurm.api.models import (
    Artifact,
    ConfigArtifact,
    ConflictError,
    Experiment,
    ExperimentPatch,
    ExperimentSummary,
    ExperimentUnitPatch,
    ExperimentUnitRole,
    SlurmJob,
    WorkUnit,
    WorkUnitPatch,
    from_store,
    require_bool,
    require_id,
    require_page,
    require_reserve_count,
)
from xm_slurm.api.storage import schema as t
from xm_slurm.api.storage.job_states import state_fields
from xm_slurm.errors import NotFoundError, ValidationError
from xm_slurm.text_rules import MAX_LINE, check_line, check_name

#: A job row's columns, named as `SlurmJob`'s fields.
_JOB_FIELDS = ("name", "slurm_job_id", "slurm_ssh_config", "retry_of")


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite drops the zone; we only ever store UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


def _require_experiment(conn: sa.Connection, xid: int) -> None:
    require_id(xid, "an experiment id (xid)")
    if conn.execute(sa.select(t.experiments.c.id).where(t.experiments.c.id == xid)).first() is None:
        raise NotFoundError(f"experiment {xid} does not exist")


def _work_unit_pk(conn: sa.Connection, xid: int, wid: int) -> int:
    require_id(xid, "an experiment id (xid)")
    require_id(wid, "a work unit id (wid)")
    row = conn.execute(
        sa.select(t.work_units.c.id).where(t.work_units.c.experiment_id == xid, t.work_units.c.wid == wid)
    ).first()
    if row is None:
        _require_experiment(conn, xid)
        raise NotFoundError(f"work unit {wid} of experiment {xid} does not exist")
    return int(row.id)


def _set_tags(conn: sa.Connection, xid: int, tags: frozenset[str]) -> None:
    conn.execute(sa.delete(t.experiment_tags).where(t.experiment_tags.c.experiment_id == xid))
    if tags:
        conn.execute(
            sa.insert(t.experiment_tags), [{"experiment_id": xid, "tag": tag} for tag in sorted(tags)]
        )


# -- experiments -----------------------------------------------------------------------------------------


def insert_experiment(conn: sa.Connection, patch: ExperimentPatch) -> int:
    result = conn.execute(
        sa.insert(t.experiments).values(
            title=patch.title or "",
            description=patch.description,
            note=patch.note,
            created_at=dt.datetime.now(dt.timezone.utc),
        )
    )
    assert result.inserted_primary_key is not None
    xid = int(result.inserted_primary_key[0])
    if patch.tags:
        _set_tags(conn, xid, patch.tags)
    return xid


def update_experiment(conn: sa.Connection, xid: int, patch: ExperimentPatch) -> None:
    _require_experiment(conn, xid)
    values = {f: getattr(patch, f) for f in ("title", "description", "note") if getattr(patch, f) is not None}
    if values:
        conn.execute(sa.update(t.experiments).where(t.experiments.c.id == xid).values(**values))
    if patch.tags is not None:
        _set_tags(conn, xid, patch.tags)


def delete_experiment(conn: sa.Connection, xid: int) -> None:
    _require_experiment(conn, xid)
    conn.execute(sa.delete(t.experiments).where(t.experiments.c.id == xid))  # children cascade


def _work_units(conn: sa.Connection, xid: int, where: sa.ColumnElement[bool] | None = None) -> list[WorkUnit]:
    query = sa.select(t.work_units).where(t.work_units.c.experiment_id == xid).order_by(t.work_units.c.wid)
    if where is not None:
        query = query.where(where)
    rows = conn.execute(query).all()
    if not rows:
        return []
    pks = [r.id for r in rows]
    jobs: dict[int, list[SlurmJob]] = {pk: [] for pk in pks}
    for j in conn.execute(sa.select(t.jobs).where(t.jobs.c.work_unit_id.in_(pks)).order_by(t.jobs.c.id)):
        fields = {f: getattr(j, f) for f in _JOB_FIELDS}
        jobs[j.work_unit_id].append(from_store(SlurmJob, **fields, **state_fields(j)))  # the state: read only
    artifacts: dict[int, list[Artifact]] = {pk: [] for pk in pks}
    query_a = sa.select(t.work_unit_artifacts).where(t.work_unit_artifacts.c.work_unit_id.in_(pks))
    for a in conn.execute(query_a.order_by(t.work_unit_artifacts.c.name)):
        artifacts[a.work_unit_id].append(from_store(Artifact, name=a.name, uri=a.uri))
    return [
        WorkUnit(
            wid=r.wid,
            identity=r.identity,
            args=r.args,
            role=_role(r.role),
            jobs=tuple(jobs[r.id]),
            artifacts=tuple(artifacts[r.id]),
        )
        for r in rows
    ]


def _role(stored: str) -> ExperimentUnitRole:
    # Lenient like every read: a value written by hand reads as a work unit rather than hide the experiment.
    return ExperimentUnitRole.__members__.get(stored, ExperimentUnitRole.WORK_UNIT)


def get_experiment(conn: sa.Connection, xid: int) -> Experiment:
    require_id(xid, "an experiment id (xid)")
    row = conn.execute(sa.select(t.experiments).where(t.experiments.c.id == xid)).first()
    if row is None:
        raise NotFoundError(f"experiment {xid} does not exist")
    tags = conn.execute(sa.select(t.experiment_tags.c.tag).where(t.experiment_tags.c.experiment_id == xid))
    ea, ca = t.experiment_artifacts, t.experiment_config_artifacts
    return Experiment(
        xid=row.id,
        title=row.title,
        description=row.description,
        note=row.note,
        tags=frozenset(tags.scalars()),
        work_units=tuple(_work_units(conn, xid)),
        artifacts=tuple(
            from_store(Artifact, name=a.name, uri=a.uri)
            for a in conn.execute(sa.select(ea).where(ea.c.experiment_id == xid).order_by(ea.c.name))
        ),
        config_artifacts=tuple(
            from_store(ConfigArtifact, name=a.name, uri=a.uri)
            for a in conn.execute(sa.select(ca).where(ca.c.experiment_id == xid).order_by(ca.c.name))
        ),
        created_at=_iso(row.created_at),
    )


def list_experiments(
    conn: sa.Connection,
    *,
    title_contains: str | None,
    tag: str | None,
    limit: int,
    offset: int,
    include_empty: bool = True,
) -> list[ExperimentSummary]:
    """A page of experiments, newest first; without `include_empty`, only those holding a work unit (the
    filter is part of the query, so pages stay full)."""
    require_page(limit, offset)
    require_bool(include_empty, "include_empty")
    if title_contains is not None:
        check_line(title_contains, "title_contains", MAX_LINE)
    if tag is not None:
        check_line(tag, "tag", MAX_LINE)
    e, w, tg = t.experiments, t.work_units, t.experiment_tags
    count = sa.select(sa.func.count()).where(w.c.experiment_id == e.c.id).scalar_subquery()
    query = sa.select(e, count.label("num_work_units")).order_by(e.c.id.desc()).limit(limit).offset(offset)
    if title_contains:
        query = query.where(e.c.title.contains(title_contains, autoescape=True))
    if tag is not None:
        query = query.where(sa.exists().where(tg.c.experiment_id == e.c.id, tg.c.tag == tag))
    if not include_empty:
        query = query.where(sa.exists().where(w.c.experiment_id == e.c.id))
    rows = conn.execute(query).all()
    tags: dict[int, set[str]] = {r.id: set() for r in rows}
    if rows:
        for r in conn.execute(sa.select(tg).where(tg.c.experiment_id.in_(list(tags)))):
            tags[r.experiment_id].add(r.tag)
    return [
        ExperimentSummary(
            xid=r.id,
            title=r.title,
            description=r.description,
            note=r.note,
            tags=frozenset(tags[r.id]),
            num_work_units=r.num_work_units,
            created_at=_iso(r.created_at),
        )
        for r in rows
    ]


# -- work units ------------------------------------------------------------------------------------------


def insert_work_units(conn: sa.Connection, xid: int, patches: Sequence[WorkUnitPatch]) -> None:
    _require_experiment(conn, xid)
    seen_wids: set[int] = set()
    seen_identities: set[str] = set()
    for p in patches:
        if p.wid in seen_wids:
            raise ConflictError(f"work unit id {p.wid} appears twice in one batch for experiment {xid}")
        seen_wids.add(p.wid)
        if p.identity:
            if p.identity in seen_identities:
                raise ConflictError(
                    f"identity {p.identity!r} appears twice in one batch for experiment {xid}"
                )
            seen_identities.add(p.identity)
    w = t.work_units
    existing = {
        r.wid: r
        for r in conn.execute(
            sa.select(w).where(
                w.c.experiment_id == xid,
                sa.or_(w.c.wid.in_(seen_wids), w.c.identity.in_(seen_identities)),
            )
        )
    }
    by_identity = {r.identity: r.wid for r in existing.values() if r.identity}
    new_rows = []
    for p in patches:
        identity = p.identity or ""
        row = existing.get(p.wid)
        if row is not None:
            if (row.identity, row.args, row.role) != (identity, p.args, p.role.value):
                raise ConflictError(
                    f"work unit {p.wid} of experiment {xid} already exists with other content "
                    f"(identity {row.identity!r}); work unit ids are 1-based and unique per experiment"
                )
            continue  # the same work unit again: an idempotent retry
        if identity and by_identity.get(identity, p.wid) != p.wid:
            raise ConflictError(
                f"identity {identity!r} is already work unit {by_identity[identity]} of experiment {xid}"
            )
        new_rows.append(
            {"experiment_id": xid, "wid": p.wid, "identity": identity, "args": p.args, "role": p.role.value}
        )
    if new_rows:
        conn.execute(sa.insert(w), new_rows)


def reserve_work_unit_ids(conn: sa.Connection, xid: int, count: int) -> int:
    """See `XManagerAPI.reserve_work_unit_ids`: call inside a write transaction (SQLite: BEGIN IMMEDIATE
    serialises writers; PostgreSQL: the experiment row is locked FOR UPDATE until the commit)."""
    require_id(xid, "an experiment id (xid)")
    require_reserve_count(count)
    e, w = t.experiments, t.work_units
    row = conn.execute(sa.select(e.c.wid_reserved).where(e.c.id == xid).with_for_update()).first()
    if row is None:
        raise NotFoundError(f"experiment {xid} does not exist")
    highest = conn.execute(sa.select(sa.func.max(w.c.wid)).where(w.c.experiment_id == xid)).scalar()
    first = max(int(row.wid_reserved), int(highest or 0)) + 1
    last = first + count - 1
    require_id(last, f"the last work unit id of a reservation of {count} in experiment {xid}")
    conn.execute(sa.update(e).where(e.c.id == xid).values(wid_reserved=last))
    return first


def update_work_unit(conn: sa.Connection, xid: int, wid: int, patch: ExperimentUnitPatch) -> None:
    pk = _work_unit_pk(conn, xid, wid)
    values: dict[str, object] = {}
    if patch.identity is not None:
        if patch.identity:
            other = find_work_unit(conn, xid, patch.identity)
            if other is not None and other.wid != wid:
                raise ConflictError(
                    f"identity {patch.identity!r} is already work unit {other.wid} of experiment {xid}"
                )
        values["identity"] = patch.identity
    if patch.args is not None:
        values["args"] = patch.args
    if patch.role is not None:
        values["role"] = patch.role.value
    if values:
        conn.execute(sa.update(t.work_units).where(t.work_units.c.id == pk).values(**values))


def get_work_unit(conn: sa.Connection, xid: int, wid: int) -> WorkUnit:
    require_id(xid, "an experiment id (xid)")
    require_id(wid, "a work unit id (wid)")
    found = _work_units(conn, xid, t.work_units.c.wid == wid)
    if not found:
        _require_experiment(conn, xid)
        raise NotFoundError(f"work unit {wid} of experiment {xid} does not exist")
    return found[0]


def find_work_unit(conn: sa.Connection, xid: int, identity: str) -> WorkUnit | None:
    require_id(xid, "an experiment id (xid)")
    check_line(identity, "find_work_unit: identity", MAX_LINE)
    if not identity:
        raise ValidationError("find_work_unit needs a non-empty identity")
    found = _work_units(conn, xid, t.work_units.c.identity == identity)
    if not found:
        _require_experiment(conn, xid)
        return None
    return found[0]


def insert_jobs(conn: sa.Connection, xid: int, pairs: Sequence[tuple[int, SlurmJob]]) -> None:
    require_id(xid, "an experiment id (xid)")
    w, j = t.work_units, t.jobs
    wids = {wid for wid, _ in pairs}
    for wid in wids:
        require_id(wid, "a work unit id (wid)")
    pks: dict[int, int] = {}
    for chunk in _chunks(sorted(wids)):
        query = sa.select(w.c.wid, w.c.id).where(w.c.experiment_id == xid, w.c.wid.in_(chunk))
        pks.update({int(r.wid): int(r.id) for r in conn.execute(query)})
    missing = wids - pks.keys()
    if missing:
        _require_experiment(conn, xid)
        raise NotFoundError(f"work unit {min(missing)} of experiment {xid} does not exist")
    existing: set[tuple[int, str, str]] = set()
    for chunk in _chunks(sorted(pks.values())):
        query = sa.select(j.c.work_unit_id, j.c.name, j.c.slurm_job_id).where(j.c.work_unit_id.in_(chunk))
        existing.update((int(r.work_unit_id), r.name, r.slurm_job_id) for r in conn.execute(query))
    rows = []
    for wid, job in pairs:
        key = (pks[wid], job.name, job.slurm_job_id)
        if key in existing:  # the same job again is an idempotent retry
            continue
        existing.add(key)
        rows.append({"work_unit_id": key[0], **{f: getattr(job, f) for f in _JOB_FIELDS}})
    if rows:
        conn.execute(sa.insert(j), rows)


def _chunks(values: list[int], size: int = 500) -> list[list[int]]:
    return [values[k : k + size] for k in range(0, len(values), size)]


def replace_jobs(
    conn: sa.Connection,
    xid: int,
    work_units: Sequence[WorkUnitPatch],
    remove: Sequence[tuple[int, str]],
    insert: Sequence[tuple[int, SlurmJob]],
    delete_empty_units: Sequence[int],
) -> None:
    """See `XManagerAPI.replace_jobs`: units, then removals, then inserts, then emptied units."""
    _require_experiment(conn, xid)
    if work_units:
        insert_work_units(conn, xid, work_units)
    w, j = t.work_units, t.jobs
    wids = {wid for wid, _ in remove} | set(delete_empty_units)
    pks: dict[int, int] = {}
    if wids:
        query = sa.select(w.c.wid, w.c.id).where(w.c.experiment_id == xid, w.c.wid.in_(wids))
        pks = {int(r.wid): int(r.id) for r in conn.execute(query)}
    doomed = [{"pk": pks[wid], "job": job_id} for wid, job_id in remove if wid in pks]
    if doomed:  # a unit already gone has no row left to remove
        conn.execute(
            sa.delete(j).where(
                j.c.work_unit_id == sa.bindparam("pk"), j.c.slurm_job_id == sa.bindparam("job")
            ),
            doomed,
        )
    if insert:
        insert_jobs(conn, xid, insert)
    for wid in delete_empty_units:
        pk = pks.get(wid)
        if pk is not None and conn.execute(sa.select(j.c.id).where(j.c.work_unit_id == pk)).first() is None:
            conn.execute(sa.delete(w).where(w.c.id == pk))  # its artifacts cascade


# -- artifacts -------------------------------------------------------------------------------------------


def _upsert(
    conn: sa.Connection, table: sa.Table, owner: sa.Column[int], owner_id: int, name: str, uri: str
) -> None:
    where = sa.and_(owner == owner_id, table.c.name == name)
    if conn.execute(sa.update(table).where(where).values(uri=uri)).rowcount == 0:
        conn.execute(sa.insert(table).values({owner.name: owner_id, "name": name, "uri": uri}))


def _delete(
    conn: sa.Connection, table: sa.Table, owner: sa.Column[int], owner_id: int, name: str, what: str
) -> None:
    if conn.execute(sa.delete(table).where(owner == owner_id, table.c.name == name)).rowcount == 0:
        raise NotFoundError(f"{what} {name!r} does not exist")


def insert_work_unit_artifact(conn: sa.Connection, xid: int, wid: int, artifact: Artifact) -> None:
    a = t.work_unit_artifacts
    _upsert(conn, a, a.c.work_unit_id, _work_unit_pk(conn, xid, wid), artifact.name, artifact.uri)


def delete_work_unit_artifact(conn: sa.Connection, xid: int, wid: int, name: str) -> None:
    check_name(name, "name")
    a = t.work_unit_artifacts
    pk = _work_unit_pk(conn, xid, wid)
    _delete(conn, a, a.c.work_unit_id, pk, name, f"artifact of work unit {wid} of experiment {xid}")


def insert_experiment_artifact(conn: sa.Connection, xid: int, artifact: Artifact) -> None:
    _require_experiment(conn, xid)
    a = t.experiment_artifacts
    _upsert(conn, a, a.c.experiment_id, xid, artifact.name, artifact.uri)


def delete_experiment_artifact(conn: sa.Connection, xid: int, name: str) -> None:
    check_name(name, "name")
    _require_experiment(conn, xid)
    a = t.experiment_artifacts
    _delete(conn, a, a.c.experiment_id, xid, name, f"artifact of experiment {xid}")


def insert_experiment_config_artifact(conn: sa.Connection, xid: int, artifact: ConfigArtifact) -> None:
    _require_experiment(conn, xid)
    a = t.experiment_config_artifacts
    _upsert(conn, a, a.c.experiment_id, xid, artifact.name, artifact.uri)


def delete_experiment_config_artifact(conn: sa.Connection, xid: int, name: str) -> None:
    check_name(name, "name")
    _require_experiment(conn, xid)
    a = t.experiment_config_artifacts
    _delete(conn, a, a.c.experiment_id, xid, name, f"config artifact of experiment {xid}")
