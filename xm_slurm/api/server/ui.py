"""The dashboard: server-rendered pages under /ui/ (`/` redirects there) for anyone holding a token.

A read-only token is enough. The token is typed once on the login page (POSTed, never in a URL); the
browser then holds a session cookie (`ui_session`). No page answers without a live session: a browser is
sent to the login page (which says when the token was revoked or has expired), a JSON client gets 401.
Pages refresh themselves every few seconds while units have not ended. Every value from the store reaches
the page escaped (Jinja autoescape); notes are Markdown with raw HTML off (`ui_render`).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from xm_slurm.api.models import DEFAULT_LIST_LIMIT, Experiment, WorkUnit
from xm_slurm.api.server import tokens, ui_render, ui_store
from xm_slurm.api.server.ui_session import COOKIE, REASONS, Sessions, check_digest, check_token
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import operations as ops
from xm_slurm.errors import NotFoundError, ValidationError
from xm_slurm.status import SlurmJobState
from xm_slurm.version import __version__

HERE = pathlib.Path(__file__).parent
PREFIX = "/ui"
REFRESH_SECONDS = 5
#: A login form is a token and little else.
MAX_LOGIN_BYTES = 4096
_HEADERS = {
    # No script runs on these pages; styles are ours and Pygments' inline ones; pictures are data: URLs.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_dashboard_path(path: str) -> bool:
    """Paths the dashboard answers (`app.ApiPrefix` leaves them alone)."""
    return path in ("/", PREFIX) or path.startswith(PREFIX + "/")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates" / "ui"),
        autoescape=True,  # every value is escaped unless a ui_render function made it Markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        markdown=ui_render.markdown,
        link=ui_render.link,
        pretty=ui_render.pretty,
        compact=ui_render.compact,
        age=ui_render.age,
        state_class=ui_render.state_class,
    )
    env.globals.update(version=__version__, prefix=PREFIX)
    return env


class Dashboard:
    """The pages of one server: its store, its sessions, its templates."""

    def __init__(self, client: SqlClient) -> None:
        self.client = client
        self.sessions = Sessions()
        self.env = _environment()

    def page(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**values)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    # -- who is looking --------------------------------------------------------------------------------
    def viewer(self, request: Request) -> tokens.TokenInfo | Response:
        """The token behind the request's session, or the answer refusing it."""
        session_id = request.cookies.get(COOKIE, "")
        digest = self.sessions.digest(session_id) if session_id else None
        if digest is None:
            return _refuse(request, "login")
        found = check_digest(self.client, digest)
        if isinstance(found, str):  # revoked or expired since the login
            self.sessions.close(session_id)
            return _refuse(request, found)
        return found

    async def login(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared and (not declared.isdigit() or int(declared) > MAX_LOGIN_BYTES):
            return self.login_page("unknown", status=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BYTES:
                return self.login_page("unknown", status=413)
        token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()
        found = await run_in_threadpool(check_token, self.client, token) if token else "unknown"
        if isinstance(found, str):
            return self.login_page(found, status=401)
        answer = RedirectResponse(PREFIX + "/", status_code=303, headers=_HEADERS)
        answer.set_cookie(
            COOKIE,
            self.sessions.open(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=PREFIX,
        )
        return answer

    def login_page(self, why: str, status: int = 200) -> HTMLResponse:
        reason = why if why in REASONS else "login"
        return self.page("login.html.j2", status, message=REASONS[reason], reason=reason, viewer=None)

    # -- pages -----------------------------------------------------------------------------------------
    def experiments(self, who: tokens.TokenInfo, tag: str, q: str, page: int) -> HTMLResponse:
        error = ""
        try:
            with self.client.reading() as conn:
                found = ops.list_experiments(
                    conn,
                    title_contains=q or None,
                    tag=tag or None,
                    limit=DEFAULT_LIST_LIMIT + 1,  # one more tells whether a next page exists
                    offset=page * DEFAULT_LIST_LIMIT,
                )
                xids = [s.xid for s in found]
                counts = ui_store.state_counts(conn, xids)
                made_by = ui_store.creators(conn, xids)
        except ValidationError as e:
            found, counts, made_by, error = [], {}, {}, str(e)
        more = len(found) > DEFAULT_LIST_LIMIT
        rows = [
            {"summary": s, "states": counts.get(s.xid, {}), "created_by": made_by.get(s.xid)}
            for s in found[:DEFAULT_LIST_LIMIT]
        ]
        query = {k: v for k, v in (("tag", tag), ("q", q)) if v}
        return self.page(
            "experiments.html.j2",
            400 if error else 200,
            viewer=who,
            rows=rows,
            tag=tag,
            q=q,
            error=error,
            page=page,
            previous=urlencode({**query, "page": page - 1}) if page > 0 else None,
            next=urlencode({**query, "page": page + 1}) if more else None,
            refresh=REFRESH_SECONDS,
        )

    def experiment(self, who: tokens.TokenInfo, xid_text: str) -> HTMLResponse:
        xid = int(xid_text) if xid_text.isdigit() and len(xid_text) < 12 else 0
        try:
            with self.client.reading() as conn:
                experiment = ops.get_experiment(conn, xid)
                created_by = ui_store.creators(conn, [xid]).get(xid)
        except (NotFoundError, ValidationError):
            return self.not_found(who, f"There is no experiment {xid_text!r} in this store.")
        units = [_unit_row(u) for u in experiment.work_units]
        # Refreshes until every unit has ended (a unit without a job may be being launched).
        running = not units or not all(_ended(u["state"]) for u in units)
        return self.page(
            "experiment.html.j2",
            viewer=who,
            x=experiment,
            created_by=created_by,
            units=units,
            counts=_counts(units),
            configs=_configs(experiment),
            artifacts=[a for a in experiment.artifacts if not _is_provenance(a.name)],
            provenance=_provenance(experiment),
            refresh=REFRESH_SECONDS if running else None,
        )

    def not_found(self, who: tokens.TokenInfo, message: str) -> HTMLResponse:
        return self.page("not_found.html.j2", 404, viewer=who, message=message)


def _refuse(request: Request, reason: str) -> Response:
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        detail = "sign in on /ui/login first" if reason == "login" else f"the session's token was {reason}"
        return JSONResponse({"detail": detail}, status_code=401, headers=_HEADERS)
    answer = RedirectResponse(f"{PREFIX}/login?why={reason}", status_code=303, headers=_HEADERS)
    if reason != "login":
        answer.delete_cookie(COOKIE, path=PREFIX)
    return answer


def _ended(state: str) -> bool:
    """Whether a unit in this state changes no more (Slurm's own rule: `SlurmJobState.is_terminal`)."""
    known = SlurmJobState.__members__.get(state)
    return known is not None and known.is_terminal


def _unit_row(unit: WorkUnit) -> dict[str, Any]:
    current = ui_store.current_job(unit)
    jobs = []
    for job in unit.jobs:
        state, seen = ui_store.job_state(job)
        jobs.append({"job": job, "state": state or ui_store.UNKNOWN, "seen": seen, "current": job is current})
    reason = current.state_reason if current is not None else None
    exit_code = current.exit_code if current is not None else None
    return {
        "unit": unit,
        "state": ui_store.unit_state(unit),
        "jobs": jobs,
        "reason": reason,
        "exit_code": exit_code,
    }


def _counts(units: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for u in units:
        counts[u["state"]] = counts.get(u["state"], 0) + 1
    return dict(sorted(counts.items()))


def _configs(experiment: Experiment) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = []
    for c in experiment.config_artifacts:
        picture = ui_render.python(c.uri) if c.name == "PYTHON" else ui_render.graphviz(c.uri)
        shown.append({"name": c.name, "html": picture, "text": c.uri})  # html None: shown as text
    return shown


def _is_provenance(name: str) -> bool:
    return name.startswith("xm_slurm.")


def _provenance(experiment: Experiment) -> list[dict[str, Any]]:
    found = [
        {"where": "experiment", "name": a.name, "value": a.uri}
        for a in experiment.artifacts
        if _is_provenance(a.name)
    ]
    for unit in experiment.work_units:
        found += [
            {"where": f"work unit {unit.wid}", "name": a.name, "value": a.uri}
            for a in unit.artifacts
            if _is_provenance(a.name)
        ]
    return found


def dashboard_router(client: SqlClient) -> APIRouter:
    """The dashboard's routes (left out of the OpenAPI schema: they are pages, not the API)."""
    ui = Dashboard(client)
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def root() -> Response:
        return RedirectResponse(PREFIX + "/", status_code=307)

    @router.get(PREFIX)
    def bare() -> Response:
        return RedirectResponse(PREFIX + "/", status_code=307)

    @router.get(PREFIX + "/static/ui.css")
    def stylesheet() -> Response:
        return FileResponse(HERE / "static" / "ui.css", media_type="text/css", headers=_HEADERS)

    @router.get(PREFIX + "/login")
    def login_form(why: str = "login") -> Response:
        return ui.login_page(why)

    @router.post(PREFIX + "/login")
    async def login(request: Request) -> Response:
        return await ui.login(request)

    @router.post(PREFIX + "/logout")
    def logout(request: Request) -> Response:
        ui.sessions.close(request.cookies.get(COOKIE, ""))
        answer = RedirectResponse(PREFIX + "/login?why=signed-out", status_code=303, headers=_HEADERS)
        answer.delete_cookie(COOKIE, path=PREFIX)
        return answer

    @router.get(PREFIX + "/")
    def experiments(request: Request, tag: str = "", q: str = "", page: str = "0") -> Response:
        who = ui.viewer(request)
        if not isinstance(who, tokens.TokenInfo):
            return who
        number = int(page) if page.isdigit() and len(page) < 7 else 0
        return ui.experiments(who, tag.strip(), q.strip(), number)

    @router.get(PREFIX + "/experiments/{xid}")
    def experiment(request: Request, xid: str) -> Response:
        who = ui.viewer(request)
        if not isinstance(who, tokens.TokenInfo):
            return who
        started = time.perf_counter()
        answer = ui.experiment(who, xid)
        answer.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
        return answer

    @router.get(PREFIX + "/{rest:path}")
    def unknown(request: Request, rest: str) -> Response:
        who = ui.viewer(request)
        if not isinstance(who, tokens.TokenInfo):
            return who
        return ui.not_found(who, "There is no such page.")

    return router


__all__ = ["Dashboard", "dashboard_router", "is_dashboard_path"]
