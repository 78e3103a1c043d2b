"""Experiments, tags, work units, jobs and artifacts.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("description", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "experiment_tags",
        sa.Column(
            "experiment_id", sa.Integer, sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("tag", sa.Text, primary_key=True),
    )
    op.create_table(
        "work_units",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "experiment_id", sa.Integer, sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("wid", sa.Integer, nullable=False),
        sa.Column("identity", sa.Text, nullable=False, server_default=""),
        sa.Column("args", sa.Text),
        sa.UniqueConstraint("experiment_id", "wid", name="uq_work_units_wid"),
    )
    op.create_index(
        "uq_work_units_identity",
        "work_units",
        ["experiment_id", "identity"],
        unique=True,
        sqlite_where=sa.text("identity != ''"),
        postgresql_where=sa.text("identity != ''"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "work_unit_id", sa.Integer, sa.ForeignKey("work_units.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("slurm_job_id", sa.Text, nullable=False),
        sa.Column("slurm_ssh_config", sa.Text, nullable=False),
        sa.UniqueConstraint("work_unit_id", "name", "slurm_job_id", name="uq_jobs"),
    )
    op.create_table(
        "work_unit_artifacts",
        sa.Column(
            "work_unit_id", sa.Integer, sa.ForeignKey("work_units.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("uri", sa.Text, nullable=False),
    )
    for table in ("experiment_artifacts", "experiment_config_artifacts"):
        op.create_table(
            table,
            sa.Column(
                "experiment_id",
                sa.Integer,
                sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("uri", sa.Text, nullable=False),
        )


def downgrade() -> None:
    for table in (
        "experiment_config_artifacts",
        "experiment_artifacts",
        "work_unit_artifacts",
        "jobs",
        "work_units",
        "experiment_tags",
        "experiments",
    ):
        op.drop_table(table)
