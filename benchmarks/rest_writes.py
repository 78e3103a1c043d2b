"""REST writes per second with concurrent clients, the server on SQLite and on PostgreSQL.

    uv run --frozen python benchmarks/rest_writes.py [--clients 8] [--seconds 10]

For each database: one `xm-slurm server run` (one uvicorn worker, as the docs run it) on a fresh database
(a SQLite file in a temporary folder; a fresh database of the tests' PostgreSQL server, `scripts/local-postgres
up`), then `--clients` processes that each write for `--seconds` seconds through `RestClient`: one work unit
per request (`insert_work_units`, a write transaction with its idempotency key, as a launch records units),
into an experiment of its own. Prints one JSON line per database: writes, seconds, writes per second.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "api"))

from local_postgres import ensure_local_postgres  # noqa: E402  (test helpers: the tests' PostgreSQL)
from metadata_fixtures import start_server, stop_server  # noqa: E402


def _client_writes(
    base_url: str, token: str, seconds: float, start_at: float, out: multiprocessing.Queue
) -> None:
    from xm_slurm.api import ExperimentPatch, WorkUnitPatch
    from xm_slurm.api.rest import RestClient

    api = RestClient(base_url, token)
    xid = api.insert_experiment(ExperimentPatch(title="rest-writes benchmark"))
    time.sleep(max(0.0, start_at - time.time()))  # every client starts at the same moment
    deadline = start_at + seconds
    wid = 0
    while time.time() < deadline:
        wid += 1
        api.insert_work_units(xid, [WorkUnitPatch(wid=wid, args=f'{{"seed": {wid}}}')])
    out.put(wid)
    api.close()


def measure(db_url: str | None, name: str, clients: int, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="xm-rest-writes-") as folder:
        server = start_server(Path(folder), db_url)
        try:
            out: multiprocessing.Queue = multiprocessing.Queue()
            start_at = time.time() + 3  # time for every client to import and connect
            procs = [
                multiprocessing.Process(
                    target=_client_writes, args=(server.base_url, server.token, seconds, start_at, out)
                )
                for _ in range(clients)
            ]
            for p in procs:
                p.start()
            writes = sum(out.get(timeout=seconds + 120) for _ in procs)
            for p in procs:
                p.join()
        finally:
            stop_server(server)
    return {
        "database": name,
        "clients": clients,
        "seconds": seconds,
        "writes": writes,
        "writes_per_second": round(writes / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    os.environ.pop("XM_SLURM_API_BACKEND", None)
    print(json.dumps(measure(None, "sqlite", args.clients, args.seconds)), flush=True)
    postgres = ensure_local_postgres()
    print(json.dumps(measure(postgres.new_database(), "postgresql", args.clients, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
