"""FakeSlurm (tests/fakes) prints what the real Slurm printed: the captured submissions of
tests/scheduler/data are replayed into a fake (same sbatch command lines, so same ids and tokens), their jobs
moved to the states they had, and the fake's answers to the library's own commands compared with the
captured output. The fast tests of the experiment layer rely on this."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from fake_slurm import FakeSlurm

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import cancel, get_job_states, state_root
from xm_slurm.scheduler.limits import READ_COMMAND, parse_limits
from xm_slurm.scheduler.states import sacct_commands, squeue_commands
from xm_slurm.scheduler.submit import _sbatch_line, find_submission
from xm_slurm.status import SlurmJobState
from xm_slurm.transport import ShellLine

DATA = Path(__file__).resolve().parent / "data"
SCRIPTS = {
    "ok.sh": "#!/bin/bash\ntrue\n",
    "bad.sh": "#!/bin/bash\nexit 3\n",
    "odd.sh": "#!/bin/bash\ntest $((SLURM_ARRAY_TASK_ID % 2)) -eq 0 || exit 3\n",
    "held.sh": "#!/bin/bash\ntrue\n",
    "harr.sh": "#!/bin/bash\ntrue\n",
    "het.sh": "#!/bin/bash\n#SBATCH --ntasks=1\n#SBATCH hetjob\n#SBATCH --ntasks=1\ntrue\n",
}


def captured(name: str) -> list[str]:
    return sorted((DATA / name).read_text().splitlines())


def printed(result_stdout: str) -> list[str]:
    return sorted(result_stdout.splitlines())


async def replay() -> FakeSlurm:
    """A fake holding the captured jobs: each submitted with its captured SubmitLine, then ended as it was."""
    submit_lines = {}
    for row in (DATA / "sacct_submit_lines.txt").read_text().splitlines():
        job, _, line = row.split("|", 2)
        submit_lines.setdefault(SlurmJobId.parse(job).job_id, line)
    first = min(submit_lines)
    fake = FakeSlurm(first_job_id=first)
    for job_id, line in sorted(submit_lines.items()):
        argv = shlex.split(line)
        folder, name = argv[-1].rsplit("/", 1)
        await fake.mkdir(folder)
        await fake.write_text(argv[-1], SCRIPTS[name], mode=0o700)
        fake._next_id = job_id  # the cluster's own numbering between submissions (other users' jobs)
        files = {k: f"{argv[-1]}.1.sbatch-{k}" for k in ("out", "err", "rc")}
        result = await fake.run(ShellLine(line, kind="sbatch", argv=argv, files=files))
        assert result.stdout == f"{job_id}\n"
    ok, bad, array = first, first + 1, first + 2
    fake.finish(str(ok))
    fake.finish(str(bad), "FAILED", exit_code=3)
    for task in range(4):
        fake.finish(f"{array}_{task}", "FAILED" if task % 2 else "COMPLETED", exit_code=3 if task % 2 else 0)
    return fake


def jobs(fake: FakeSlurm) -> tuple[list[SlurmJobId], list[SlurmJobId]]:
    """(the three that ran, the three held ones)."""
    ids = [SlurmJobId(j) for j in sorted(fake.jobs)]
    return ids[:3], ids[3:]


async def test_status_commands_print_the_captured_rows() -> None:
    fake = await replay()
    ran, held = jobs(fake)
    [squeue] = squeue_commands(ran)
    assert printed((await fake.run(squeue)).stdout) == captured("squeue_O_array_failed.txt")
    [sacct] = sacct_commands(ran)
    assert printed((await fake.run(sacct)).stdout) == captured("sacct_X_array_failed.txt")
    [squeue] = squeue_commands(held)
    assert printed((await fake.run(squeue)).stdout) == captured("squeue_O_held.txt")
    ids = ",".join(str(j) for j in held)
    preflight = await fake.run(["squeue", "-h", "-j", ids, "-o", "%i|%A|%F"])
    assert printed(preflight.stdout) == captured("squeue_preflight.txt")


async def test_lookups_print_the_captured_rows() -> None:
    fake = await replay()
    lookup = await fake.run(
        ShellLine(
            "squeue ...", kind="submission_lookup", argv=["squeue", "-h", "--states=all", "-o", "%i|%k"]
        )
    )
    assert printed(lookup.stdout) == captured("squeue_token_lookup.txt")
    every = ",".join(map(str, sorted(fake.jobs)))
    token_sacct = ["sacct", "-n", "-X", "-P", "--starttime=now-7days", "--format=JobID,Comment,SubmitLine"]
    assert printed((await fake.run([*token_sacct, "-j", every])).stdout) == captured("sacct_token_lookup.txt")
    lines = await fake.run(["sacct", "-X", "-P", "-n", "--format=JobID,WorkDir,SubmitLine", "-j", every])
    # WorkDir is where sbatch ran: the capture's working folder there, the login's home here.
    fake_rows = [row.replace(f"|{fake.home}|", "|/work/main|") for row in printed(lines.stdout)]
    assert fake_rows == captured("sacct_submit_lines.txt")
    ids = await fake.run(["sacct", "-n", "-X", "-P", "-j", every, "-o", "JobID,JobIDRaw"])
    # Slurm gives a started array task a raw id of its own; the fake does not model that column.
    assert [r.split("|")[0] for r in printed(ids.stdout)] == [
        r.split("|")[0] for r in captured("sacct_preflight.txt")
    ]
    # The library's own look-up finds each job by its token, in squeue or else in sacct's SubmitLine.
    token = fake.jobs[min(fake.jobs)].token
    assert await find_submission(fake, token) == SlurmJobId(min(fake.jobs))
    for job in fake.jobs.values():
        job.in_squeue = False
    assert await find_submission(fake, token) == SlurmJobId(min(fake.jobs))


async def test_scancel_and_cancelled_jobs_print_the_captured_answers() -> None:
    fake = await replay()
    ran, held = jobs(fake)
    for stem, ids in (("scancel_completed", [str(ran[0])]), ("scancel_invalid_id", ["987654321"])):
        result = await fake.run(["scancel", *ids], check=False)
        assert (result.stdout, result.stderr, f"{result.exit_status}\n") == tuple(
            (DATA / f"{stem}.{part}").read_text() for part in ("stdout", "stderr", "rc")
        )
    await cancel(fake, held)  # the library's scancel: one command for the three
    assert fake.scancelled[-3:] == [str(j) for j in held]
    [sacct] = sacct_commands(held)
    assert printed((await fake.run(sacct)).stdout) == captured("sacct_X_held_cancelled.txt")
    states = await get_job_states(fake, [*held, held[1].task(2)])
    assert {s.state for s in states.values()} == {SlurmJobState.CANCELLED}


async def test_limits_answer_and_sbatch_answer_files_are_the_captured_ones() -> None:
    fake = await replay()
    real = parse_limits((DATA / "limits_read.txt").read_text())
    assert parse_limits((await fake.run(READ_COMMAND)).stdout) == real
    assert (real.max_array_size, [p.name for p in real.partitions or ()]) == (1001, ["debug"])
    first = fake.jobs[min(fake.jobs)].script
    assert await fake.read_text(f"{first}.1.sbatch-out") == (DATA / "sbatch_answer.out").read_text()
    assert await fake.read_text(f"{first}.1.sbatch-rc") == (DATA / "sbatch_answer.rc").read_text()
    assert await state_root(fake) == fake.state_dir


@pytest.mark.parametrize("how", ["refuse", "timeout", "lost"])
async def test_sbatch_failures_leave_the_jobs_a_real_cluster_would(how: str) -> None:
    fake = FakeSlurm()
    await fake.mkdir("/w")
    await fake.write_text("/w/a.sh", "#!/bin/bash\ntrue\n", mode=0o700)
    fake.fail_next_sbatch(how)  # type: ignore[arg-type]
    line = _sbatch_line("/w/a.sh", [], "xms-" + "0" * 24, 1)
    if how == "lost":
        with pytest.raises(Exception, match="connection lost"):
            await fake.run(line)
    else:
        result = await fake.run(line, check=False)
        refused = (DATA / "sbatch_refused.stderr").read_text()
        assert result.exit_status == 1 and result.stderr == (refused if how == "refuse" else result.stderr)
    assert len(fake.jobs) == (0 if how == "refuse" else 1)
    assert all(job.token == "xms-" + "0" * 24 for job in fake.jobs.values())
    answer = await fake.run(ShellLine("...", kind="sbatch_answer", files=line.files), check=False)
    # The wrapper recorded sbatch's answer (the lost one too): a lost connection can be recovered from.
    assert answer.exit_status == 0 and answer.stdout.split("\n")[0] == ("0" if how == "lost" else "1")
