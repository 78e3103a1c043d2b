"""The documentation site as a reader's browser shows it: built with `mkdocs build --strict`, served on
127.0.0.1 by Python's http.server, and loaded in headless Chromium (Debian's `chromium` package; .ci/run
installs it) with `--dump-dom` (the DOM after the page's scripts ran) and `--screenshot`.

Checked on every page: it renders (title, main content, the theme's scripts ran), every link to a page,
file or anchor of the site resolves, code blocks are highlighted, and none of our test markers or escapes
show. Screenshots of every page go to build/docs-screenshots/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import html.parser
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "docs-screenshots"
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian's chromium package: apt-get install chromium; .ci/run installs it)",
)

# What a reader must never see: the markers of tests/docs/test_docs_code_blocks.py, notes about our tests,
# and a table cell's escaped pipe. docs/contributing.md explains the markers to writers: it may show them.
PLUMBING = (
    "run: python",
    "run: preview",
    "run: shell",
    "not-run:",
    "from: examples/",
    "docs test",
    "test of this page",
    "\\|",
)
SHOWS_MARKERS = {"contributing/index.html"}
_EXTERNAL = ("http:", "https:", "mailto:", "data:", "javascript:")


@dataclasses.dataclass
class Parsed:
    """What the checks need from one page's DOM."""

    title: str = ""
    ids: set[str] = dataclasses.field(default_factory=set)
    links: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (tag, URL)
    h1: list[str] = dataclasses.field(default_factory=list)
    article_text: list[str] = dataclasses.field(default_factory=list)
    visible_text: list[str] = dataclasses.field(default_factory=list)
    code_blocks: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (language, token spans)
    copy_buttons: int = 0  # added by the theme's JavaScript: its scripts ran


class _DomParser(html.parser.HTMLParser):
    """Collects Parsed; comments (our markers) are not text, as in a browser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Parsed()
        self._hidden = 0  # depth inside <head>, <script>, <style>, <template>
        self._in_title = self._in_h1 = False
        self._article_depth = 0  # open tags since <article>; 0: outside
        self._block: tuple[str, int] | None = None  # the highlighted block being read
        self._div_depth = 0
        self._block_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.out.ids.add(a[key])
        for key in ("href", "src"):
            if key in a:
                self.out.links.append((tag, a[key]))
        if tag in ("head", "script", "style", "template", "noscript"):
            self._hidden += 1
        self._in_title = self._in_title or tag == "title"
        if tag == "article" and "md-content__inner" in classes:
            self._article_depth = 1
        elif self._article_depth and tag not in _VOID:
            self._article_depth += 1
        if tag == "h1" and self._article_depth:
            self._in_h1 = True
            self.out.h1.append("")
        if tag == "div":
            self._div_depth += 1
            if "highlight" in classes:
                language = next((c[9:] for c in classes if c.startswith("language-")), "")
                self._block, self._block_depth = (language, 0), self._div_depth
        if tag == "span" and self._block is not None and classes:
            self._block = (self._block[0], self._block[1] + 1)
        if tag == "button" and "md-code__button" in classes:
            self.out.copy_buttons += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "script", "style", "template", "noscript"):
            self._hidden = max(0, self._hidden - 1)
        if tag == "title":
            self._in_title = False
        if tag == "h1":
            self._in_h1 = False
        if self._article_depth and tag not in _VOID:
            self._article_depth -= 1
        if tag == "div":
            if self._block is not None and self._div_depth == self._block_depth:
                self.out.code_blocks.append(self._block)
                self._block = None
            self._div_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.out.title += data
        if self._hidden:
            return
        self.out.visible_text.append(data)
        if self._article_depth:
            self.out.article_text.append(data)
        if self._in_h1:
            self.out.h1[-1] += data


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def parse_dom(dom: str) -> Parsed:
    parser = _DomParser()
    parser.feed(dom)
    parser.close()
    return parser.out


@dataclasses.dataclass(frozen=True)
class Page:
    path: str  # relative to the site, e.g. "install/index.html"
    url: str
    dom: Parsed


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    # A private profile: nothing is written to this user's Chromium settings.
    command = [CHROMIUM or "chromium", "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"]
    command += ["--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(folder)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    return folder


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the site but the 404 page (served only for missing paths)."""
    return sorted(
        str(p.relative_to(site)) for p in site.rglob("*.html") if p.relative_to(site) != Path("404.html")
    )


def page_url(base: str, path: str) -> str:
    return base + path.removesuffix("index.html")


def screenshot_name(path: str) -> str:
    return "home.png" if path == "index.html" else path.removesuffix("/index.html").replace("/", "-") + ".png"


def _load(path: str, server: str, profile: Path) -> Page:
    """One Chromium run per page: its DOM once the scripts ran, and its screenshot for a person."""
    url = page_url(server, path)
    shot = SCREENSHOTS / screenshot_name(path)
    result = _chromium("--window-size=1280,2000", f"--screenshot={shot}", "--dump-dom", url, profile=profile)
    assert result.returncode == 0 and "<html" in result.stdout, f"chromium --dump-dom {url}: {result.stderr}"
    return Page(path, url, parse_dom(result.stdout))


@pytest.fixture(scope="module")
def pages(site: Path, server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Page]:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    paths = site_pages(site)
    # Each Chromium its own profile (one profile is locked by one browser); three at a time: most of a
    # run is waiting for the page, and 21 pages one by one took 40 s.
    profiles = [tmp_path_factory.mktemp("chromium-profile") for _ in paths]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        loaded = list(pool.map(_load, paths, [server] * len(paths), profiles))
    return {page.path: page for page in loaded}


def test_every_page_renders(pages: dict[str, Page]) -> None:
    documents = sorted(p.stem for p in (REPO / "docs").glob("*.md"))
    built = sorted("index" if p == "index.html" else p.removesuffix("/index.html") for p in pages)
    assert built == documents, "each docs/*.md is one page of the site"
    problems = []
    for page in pages.values():
        dom = page.dom
        text = " ".join("".join(dom.article_text).split())
        if len(dom.h1) != 1 or not dom.h1[0].strip():
            problems.append(f"{page.url}: {len(dom.h1)} h1 headings in the main content")
        # "<the page's nav title> - xm_slurm"; the home page is the site's name alone.
        if not (dom.title == "xm_slurm" if page.path == "index.html" else dom.title.endswith(" - xm_slurm")):
            problems.append(f"{page.url}: title {dom.title!r} does not name the page and the site")
        if len(text) < 300:
            problems.append(f"{page.url}: main content of {len(text)} characters: {text[:200]!r}")
        if dom.code_blocks and dom.copy_buttons != len(dom.code_blocks):
            problems.append(
                f"{page.url}: {dom.copy_buttons} copy buttons for {len(dom.code_blocks)} code blocks "
                "(the theme's scripts did not run)"
            )
    assert problems == [], "\n".join(problems)


def _target(site: Path, page: Page, base: str, link: str) -> tuple[Path, str] | str:
    """The site file and anchor a link names, or why it is not on this site."""
    url = urlsplit(urljoin(page.url, link))
    if f"{url.scheme}://{url.netloc}/" != base:
        return f"leaves the site ({url.geturl()})"
    file = site / unquote(url.path).lstrip("/")
    if file.is_dir():
        file = file / "index.html"
    return file, unquote(url.fragment)


def link_problem(site: Path, server: str, page: Page, link: str, ids: dict[Path, set[str]]) -> str | None:
    """Why `link` on `page` does not resolve in the built site, or None."""
    target = _target(site, page, server, link)
    if isinstance(target, str):
        return target
    file, anchor = target
    if not file.is_file():
        return f"no {file.relative_to(site)} in the site"
    if anchor and file.suffix == ".html" and anchor not in ids.get(file, set()):
        return f"no anchor #{anchor} in {file.relative_to(site)}"
    return None


def test_no_broken_internal_links(site: Path, server: str, pages: dict[str, Page]) -> None:
    ids = {site / path: page.dom.ids for path, page in pages.items()}
    problems, checked, anchors_elsewhere = [], 0, 0
    for page in pages.values():
        for tag, link in page.dom.links:
            if link.startswith(_EXTERNAL):
                assert "fonts.g" not in link, f"{page.url}: the site asks Google Fonts ({link})"
                continue
            checked += 1
            anchors_elsewhere += "#" in link and not link.startswith("#")
            problem = link_problem(site, server, page, link, ids)
            if problem:
                problems.append(f"{page.url}: <{tag}> {link!r}: {problem}")
    assert problems == [], "\n".join(problems)
    assert checked > 20 * len(pages), f"only {checked} internal links found: is the DOM read?"
    assert anchors_elsewhere > 10, f"only {anchors_elsewhere} links to an anchor of another page"
    # The check itself: a missing page, a missing anchor and a link off the site are reported.
    home = pages["index.html"]
    assert "no anchor" in (link_problem(site, server, home, "clusters/#no-such-section", ids) or "")
    assert "in the site" in (link_problem(site, server, home, "None", ids) or "")
    assert "leaves the site" in (link_problem(site, server, home, "//elsewhere.example/", ids) or "")
    assert link_problem(site, server, home, "clusters/#ssh-host-keys", ids) is None


def test_code_blocks_are_highlighted(pages: dict[str, Page]) -> None:
    problems, python_blocks = [], 0
    for page in pages.values():
        for i, (language, spans) in enumerate(page.dom.code_blocks, 1):
            python_blocks += language == "python"
            if not language:
                problems.append(f"{page.url}: code block {i} has no language (no language-<name> class)")
            elif language in ("python", "bash") and spans == 0:
                problems.append(f"{page.url}: {language} code block {i} has no highlight spans")
    assert problems == [], "\n".join(problems)
    assert python_blocks >= 20, f"only {python_blocks} Python blocks highlighted on the whole site"


def test_readers_see_no_test_plumbing(pages: dict[str, Page]) -> None:
    problems = []
    for page in pages.values():
        text = "".join(page.dom.visible_text)
        if page.path not in SHOWS_MARKERS:
            problems += [f"{page.url}: shows {word!r}" for word in PLUMBING if word in text]
        if any(link == "None" or link.endswith("/None") for _, link in page.dom.links):
            problems.append(f"{page.url}: a link to 'None'")
    assert problems == [], "\n".join(problems)
    # docs/contributing.md shows the markers on purpose: the check reads what a reader sees.
    assert "run: python" in "".join(pages["contributing/index.html"].dom.visible_text)


def test_screenshots_for_a_person(pages: dict[str, Page]) -> None:
    for path in pages:
        file = SCREENSHOTS / screenshot_name(path)
        assert file.is_file(), f"no screenshot of {path}"
        assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{file}: not a PNG"
        assert file.stat().st_size > 20_000, f"{file}: {file.stat().st_size} bytes, a blank page?"
