"""Capture real Slurm output from the local test cluster into tests/scheduler/data (what FakeSlurm imitates).

    uv run --frozen python tests/fakes/capture_slurm_data.py [--force]

Runs on the cluster machine itself (the local cluster of `scripts/local-cluster up`), as the cluster user,
and submits a few small jobs to the test partition; every job it submits ends (or is cancelled) before it
returns. It runs the library's own command lines where the library builds them (the sbatch wrapper, the
limits read, the status and token look-ups), so the files show what those exact commands print. Files
that exist already are kept unless `--force`. What each file holds is listed in tests/scheduler/data/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from local_cluster import load_local_cluster  # noqa: E402

from xm_slurm.job_ids import SlurmJobId  # noqa: E402
from xm_slurm.scheduler.limits import READ_COMMAND  # noqa: E402
from xm_slurm.scheduler.states import sacct_commands, squeue_commands  # noqa: E402
from xm_slurm.scheduler.submit import _sbatch_line, new_submission_token  # noqa: E402

DATA = REPO / "tests" / "scheduler" / "data"
WAIT = 300.0  # seconds for a job to reach the state asked for (slurmdbd may lag by minutes)


def run(command: str | Sequence[str]) -> subprocess.CompletedProcess[str]:
    argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
    return subprocess.run(argv, capture_output=True, text=True, check=False)


class Capture:
    def __init__(self, force: bool) -> None:
        self.force = force
        self.written: list[str] = []

    def wanted(self, *names: str) -> bool:
        return self.force or not all((DATA / n).exists() for n in names)

    def text(self, name: str, command: str | Sequence[str]) -> None:
        """stdout of a command that must succeed, as `name`."""
        if not self.wanted(name):
            return
        result = run(command)
        if result.returncode != 0:
            raise SystemExit(f"{command!r} failed ({result.returncode}): {result.stderr}")
        self._write(name, result.stdout)

    def outcome(self, stem: str, command: str | Sequence[str]) -> None:
        """stdout, stderr and exit status of a command, as `stem.stdout|.stderr|.rc`."""
        if not self.wanted(f"{stem}.stdout", f"{stem}.stderr", f"{stem}.rc"):
            return
        result = run(command)
        self._write(f"{stem}.stdout", result.stdout)
        self._write(f"{stem}.stderr", result.stderr)
        self._write(f"{stem}.rc", f"{result.returncode}\n")

    def _write(self, name: str, text: str) -> None:
        (DATA / name).write_text(text)
        self.written.append(name)


def wait_until(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)  # nothing to await: Slurm tells no one when a job changes state


def squeue_states(job: str) -> list[str]:
    return run(["squeue", "-h", "-r", "-t", "all", "-j", job, "-o", "%T"]).stdout.split()


def sacct_states(job: str) -> list[str]:
    rows = run(["sacct", "-X", "-P", "-n", "-o", "JobID,State", "-j", job]).stdout.splitlines()
    return [row.split("|")[1] for row in rows if "|" in row]


def ended(states: list[str]) -> bool:
    return bool(states) and all(s not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING") for s in states)


def submitted_rows(job: str) -> int:
    """Rows accounting has for the job, counted once each has its submit line."""
    lines = run(["sacct", "-X", "-P", "-n", "-o", "SubmitLine", "-j", job]).stdout.splitlines()
    return len(lines) if all(line.strip() for line in lines) else 0


def accounted(job: str, rows: int) -> bool:
    """Accounting has `rows` final rows for the job (its tasks, for an array), each with its submit line."""
    found = run(["sacct", "-X", "-P", "-n", "-o", "State,SubmitLine", "-j", job]).stdout.splitlines()
    final = [r for r in found if ended([r.split("|")[0]]) and r.split("|", 1)[1].strip()]
    return len(found) == len(final) == rows


def submit(folder: Path, name: str, script: str, options: Sequence[str] = ()) -> tuple[str, str]:
    """Submit through the library's sbatch wrapper (token in --comment, answer files); (job id, token)."""
    path = folder / name
    path.write_text(script)
    path.chmod(0o700)
    token = new_submission_token()
    result = run(str(_sbatch_line(str(path), list(options), token, 1)))
    if result.returncode != 0:
        raise SystemExit(f"sbatch {name} failed: {result.stderr}")
    return str(SlurmJobId.from_sbatch_parsable(result.stdout)), token


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--force", action="store_true", help="capture again files that exist")
    args = parser.parse_args(argv)
    cluster = load_local_cluster(REPO / ".local-cluster" / "env.sh")
    capture = Capture(args.force)
    partition = f"--partition={cluster.partition}"
    user = run(["id", "-un"]).stdout.strip()
    submitted: list[str] = []
    with tempfile.TemporaryDirectory(prefix="xm-capture-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)  # slurmd runs the scripts from here
        out = f"--output={folder}/slurm-%A_%a.out"
        try:
            capture.text("limits_read.txt", str(READ_COMMAND))

            # A job that ends well, one that fails (exit 3), and an array whose odd tasks fail.
            ok, ok_token = submit(folder, "ok.sh", "#!/bin/bash\ntrue\n", [partition, out])
            bad, _ = submit(folder, "bad.sh", "#!/bin/bash\nexit 3\n", [partition, out])
            odd = "#!/bin/bash\ntest $((SLURM_ARRAY_TASK_ID % 2)) -eq 0 || exit 3\n"
            arr, arr_token = submit(folder, "odd.sh", odd, [partition, out, "--array=0-3"])
            submitted += [ok, bad, arr]
            # The sbatch wrapper's answer files of the first submission.
            if capture.wanted("sbatch_answer.out", "sbatch_answer.rc"):
                capture._write("sbatch_answer.out", (folder / "ok.sh.1.sbatch-out").read_text())
                capture._write("sbatch_answer.rc", (folder / "ok.sh.1.sbatch-rc").read_text())
            for job in (ok, bad, arr):
                wait_until(f"job {job} to end in squeue", lambda job=job: ended(squeue_states(job)))
            ids = [SlurmJobId.parse(j) for j in (ok, bad, arr)]
            [squeue] = squeue_commands(ids)
            capture.text("squeue_O_array_failed.txt", squeue)
            for job, rows in ((ok, 1), (bad, 1), (arr, 4)):
                wait_until(f"job {job} in accounting", lambda job=job, rows=rows: accounted(job, rows))
            [sacct] = sacct_commands(ids)
            capture.text("sacct_X_array_failed.txt", sacct)
            # scancel of a job that has ended, of an unknown id.
            capture.outcome("scancel_completed", ["scancel", ok])
            capture.outcome("scancel_invalid_id", ["scancel", "987654321"])

            # Held jobs: a single job, an array (one pending range row) and a two-component hetjob.
            held, held_token = submit(folder, "held.sh", "#!/bin/bash\ntrue\n", [partition, out, "--hold"])
            harr, _ = submit(
                folder, "harr.sh", "#!/bin/bash\ntrue\n", [partition, out, "--hold", "--array=0-3"]
            )
            het_script = "#!/bin/bash\n#SBATCH --ntasks=1\n#SBATCH hetjob\n#SBATCH --ntasks=1\ntrue\n"
            het, _ = submit(folder, "het.sh", het_script, [partition, out, "--hold"])
            submitted += [held, harr, het]
            wait_until("the held jobs in squeue", lambda: all(squeue_states(j) for j in (held, harr, het)))
            for job, rows in ((held, 1), (harr, 1), (het, 2)):  # pending: the array is one range row
                wait_until(f"job {job} in accounting", lambda job=job, rows=rows: submitted_rows(job) == rows)
            hids = [SlurmJobId.parse(j) for j in (held, harr, het)]
            [squeue] = squeue_commands(hids)
            capture.text("squeue_O_held.txt", squeue)
            joined = ",".join(map(str, (held, harr, het)))
            capture.text("squeue_preflight.txt", ["squeue", "-h", "-j", joined, "-o", "%i|%A|%F"])
            # The token look-ups of scheduler.submit.find_submission, restricted to this script's jobs
            # (the library asks for every job of the user; the rows have the same form).
            every = ",".join(map(str, (ok, bad, arr, held, harr, het)))
            capture.text(
                "squeue_token_lookup.txt",
                f'squeue -h --states=all --user="$(id -un)" -o "%i|%k" -j {every}',
            )
            capture.text(
                "sacct_token_lookup.txt",
                [
                    "sacct",
                    "-n",
                    "-X",
                    "-P",
                    "--starttime=now-7days",
                    "--format=JobID,Comment,SubmitLine",
                    "-j",
                    every,
                ],
            )
            capture.text(
                "sacct_submit_lines.txt",
                ["sacct", "-X", "-P", "-n", "--format=JobID,WorkDir,SubmitLine", "-j", every],
            )
            capture.text(
                "sacct_preflight.txt", ["sacct", "-n", "-X", "-P", "-j", every, "-o", "JobID,JobIDRaw"]
            )
            # scancel of pending jobs succeeds silently; what accounting says of them afterwards.
            capture.outcome("scancel_pending", ["scancel", held, harr, het])
            for job in (held, harr, het):
                wait_until(f"job {job} cancelled in accounting", lambda job=job: ended(sacct_states(job)))
                wait_until(f"job {job} cancelled in squeue", lambda job=job: ended(squeue_states(job)))
            [sacct] = sacct_commands(hids)
            capture.text("sacct_X_held_cancelled.txt", sacct)
            print(f"tokens used: {ok_token} {arr_token} {held_token}", file=sys.stderr)
        finally:
            if submitted:
                run(["scancel", *submitted])
    print(f"user {user}; wrote {', '.join(capture.written) or 'nothing (use --force)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
