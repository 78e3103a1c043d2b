"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3 carries
our commands, fd 4 its answers, each a JSON message ending in a NUL byte): standard library only.

Used by the dashboard tests to sign in the way a person does (type the token into the login form, submit
it) so the token never appears in a URL, then load pages with the session cookie the browser kept.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import time
from typing import Any

CHROMIUM = shutil.which("chromium")


class Browser:
    """One headless Chromium with one page (a flat session attached to its target)."""

    def __init__(self, profile: pathlib.Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        low = {to_chrome_r: 3, from_chrome_w: 4}

        def wire() -> None:  # in the child: our pipes become its fds 3 and 4
            high = {fd: os.dup(fd) for fd in low}
            for fd, target in low.items():
                os.dup2(high[fd], target, inheritable=True)

        command = [CHROMIUM or "chromium", "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"]
        command += ["--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe"]
        command += [f"--user-data-dir={profile}", "--window-size=1280,1600", "about:blank"]
        self.process = subprocess.Popen(
            command,
            # Our pipe fds are not inheritable (PEP 446): only the dup2'ed 3 and 4 cross the exec, and
            # close_fds would close those after preexec_fn.
            close_fds=False,
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def call(
        self, method: str, *, session: bool = False, timeout: float = 30, **params: Any
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return dict(answer.get("result", {}))
            self.events.append(answer)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(message))

    def wait_event(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    del self.events[: i + 1]
                    return
            self.events.clear()
            self.events.append(self._read(deadline))

    def evaluate(self, expression: str) -> Any:
        found = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return found["result"].get("value")

    def goto(self, url: str) -> str:
        """Load `url` and return the page's DOM as HTML once it has loaded."""
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")
        return str(self.evaluate("document.documentElement.outerHTML"))

    def submit_login(self, token: str) -> str:
        """Type `token` into the login form and submit it, as a person would; the DOM of the next page."""
        self.events.clear()
        self.evaluate(
            f"document.getElementById('token').value = {json.dumps(token)}; document.querySelector('form.login').submit()"
        )
        self.wait_event("Page.loadEventFired")
        return str(self.evaluate("document.documentElement.outerHTML"))

    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def screenshot(self, path: pathlib.Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shot = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def cookies(self) -> list[dict[str, Any]]:
        return list(self.call("Storage.getCookies").get("cookies", []))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
