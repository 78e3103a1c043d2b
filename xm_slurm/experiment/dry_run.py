"""Dry run for `xm-slurm preview`: run a launch script without submitting anything.

When `XM_SLURM_DRY_RUN=<folder>` is set, `ClusterConnections` wraps every cluster transport in a
`DryRunTransport`: `sbatch --parsable` is answered with a fake job id (>= FAKE_JOB_ID_BASE, above any id a
stock Slurm hands out) and the script is written to `<folder>/NNN-<name>` plus one JSON line in
`<folder>/manifest.jsonl` (file, fake id, sbatch arguments, the cluster's SSH config). `sacct` answers
COMPLETED for fake ids (so a script that waits on its work units goes on), `scancel` and log reads do
nothing, and nothing else runs: an unexpected command is an error rather than a side effect.

The state folder query is answered with PLACEHOLDER_STATE_DIR and `scontrol show config` (the cluster's
limits) fails, so a preview needs no connection at all; with `XM_SLURM_DRY_RUN_REMOTE=1` (`preview --check`)
both are asked of the real cluster (read-only commands).
The metadata store is not handled here: `xm-slurm preview` points `XM_SLURM_STATE_DIR` at a throwaway folder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from xm_slurm.job_ids import SlurmJobId, expand_array_spec
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.transport.base import (
    Command,
    CommandResult,
    FileStat,
    StreamingProcess,
    Transport,
    command_name,
    join_command,
)

DRY_RUN_ENV = "XM_SLURM_DRY_RUN"
DRY_RUN_REMOTE_ENV = "XM_SLURM_DRY_RUN_REMOTE"
MANIFEST = "manifest.jsonl"
FAKE_JOB_ID_BASE = 900_000_000  # Slurm's default MaxJobId is 67,043,328: these never name a real job
PLACEHOLDER_STATE_DIR = "/dry-run/xm-slurm"

_ARRAY = re.compile(r"^#SBATCH\s+--array=(\S+)", re.MULTILINE)
_HETJOB = re.compile(r"^#SBATCH\s+hetjob\s*$", re.MULTILINE)

TransportFactory = Callable[[SlurmSSHConfig], Transport]


def wrap_factory(factory: TransportFactory) -> TransportFactory:
    """`factory` itself, or (when `XM_SLURM_DRY_RUN` is set) one whose transports submit nothing."""
    folder = os.environ.get(DRY_RUN_ENV)
    if not folder:
        return factory
    with _recorders_lock:  # one numbering per process, shared by every experiment of the launch script
        recorder = _recorders.setdefault(folder, _Recorder(Path(folder)))
    remote = os.environ.get(DRY_RUN_REMOTE_ENV) == "1"

    def dry_run_factory(config: SlurmSSHConfig) -> Transport:
        return DryRunTransport(factory(config), config, recorder, remote=remote)

    return dry_run_factory


_recorders: dict[str, _Recorder] = {}
_recorders_lock = threading.Lock()


class _Recorder:
    """Numbers fake ids and writes scripts + the manifest; shared by every transport of the process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self.count = 0
        self.jobs: dict[int, tuple[str, int]] = {}  # fake id -> ("single" | "array" | "group", size)

    def record(self, config: SlurmSSHConfig, remote_path: str, text: str, sbatch_args: list[str]) -> int:
        with self._lock:
            self.count += 1
            job_id = FAKE_JOB_ID_BASE + self.count
            self.folder.mkdir(parents=True, exist_ok=True)
            local = self.folder / f"{self.count:03d}-{os.path.basename(remote_path)}"
            local.write_text(text, encoding="utf-8")
            if m := _ARRAY.search(text):
                self.jobs[job_id] = ("array", len(expand_array_spec(m.group(1))))
            elif hetjobs := len(_HETJOB.findall(text)):
                self.jobs[job_id] = ("group", hetjobs + 1)
            else:
                self.jobs[job_id] = ("single", 1)
            entry = {
                "index": self.count,
                "file": str(local),
                "remote_path": remote_path,
                "job_id": str(job_id),
                "sbatch_args": sbatch_args,
                "ssh": config.to_dict(),
            }
            with (self.folder / MANIFEST).open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            return job_id

    def sacct_rows(self, ids_arg: str) -> str:
        rows = []
        for word in ids_arg.split(","):
            try:
                base = SlurmJobId.parse(word).job_id
            except ValueError:
                continue
            if base not in self.jobs:
                continue
            kind, size = self.jobs[base]
            if kind == "array":
                rows += [f"{base}_{i}|COMPLETED|0:0|None" for i in range(size)]
            elif kind == "group":
                rows += [f"{base}+{k}|COMPLETED|0:0|None" for k in range(size)]
            else:
                rows.append(f"{base}|COMPLETED|0:0|None")
        return "".join(row + "\n" for row in rows)


class _NoOutput(StreamingProcess):
    async def lines(self) -> AsyncIterator[str]:
        nothing: tuple[str, ...] = ()
        for line in nothing:
            yield line

    async def close_stdin(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class DryRunTransport(Transport):
    """Records submissions instead of making them; see the module docstring."""

    def __init__(
        self, inner: Transport, config: SlurmSSHConfig, recorder: _Recorder, *, remote: bool = False
    ) -> None:
        self.inner = inner  # opened only for the state folder query, and only when `remote`
        self.config = config
        self.recorder = recorder
        self.remote = remote
        self._files: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"DryRunTransport({self.config.destination!r})"

    async def run(
        self,
        command: Command,
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        line = join_command(command)
        argv = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
        program = command_name(command)
        if program == "printf":  # the state folder query (scheduler.state_root)
            if self.remote:
                return await self.inner.run(command, check=check, timeout=timeout, idempotent=True)
            return CommandResult(line, 0, PLACEHOLDER_STATE_DIR, "")
        if program == "scontrol" and argv[1:3] == ["show", "config"]:  # the cluster's limits: read-only
            if self.remote:
                return await self.inner.run(command, check=check, timeout=timeout, idempotent=True)
            return self._result(line, 1, "", "dry run without --check: limits not asked", check)
        if program == "sbatch":
            # The scheduler wraps sbatch in a shell line (env prefix, redirections): find the script among
            # the words; the sbatch options are the words between `sbatch` and it.
            start = argv.index("sbatch") if "sbatch" in argv else 0
            paths = [i for i, word in enumerate(argv) if i > start and word in self._files]
            if not paths:
                return self._result(line, 1, "", "dry run: sbatch of a script that was not written", check)
            path = argv[paths[0]]
            args = [
                a for a in argv[start + 1 : paths[0]] if a != "--parsable" and not a.startswith("--comment")
            ]
            job_id = self.recorder.record(self.config, path, self._files[path], args)
            return CommandResult(line, 0, f"{job_id}\n", "")
        if program == "sacct":
            ids = argv[argv.index("-j") + 1] if "-j" in argv[:-1] else ""
            return CommandResult(line, 0, self.recorder.sacct_rows(ids), "")
        if program == "squeue":  # the controller never heard of the fake ids: sacct answers for them
            return CommandResult(line, 0, "", "")
        if program in ("scancel", "test"):  # test: the log tail's `test -e LOG || exit 0; ...`
            return CommandResult(line, 0, "", "")
        return self._result(line, 1, "", f"dry run: {line[:200]!r} was not run", check)

    @staticmethod
    def _result(line: str, status: int, out: str, err: str, check: bool) -> CommandResult:
        result = CommandResult(line, status, out, err)
        return result.check() if check else result

    async def start(self, command: Command) -> StreamingProcess:
        return _NoOutput()  # following a log: there is none

    async def read_text(self, path: str) -> str:
        if path not in self._files:
            raise FileNotFoundError(f"dry run: no file {path}")
        return self._files[path]

    async def write_text(self, path: str, data: str, *, mode: int = 0o600) -> None:
        self._files[path] = data

    async def mkdir(self, path: str, *, mode: int = 0o700, parents: bool = True) -> None:
        return None

    async def stat(self, path: str) -> FileStat:
        if path not in self._files:
            raise FileNotFoundError(f"dry run: no file {path}")
        return FileStat(len(self._files[path].encode()), 0o100700, 0.0)

    async def close(self) -> None:
        await self.inner.close()


__all__ = [
    "DRY_RUN_ENV",
    "DRY_RUN_REMOTE_ENV",
    "FAKE_JOB_ID_BASE",
    "MANIFEST",
    "PLACEHOLDER_STATE_DIR",
    "DryRunTransport",
    "wrap_factory",
]
