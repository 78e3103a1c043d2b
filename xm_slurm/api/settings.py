"""`client()`: the metadata backend chosen by the environment (docs/metadata.md).

    XM_SLURM_API_BACKEND        sqlite (default) | rest
    XM_SLURM_STATE_DIR          sqlite: folder of db.sqlite3 (default ~/.local/state/xm-slurm)
    XM_SLURM_REST_API_BASE_URL  rest: the server, e.g. https://xm.example.org (routes live under /api)
    XM_SLURM_REST_API_TOKEN     rest: the bearer token (never logged or shown)
    XM_SLURM_REST_API_CA_BUNDLE rest: optional CA bundle to verify the server (SSL_CERT_FILE is honoured too)

One client is cached per backend and settings, so repeated calls share connections.
"""

from __future__ import annotations

import hashlib
import os
import threading

from xm_slurm.api.base import XManagerAPI
from xm_slurm.errors import ConfigurationError

BACKENDS: tuple[str, ...] = ("sqlite", "rest")
_cache: dict[tuple[str, ...], XManagerAPI] = {}
_lock = threading.Lock()


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(
            f"XM_SLURM_API_BACKEND=rest needs the environment variable {name}; it is not set"
        )
    return value


def client() -> XManagerAPI:
    """The metadata client for the current environment (cached per backend and settings)."""
    backend = os.environ.get("XM_SLURM_API_BACKEND", "").strip().lower() or "sqlite"
    if backend == "sqlite":
        from xm_slurm.api.storage.engine import default_sqlite_path

        path = str(default_sqlite_path().expanduser().resolve())
        key: tuple[str, ...] = ("sqlite", path)
        with _lock:
            if key not in _cache:
                from xm_slurm.api.sql import SqlClient
                from xm_slurm.api.storage.engine import sqlite_url

                _cache[key] = SqlClient.open(sqlite_url(path))
            return _cache[key]
    if backend == "rest":
        base_url = _required("XM_SLURM_REST_API_BASE_URL")
        token = _required("XM_SLURM_REST_API_TOKEN")
        ca_bundle = os.environ.get("XM_SLURM_REST_API_CA_BUNDLE", "").strip() or None
        # The cache key holds a digest of the token, never the token.
        key = ("rest", base_url, hashlib.sha256(token.encode()).hexdigest(), ca_bundle or "")
        with _lock:
            if key not in _cache:
                from xm_slurm.api.rest import RestClient

                _cache[key] = RestClient(base_url, token, ca_bundle=ca_bundle)
            return _cache[key]
    raise ConfigurationError(
        f"XM_SLURM_API_BACKEND={os.environ.get('XM_SLURM_API_BACKEND')!r} is not a metadata backend; "
        f"use one of: {', '.join(BACKENDS)}"
    )


def clear_cache() -> None:
    """Close and forget the cached clients (tests; long-lived tools that change settings)."""
    with _lock:
        for cached in _cache.values():
            cached.close()
        _cache.clear()
