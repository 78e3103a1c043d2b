"""Jobs: retry lineage as data, `retry_of` (the Slurm job id of the job of the same unit a retry replaces).

Before this revision a retry was recorded under the name `<name> [retry of <old id>]` (the old id a job,
an array task or a het component, as `str(SlurmJobId)` spells it). Such rows get their name back and the
old id in `retry_of`. The rule is copied here on purpose (`models.legacy_retry_lineage` holds the library's):
a migration must not change when the library does. A row whose plain name the unit already holds for the
same Slurm id (the same job recorded twice) keeps its name and gets only `retry_of`, so no row is lost to
the unique constraint. The downgrade writes the mark back into the names.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_MARK = " [retry of "
_OLD_NAME = re.compile(r"(.*) \[retry of (\d+(?:_\d+|\+\d+)?)\]", re.DOTALL)
_jobs = sa.table(
    "jobs",
    sa.column("id", sa.Integer),
    sa.column("work_unit_id", sa.Integer),
    sa.column("name", sa.Text),
    sa.column("slurm_job_id", sa.Text),
    sa.column("retry_of", sa.Text),
)


def upgrade() -> None:
    # A nullable column: SQLite adds it in place, without copying the table.
    op.add_column("jobs", sa.Column("retry_of", sa.Text, nullable=True))
    conn = op.get_bind()
    j = _jobs
    rows = conn.execute(
        sa.select(j.c.id, j.c.work_unit_id, j.c.name, j.c.slurm_job_id).where(j.c.name.contains(_MARK))
    ).all()
    if not rows:
        return
    taken = {
        (r.work_unit_id, r.name, r.slurm_job_id)
        for r in conn.execute(
            sa.select(j.c.work_unit_id, j.c.name, j.c.slurm_job_id).where(
                j.c.work_unit_id.in_(sorted({r.work_unit_id for r in rows}))
            )
        )
    }
    updates = []
    for row in rows:
        m = _OLD_NAME.fullmatch(row.name)
        if m is None:
            continue  # the mark inside a name that is not a retry's: a name
        name, old = m.group(1), m.group(2)
        if (row.work_unit_id, name, row.slurm_job_id) in taken:
            name = row.name
        else:
            taken.add((row.work_unit_id, name, row.slurm_job_id))
        updates.append({"pk": row.id, "new_name": name, "old": old})
    if updates:
        conn.execute(
            sa.update(j)
            .where(j.c.id == sa.bindparam("pk"))
            .values(name=sa.bindparam("new_name"), retry_of=sa.bindparam("old")),
            updates,
        )


def downgrade() -> None:
    conn = op.get_bind()
    j = _jobs
    retries = conn.execute(sa.select(j.c.id, j.c.name, j.c.retry_of).where(j.c.retry_of.is_not(None))).all()
    updates = []
    for row in retries:
        old = row.retry_of.split(";", 1)[0]  # the old names held the id without its cluster
        name = row.name if row.name.endswith(f"{_MARK}{old}]") else f"{row.name}{_MARK}{old}]"
        updates.append({"pk": row.id, "new_name": name})
    if updates:
        conn.execute(
            sa.update(j).where(j.c.id == sa.bindparam("pk")).values(name=sa.bindparam("new_name")), updates
        )
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.drop_column("retry_of")
