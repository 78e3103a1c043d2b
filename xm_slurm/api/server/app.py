"""The FastAPI application: the store's routes under /api (docs/metadata.md), listing and batch routes included.

Every route also answers without the /api prefix (`ApiPrefix`): xmanager-slurm 0.4.7's client calls
`{base}/api/...`, 0.4.8+ calls `{base}/...`; both reach the same route under the same token rules.

Handlers are plain `def`s, so FastAPI runs them (and their synchronous SQLAlchemy calls) in its thread pool.
Every write runs in one transaction together with its `Idempotency-Key` record (see `idempotency`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from xm_slurm.api import codec, models
from xm_slurm.api.models import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, ConflictError
from xm_slurm.api.server import idempotency, tokens, ui, ui_store
from xm_slurm.api.server.limits import MAX_BODY_BYTES, TOKEN_KEY, RequestGuard
from xm_slurm.api.server.schemas import (
    ArtifactBody,
    ConfigArtifactBody,
    ExperimentPatchBody,
    ExperimentUnitPatchBody,
    JobOfWorkUnitBody,
    JobStatesBody,
    ReplaceJobsBody,
    ReserveBody,
    ReservedBody,
    SlurmJobBody,
    WorkUnitPatchBody,
    XidBody,
)
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import job_states
from xm_slurm.api.storage import operations as ops
from xm_slurm.api.store_info import read_store_info
from xm_slurm.errors import MetadataError, NotFoundError, ValidationError
from xm_slurm.text_rules import MAX_ID, MAX_LINE
from xm_slurm.version import __version__

_bearer = HTTPBearer(auto_error=False, description="a token from `xm-slurm server token create`")
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=idempotency.MAX_KEY_LENGTH)]
# Ids in paths: out of range is a 422 naming the parameter, never an overflow in the database (a 500).
Xid = Annotated[int, Path(ge=1, le=MAX_ID, description="experiment id")]
Wid = Annotated[int, Path(ge=1, le=MAX_ID, description="work unit id")]
QueryText = Annotated[str | None, Query(max_length=MAX_LINE)]


def _printable(value: object) -> str:
    # A lone surrogate cannot be encoded as UTF-8: escape it rather than fail while answering.
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": _printable(detail)}, status_code=status)


def _validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's validation errors without the offending input (it may be huge, or not encodable)."""
    return [
        {
            "loc": [x if isinstance(x, int) else _printable(x) for x in e.get("loc", ())],
            "msg": _printable(e.get("msg", "")),
            "type": _printable(e.get("type", "")),
        }
        for e in errors
    ]


class ApiPrefix:
    """ASGI middleware: a request outside /api is answered by the same route under /api (the path is
    rewritten before the token check and body cap, so both spellings are guarded, and an Idempotency-Key
    replays across them). FastAPI's own documentation paths (`keep`) stay where they are."""

    def __init__(self, app: ASGIApp, *, keep: frozenset[str]) -> None:
        self.app = app
        self.keep = keep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and path != "/api"
            and not path.startswith("/api/")
            and path not in self.keep
            and not ui.is_dashboard_path(path)
        ):
            scope = {**scope, "path": "/api" + path}
            if "raw_path" in scope:
                scope["raw_path"] = b"/api" + scope["raw_path"]
        await self.app(scope, receive, send)


def create_app(client: SqlClient, *, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The application; `max_body_bytes` caps each request's body (see `limits`)."""
    app = FastAPI(
        title="xm_slurm metadata",
        version=__version__,
        description=(
            "Experiments, work units, Slurm jobs and artifacts recorded by xm_slurm launch scripts. "
            f"Request bodies are limited to {max_body_bytes:,} bytes (413 beyond)."
        ),
    )
    # Token first, from the headers alone, then the body's size: before FastAPI reads any body.
    app.add_middleware(RequestGuard, client=client, max_body_bytes=max_body_bytes)
    # Added last, so it runs first: the guard sees every request under /api.
    docs = frozenset(
        p for p in (app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url) if p
    )
    app.add_middleware(ApiPrefix, keep=docs)
    app.include_router(ui.dashboard_router(client))  # /ui/ and / (its own login: see ui_session)

    def authenticate(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        # RequestGuard has checked the token (401/403); this documents the scheme and checks it was run.
        if not isinstance(request.scope.get(TOKEN_KEY), tokens.TokenInfo):
            raise HTTPException(
                401, "a valid, unexpired bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    @app.exception_handler(RequestValidationError)
    def _bad_request(_request: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_errors(e.errors())}, status_code=422)

    @app.exception_handler(NotFoundError)
    def _not_found(_request: Request, e: NotFoundError) -> JSONResponse:
        return _error(404, str(e))

    @app.exception_handler(ConflictError)
    def _conflict(_request: Request, e: ConflictError) -> JSONResponse:
        return _error(409, str(e))

    @app.exception_handler(ValidationError)
    def _invalid(_request: Request, e: ValidationError) -> JSONResponse:
        return _error(422, str(e))

    @app.exception_handler(MetadataError)
    def _failed(_request: Request, e: MetadataError) -> JSONResponse:
        return _error(503, str(e))  # the database failed (e.g. busy): worth a retry

    @app.get("/api/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    api = APIRouter(prefix="/api", dependencies=[Depends(authenticate)])

    def write(request: Request, key: str | None, body: Any, op: Callable[[sa.Connection], Any]) -> Response:
        """Run `op` in a transaction; with a key, answer a repeated request from the record."""
        status = 200
        request_sha256 = idempotency.fingerprint(request.method, request.url.path, body)
        try:
            with client.transaction() as conn:
                replayed = idempotency.replay(conn, key, request_sha256) if key else None
                if replayed is not None:
                    status, result = replayed
                else:
                    result = op(conn)
                    if key:
                        idempotency.record(conn, key, request_sha256, status, result)
        except sa.exc.IntegrityError:
            if not key:
                raise
            # Another request with the same key won the race (not possible under SQLite's write lock).
            with client.reading() as conn:
                replayed = idempotency.replay(conn, key, request_sha256)
            if replayed is None:
                raise
            status, result = replayed
        return JSONResponse(result, status_code=status)

    @api.get("/store", tags=["store"])
    def store_info() -> dict[str, Any]:
        """This store's id (cluster folders are named by it; `api.store_info`)."""
        with client.reading() as conn:
            return read_store_info(conn).to_json()

    # -- experiments ------------------------------------------------------------------------------------
    @api.get("/experiment", tags=["experiments"])
    def list_experiments(
        title_contains: QueryText = None,
        tag: QueryText = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
        offset: Annotated[int, Query(ge=0)] = 0,
        include_empty: Annotated[
            bool, Query(description="false: only experiments holding at least one work unit")
        ] = True,
    ) -> list[dict[str, Any]]:
        with client.reading() as conn:
            found = ops.list_experiments(
                conn,
                title_contains=title_contains,
                tag=tag,
                limit=limit,
                offset=offset,
                include_empty=include_empty,
            )
        return [codec.summary_to_json(s) for s in found]

    @api.put("/experiment", tags=["experiments"], response_model=XidBody)
    def insert_experiment(
        body: ExperimentPatchBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        patch = body.to_model()
        creator = request.scope[TOKEN_KEY].name  # the dashboard shows which token created it
        return write(
            request,
            key,
            body.model_dump(),
            lambda c: {"xid": ui_store.record_creator(c, ops.insert_experiment(c, patch), creator)},
        )

    @api.get("/experiment/{xid}", tags=["experiments"])
    def get_experiment(xid: Xid) -> dict[str, Any]:
        with client.reading() as conn:
            return codec.experiment_to_json(ops.get_experiment(conn, xid))

    @api.patch("/experiment/{xid}", tags=["experiments"])
    def update_experiment(
        xid: Xid, body: ExperimentPatchBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        patch = body.to_model()
        return write(request, key, body.model_dump(), lambda c: ops.update_experiment(c, xid, patch))

    @api.delete("/experiment/{xid}", tags=["experiments"])
    def delete_experiment(xid: Xid, request: Request, key: IdempotencyKey = None) -> Response:
        return write(request, key, None, lambda c: ops.delete_experiment(c, xid))

    # -- work units -------------------------------------------------------------------------------------
    @api.put("/experiment/{xid}/wu", tags=["work units"])
    def insert_work_unit(
        xid: Xid, body: WorkUnitPatchBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        patch = body.to_model()
        return write(request, key, body.model_dump(), lambda c: ops.insert_work_units(c, xid, [patch]))

    @api.put("/experiment/{xid}/wus", tags=["work units"], summary="Insert a sweep's work units at once")
    def insert_work_units(
        xid: Xid, body: list[WorkUnitPatchBody], request: Request, key: IdempotencyKey = None
    ) -> Response:
        patches = [b.to_model() for b in body]
        dumped = [b.model_dump() for b in body]
        return write(request, key, dumped, lambda c: ops.insert_work_units(c, xid, patches))

    @api.post(
        "/experiment/{xid}/wu/reserve",
        tags=["work units"],
        response_model=ReservedBody,
        summary="Reserve fresh work unit ids (first .. first + count - 1)",
    )
    def reserve_work_unit_ids(
        xid: Xid, body: ReserveBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        # A write: with its Idempotency-Key, a retried reservation answers the same range.
        return write(
            request,
            key,
            body.model_dump(),
            lambda c: {"first": ops.reserve_work_unit_ids(c, xid, body.count)},
        )

    @api.get("/experiment/{xid}/wu", tags=["work units"], summary="Work units, or the one with an identity")
    def list_work_units(xid: Xid, identity: QueryText = None) -> list[dict[str, Any]]:
        with client.reading() as conn:
            if identity:
                found = ops.find_work_unit(conn, xid, identity)
                return [] if found is None else [codec.work_unit_to_json(found)]
            return [codec.work_unit_to_json(wu) for wu in ops.get_experiment(conn, xid).work_units]

    @api.get("/experiment/{xid}/wu/{wid}", tags=["work units"])
    def get_work_unit(xid: Xid, wid: Wid) -> dict[str, Any]:
        with client.reading() as conn:
            return codec.work_unit_to_json(ops.get_work_unit(conn, xid, wid))

    @api.patch("/experiment/{xid}/wu/{wid}", tags=["work units"])
    def update_work_unit(
        xid: Xid, wid: Wid, body: ExperimentUnitPatchBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        patch = body.to_model()
        return write(request, key, body.model_dump(), lambda c: ops.update_work_unit(c, xid, wid, patch))

    @api.put("/experiment/{xid}/wu/{wid}/job", tags=["jobs"])
    def insert_job(
        xid: Xid, wid: Wid, body: SlurmJobBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        job = body.to_model()
        return write(request, key, body.model_dump(), lambda c: ops.insert_jobs(c, xid, [(wid, job)]))

    @api.put("/experiment/{xid}/jobs", tags=["jobs"], summary="Insert jobs of several work units at once")
    def insert_jobs(
        xid: Xid, body: list[JobOfWorkUnitBody], request: Request, key: IdempotencyKey = None
    ) -> Response:
        pairs = [(b.wid, b.job.to_model()) for b in body]
        dumped = [b.model_dump() for b in body]
        return write(request, key, dumped, lambda c: ops.insert_jobs(c, xid, pairs))

    @api.patch(
        "/experiment/{xid}/jobs",
        tags=["jobs"],
        summary="Swap job rows (e.g. pending submissions for their Slurm ids) in one transaction",
    )
    def replace_jobs(
        xid: Xid, body: ReplaceJobsBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        units = [b.to_model() for b in body.work_units]
        remove = [(r.wid, r.slurm_job_id) for r in body.remove]
        insert = [(b.wid, b.job.to_model()) for b in body.insert]
        wids = models.wids_of(body.delete_empty_units, "delete_empty_units")
        return write(
            request,
            key,
            body.model_dump(),
            lambda c: ops.replace_jobs(c, xid, units, remove, insert, wids),
        )

    @api.post("/experiment/{xid}/job-states", tags=["jobs"], summary="Record jobs' last known states")
    def record_job_states(
        xid: Xid, body: JobStatesBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        records = [b.to_model() for b in body.states]
        dumped = body.model_dump(mode="json")
        return write(request, key, dumped, lambda c: job_states.record_job_states(c, xid, records))

    # -- artifacts --------------------------------------------------------------------------------------
    @api.put("/experiment/{xid}/wu/{wid}/artifact", tags=["artifacts"])
    def insert_work_unit_artifact(
        xid: Xid, wid: Wid, body: ArtifactBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        artifact = body.to_model()
        return write(
            request, key, body.model_dump(), lambda c: ops.insert_work_unit_artifact(c, xid, wid, artifact)
        )

    @api.delete("/experiment/{xid}/wu/{wid}/artifact/{name:path}", tags=["artifacts"])
    def delete_work_unit_artifact(
        xid: Xid, wid: Wid, name: str, request: Request, key: IdempotencyKey = None
    ) -> Response:
        return write(request, key, None, lambda c: ops.delete_work_unit_artifact(c, xid, wid, name))

    @api.put("/experiment/{xid}/artifact", tags=["artifacts"])
    def insert_experiment_artifact(
        xid: Xid, body: ArtifactBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        artifact = body.to_model()
        return write(
            request, key, body.model_dump(), lambda c: ops.insert_experiment_artifact(c, xid, artifact)
        )

    @api.delete("/experiment/{xid}/artifact/{name:path}", tags=["artifacts"])
    def delete_experiment_artifact(
        xid: Xid, name: str, request: Request, key: IdempotencyKey = None
    ) -> Response:
        return write(request, key, None, lambda c: ops.delete_experiment_artifact(c, xid, name))

    @api.put("/experiment/{xid}/config", tags=["artifacts"])
    def insert_experiment_config_artifact(
        xid: Xid, body: ConfigArtifactBody, request: Request, key: IdempotencyKey = None
    ) -> Response:
        artifact = body.to_model()
        return write(
            request, key, body.model_dump(), lambda c: ops.insert_experiment_config_artifact(c, xid, artifact)
        )

    @api.delete("/experiment/{xid}/config/{name:path}", tags=["artifacts"])
    def delete_experiment_config_artifact(
        xid: Xid, name: str, request: Request, key: IdempotencyKey = None
    ) -> Response:
        return write(request, key, None, lambda c: ops.delete_experiment_config_artifact(c, xid, name))

    app.include_router(api)
    return app
