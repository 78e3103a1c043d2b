"""Helpers for packaging tests: a recording wrapper around the REAL process runner, registry and podman checks."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from xm_slurm.packaging.process import ProcessResult, run_process


class RecordingRunner:
    """Runs every command for real and remembers its argv and environment."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.envs: list[dict[str, str]] = []

    async def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> ProcessResult:
        self.calls.append(tuple(argv))
        self.envs.append(dict(env or {}))
        return await run_process(argv, env=env, log_path=log_path, on_line=on_line)

    def count(self, subcommand: str) -> int:
        return sum(1 for argv in self.calls if len(argv) > 1 and argv[1] == subcommand)


def registry_digest(ref: str) -> str:
    """What the registry itself says, asked by an independent tool (skopeo)."""
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{ref}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def podman_run(image: str, *args: str) -> str:
    out = subprocess.run(
        ["podman", "run", "--rm", "--pull=missing", image, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def read_text(path: str | Path) -> str:
    return Path(path).read_text()


def all_text_under(folder: Path) -> str:
    """Every file's text under `folder` (e.g. kept build logs), concatenated."""
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def uv_binary() -> str | None:
    """The real uv executable (not a shell shim) to put in a local 'uv image'."""
    candidates = []
    if os.environ.get("UV"):  # `uv run` names the uv executable that runs us
        candidates.append(os.environ["UV"])
    try:
        import uv  # type: ignore[import-not-found]

        candidates.append(uv.find_uv_bin())
    except (
        ImportError,
        FileNotFoundError,
        AttributeError,
    ):  # AttributeError: examples/uv, a namespace package
        pass
    found = shutil.which("uv")
    if found:
        resolved = subprocess.run(["pyenv", "which", "uv"], capture_output=True, text=True, check=False)
        if resolved.returncode == 0:
            candidates.append(resolved.stdout.strip())
        candidates.append(found)
    for path in candidates:
        with open(path, "rb") as f:
            if f.read(4) == b"\x7fELF":
                return path
    return None


def uv_lock(uv: str, project: Path) -> None:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run([uv, "lock", "--offline"], cwd=project, check=True, capture_output=True, env=env)
