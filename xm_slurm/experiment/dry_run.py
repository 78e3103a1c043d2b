"""Dry run for `xm-slurm preview`: run a launch script without submitting anything.

`DryRun(folder, remote)` is the choice. `xm-slurm preview` hands it to the launch script's process in its
environment (`DryRun.to_env`: `XM_SLURM_DRY_RUN=<folder>`, plus `XM_SLURM_DRY_RUN_REMOTE=1` for `--check`);
there `connections.launch_transport_factory`, the one place an experiment's transports are chosen, reads it
back (`DryRun.from_env`) and wraps every cluster transport in a `DryRunTransport`.

The transport knows commands by their structure, never by their shell text: the scheduler's shell lines are
`ShellLine`s that say what they are (`kind`, `argv`, `files`), other commands are argvs (program and words).
`sbatch` is answered with a fake job id (>= FAKE_JOB_ID_BASE, above any id a stock Slurm hands out) and the
script is written to `<folder>/NNN-<name>` plus one JSON line in `<folder>/manifest.jsonl` (file, fake id,
sbatch arguments, the cluster's SSH config). `sacct` answers COMPLETED for fake ids (so a script that waits
on its work units goes on), `squeue` knows none of them, `scancel` and log reads do nothing. Anything else,
a shell line that does not say what it is included, is an error rather than a side effect.

The state folder query is answered with PLACEHOLDER_STATE_DIR and the limits read (`scontrol show config`)
fails, so a preview needs no connection at all; with `remote` (`preview --check`) both are asked of the real
cluster (read-only commands). The metadata store is not handled here: `xm-slurm preview` points
`XM_SLURM_STATE_DIR` at a throwaway folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from xm_slurm.errors import RemoteCommandError
from xm_slurm.job_ids import SlurmJobId, expand_array_spec
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.transport.base import (
    Command,
    CommandResult,
    FileStat,
    FixedLines,
    ShellLine,
    StreamingProcess,
    Transport,
    join_command,
)

DRY_RUN_ENV = "XM_SLURM_DRY_RUN"
DRY_RUN_REMOTE_ENV = "XM_SLURM_DRY_RUN_REMOTE"
MANIFEST = "manifest.jsonl"
FAKE_JOB_ID_BASE = 900_000_000  # Slurm's default MaxJobId is 67,043,328: these never name a real job
PLACEHOLDER_STATE_DIR = "/dry-run/xm-slurm"

_ARRAY = re.compile(r"^#SBATCH\s+--array=(\S+)", re.MULTILINE)
_HETJOB = re.compile(r"^#SBATCH\s+hetjob\s*$", re.MULTILINE)
#: What a fake job's accounting row says, by sacct field (fields not listed are empty).
_SACCT_FIELDS = {"State": "COMPLETED", "ExitCode": "0:0", "Reason": "None"}

TransportFactory = Callable[[SlurmSSHConfig], Transport]


@dataclasses.dataclass(frozen=True)
class DryRun:
    """Record submissions in `folder` instead of making them; `remote`: ask the cluster (read-only) for its
    state folder and limits, so that the recorded scripts are the ones a real launch would submit."""

    folder: Path
    remote: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DryRun | None:
        """The dry run `xm-slurm preview` asked for in this process's environment, or None."""
        env = os.environ if environ is None else environ
        folder = env.get(DRY_RUN_ENV)
        return cls(Path(folder), remote=env.get(DRY_RUN_REMOTE_ENV) == "1") if folder else None

    def to_env(self) -> dict[str, str]:
        """The environment variables that make `from_env` return this dry run in a child process."""
        env = {DRY_RUN_ENV: str(self.folder)}
        if self.remote:
            env[DRY_RUN_REMOTE_ENV] = "1"
        return env

    def wrap(self, factory: TransportFactory) -> TransportFactory:
        """`factory`, its transports recording submissions instead of making them (a factory this returned
        is returned as is)."""
        if isinstance(factory, DryRunFactory):
            return factory
        with _recorders_lock:  # one numbering per process, shared by every experiment of the launch script
            recorder = _recorders.setdefault(str(self.folder), _Recorder(self.folder))
        return DryRunFactory(factory, recorder, self.remote)


@dataclasses.dataclass(frozen=True)
class DryRunFactory:
    """A transport factory whose transports are `DryRunTransport`s around those of `inner`."""

    inner: TransportFactory
    recorder: _Recorder
    remote: bool

    def __call__(self, config: SlurmSSHConfig) -> Transport:
        return DryRunTransport(self.inner(config), config, self.recorder, remote=self.remote)


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
            self.jobs[job_id] = _shape(text, sbatch_args)
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

    def members(self, ids_arg: str) -> list[tuple[str, int]]:
        """(JobID, base id) of every member (array task, hetjob component) of the fake jobs named."""
        out: list[tuple[str, int]] = []
        for word in ids_arg.split(","):
            try:
                base = SlurmJobId.parse(word).job_id
            except ValueError:
                continue
            kind, size = self.jobs.get(base, ("", 0))
            if kind == "array":
                out += [(f"{base}_{i}", base) for i in range(size)]
            elif kind == "group":
                out += [(f"{base}+{k}", base) for k in range(size)]
            elif kind == "single":
                out.append((str(base), base))
        return out


def _shape(text: str, sbatch_args: Sequence[str]) -> tuple[str, int]:
    """("single" | "array" | "group", members) of a job: `--array=` on the command line wins (a retry)."""
    spec = next((a.split("=", 1)[1] for a in sbatch_args if a.startswith("--array=")), None)
    if spec is None and (m := _ARRAY.search(text)):
        spec = m.group(1)
    if spec is not None:
        return "array", len(expand_array_spec(spec))
    if hetjobs := len(_HETJOB.findall(text)):
        return "group", hetjobs + 1
    return "single", 1


def _option(argv: Sequence[str], *names: str) -> str | None:
    """The value of an option given as `--name=value` or `--name value` / `-n value`."""
    for i, word in enumerate(argv):
        for name in names:
            if word.startswith(f"{name}="):
                return word.split("=", 1)[1]
            if word == name and i + 1 < len(argv):
                return argv[i + 1]
    return None


class DryRunTransport(Transport):
    """Records submissions instead of making them; see the module docstring."""

    def __init__(
        self, inner: Transport, config: SlurmSSHConfig, recorder: _Recorder, *, remote: bool = False
    ) -> None:
        self.inner = inner  # opened only for the state folder and limits, and only when `remote`
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
        if isinstance(command, ShellLine):
            kind, argv = command.kind, list(command.argv)
        elif isinstance(command, str):
            kind, argv = "", []  # shell text that does not say what it does: never run
        else:
            argv = [str(word) for word in command]
            kind = argv[0].rsplit("/", 1)[-1] if argv else ""
            if kind == "scontrol" and argv[1:3] == ["show", "config"]:
                kind = "limits"  # the same read-only question as the limits read
        if kind in ("state_root", "limits"):  # read-only questions about the cluster
            if self.remote:
                return await self.inner.run(command, check=check, timeout=timeout, idempotent=True)
            if kind == "state_root":
                return CommandResult(line, 0, PLACEHOLDER_STATE_DIR, "")
            return self._result(line, 1, "", "dry run without --check: limits not asked", check)
        if kind == "sbatch":
            return self._sbatch(line, argv, check)
        if kind == "sacct":
            return CommandResult(line, 0, self._sacct_rows(argv), "")
        if kind in ("squeue", "scancel", "tail"):  # squeue: the controller never heard of the fake ids
            return CommandResult(line, 0, "", "")
        return self._result(line, 1, "", f"dry run: {line[:200]!r} was not run", check)

    def _sbatch(self, line: str, argv: list[str], check: bool) -> CommandResult:
        # `sbatch [options] <script>`: the script is the last word; the options shown are the caller's own.
        path = argv[-1] if len(argv) > 1 else ""
        if path not in self._files:
            return self._result(line, 1, "", "dry run: sbatch of a script that was not written", check)
        args = [a for a in argv[1:-1] if a != "--parsable" and not a.startswith("--comment")]
        job_id = self.recorder.record(self.config, path, self._files[path], args)
        return CommandResult(line, 0, f"{job_id}\n", "")

    def _sacct_rows(self, argv: list[str]) -> str:
        fields = (_option(argv, "--format", "-o") or "JobID,State,ExitCode,Reason").split(",")
        rows = []
        for job_id, base in self.recorder.members(_option(argv, "-j", "--jobs") or ""):
            values = {"JobID": job_id, "JobIDRaw": str(base), **_SACCT_FIELDS}
            rows.append("|".join(values.get(field, "") for field in fields))
        return "".join(row + "\n" for row in rows)

    @staticmethod
    def _result(line: str, status: int, out: str, err: str, check: bool) -> CommandResult:
        result = CommandResult(line, status, out, err)
        return result.check() if check else result

    async def start(self, command: Command) -> StreamingProcess:
        if isinstance(command, ShellLine) and command.kind == "follow":
            return FixedLines()  # following a log: there is none
        line = join_command(command)
        message = f"dry run: {line[:200]!r} was not run"
        raise RemoteCommandError(message, command=line, exit_status=1, stdout="", stderr=message)

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
    "DryRun",
    "DryRunFactory",
    "DryRunTransport",
]
