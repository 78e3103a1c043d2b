"""The tests' PostgreSQL server (scripts/local-postgres): brought up once per session, a fresh database per use.

`up` installs Debian's postgresql if it is missing (root), so a fresh machine needs nothing beforehand. The
server is left running, as the Slurm cluster is (`scripts/local-postgres down` stops it). Clients find the
password through libpq's PGPASSFILE, which `ensure_local_postgres` exports: no URL holds it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import uuid
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "local-postgres"


@dataclasses.dataclass(frozen=True)
class LocalPostgres:
    host: str
    port: int
    user: str
    passfile: Path

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; its SQLAlchemy URL (without the password)."""
        import psycopg

        name = f"xm_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def ensure_local_postgres() -> LocalPostgres:
    """Start the server (installing and initialising it if needed) and point libpq at its password file."""
    done = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/local-postgres up failed:\n{done.stderr}")
    state = Path(os.environ.get("XM_LOCAL_POSTGRES_DIR", SCRIPT.parents[1] / ".local-postgres"))
    values = {}
    for line in (state / "env.sh").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = value
    pg = LocalPostgres(
        host=values["XM_TEST_PG_HOST"],
        port=int(values["XM_TEST_PG_PORT"]),
        user=values["XM_TEST_PG_USER"],
        passfile=Path(values["XM_TEST_PG_PASSFILE"]),
    )
    os.environ["PGPASSFILE"] = str(pg.passfile)  # inherited by the servers the tests start
    return pg
