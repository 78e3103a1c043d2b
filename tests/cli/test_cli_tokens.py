"""`xm-slurm server token create`: scopes and expiry, as a user runs it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xm_slurm.api.server.tokens import READ_ONLY, READ_WRITE, lookup
from xm_slurm.api.sql import SqlClient


def _create(db: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xm_slurm.cli", "server", "token", "create", "--db", str(db), *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "XM_SLURM_STATE_DIR": str(db.parent)},
        check=False,
    )


def test_read_only_token_with_expiry(tmp_path: Path) -> None:
    db = tmp_path / "server.sqlite3"
    done = _create(db, "--name", "alice", "--read-only", "--expires-in-days", "2")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    info = lookup(SqlClient.open(f"sqlite:///{db}"), token)
    assert info is not None
    assert (info.name, info.scope) == ("alice", READ_ONLY)
    assert info.expires_at is not None
    left = info.expires_at - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=1, hours=23) < left <= dt.timedelta(days=2)


def test_default_token_is_read_write_without_expiry(tmp_path: Path) -> None:
    db = tmp_path / "server.sqlite3"
    done = _create(db)
    assert done.returncode == 0, done.stderr
    info = lookup(SqlClient.open(f"sqlite:///{db}"), done.stdout.strip())
    assert info is not None
    assert (info.scope, info.expires_at) == (READ_WRITE, None)


def test_non_positive_expiry_is_a_usage_error(tmp_path: Path) -> None:
    done = _create(tmp_path / "server.sqlite3", "--expires-in-days", "0")
    assert done.returncode == 2
    assert "--expires-in-days 0" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("days", ["nan", "inf", "-inf", "1e308", "-1", "36501", "two"])
def test_expiry_that_is_no_positive_finite_number_is_a_usage_error(tmp_path: Path, days: str) -> None:
    db = tmp_path / "server.sqlite3"
    done = _create(db, f"--expires-in-days={days}")  # `=`: "-1" is a value, not an option
    assert done.returncode == 2, done.stderr
    assert f"--expires-in-days {days} " in done.stderr  # names the value
    assert "positive number of at most 36,500" in done.stderr or "is not a number" in done.stderr
    assert "Traceback" not in done.stderr and "ValueError" not in done.stderr
    assert done.stdout == ""  # no token was made
    listed = subprocess.run(
        [sys.executable, "-m", "xm_slurm.cli", "server", "token", "list", "--db", str(db)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "no tokens" in listed.stderr


@pytest.mark.parametrize("mib", ["nan", "0", "-5", "inf", "1e9"])
def test_server_body_limit_must_be_a_positive_finite_number(tmp_path: Path, mib: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "xm_slurm.cli",
            "server",
            "run",
            "--db",
            str(tmp_path / "s.sqlite3"),
            "--max-body-mib",
            mib,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and f"--max-body-mib {mib} " in done.stderr
    assert "Traceback" not in done.stderr
