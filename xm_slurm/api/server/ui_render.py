"""What the dashboard's pages show beyond plain text: Markdown notes, highlighted Python configs, Graphviz
pictures, safe links and ages. Everything returned as `Markup` has been escaped or sanitised here; every
other value reaches the templates as text and is escaped by Jinja's autoescape.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import json
import shutil
import subprocess
from urllib.parse import urlsplit

from markupsafe import Markup, escape

#: Links are made only for these schemes (never javascript:, data:, ...); other URIs show as text.
LINK_SCHEMES = frozenset({"http", "https"})
#: A Graphviz config larger than this is shown as text (dot's time grows quickly with the graph).
MAX_DOT_CHARS = 200_000
DOT_TIMEOUT_SECONDS = 10.0


@functools.lru_cache(maxsize=1)
def _markdown() -> object | None:
    try:
        from markdown_it import MarkdownIt  # ships with rich
    except ImportError:  # pragma: no cover - rich depends on it
        return None
    # "commonmark" with raw HTML off: a note's <script> is text; links' javascript: URLs are refused.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown(text: str | None) -> Markup:
    """A note as HTML (raw HTML in it escaped), or escaped preformatted text without markdown-it."""
    if not text:
        return Markup("")
    renderer = _markdown()
    if renderer is None:  # pragma: no cover
        return Markup("<pre>{}</pre>").format(text)
    return Markup(renderer.render(text))  # type: ignore[attr-defined]


def python(code: str) -> Markup:
    """A PYTHON config highlighted by Pygments (ships with rich), or escaped preformatted text."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:  # pragma: no cover - rich depends on pygments
        return Markup("<pre>{}</pre>").format(code)
    return Markup(highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, cssclass="code")))


def graphviz(source: str) -> Markup | None:
    """A GRAPHVIZ config drawn by `dot` as an <img> (SVG as a data: URL, so nothing in it can run), or
    None when `dot` is not installed, fails, or the config is too large: the page shows the text then."""
    if len(source) > MAX_DOT_CHARS or shutil.which("dot") is None:
        return None
    svg = _dot_svg(source)
    if svg is None:
        return None
    data = base64.b64encode(svg).decode("ascii")
    return Markup(
        '<img class="graph" alt="the experiment\'s Graphviz config" src="data:image/svg+xml;base64,{}">'
    ).format(data)


@functools.lru_cache(maxsize=32)
def _dot_svg(source: str) -> bytes | None:
    try:
        done = subprocess.run(
            ["dot", "-Tsvg"],
            input=source.encode(),
            capture_output=True,
            timeout=DOT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and done.stdout else None


def link(uri: str) -> Markup:
    """An artifact's URI: a link for http(s), escaped text otherwise."""
    try:
        scheme = urlsplit(uri).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme in LINK_SCHEMES:
        return Markup('<a href="{0}" rel="noopener noreferrer">{0}</a>').format(uri)
    return Markup("<code>{}</code>").format(uri)


def pretty(text: str | None) -> str:
    """A JSON value (args, provenance) indented for reading; other text unchanged."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return text


def compact(text: str | None, limit: int = 300) -> str:
    """Args on one line, cut at `limit` characters (the whole value is one click away)."""
    if not text:
        return ""
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def age(when: dt.datetime | str | None, now: dt.datetime | None = None) -> str:
    """'12 s ago', '3 min ago', '2 h ago', '4 d ago' ('' when unknown)."""
    if when is None or when == "":
        return ""
    if isinstance(when, str):
        try:
            when = dt.datetime.fromisoformat(when)
        except ValueError:
            return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    seconds = max(0, int(((now or dt.datetime.now(dt.timezone.utc)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def state_class(state: str | None) -> str:
    """A CSS class for a state's colour (the state names are Slurm's, as the store records them)."""
    name = (state or "").upper()
    if name in ("", "NO JOB", "UNKNOWN"):
        return "none"
    if name in ("COMPLETED",):
        return "ok"
    if name in ("RUNNING", "COMPLETING", "CONFIGURING"):
        return "run"
    if name in ("PENDING", "REQUEUED", "SUSPENDED", "RESIZING"):
        return "wait"
    return "bad"


__all__ = ["age", "compact", "escape", "graphviz", "link", "markdown", "pretty", "python", "state_class"]
