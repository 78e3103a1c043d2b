"""The dashboard in headless Chromium (Debian's `chromium`; .ci/run installs it), driven over the DevTools
protocol on a pipe (dashboard_browser.py): a person's sign-in (the token typed into the login form, never in a
URL), the list and an experiment page with their rows and states, the page updating itself while a job is
launched, a page refused without a session, and an injected `<script>` shown as text and never run.
Screenshots go to build/dashboard-screenshots/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator

import pytest
from dashboard_browser import CHROMIUM, Browser
from dashboard_fixtures import Dash, dash, screenshots_dir

__all__ = ["dash"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian's chromium package: apt-get install chromium; .ci/run installs it)",
)
INJECTED = "<script>window.__xss = 1</script>"


@pytest.fixture
def browser(tmp_path: pathlib.Path) -> Iterator[Browser]:
    opened = Browser(tmp_path / "profile")
    yield opened
    opened.close()


def _rows(browser: Browser, selector: str, attribute: str) -> list[str]:
    found = browser.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})].map(r => r.getAttribute({json.dumps(attribute)}))"
    )
    return [str(x) for x in found]


def test_sign_in_list_and_experiment_page(dash: Dash, browser: Browser) -> None:
    shots = screenshots_dir()
    xid = dash.experiment(f"browser {INJECTED}", tags=["browser"], note=f"**bold** {INJECTED}")
    dash.write(
        "PUT",
        f"/experiment/{xid}/wus",
        [{"wid": w, "args": json.dumps({"x": INJECTED, "w": w})} for w in (1, 2)],
    )
    ssh = json.dumps({"host": "127.0.0.1"})
    dash.write(
        "PUT",
        f"/experiment/{xid}/wu/1/job",
        {"name": "train", "slurm_job_id": "777", "slurm_ssh_config": ssh},
    )
    token = dash.token("viewer-chromium")

    refused = browser.goto(f"{dash.url}/ui/experiments/{xid}")
    assert browser.url() == f"{dash.url}/ui/login?why=login", "a page opened without a session"
    assert "Sign in" in refused and browser.evaluate("document.querySelector('#units') === null")
    browser.screenshot(shots / "login.png")

    listing = browser.submit_login(token)
    assert browser.url() == f"{dash.url}/ui/"
    assert token not in browser.url() and token not in listing
    cookie = next(c for c in browser.cookies() if c["name"] == "xms_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != token
    assert str(xid) in _rows(browser, "#experiments tbody tr", "data-xid")
    assert browser.evaluate("document.cookie") == "", "the session cookie is readable by scripts"
    browser.goto(f"{dash.url}/ui/?tag=browser")
    assert _rows(browser, "#experiments tbody tr", "data-xid") == [str(xid)]
    browser.screenshot(shots / "list.png")

    browser.goto(f"{dash.url}/ui/experiments/{xid}")
    assert _rows(browser, "#units tbody tr", "data-state") == ["unknown", "no job"]
    assert browser.evaluate("document.getElementById('title').innerText") == f"browser {INJECTED}"
    assert INJECTED in browser.evaluate("document.getElementById('note').innerText")
    assert browser.evaluate("document.querySelector('#note strong').innerText") == "bold"
    assert INJECTED.replace(" ", "") in browser.evaluate(
        "document.querySelector('#units td.args').innerText"
    ).replace(" ", "")
    assert browser.evaluate("document.querySelectorAll('script').length") == 0
    assert browser.evaluate("typeof window.__xss") == "undefined", "an injected script ran"
    browser.screenshot(shots / "experiment.png")


def test_page_updates_itself_while_a_job_is_launched(dash: Dash, browser: Browser) -> None:
    xid = dash.experiment("updating", tags=["live"])
    dash.write("PUT", f"/experiment/{xid}/wus", [{"wid": 1, "args": "{}"}])
    browser.goto(f"{dash.url}/ui/login")
    browser.submit_login(dash.token("viewer-live"))
    browser.goto(f"{dash.url}/ui/experiments/{xid}")
    assert _rows(browser, "#units tbody tr", "data-state") == ["no job"]
    assert browser.evaluate("document.querySelector('meta[http-equiv=refresh]').content") == "5"
    ssh = json.dumps({"host": "127.0.0.1"})
    dash.write(
        "PUT",
        f"/experiment/{xid}/wu/1/job",
        {"name": "train", "slurm_job_id": "888", "slurm_ssh_config": ssh},
    )
    browser.events.clear()
    browser.wait_event("Page.loadEventFired", timeout=20)  # the page reloads itself, nobody navigates
    assert _rows(browser, "#units tbody tr", "data-state") == ["unknown"]
    assert "888" in browser.evaluate("document.querySelector('#units td.jobs').innerText")
    browser.screenshot(screenshots_dir() / "experiment-updated.png")


def test_recorded_states_change_on_the_page_while_a_job_runs(dash: Dash, browser: Browser) -> None:
    xid = dash.experiment("states", tags=["states"])
    dash.write("PUT", f"/experiment/{xid}/wus", [{"wid": w, "args": "{}"} for w in (1, 2)])
    ssh = json.dumps({"host": "127.0.0.1"})
    for w in (1, 2):
        job = {"name": "train", "slurm_job_id": f"99{w}", "slurm_ssh_config": ssh}
        dash.write("PUT", f"/experiment/{xid}/wu/{w}/job", job)
    dash.record_state(xid, 1, "RUNNING")
    dash.record_state(xid, 2, "PENDING", reason="Priority")
    browser.goto(f"{dash.url}/ui/login")
    browser.submit_login(dash.token("viewer-states"))
    browser.goto(f"{dash.url}/ui/experiments/{xid}")
    assert _rows(browser, "#units tbody tr", "data-state") == ["RUNNING", "PENDING"]
    assert "Priority" in browser.evaluate("document.querySelector('#units').innerText")
    browser.screenshot(screenshots_dir() / "states-running.png")
    dash.record_state(xid, 1, "COMPLETED", exit_code=0)
    dash.record_state(xid, 2, "FAILED", exit_code=3)
    browser.events.clear()
    browser.wait_event("Page.loadEventFired", timeout=20)  # the page reloads itself
    assert _rows(browser, "#units tbody tr", "data-state") == ["COMPLETED", "FAILED"]
    assert "exit 3" in browser.evaluate("document.querySelector('#units').innerText")
    # Every unit has ended: the page stops refreshing.
    assert browser.evaluate("document.querySelector('meta[http-equiv=refresh]') === null")
    browser.screenshot(screenshots_dir() / "states-ended.png")
    browser.goto(f"{dash.url}/ui/?tag=states")
    counts = browser.evaluate("document.querySelector('#experiments td.states').innerText")
    assert "1 completed" in counts and "1 failed" in counts


def test_load_time_of_an_experiment_with_1000_units(
    dash: Dash, browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    xid = dash.sweep("a thousand units in a browser", 1000, state="RUNNING")
    browser.goto(f"{dash.url}/ui/login")
    browser.submit_login(dash.token("viewer-1000-browser"))
    browser.goto(f"{dash.url}/ui/experiments/{xid}")  # warm
    times = []
    for _ in range(3):
        started = time.perf_counter()
        browser.goto(f"{dash.url}/ui/experiments/{xid}")
        times.append(time.perf_counter() - started)
        assert _rows(browser, "#units tbody tr", "data-state") == ["RUNNING"] * 1000
    with capsys.disabled():
        print(
            f"\n[figure] 1,000-unit experiment page in headless Chromium: {min(times) * 1000:.0f} ms to load (best of 3)"
        )
    browser.screenshot(screenshots_dir() / "experiment-1000-units.png")
    assert min(times) < 10, f"the page of 1,000 units took {min(times):.1f} s to load"
