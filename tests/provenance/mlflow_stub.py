"""A stand-in MLflow tracking server (the two REST routes the launch asks), on a real local HTTP port."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class MlflowStub:
    """Knows one experiment by name and some runs (by run name); records every request body."""

    def __init__(self, runs: dict[str, str], experiments: dict[str, str]) -> None:
        self.runs = runs  # run name -> run id
        self.experiments = experiments  # experiment name -> experiment id
        self.requests: list[tuple[str, Any]] = []


def _handler(stub: MlflowStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            stub.requests.append((self.path, None))
            name = re.search(r"experiment_name=([^&]*)", self.path)
            found = stub.experiments.get(name.group(1)) if name else None
            if found is None:
                self._send(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
            else:
                self._send(200, {"experiment": {"experiment_id": found}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append((self.path, body))
            prefix = re.fullmatch(r"attributes\.run_name LIKE '(.*)%'", body["filter"])
            assert prefix is not None, body
            runs = [
                {"info": {"run_id": rid, "run_name": name, "lifecycle_stage": "active"}}
                for name, rid in stub.runs.items()
                if name.startswith(prefix.group(1))
            ]
            self._send(200, {"runs": runs})

    return Handler


@contextmanager
def mlflow_stub(runs: dict[str, str], experiments: dict[str, str]) -> Iterator[tuple[str, MlflowStub]]:
    stub = MlflowStub(runs, experiments)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", stub
    finally:
        server.shutdown()
        server.server_close()
