"""The dashboard (/ui/) of the real server subprocess, read over HTTP: who may look, what the pages show,
and bad input. The same pages in a browser: test_dashboard_chromium.py."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import time

import httpx
import pytest
from dashboard_fixtures import Dash, dash

__all__ = ["dash"]

SCRIPT = "<script>alert('x')</script>"


def test_root_redirects_and_pages_need_a_session(dash: Dash) -> None:
    root = httpx.get(f"{dash.url}/", timeout=30)
    assert (root.status_code, root.headers["location"]) == (307, "/ui/")
    for path in ("/ui/", "/ui/experiments/1", "/ui/nothing-here"):
        page = httpx.get(f"{dash.url}{path}", timeout=30)
        assert page.status_code == 303, path
        assert page.headers["location"] == "/ui/login?why=login"
        refused = httpx.get(f"{dash.url}{path}", headers={"Accept": "application/json"}, timeout=30)
        assert refused.status_code == 401, path
        assert "sign in" in refused.json()["detail"]
    forged = httpx.get(f"{dash.url}/ui/", cookies={"xms_session": "made-up"}, timeout=30)
    assert forged.status_code == 303
    # A token in a header opens no page (the dashboard only knows sessions), and the API is unchanged.
    bearer = {"Authorization": f"Bearer {dash.server.token}"}
    assert httpx.get(f"{dash.url}/ui/", headers=bearer, timeout=30).status_code == 303
    assert httpx.get(f"{dash.url}/api/experiment", headers=bearer, timeout=30).status_code == 200
    assert httpx.get(f"{dash.url}/experiment", headers=bearer, timeout=30).status_code == 200
    assert httpx.get(f"{dash.url}/experiment", timeout=30).status_code == 401


def test_login_with_a_read_only_token_then_logout(dash: Dash) -> None:
    token = dash.token("viewer-login")
    with httpx.Client(base_url=dash.url, timeout=30) as browser:
        form = browser.get("/ui/login")
        assert form.status_code == 200 and 'name="token"' in form.text and 'method="post"' in form.text
        wrong = browser.post("/ui/login", data={"token": token + "x"})
        assert wrong.status_code == 401 and "not known" in wrong.text
        assert not browser.cookies
        answer = browser.post("/ui/login", data={"token": token})
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert token not in cookie and token not in answer.headers["location"]
        page = browser.get("/ui/")
        assert page.status_code == 200
        assert "viewer-login" in page.text and "read-only" in page.text
        assert token not in page.text
        out = browser.post("/ui/logout")
        assert out.headers["location"] == "/ui/login?why=signed-out"
        session = cookie.split(";")[0].split("=", 1)[1]
        again = httpx.get(f"{dash.url}/ui/", cookies={"xms_session": session}, timeout=30)
        assert again.status_code == 303, "a closed session still opened a page"


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_revoked_or_expired_token_ends_the_session_and_login_says_so(dash: Dash, how: str) -> None:
    name = f"viewer-{how}"
    token = dash.token(name)
    browser = dash.login(token)
    assert browser.get("/ui/").status_code == 200
    if how == "revoked":
        from xm_slurm.api.server import tokens

        tokens.revoke_token(dash.store, dash.token_id(name))
    else:
        dash.expire(name)
    refused = browser.get("/ui/")
    assert (refused.status_code, refused.headers["location"]) == (303, f"/ui/login?why={how}")
    login = browser.get(refused.headers["location"])
    assert f"Your token {'was revoked' if how == 'revoked' else 'has expired'}" in login.text
    assert browser.get("/ui/experiments/1").status_code == 303  # the session is gone for every page
    if how == "expired":  # and the expired token cannot sign in again
        again = httpx.post(f"{dash.url}/ui/login", data={"token": token}, timeout=30)
        assert again.status_code == 401 and "has expired" in again.text
    browser.close()


def test_html_in_title_note_and_args_is_shown_as_text(dash: Dash) -> None:
    xid = dash.experiment(f"title {SCRIPT}", note=f"# Plan\n\nnote {SCRIPT} and *emphasis*", tags=["xss"])
    dash.write("PUT", f"/experiment/{xid}/wus", [{"wid": 1, "args": json.dumps({"lr": SCRIPT})}])
    dash.write("PUT", f"/experiment/{xid}/artifact", {"name": "evil", "uri": "javascript:alert(1)"})
    dash.write(
        "PUT", f"/experiment/{xid}/artifact", {"name": "report", "uri": "https://example.org/r?a=1&b=2"}
    )
    browser = dash.login(dash.token("viewer-xss"))
    for page in (browser.get(f"/ui/experiments/{xid}").text, browser.get("/ui/?tag=xss").text):
        assert "<script" not in page, "a stored <script> reached the page as HTML"
    page = browser.get(f"/ui/experiments/{xid}").text
    escaped = html.escape(SCRIPT, quote=False)
    assert f"title {escaped}" in page.replace("&#39;", "'")
    assert f"note {escaped}" in page.replace("&#39;", "'")  # the note's Markdown keeps raw HTML as text
    assert "<h1>Plan</h1>" in page and "<em>emphasis</em>" in page  # ... and is Markdown
    args = re.search(r'<td class="args"><code>(.*?)</code>', page)
    assert args is not None and "&lt;script&gt;" in args.group(1)
    assert 'href="javascript:' not in page and "<code>javascript:alert(1)</code>" in page
    assert '<a href="https://example.org/r?a=1&amp;b=2"' in page
    assert (
        "script-src" not in page
        and "default-src 'none'" in browser.get(f"/ui/experiments/{xid}").headers["content-security-policy"]
    )
    browser.close()


def test_unknown_experiment_and_page_are_404_pages(dash: Dash) -> None:
    browser = dash.login(dash.token("viewer-404"))
    for path, says in (
        ("/ui/experiments/987654", "no experiment '987654'"),
        ("/ui/experiments/abc", "no experiment 'abc'"),
        ("/ui/experiments/99999999999999999999", "no experiment"),
        ("/ui/no/such/page", "no such page"),
    ):
        page = browser.get(path)
        assert page.status_code == 404, path
        assert "<h1>Not found</h1>" in page.text and says in page.text.replace("&#39;", "'"), path
    browser.close()


def test_list_newest_first_filter_by_tag_and_search_by_title(dash: Dash) -> None:
    first = dash.experiment("sweep alpha lr", tags=["sweep", "team-a"])
    second = dash.experiment("ablation beta", tags=["ablation"])
    third = dash.experiment("sweep gamma 100% done_", tags=["sweep"])
    dash.write("PUT", f"/experiment/{third}/wus", [{"wid": w, "args": "{}"} for w in (1, 2, 3)])
    browser = dash.login(dash.token("viewer-list"))
    listed = [int(x) for x in re.findall(r'<tr data-xid="(\d+)">', browser.get("/ui/").text)]
    assert listed.index(third) < listed.index(second) < listed.index(first)  # newest first

    def shown(query: dict[str, str]) -> list[int]:
        return [int(x) for x in re.findall(r'<tr data-xid="(\d+)">', browser.get("/ui/", params=query).text)]

    assert shown({"tag": "sweep"}) == [third, first]
    assert shown({"tag": "team-a"}) == [first]
    assert shown({"q": "beta"}) == [second]
    assert shown({"q": "sweep", "tag": "sweep"}) == [third, first]
    assert shown({"q": "100%"}) == [third]  # % and _ are literal, not SQL wildcards
    assert shown({"q": "no-such-title"}) == []
    assert shown({"tag": "no-such-tag"}) == []
    row = re.search(rf'<tr data-xid="{third}">(.*?)</tr>', browser.get("/ui/").text, re.DOTALL)
    assert row is not None
    assert '<td class="creator">tests</td>' in row.group(1)  # the server's token "tests" created it
    assert "3 no job" in row.group(1)  # state counts
    bad = browser.get("/ui/", params={"q": "x" * 5000})
    assert bad.status_code == 400 and "title_contains" in bad.text
    browser.close()


def test_experiment_page_shows_units_jobs_configs_and_provenance(dash: Dash) -> None:
    xid = dash.experiment("page contents", tags=["contents"])
    dash.write("PUT", f"/experiment/{xid}/wus", [{"wid": w, "args": json.dumps({"seed": w})} for w in (1, 2)])
    ssh = json.dumps({"host": "127.0.0.1"})
    dash.write(
        "PUT",
        f"/experiment/{xid}/wu/1/job",
        {"name": "train", "slurm_job_id": "4242", "slurm_ssh_config": ssh},
    )
    dash.write("PUT", f"/experiment/{xid}/config", {"name": "PYTHON", "uri": "def f(x):\n    return x + 1\n"})
    dash.write("PUT", f"/experiment/{xid}/config", {"name": "GRAPHVIZ", "uri": "digraph { a -> b }"})
    dash.write(
        "PUT", f"/experiment/{xid}/artifact", {"name": "xm_slurm.provenance", "uri": '{"git": "abc123"}'}
    )
    browser = dash.login(dash.token("viewer-page"))
    page = browser.get(f"/ui/experiments/{xid}").text
    assert re.findall(r'<tr data-wid="(\d+)" data-state="([^"]+)">', page) == [
        ("1", "unknown"),
        ("2", "no job"),
    ]
    assert "<code>4242</code> train" in page
    assert "{&#34;seed&#34;:1}" in page
    assert '<span style="color: #008000; font-weight: bold">def</span>' in page  # Pygments highlighted
    assert "digraph { a -&gt; b }" in page or '<img class="graph"' in page  # text without `dot`
    assert "xm_slurm.provenance" in page and "&#34;git&#34;: &#34;abc123&#34;" in page
    assert '<meta http-equiv="refresh"' in page  # a unit's job has not ended: the page refreshes
    assert "created_by" not in page and 'by token <b class="creator">tests</b>' in page
    browser.close()


def test_page_of_an_experiment_with_1000_work_units(dash: Dash, capsys: pytest.CaptureFixture[str]) -> None:
    xid = dash.sweep("a thousand units", 1000, state="RUNNING")
    browser = dash.login(dash.token("viewer-1000"))
    browser.get(f"/ui/experiments/{xid}")  # warm: templates compiled
    times = []
    for _ in range(3):
        started = time.perf_counter()
        page = browser.get(f"/ui/experiments/{xid}")
        times.append(time.perf_counter() - started)
        assert page.status_code == 200 and page.text.count('data-state="RUNNING"') == 1000
    best = min(times)
    with capsys.disabled():
        print(
            f"\n[figure] experiment page with 1,000 work units: {best * 1000:.0f} ms (best of 3), {len(page.content):,} bytes"
        )
    assert best < 5, f"the page of 1,000 units took {best:.1f} s"
    browser.close()


@pytest.mark.skipif(
    shutil.which("dot") is None, reason="graphviz is not installed (apt-get install graphviz)"
)
def test_graphviz_config_is_drawn_as_a_picture_that_cannot_run_scripts(dash: Dash) -> None:
    xid = dash.experiment("graph")
    source = 'digraph { a -> b; b [label="<script>alert(1)</script>", URL="javascript:alert(2)"] }'
    dash.write("PUT", f"/experiment/{xid}/config", {"name": "GRAPHVIZ", "uri": source})
    browser = dash.login(dash.token("viewer-graph"))
    page = browser.get(f"/ui/experiments/{xid}").text
    picture = re.search(r'<img class="graph" alt="[^"]*" src="data:image/svg\+xml;base64,([^"]+)">', page)
    assert picture is not None, "no picture drawn"
    svg = base64.b64decode(picture.group(1)).decode()
    assert "<svg" in svg and "&lt;script&gt;" in svg  # an <img>: even its links and scripts never run
    assert "<script" not in page and "digraph {" not in page
    browser.close()
