"""Idempotency keys: a write's result is recorded with its key in the write's own transaction, so a retried
request (same `Idempotency-Key`) gets the first answer back instead of being applied twice."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from typing import Any

import sqlalchemy as sa

from xm_slurm.api.models import ConflictError
from xm_slurm.api.storage import schema as t

KEEP_FOR = dt.timedelta(days=7)
MAX_KEY_LENGTH = 200


def fingerprint(method: str, path: str, body: Any) -> str:
    text = f"{method} {path}\n{json.dumps(body, sort_keys=True, separators=(',', ':'))}"
    return hashlib.sha256(text.encode()).hexdigest()


def replay(conn: sa.Connection, key: str, request_sha256: str) -> tuple[int, Any] | None:
    """The recorded (status, body) of `key`, or None if the key is new."""
    row = conn.execute(sa.select(t.idempotency_keys).where(t.idempotency_keys.c.key == key)).first()
    if row is None:
        return None
    if row.request_sha256 != request_sha256:
        raise ConflictError(f"Idempotency-Key {key!r} was already used for a different request")
    return row.status_code, json.loads(row.response)


def record(conn: sa.Connection, key: str, request_sha256: str, status: int, body: Any) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    conn.execute(
        sa.insert(t.idempotency_keys).values(
            key=key,
            request_sha256=request_sha256,
            status_code=status,
            response=json.dumps(body),
            created_at=now,
        )
    )
    if random.random() < 0.01:  # prune now and then rather than on every write
        conn.execute(sa.delete(t.idempotency_keys).where(t.idempotency_keys.c.created_at < now - KEEP_FOR))
