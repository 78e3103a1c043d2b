"""Storage of the metadata: SQLAlchemy tables, Alembic migrations and the operations on them.

Shared by the SQL client backend and the REST server, so both store exactly the same thing.
"""

from __future__ import annotations

from xm_slurm.api.storage.engine import default_sqlite_path, default_state_dir, open_engine, sqlite_url

__all__ = ["default_sqlite_path", "default_state_dir", "open_engine", "sqlite_url"]
