"""The REST backend: the store's operations over httpx, for a team's shared server (`xm-slurm server run`).

Each operation's REST call (route, body, how to read the answer) is part of its definition in `operation`;
`rest_session.RestSession` sends it (TLS, bounded retries, idempotency keys, errors mapped to the library's
exceptions). The async methods run the same in a worker thread (`XManagerAPI.arun`).
"""

from __future__ import annotations

from typing import TypeVar

from xm_slurm.api.base import XManagerAPI
from xm_slurm.api.operation import Operation
from xm_slurm.api.rest_session import RETRY_STATUS, RestSession

__all__ = ["RETRY_STATUS", "RestClient"]

R = TypeVar("R")


class RestClient(RestSession, XManagerAPI):
    """`XManagerAPI` over the REST routes: `RestClient(base_url, token, ca_bundle=..., timeout=...)`."""

    def run(self, op: Operation[R]) -> R:
        return op.decode(self._call(op.call))
