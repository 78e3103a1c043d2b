"""Arrays cancelled while every task was pending: sacct keeps ONE bare row for them, which answers each task."""

from __future__ import annotations

import asyncio

import pytest

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import cancel, submit
from xm_slurm.scheduler.states import Row, parse_sacct, resolve, sacct_commands
from xm_slurm.status import SlurmJobState as S
from xm_slurm.transport import SSHTransport


def test_bare_cancelled_row_answers_tasks_without_rows() -> None:
    # Captured from the local cluster (Slurm 22.05): `--array=1,3 --hold`, then scancel.
    rows = parse_sacct("3162|CANCELLED by 0|0:0|None\n3161_[1]|CANCELLED by 0|0:0|None\n")
    asked = [SlurmJobId(3162, array_task=1), SlurmJobId(3162, array_task=3), SlurmJobId(3161, array_task=1)]
    answers = resolve(asked, rows)
    assert {j: a.state for j, a in answers.items()} == dict.fromkeys(asked, S.CANCELLED)


def test_bare_row_in_another_state_does_not_answer_tasks() -> None:
    # A bare row that is not a cancellation (e.g. accounting lagging a running array) says nothing about a
    # task's own end: the task stays PENDING until its own row appears.
    rows = parse_sacct("77|PENDING|0:0|None\n78|COMPLETED|0:0|None\n")
    answers = resolve([SlurmJobId(77, array_task=0), SlurmJobId(78, array_task=0)], rows)
    assert [a.state for a in answers.values()] == [S.PENDING, S.PENDING]
    # ... while a task's own row always wins over the bare row.
    own = resolve([SlurmJobId(79, array_task=2)], [*parse_sacct("79|CANCELLED|0:0|\n79_2|FAILED|3:0|\n")])
    assert own[SlurmJobId(79, array_task=2)].state is S.FAILED


async def _sacct_rows(transport: SSHTransport, ids: list[SlurmJobId]) -> list[Row]:
    rows: list[Row] = []
    for argv in sacct_commands(ids):
        rows += parse_sacct((await transport.run(argv, idempotent=True)).stdout)
    return rows


@pytest.mark.cluster
async def test_cancelled_pending_arrays_resolve_from_accounting(
    sched_ssh: SSHTransport, workdir: str
) -> None:
    body = "#!/bin/bash\n#SBATCH --output=/dev/null\n#SBATCH --hold\ntrue\n"
    one = await submit(sched_ssh, body, directory=workdir, name="one.sh", sbatch_args=["--array=1"])
    two = await submit(sched_ssh, body, directory=workdir, name="two.sh", sbatch_args=["--array=1,3"])
    await cancel(sched_ssh, [one, two])
    tasks = [one.task(1), two.task(1), two.task(3)]
    # What a watcher sees once squeue has forgotten the arrays: sacct alone (slurmdbd may lag a little).
    while True:
        rows = await _sacct_rows(sched_ssh, tasks)
        if {r.job_id.job_id for r in rows} == {one.job_id, two.job_id} and all(
            r.state.is_terminal for r in rows
        ):
            break
        await asyncio.sleep(0.5)  # slurmdbd tells no one when it has the record
    answers = resolve(tasks, rows)
    assert {j: a.state for j, a in answers.items()} == dict.fromkeys(tasks, S.CANCELLED)
