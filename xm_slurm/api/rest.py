"""The REST backend: the routes of SPEC §2 over httpx, for a team's shared server (`xm-slurm server run`).

TLS is verified (a custom CA bundle via `ca_bundle` / `XM_SLURM_REST_API_CA_BUNDLE`; `SSL_CERT_FILE` is honoured).
Connection errors, timeouts and HTTP 502/503/504 are retried with exponential backoff and jitter, a bounded
number of times. Every write carries an `Idempotency-Key` (one uuid per call, reused by its retries) that the
server records with the result, so a retried write never applies twice. The token lives only in the
`Authorization` header: it is never part of a log line, a repr or an error message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import uuid
import weakref
from collections.abc import Callable, Generator, Sequence
from typing import Any
from urllib.parse import quote

import backoff
import httpx

from xm_slurm.api import codec, models
from xm_slurm.api.base import DEFAULT_LIST_LIMIT, ConflictError, XManagerAPI
from xm_slurm.api.models import (
    Artifact,
    ConfigArtifact,
    Experiment,
    ExperimentPatch,
    ExperimentSummary,
    ExperimentUnitPatch,
    SlurmJob,
    WorkUnit,
    WorkUnitPatch,
)
from xm_slurm.errors import ConfigurationError, MetadataError, NotFoundError, ValidationError
from xm_slurm.text_rules import MAX_LINE, check_line, check_name

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


@dataclasses.dataclass(frozen=True)
class _Call:
    method: str
    path: str  # below {base_url}/api
    json: Any = None
    params: dict[str, Any] | None = None

    @property
    def is_write(self) -> bool:
        return self.method != "GET"


def _id(xid: int) -> int:
    return models.require_id(xid, "an experiment id (xid)")


def _wid(wid: int) -> int:
    return models.require_id(wid, "a work unit id (wid)")


def _q(name: str) -> str:
    # Checked first: `..` would travel as is, and httpx would resolve `/artifact/..` to the experiment.
    return quote(check_name(name, "name"), safe="")


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


def _check(value: object, cls: type, what: str) -> None:
    if not isinstance(value, cls):
        raise ValidationError(f"{what} must be a {cls.__name__}, got {value!r:.200}")


class RestClient(XManagerAPI):
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
        self._client = self._new_client(httpx.Client)
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
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
        self._asend_retrying = retry(self._asend_once)

    def _new_client(self, cls: Callable[..., Any]) -> Any:
        return cls(
            base_url=f"{self.base_url}/api",
            auth=self._auth,
            verify=self._verify,
            timeout=self._timeout,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"RestClient({self.base_url!r})"

    # -- sending ---------------------------------------------------------------------------------------
    def _headers(self, call: _Call, key: str | None) -> dict[str, str]:
        return {"Idempotency-Key": key} if key else {}

    def _send_once(self, call: _Call, key: str | None) -> httpx.Response:
        response = self._client.request(
            call.method, call.path, json=call.json, params=call.params, headers=self._headers(call, key)
        )
        if response.status_code in RETRY_STATUS:
            raise _RetryableStatus(response)
        return response

    async def _asend_once(self, call: _Call, key: str | None) -> httpx.Response:
        response = await self._async_client().request(
            call.method, call.path, json=call.json, params=call.params, headers=self._headers(call, key)
        )
        if response.status_code in RETRY_STATUS:
            raise _RetryableStatus(response)
        return response

    def _async_client(self) -> httpx.AsyncClient:
        # An httpx.AsyncClient belongs to one event loop; scripts may run several loops one after another.
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = self._async_clients[loop] = self._new_client(httpx.AsyncClient)
        return client

    def _call(self, call: _Call) -> Any:
        key = str(uuid.uuid4()) if call.is_write else None
        try:
            response = self._send_retrying(call, key)
        except _RetryableStatus as e:
            response = e.response
        except httpx.HTTPError as e:
            raise self._unreachable(call, e) from e
        return self._result(call, response)

    async def _acall(self, call: _Call) -> Any:
        key = str(uuid.uuid4()) if call.is_write else None
        try:
            response = await self._asend_retrying(call, key)
        except _RetryableStatus as e:
            response = e.response
        except httpx.HTTPError as e:
            raise self._unreachable(call, e) from e
        return self._result(call, response)

    def _unreachable(self, call: _Call, e: httpx.HTTPError) -> MetadataError:
        return MetadataError(
            f"cannot reach the metadata server {self.base_url} ({call.method} /api{call.path}): "
            f"{type(e).__name__}: {e}"
        )

    def _result(self, call: _Call, response: httpx.Response) -> Any:
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
        self._client = self._new_client(httpx.Client)  # stays usable, as the abstract client promises

    async def aclose(self) -> None:
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # -- the calls (one table, used by the sync methods and their async twins) ----------------------------
    @staticmethod
    def _get_experiment(xid: int) -> _Call:
        return _Call("GET", f"/experiment/{_id(xid)}")

    @staticmethod
    def _insert_experiment(patch: ExperimentPatch) -> _Call:
        _check(patch, ExperimentPatch, "insert_experiment's argument")
        return _Call("PUT", "/experiment", codec.experiment_patch_to_json(patch))

    @staticmethod
    def _update_experiment(xid: int, patch: ExperimentPatch) -> _Call:
        _check(patch, ExperimentPatch, "update_experiment's patch")
        return _Call("PATCH", f"/experiment/{_id(xid)}", codec.experiment_patch_to_json(patch))

    @staticmethod
    def _list_experiments(title_contains: str | None, tag: str | None, limit: int, offset: int) -> _Call:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if title_contains is not None:
            check_line(title_contains, "title_contains", MAX_LINE)
        if tag is not None:
            check_line(tag, "tag", MAX_LINE)
        if title_contains:
            params["title_contains"] = title_contains
        if tag is not None:
            params["tag"] = tag
        return _Call("GET", "/experiment", params=params)

    @staticmethod
    def _insert_work_units(xid: int, patches: Sequence[WorkUnitPatch]) -> _Call:
        for p in patches:
            _check(p, WorkUnitPatch, "a work unit to insert")
        return _Call("PUT", f"/experiment/{_id(xid)}/wus", [codec.unit_patch_to_json(p) for p in patches])

    @staticmethod
    def _insert_jobs(xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> _Call:
        pairs = models.jobs_of(jobs)
        body = [{"wid": wid, "job": codec.job_to_json(job)} for wid, job in pairs]
        return _Call("PUT", f"/experiment/{_id(xid)}/jobs", body)

    @staticmethod
    def _replace_jobs(
        xid: int,
        work_units: Sequence[WorkUnitPatch],
        remove: Sequence[tuple[int, str]],
        insert: Sequence[tuple[int, SlurmJob]],
        delete_empty_units: Sequence[int],
    ) -> _Call:
        for p in work_units:
            _check(p, WorkUnitPatch, "a work unit to insert")
        body = {
            "work_units": [codec.unit_patch_to_json(p) for p in work_units],
            "remove": [{"wid": wid, "slurm_job_id": jid} for wid, jid in models.job_refs_of(remove)],
            "insert": [{"wid": wid, "job": codec.job_to_json(job)} for wid, job in models.jobs_of(insert)],
            "delete_empty_units": models.wids_of(delete_empty_units, "delete_empty_units"),
        }
        return _Call("PATCH", f"/experiment/{_id(xid)}/jobs", body)

    # -- experiments ------------------------------------------------------------------------------------
    def get_experiment(self, xid: int) -> Experiment:
        return codec.experiment_from_json(self._call(self._get_experiment(xid)))

    async def aget_experiment(self, xid: int) -> Experiment:
        return codec.experiment_from_json(await self._acall(self._get_experiment(xid)))

    def insert_experiment(self, experiment: ExperimentPatch) -> int:
        return int(self._call(self._insert_experiment(experiment))["xid"])

    async def ainsert_experiment(self, experiment: ExperimentPatch) -> int:
        return int((await self._acall(self._insert_experiment(experiment)))["xid"])

    def update_experiment(self, xid: int, experiment_patch: ExperimentPatch) -> None:
        self._call(self._update_experiment(xid, experiment_patch))

    async def aupdate_experiment(self, xid: int, experiment_patch: ExperimentPatch) -> None:
        await self._acall(self._update_experiment(xid, experiment_patch))

    def delete_experiment(self, xid: int) -> None:
        self._call(_Call("DELETE", f"/experiment/{_id(xid)}"))

    async def adelete_experiment(self, xid: int) -> None:
        await self._acall(_Call("DELETE", f"/experiment/{_id(xid)}"))

    def list_experiments(
        self,
        *,
        title_contains: str | None = None,
        tag: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> list[ExperimentSummary]:
        data = self._call(self._list_experiments(title_contains, tag, limit, offset))
        return [codec.summary_from_json(d) for d in data]

    async def alist_experiments(
        self,
        *,
        title_contains: str | None = None,
        tag: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> list[ExperimentSummary]:
        data = await self._acall(self._list_experiments(title_contains, tag, limit, offset))
        return [codec.summary_from_json(d) for d in data]

    # -- work units -------------------------------------------------------------------------------------
    def insert_work_unit(self, xid: int, work_unit: WorkUnitPatch) -> None:
        _check(work_unit, WorkUnitPatch, "the work unit to insert")
        self._call(_Call("PUT", f"/experiment/{_id(xid)}/wu", codec.unit_patch_to_json(work_unit)))

    async def ainsert_work_unit(self, xid: int, work_unit: WorkUnitPatch) -> None:
        _check(work_unit, WorkUnitPatch, "the work unit to insert")
        await self._acall(_Call("PUT", f"/experiment/{_id(xid)}/wu", codec.unit_patch_to_json(work_unit)))

    def insert_work_units(self, xid: int, work_units: Sequence[WorkUnitPatch]) -> None:
        self._call(self._insert_work_units(xid, work_units))

    async def ainsert_work_units(self, xid: int, work_units: Sequence[WorkUnitPatch]) -> None:
        await self._acall(self._insert_work_units(xid, work_units))

    @staticmethod
    def _reserve_work_unit_ids(xid: int, count: int) -> _Call:
        body = {"count": models.require_reserve_count(count)}
        return _Call("POST", f"/experiment/{_id(xid)}/wu/reserve", body)

    @staticmethod
    def _first_reserved(data: Any) -> int:
        first = data.get("first") if isinstance(data, dict) else None
        if not isinstance(first, int) or isinstance(first, bool):
            raise MetadataError(f"malformed answer to a work unit id reservation: {data!r:.200}")
        return first

    def reserve_work_unit_ids(self, xid: int, count: int) -> int:
        return self._first_reserved(self._call(self._reserve_work_unit_ids(xid, count)))

    async def areserve_work_unit_ids(self, xid: int, count: int) -> int:
        return self._first_reserved(await self._acall(self._reserve_work_unit_ids(xid, count)))

    def _update_work_unit(self, xid: int, wid: int, patch: ExperimentUnitPatch) -> _Call:
        _check(patch, ExperimentUnitPatch, "update_work_unit's patch")
        body = {"identity": patch.identity, "args": patch.args}
        return _Call("PATCH", f"/experiment/{_id(xid)}/wu/{_wid(wid)}", body)

    def update_work_unit(self, xid: int, wid: int, experiment_unit_patch: ExperimentUnitPatch) -> None:
        self._call(self._update_work_unit(xid, wid, experiment_unit_patch))

    async def aupdate_work_unit(self, xid: int, wid: int, experiment_unit_patch: ExperimentUnitPatch) -> None:
        await self._acall(self._update_work_unit(xid, wid, experiment_unit_patch))

    def get_work_unit(self, xid: int, wid: int) -> WorkUnit:
        return codec.work_unit_from_json(self._call(_Call("GET", f"/experiment/{_id(xid)}/wu/{_wid(wid)}")))

    async def aget_work_unit(self, xid: int, wid: int) -> WorkUnit:
        data = await self._acall(_Call("GET", f"/experiment/{_id(xid)}/wu/{_wid(wid)}"))
        return codec.work_unit_from_json(data)

    @staticmethod
    def _find_work_unit(xid: int, identity: str) -> _Call:
        check_line(identity, "find_work_unit: identity", MAX_LINE)
        if not identity:
            raise ValidationError("find_work_unit needs a non-empty identity")
        return _Call("GET", f"/experiment/{_id(xid)}/wu", params={"identity": identity})

    def find_work_unit(self, xid: int, identity: str) -> WorkUnit | None:
        found = self._call(self._find_work_unit(xid, identity))
        return codec.work_unit_from_json(found[0]) if found else None

    async def afind_work_unit(self, xid: int, identity: str) -> WorkUnit | None:
        found = await self._acall(self._find_work_unit(xid, identity))
        return codec.work_unit_from_json(found[0]) if found else None

    def _insert_job(self, xid: int, wid: int, job: SlurmJob) -> _Call:
        _check(job, SlurmJob, "the job")
        return _Call("PUT", f"/experiment/{_id(xid)}/wu/{_wid(wid)}/job", codec.job_to_json(job))

    def insert_job(self, xid: int, wid: int, slurm_job: SlurmJob) -> None:
        self._call(self._insert_job(xid, wid, slurm_job))

    async def ainsert_job(self, xid: int, wid: int, slurm_job: SlurmJob) -> None:
        await self._acall(self._insert_job(xid, wid, slurm_job))

    def insert_jobs(self, xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> None:
        self._call(self._insert_jobs(xid, jobs))

    async def ainsert_jobs(self, xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> None:
        await self._acall(self._insert_jobs(xid, jobs))

    def replace_jobs(
        self,
        xid: int,
        *,
        work_units: Sequence[WorkUnitPatch] = (),
        remove: Sequence[tuple[int, str]] = (),
        insert: Sequence[tuple[int, SlurmJob]] = (),
        delete_empty_units: Sequence[int] = (),
    ) -> None:
        self._call(self._replace_jobs(xid, work_units, remove, insert, delete_empty_units))

    async def areplace_jobs(
        self,
        xid: int,
        *,
        work_units: Sequence[WorkUnitPatch] = (),
        remove: Sequence[tuple[int, str]] = (),
        insert: Sequence[tuple[int, SlurmJob]] = (),
        delete_empty_units: Sequence[int] = (),
    ) -> None:
        await self._acall(self._replace_jobs(xid, work_units, remove, insert, delete_empty_units))

    # -- artifacts --------------------------------------------------------------------------------------
    @staticmethod
    def _put_artifact(path: str, artifact: Artifact | ConfigArtifact, cls: type) -> _Call:
        _check(artifact, cls, "the artifact")
        return _Call("PUT", path, codec.artifact_to_json(artifact))

    def insert_work_unit_artifact(self, xid: int, wid: int, artifact: Artifact) -> None:
        self._call(self._put_artifact(f"/experiment/{_id(xid)}/wu/{_wid(wid)}/artifact", artifact, Artifact))

    async def ainsert_work_unit_artifact(self, xid: int, wid: int, artifact: Artifact) -> None:
        path = f"/experiment/{_id(xid)}/wu/{_wid(wid)}/artifact"
        await self._acall(self._put_artifact(path, artifact, Artifact))

    def delete_work_unit_artifact(self, xid: int, wid: int, name: str) -> None:
        self._call(_Call("DELETE", f"/experiment/{_id(xid)}/wu/{_wid(wid)}/artifact/{_q(name)}"))

    async def adelete_work_unit_artifact(self, xid: int, wid: int, name: str) -> None:
        await self._acall(_Call("DELETE", f"/experiment/{_id(xid)}/wu/{_wid(wid)}/artifact/{_q(name)}"))

    def insert_experiment_artifact(self, xid: int, artifact: Artifact) -> None:
        self._call(self._put_artifact(f"/experiment/{_id(xid)}/artifact", artifact, Artifact))

    async def ainsert_experiment_artifact(self, xid: int, artifact: Artifact) -> None:
        await self._acall(self._put_artifact(f"/experiment/{_id(xid)}/artifact", artifact, Artifact))

    def delete_experiment_artifact(self, xid: int, name: str) -> None:
        self._call(_Call("DELETE", f"/experiment/{_id(xid)}/artifact/{_q(name)}"))

    async def adelete_experiment_artifact(self, xid: int, name: str) -> None:
        await self._acall(_Call("DELETE", f"/experiment/{_id(xid)}/artifact/{_q(name)}"))

    def insert_experiment_config_artifact(self, xid: int, config_artifact: ConfigArtifact) -> None:
        self._call(self._put_artifact(f"/experiment/{_id(xid)}/config", config_artifact, ConfigArtifact))

    async def ainsert_experiment_config_artifact(self, xid: int, config_artifact: ConfigArtifact) -> None:
        path = f"/experiment/{_id(xid)}/config"
        await self._acall(self._put_artifact(path, config_artifact, ConfigArtifact))

    def delete_experiment_config_artifact(self, xid: int, name: str) -> None:
        self._call(_Call("DELETE", f"/experiment/{_id(xid)}/config/{_q(name)}"))

    async def adelete_experiment_config_artifact(self, xid: int, name: str) -> None:
        await self._acall(_Call("DELETE", f"/experiment/{_id(xid)}/config/{_q(name)}"))
