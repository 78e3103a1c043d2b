"""Helpers of the end-to-end packaging tests (a module name unique across the test folders)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from local_cluster import LocalCluster
from packaging_helpers import uv_lock
from xmanager import xm

import xm_slurm
from xm_slurm.packaging.process import ProcessResult, run_process
from xm_slurm.status import SlurmWorkUnitStatusEnum

FAKE_APPTAINER_DIR = Path(__file__).resolve().parents[1] / "fakes" / "fake-apptainer"

# The program of the example projects: when it started, its argv and folder, and one env var.
PROGRAM = """\
import os, sys, time
print("XMSTART", time.time(), flush=True)
print("hello from", os.environ.get("XM_APP", "?"), sys.argv[1:], "in", os.getcwd(), flush=True)
"""


def uv_project(root: Path, uv: str) -> Path:
    """pyproject.toml + uv.lock + a module, locked with the host's uv (offline: no dependencies)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "hello.py").write_text(PROGRAM)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "hello"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
    )
    uv_lock(uv, root)
    return root


def uv_image_context(root: Path, uv: str) -> Path:
    """A context for an image holding just /uv (no ghcr.io here); uv_container copies it in."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(uv, root / "uv")
    (root / "Dockerfile").write_text('FROM scratch\nCOPY uv /uv\nCMD ["/uv"]\n')
    return root


class LineRecorder:
    """A process runner that runs every command for real and keeps all of its output lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> ProcessResult:
        def keep(line: str) -> None:
            self.lines.append(line)
            if on_line is not None:
                on_line(line)

        return await run_process(argv, env=env, log_path=log_path, on_line=keep)


def cache_use(lines: Sequence[str]) -> tuple[int, int]:
    """(steps after FROM, steps podman took from its cache) in `podman build` output."""
    steps = sum(1 for line in lines if re.match(r"STEP \d+/\d+: ", line))
    cached = sum(1 for line in lines if "Using cache" in line)
    return steps - 1, cached


def start_latency(lines: Sequence[str], submitted_at: float) -> float:
    """Seconds from submission to the program's first line (same machine, same clock)."""
    for line in lines:
        if line.startswith("XMSTART "):
            return float(line.split()[1]) - submitted_at
    raise AssertionError(f"the program never started: {list(lines)[-20:]}")


def podman(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, input=input, timeout=300
    )


def forget_image(*refs: str) -> None:
    """Remove images from this node's podman storage, so that the next job must pull them."""
    for ref in refs:
        podman("rmi", "--force", ref, check=False)


def bcrypt_hash(password: str) -> str:
    """The bcrypt hash docker-registry's htpasswd wants (libxcrypt's `$2b$`, via the stdlib `crypt`).

    `crypt` is deprecated since Python 3.11 and gone in 3.13; there, the `bcrypt` package would be needed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def password_registry(tmp: Path, user: str, password: str) -> Iterator[str]:
    """A second docker-registry on a free 127.0.0.1 port that demands a login (htpasswd, bcrypt).

    Its registries.conf.d entry (plain HTTP) is named for the test and removed afterwards.
    """
    port = free_port()
    host = f"127.0.0.1:{port}"
    folder = tmp / "auth-registry"
    (folder / "data").mkdir(parents=True)
    (folder / "htpasswd").write_text(f"{user}:{bcrypt_hash(password)}\n")
    (folder / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: xm-test\n    path: {folder / 'htpasswd'}\n"
    )
    conf = Path(f"/etc/containers/registries.conf.d/70-xm-test-auth-{port}-{uuid.uuid4().hex[:6]}.conf")
    conf.write_text(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    log = (folder / "registry.log").open("wb")
    # Not our environment: the registry reads REGISTRY_* variables as settings (REGISTRY_AUTH_FILE!).
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(folder / "config.yml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # poll until it listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (folder / "registry.log").read_text()
            assert time.monotonic() < deadline, "the password registry did not start"
            time.sleep(0.05)
        yield host
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        conf.unlink(missing_ok=True)


class CmdlineSampler:
    """Reads every process's command line, over and over, in a thread (e.g. while a job pulls)."""

    def __init__(self, *needles: str) -> None:
        self.needles = [n.encode() for n in needles]
        self.hits: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if any(n in cmdline for n in self.needles):
                        self.hits.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1

    def __enter__(self) -> CmdlineSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)


def files_containing(folder: Path, needle: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


async def run_job(experiment: xm_slurm.SlurmExperiment, job: xm.Job) -> tuple[list[str], float]:
    """Add `job` and wait for it: its log lines and the seconds from submission to the program's start."""
    submitted = time.time()
    wu = await experiment.add(job)
    return await finish(wu, submitted)


async def finish(wu: Any, submitted: float) -> tuple[list[str], float]:
    await wu.wait_until_complete()
    lines = [line async for line in wu.logs(num_lines=200)]
    status = await wu.get_status()
    assert status.status is SlurmWorkUnitStatusEnum.COMPLETED, lines
    return lines, start_latency(lines, submitted)


def apptainer_cluster(
    lc: LocalCluster, cache: Path, *, build_seconds: float = 0.0
) -> xm_slurm.SlurmClusterConfig:
    """The local cluster with the FAKE apptainer on PATH and a SIF cache of the test's own."""
    from experiment_fixtures import ssh_config

    return xm_slurm.SlurmClusterConfig(
        name="local-apptainer",
        ssh=ssh_config(lc),
        runtime=xm_slurm.ContainerRuntime.APPTAINER,
        partition=lc.partition,
        host_environment={
            "PATH": f"{FAKE_APPTAINER_DIR}:$PATH",
            "XM_SLURM_IMAGE_CACHE": str(cache),
            "FAKE_APPTAINER_BUILD_SECONDS": str(build_seconds),
        },
    )


def context_with(root: Path, dockerfile: str, **files: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def listing(folder: str | Path, pattern: str) -> list[Path]:
    return sorted(Path(folder).glob(pattern))


def exists(path: str | Path) -> bool:
    return Path(path).exists()


def read_lines(path: str | Path) -> list[str]:
    return Path(path).read_text().splitlines() if Path(path).exists() else []
