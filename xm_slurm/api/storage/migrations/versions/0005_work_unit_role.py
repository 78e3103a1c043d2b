"""Work units: the unit's role as a column (WORK_UNIT or AUX_UNIT).

Before this revision the experiment layer marked an auxiliary unit inside its args JSON,
`{"__xm_slurm_role__": "AUX_UNIT", "args": <args>}`. Such rows become AUX_UNIT with their args unwrapped
(encoded as the experiment layer encodes args: `json.dumps(value, default=str, ensure_ascii=False)`).
The rule is copied here on purpose: a migration must not change when the library does.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ROLE_KEY = "__xm_slurm_role__"
_work_units = sa.table(
    "work_units", sa.column("id", sa.Integer), sa.column("args", sa.Text), sa.column("role", sa.String)
)


def _unwrapped(args: str) -> str | None:
    """The args inside the old marker, or None if `args` is not a marked auxiliary unit."""
    try:
        data: Any = json.loads(args)
    except ValueError:
        return None
    if not (isinstance(data, dict) and data.get(_ROLE_KEY) == "AUX_UNIT"):
        return None
    return json.dumps(data.get("args"), default=str, ensure_ascii=False)


def upgrade() -> None:
    # SQLite adds a NOT NULL column with a default in place (no table copy, which would cascade-delete jobs).
    op.add_column("work_units", sa.Column("role", sa.String(16), nullable=False, server_default="WORK_UNIT"))
    conn = op.get_bind()
    marked = conn.execute(
        sa.select(_work_units.c.id, _work_units.c.args).where(_work_units.c.args.contains(_ROLE_KEY))
    ).all()
    updates = [{"pk": row.id, "args": args} for row in marked if (args := _unwrapped(row.args)) is not None]
    if updates:
        conn.execute(
            sa.update(_work_units)
            .where(_work_units.c.id == sa.bindparam("pk"))
            .values(role="AUX_UNIT", args=sa.bindparam("args")),
            updates,
        )


def downgrade() -> None:
    conn = op.get_bind()
    aux = conn.execute(
        sa.select(_work_units.c.id, _work_units.c.args).where(_work_units.c.role == "AUX_UNIT")
    ).all()
    for row in aux:
        try:
            inner = json.loads(row.args) if row.args else {}
        except ValueError:
            inner = row.args
        wrapped = json.dumps({_ROLE_KEY: "AUX_UNIT", "args": inner}, default=str, ensure_ascii=False)
        conn.execute(sa.update(_work_units).where(_work_units.c.id == row.id).values(args=wrapped))
    with op.batch_alter_table("work_units", recreate="never") as batch:
        batch.drop_column("role")
