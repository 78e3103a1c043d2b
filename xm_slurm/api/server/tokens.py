"""Bearer tokens of the REST server: random, shown once, stored only as their SHA-256 digest."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import sqlalchemy as sa

from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import schema as t

TOKEN_PREFIX = "xms_"


def hash_token(token: str) -> str:
    # A token has 256 random bits, so a plain (unsalted) SHA-256 digest cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(client: SqlClient, name: str = "") -> str:
    """Create a token and return it; only its digest is stored, so this is the one time it is visible."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with client.transaction() as conn:
        conn.execute(
            sa.insert(t.api_tokens).values(
                name=name, token_sha256=hash_token(token), created_at=dt.datetime.now(dt.timezone.utc)
            )
        )
    return token


def is_valid(client: SqlClient, token: str) -> bool:
    with client.reading() as conn:
        query = sa.select(t.api_tokens.c.id).where(t.api_tokens.c.token_sha256 == hash_token(token))
        return conn.execute(query).first() is not None
