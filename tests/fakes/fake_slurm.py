"""FakeSlurm: a FAKE Slurm cluster for fast tests. No Slurm, no SSH, no shell: nothing runs anywhere.

`FakeSlurm` implements the library's `Transport` protocol in memory and answers the commands the library
sends in the formats of the real output captured in tests/scheduler/data (Slurm 22.05, see
capture_slurm_data.py):

* the scheduler's shell lines, by what they say they are (`ShellLine.kind`): the state folder query; the
  sbatch wrapper (the token taken from `--comment`, answer files written next to the script as the real
  wrapper writes them); the read-back of a lost sbatch answer from those files; the token look-up in squeue;
  the limits read (limits_read.txt with this fake's MaxArraySize and partitions); log tails and follows;
* argvs: `squeue` (the status query's `-O` fields, the pre-flight's `-o %i|%A|%F`), `sacct` (any
  `--format`/`-o` of JobID, JobIDRaw, State, ExitCode, Reason, Comment, SubmitLine, WorkDir, JobName,
  Partition, with or without `-j`), `scancel` (silent and exit 0 whatever the ids, as Slurm 22.05's),
  `rm -rf -- <path>`;
* file operations (write/read/stat/mkdir) on an in-memory file system, paths relative to `home`.

Anything else exits 127 saying it is not faked, so a test notices a command it did not expect.

Jobs stay in memory (`jobs`, by id) and a test moves them: `start_job(job)`, `finish(job, "FAILED",
exit_code=3)`, `forget(job)` (slurmctld purged it: accounting only). `fail_next_sbatch(...)` makes the next
sbatch fail: refused by Slurm (nothing submitted); submitted, but sbatch reports a socket time-out; or the
connection drops (after submitting or before), the cluster staying unreachable until `reconnect()` if asked.
`FakeSlurm.factory(*fakes)` is a `transport_factory` for `xm_slurm.create_experiment` / `get_experiment`
that hands each fake out for its host.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import stat as stat_module
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from fake_jobs import (
    FakeJob,
    Member,
    array_tasks,
    sacct_field,
    sacct_rows,
    sbatch_options,
    squeue_field,
    squeue_rows,
)

import xm_slurm
from xm_slurm.errors import ConnectionLostError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.transport import (
    Command,
    CommandResult,
    FileStat,
    ShellLine,
    StreamingProcess,
    Transport,
    join_command,
)
from xm_slurm.transport.base import FixedLines

DATA = Path(__file__).resolve().parents[1] / "scheduler" / "data"
SbatchFailure = Literal["refuse", "timeout", "lost"]
_TIMED_OUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n"


@dataclasses.dataclass
class _File:
    data: str
    mode: int
    mtime: float


@dataclasses.dataclass(frozen=True)
class _Failure:
    kind: SbatchFailure
    submitted: bool
    stay_unreachable: bool


class FakeSlurm(Transport):
    """A fake Slurm cluster behind one login: see the module docstring."""

    def __init__(
        self,
        host: str = "fake-cluster.invalid",
        *,
        user: str = "me",
        partitions: Sequence[str] = ("debug",),
        max_array_size: int = 1001,
        first_job_id: int = 1000,
    ) -> None:
        # `config` is what the library's per-account caches key on (scheduler.local_state.transport_key).
        self.config = xm_slurm.SlurmSSHConfig(host=host, user=user)
        self.home = f"/home/{user}"
        self.state_dir = f"{self.home}/.local/state/xm-slurm"
        self.partitions = tuple(partitions)
        self.max_array_size = max_array_size
        self.jobs: dict[int, FakeJob] = {}
        self.scancelled: list[str] = []  # every id scancel was given, in order
        self.unreachable = False
        #: Called when an sbatch arrives, before it is answered (e.g. to break the store at that moment).
        self.on_sbatch: Callable[[], object] | None = None
        self._next_id = first_job_id
        self._files: dict[str, _File] = {}
        self._dirs: set[str] = {"/", "/home", self.home}
        self._failures: list[_Failure] = []

    def __repr__(self) -> str:
        return f"FakeSlurm({self.config.destination!r})"

    @staticmethod
    def factory(*fakes: FakeSlurm) -> Callable[[xm_slurm.SlurmSSHConfig], Transport]:
        """A transport factory handing out each fake for its host (the stored SSH config of a job names it)."""
        by_host = {fake.config.host: fake for fake in fakes}

        def transport(config: xm_slurm.SlurmSSHConfig) -> Transport:
            if config.host not in by_host:
                raise ValueError(f"no FakeSlurm for host {config.host!r} (fakes: {sorted(by_host)})")
            return by_host[config.host]

        return transport

    def cluster(self, name: str = "fake") -> xm_slurm.SlurmClusterConfig:
        """A cluster config whose login node is this fake (Podman runtime, the first partition)."""
        return xm_slurm.SlurmClusterConfig(
            name=name, ssh=self.config, runtime=xm_slurm.ContainerRuntime.PODMAN, partition=self.partitions[0]
        )

    # --- what a test drives ---

    def fail_next_sbatch(
        self, kind: SbatchFailure, *, submitted: bool = True, stay_unreachable: bool = False
    ) -> None:
        """The next sbatch fails. "refuse": Slurm refuses it (invalid partition), nothing is submitted.
        "timeout": the job is submitted, then sbatch reports a socket time-out (exit 1). "lost": the
        connection drops while sbatch runs, after submitting it (answer files written) unless
        `submitted=False`; `stay_unreachable`: every later command fails too, until `reconnect()`."""
        self._failures.append(_Failure(kind, submitted and kind != "refuse", stay_unreachable))

    def reconnect(self) -> None:
        self.unreachable = False

    def start_job(self, job: str | SlurmJobId) -> None:
        """Pending members of `job` (a job id, or one task / component) start running."""
        for m in self._members(job):
            if m.state == "PENDING":
                m.state, m.started = "RUNNING", True

    def finish(
        self, job: str | SlurmJobId, state: str = "COMPLETED", *, exit_code: int = 0, signal: int = 0
    ) -> None:
        """Members of `job` that have not ended end in `state` (e.g. "FAILED" with `exit_code=3`)."""
        for m in self._members(job):
            if not m.ended:
                m.state, m.exit_code, m.signal, m.started = state, exit_code, signal, True

    def forget(self, job: str | SlurmJobId) -> None:
        """slurmctld purges the job (after MinJobAge): squeue no longer lists it, sacct still does."""
        self.jobs[SlurmJobId.parse(str(job)).job_id].in_squeue = False

    def state(self, job: str | SlurmJobId) -> list[str]:
        return [m.state for m in self._members(job)]

    def _members(self, job: str | SlurmJobId) -> list[Member]:
        job_id = SlurmJobId.parse(str(job))
        if job_id.job_id not in self.jobs:
            raise KeyError(f"FakeSlurm has no job {job_id} (jobs: {sorted(self.jobs)})")
        return self.jobs[job_id.job_id].member(job_id)

    # --- the Transport protocol ---

    async def run(
        self,
        command: Command,
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        self._reachable()
        line = join_command(command)
        status, out, err = self._answer(command)
        result = CommandResult(line, status, out, err)
        return result.check() if check else result

    def _answer(self, command: Command) -> tuple[int, str, str]:
        if isinstance(command, ShellLine):
            handler = getattr(self, f"_kind_{command.kind}", None)
            if handler is not None:
                return handler(command)
        elif not isinstance(command, str):
            argv = [str(word) for word in command]
            handler = getattr(self, f"_run_{argv[0].rsplit('/', 1)[-1]}", None) if argv else None
            if handler is not None:
                return handler(argv)
        return 127, "", f"FakeSlurm: {join_command(command)[:300]!r} is not faked\n"

    async def start(self, command: Command) -> StreamingProcess:
        self._reachable()
        if not (isinstance(command, ShellLine) and command.kind == "follow"):
            raise AssertionError(f"FakeSlurm: {join_command(command)!r} is not a log follow")
        count, path = int(command.argv[2]), command.argv[-1]
        return FixedLines(self._lines(path)[-count:] if count else [])

    async def read_text(self, path: str) -> str:
        self._reachable()
        found = self._files.get(self._path(path))
        if found is None:
            raise FileNotFoundError(f"FakeSlurm: no file {path}")
        return found.data

    async def write_text(self, path: str, data: str, *, mode: int = 0o600) -> None:
        self._reachable()
        full = self._path(path)
        if posixpath.dirname(full) not in self._dirs:
            raise FileNotFoundError(f"FakeSlurm: no folder {posixpath.dirname(full)} for {path}")
        self._files[full] = _File(data, mode, time.time())

    async def mkdir(self, path: str, *, mode: int = 0o700, parents: bool = True) -> None:
        self._reachable()
        full = self._path(path)
        while full not in self._dirs:
            self._dirs.add(full)
            full = posixpath.dirname(full)

    async def stat(self, path: str) -> FileStat:
        self._reachable()
        full = self._path(path)
        if full in self._dirs:
            return FileStat(4096, stat_module.S_IFDIR | 0o700, 0.0)
        found = self._files.get(full)
        if found is None:
            raise FileNotFoundError(f"FakeSlurm: no file {path}")
        return FileStat(len(found.data.encode()), stat_module.S_IFREG | found.mode, found.mtime)

    async def close(self) -> None:
        return None  # the cluster outlives every connection to it

    def _reachable(self) -> None:
        if self.unreachable:
            raise ConnectionLostError(
                f"FakeSlurm {self.config.destination}: connection refused (unreachable)"
            )

    def _path(self, path: str) -> str:
        if path.startswith("~/"):
            path = path[2:]
        return posixpath.normpath(posixpath.join(self.home, path))

    def _lines(self, path: str) -> list[str]:
        found = self._files.get(self._path(path))
        return [] if found is None else found.data.splitlines()

    # --- the scheduler's shell lines, by kind ---

    def _kind_state_root(self, line: ShellLine) -> tuple[int, str, str]:
        return 0, self.state_dir, ""

    def _kind_limits(self, line: ShellLine) -> tuple[int, str, str]:
        config, _, _ = (DATA / "limits_read.txt").read_text().partition("#xm-slurm-partitions\n")
        config = re.sub(
            r"(?m)^MaxArraySize\s*=.*$", f"MaxArraySize            = {self.max_array_size}", config
        )
        names = [f"{p}{'*' if i == 0 else ''}|(null)|(null)\n" for i, p in enumerate(self.partitions)]
        return 0, f"{config}#xm-slurm-partitions\n{''.join(names)}#xm-slurm-end\n", ""

    def _kind_tail(self, line: ShellLine) -> tuple[int, str, str]:
        count, path = int(line.argv[2]), line.argv[-1]
        lines = self._lines(path)[-count:] if count else []
        return 0, "".join(f"{x}\n" for x in lines), ""

    def _kind_sbatch_answer(self, line: ShellLine) -> tuple[int, str, str]:
        rc, out, err = (self._files.get(self._path(line.files[k])) for k in ("rc", "out", "err"))
        if rc is None:
            return 124, "", ""  # `timeout` gave up waiting for the rc file
        return 0, f"{rc.data}{out.data if out else ''}\x1e{err.data if err else ''}", ""

    def _kind_submission_lookup(self, line: ShellLine) -> tuple[int, str, str]:
        return self._run_squeue(list(line.argv))

    def _kind_sbatch(self, line: ShellLine) -> tuple[int, str, str]:
        if self.on_sbatch is not None:
            self.on_sbatch()
        argv = list(line.argv)
        failure = self._failures.pop(0) if self._failures else None
        if failure is None or failure.kind == "refuse":
            status, out, err = self._sbatch(argv, refuse=failure is not None)
            self._record_answer(line, status, out, err)
            return status, out, err
        status, out, err = 1, "", _TIMED_OUT  # a time-out; a lost connection prints nothing at all
        if failure.submitted:
            status, out, err = self._sbatch(argv, refuse=False)
            if failure.kind == "timeout" and status == 0:
                status, out, err = 1, "", _TIMED_OUT  # slurmctld took it, the answer did not come back
        if failure.submitted or failure.kind == "timeout":
            self._record_answer(line, status, out, err)
        if failure.kind == "lost":
            self.unreachable = failure.stay_unreachable
            raise ConnectionLostError(f"FakeSlurm {self.config.destination}: connection lost during sbatch")
        return status, out, err

    def _record_answer(self, line: ShellLine, status: int, out: str, err: str) -> None:
        """What the real wrapper leaves next to the script: sbatch's stdout, stderr, then its exit status."""
        for kind, text in (("out", out), ("err", err), ("rc", f"{status}\n")):
            self._files[self._path(line.files[kind])] = _File(text, 0o600, time.time())

    def _sbatch(self, argv: list[str], *, refuse: bool) -> tuple[int, str, str]:
        script_path = argv[-1]
        script = self._files.get(self._path(script_path))
        if script is None:
            return 1, "", f"sbatch: error: Unable to open file {script_path}\n"
        options, components = sbatch_options(script.data, argv)
        partition = options.get("--partition") or self.partitions[0]
        unknown = [p for p in partition.split(",") if p not in self.partitions]
        if refuse or unknown:
            name = unknown[0] if unknown else "nosuchpartition"
            refused = (DATA / "sbatch_refused.stderr").read_text().replace("nosuchpartition", name)
            return 1, "", refused
        tasks = array_tasks(options["--array"]) if "--array" in options else None
        if tasks is not None and max(tasks) >= self.max_array_size:
            return 1, "", "sbatch: error: Batch job submission failed: Invalid job array specification\n"
        job_id = self._next_id
        self._next_id += components  # a hetjob's components take consecutive ids, as in Slurm
        if tasks is not None:
            members = [Member(f"{job_id}_{t}") for t in tasks]
        elif components > 1:
            members = [Member(f"{job_id}+{k}") for k in range(components)]
        else:
            members = [Member(str(job_id))]
        comment = next((w.split("=", 1)[1] for w in argv if w.startswith("--comment=")), "")
        self.jobs[job_id] = FakeJob(
            job_id=job_id,
            argv=tuple(argv),
            script=self._path(script_path),
            token=comment.rpartition("=")[2],
            partition=partition,
            name=options.get("--job-name", posixpath.basename(script_path)),
            held="--hold" in options,
            dependency=options.get("--dependency", ""),
            array_tasks=tasks,
            members=members,
            workdir=self.home,
        )
        return 0, f"{job_id}\n", ""

    # --- argv commands, by program ---

    def _run_squeue(self, argv: list[str]) -> tuple[int, str, str]:
        wanted = _option(argv, "-j", "--jobs")
        fields = _fields(_option(argv, "-O", "--Format") or _option(argv, "-o", "--format") or "%i")
        jobs = [j for j in self._named(wanted) if j.in_squeue]
        if wanted is not None and not jobs:
            return 1, "", (DATA / "squeue_invalid_id.stderr").read_text()
        rows = [
            "|".join(squeue_field(job, shown, m, f) for f in fields)
            for job in jobs
            for shown, m in squeue_rows(job, expand="-r" in argv)
        ]
        return 0, "".join(f"{row}\n" for row in rows), ""

    def _run_sacct(self, argv: list[str]) -> tuple[int, str, str]:
        fields = (_option(argv, "--format", "-o") or "JobID,JobName,Partition,State,ExitCode").split(",")
        rows = [
            "|".join(sacct_field(job, shown, m, f) for f in fields)
            for job in self._named(_option(argv, "-j", "--jobs"))
            for shown, m in sacct_rows(job)
        ]
        return 0, "".join(f"{row}\n" for row in rows), ""

    def _run_scancel(self, argv: list[str]) -> tuple[int, str, str]:
        signal = _option(argv, "--signal", "-s")
        ids = [w for w in argv[1:] if not w.startswith("-") and w not in (signal, _option(argv, "-M"))]
        self.scancelled += ids
        if signal is None:
            for word in ids:
                job_id = SlurmJobId.parse(word)
                job = self.jobs.get(job_id.job_id)
                for m in job.member(job_id) if job is not None else []:
                    if not m.ended:
                        m.signal = 15 if m.state == "RUNNING" else 0
                        m.state = "CANCELLED"
        return 0, "", ""  # Slurm 22.05: silent, exit 0, even for ids no job has

    def _run_rm(self, argv: list[str]) -> tuple[int, str, str]:
        for target in (self._path(w) for w in argv[argv.index("--") + 1 :]):
            self._files = {
                p: f for p, f in self._files.items() if p != target and not p.startswith(f"{target}/")
            }
            self._dirs = {d for d in self._dirs if d != target and not d.startswith(f"{target}/")}
        return 0, "", ""

    def _named(self, ids: str | None) -> list[FakeJob]:
        if ids is None:
            return list(self.jobs.values())
        bases = {SlurmJobId.parse(word).job_id for word in ids.split(",") if word}
        return [job for base, job in self.jobs.items() if base in bases]


def _option(argv: Sequence[str], *names: str) -> str | None:
    """The value of `--name=value`, `--name value` or `-n value` in argv."""
    for i, word in enumerate(argv):
        for name in names:
            if word.startswith(f"{name}=") and name.startswith("--"):
                return word.split("=", 1)[1]
            if word == name and i + 1 < len(argv):
                return argv[i + 1]
    return None


def _fields(spec: str) -> list[str]:
    """squeue's `-O 'JobArrayID:|,State:|'` or `-o '%i|%k'` as field names."""
    if "%" in spec:
        return re.findall(r"%[A-Za-z]", spec)
    return [part.split(":", 1)[0] for part in spec.split(",") if part]
