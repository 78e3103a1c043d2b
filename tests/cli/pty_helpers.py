"""Run `xm-slurm` on a real pseudo-terminal (Python's pty module) as a person would, answering a question."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence


def run_in_pty(
    argv: Sequence[str], *, columns: int, answer: str | None = None, timeout: float = 120
) -> tuple[int, str]:
    """`xm-slurm ARGV` with stdin/stdout/stderr on a pseudo-terminal `columns` wide; `answer` is typed once a
    question (`[y/N]`) shows. Returns the exit code and everything the terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "xm_slurm.cli", *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    answered = answer is None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                if not answered and b"[y/N]" in seen:
                    os.write(master, (answer or "").encode() + b"\r")
                    answered = True
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, seen.decode(errors="replace").replace("\r\n", "\n")


def plain(text: str) -> str:
    """The screen's text without colour codes."""

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
