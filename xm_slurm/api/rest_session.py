"""The HTTP side of the REST backend: one httpx client per session, bounded retries with backoff, idempotency
keys on writes, and errors mapped to the library's exceptions.

Only a synchronous client: async code reaches it through `XManagerAPI.arun`, in a worker thread, as for
SQLite. So no event loop owns a connection pool (an `httpx.AsyncClient` belongs to the loop that made it and
outlives a short-lived loop unclosed), and the write-behind thread and async code share one pool.

TLS is verified (a custom CA bundle via `ca_bundle` / `XM_SLURM_REST_API_CA_BUNDLE`; `SSL_CERT_FILE` is honoured).
Connection errors, timeouts and HTTP 502/503/504 are retried with exponential backoff and jitter, a bounded
number of times. Every write carries an `Idempotency-Key` (one uuid per call, reused by its retries) that the
server records with the result, so a retried write never applies twice. The token lives only in the
`Authorization` header: it is never part of a log line, a repr or an error message.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Generator
from typing import Any

import backoff
import httpx

from xm_slurm.api.models import ConflictError
from xm_slurm.api.operation import Call
from xm_slurm.errors import ConfigurationError, MetadataError, NotFoundError, ValidationError

RETRY_STATUS = frozenset({502, 503, 504})
_RETRY_EXCEPTIONS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


class _BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _detail_text(detail: object) -> str:
    """FastAPI's list of validation errors as one line: `body.title: message; ...`."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(x) for x in item.get("loc", ()))
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class RestSession:
    """Sends `Call`s to `{base_url}/api` (see the module docstring); `RestClient` builds the calls."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        ca_bundle: str | None = None,
        timeout: float = 30.0,
        max_tries: int = 5,
        backoff_factor: float = 0.5,
        max_backoff: float = 10.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"XM_SLURM_REST_API_BASE_URL must be an http:// or https:// URL, got {base_url!r}"
            )
        if not token:
            raise ConfigurationError("XM_SLURM_REST_API_TOKEN is empty")
        self.base_url = base_url.rstrip("/")
        self._auth = _BearerAuth(token)
        self._verify: ssl.SSLContext | bool = True  # httpx: certifi, or SSL_CERT_FILE / SSL_CERT_DIR
        if ca_bundle:
            try:
                self._verify = ssl.create_default_context(cafile=ca_bundle)
            except (OSError, ssl.SSLError) as e:
                raise ConfigurationError(
                    f"XM_SLURM_REST_API_CA_BUNDLE={ca_bundle!r} is not a readable PEM CA bundle: {e}"
                ) from e
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._client = self._new_client()
        retry = backoff.on_exception(
            backoff.expo,
            (_RetryableStatus, *_RETRY_EXCEPTIONS),
            max_tries=max_tries,
            factor=backoff_factor,
            max_value=max_backoff,
            jitter=backoff.full_jitter,
            logger=None,  # backoff's own log lines are not needed; our errors say what failed
        )
        self._send_retrying = retry(self._send_once)

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api",
            auth=self._auth,
            verify=self._verify,
            timeout=self._timeout,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"RestClient({self.base_url!r})"

    # -- sending ---------------------------------------------------------------------------------------
    def _headers(self, call: Call, key: str | None) -> dict[str, str]:
        return {"Idempotency-Key": key} if key else {}

    def _send_once(self, call: Call, key: str | None) -> httpx.Response:
        response = self._client.request(
            call.method, call.path, json=call.json, params=call.params, headers=self._headers(call, key)
        )
        if response.status_code in RETRY_STATUS:
            raise _RetryableStatus(response)
        return response

    def _call(self, call: Call) -> Any:
        key = str(uuid.uuid4()) if call.is_write else None
        try:
            response = self._send_retrying(call, key)
        except _RetryableStatus as e:
            response = e.response
        except httpx.HTTPError as e:
            raise self._unreachable(call, e) from e
        return self._result(call, response)

    def _unreachable(self, call: Call, e: httpx.HTTPError) -> MetadataError:
        return MetadataError(
            f"cannot reach the metadata server {self.base_url} ({call.method} /api{call.path}): "
            f"{type(e).__name__}: {e}"
        )

    def _result(self, call: Call, response: httpx.Response) -> Any:
        if response.is_success:
            return response.json() if response.content else None
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        where = f"{call.method} /api{call.path}"
        status = response.status_code
        if status in (401, 403):
            return self._raise(
                ConfigurationError(
                    f"the metadata server {self.base_url} refused the token in XM_SLURM_REST_API_TOKEN "
                    f"(HTTP {status} on {where}); create one with `xm-slurm server token create`"
                )
            )
        if status == 404:
            return self._raise(NotFoundError(f"{detail} ({where})"))
        if status == 409:
            return self._raise(ConflictError(f"{detail} ({where})"))
        if status in (413, 422):  # the server's checks are the client's: a bad value, not a failure
            return self._raise(
                ValidationError(f"the metadata server refused {where}: {_detail_text(detail)}")
            )
        if 400 <= status < 500:
            return self._raise(
                MetadataError(f"the metadata server rejected {where} (HTTP {status}): {_detail_text(detail)}")
            )
        return self._raise(MetadataError(f"the metadata server failed on {where} (HTTP {status}): {detail}"))

    @staticmethod
    def _raise(error: Exception) -> Any:
        raise error

    def close(self) -> None:
        self._client.close()
        self._client = self._new_client()  # stays usable, as the abstract client promises
