"""The scheduler layer end to end on the real local cluster: hand-written sbatch scripts, real sacct/squeue."""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import AsyncIterator

import pytest
from counting_transport import CountingTransport

from xm_slurm.errors import SubmissionError, ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import JobWatcher, cancel, follow, get_job_states, state_root, submit, tail
from xm_slurm.status import SlurmJobState as S
from xm_slurm.status import SlurmWorkUnitStatus
from xm_slurm.transport import CommandResult, LocalTransport, SSHTransport, Transport

pytestmark = pytest.mark.cluster
WAIT = 120  # generous upper bound for a wait; tests end as soon as the jobs do


def script(workdir: str, body: str, *options: str) -> str:
    lines = ["#!/bin/bash", f"#SBATCH --output={workdir}/%x-%j.out", "#SBATCH --time=5"]
    lines += [f"#SBATCH {o}" for o in options]
    return "\n".join([*lines, body, ""])


async def watch(transport: Transport, *job_ids: SlurmJobId, **kw: float) -> dict[SlurmJobId, object]:
    watcher = JobWatcher(transport, min_interval=0.3, max_interval=2.0, **kw)
    try:
        return dict(await watcher.wait(job_ids, timeout=WAIT))
    finally:
        await watcher.aclose()


# --- a job killed at its time limit takes 60-90 s (Slurm's minimum limit is 1 minute). It is submitted by the
# first test of this module and checked by the last, so it runs while the other tests do.


@pytest.fixture(scope="module")
async def timeout_job(sched_ssh: SSHTransport) -> AsyncIterator[tuple[SlurmJobId, float]]:
    directory = f"/tmp/xm-sched-timeout-{time.time_ns()}"
    jid = await submit(
        sched_ssh,
        "#!/bin/bash\n#SBATCH --time=1\n#SBATCH --output=/dev/null\nsleep 600\n",
        directory=directory,
        name="timeout.sh",
    )
    yield jid, time.time()
    await cancel(sched_ssh, [jid])
    await sched_ssh.run(["rm", "-rf", directory])


async def test_submit_then_completed(any_transport: Transport, workdir: str, timeout_job: object) -> None:
    jid = await submit(
        any_transport, script(workdir, "echo hello from $SLURM_JOB_ID"), directory=workdir, name="ok.sh"
    )
    st_dir, st_script = await any_transport.stat(workdir), await any_transport.stat(f"{workdir}/ok.sh")
    assert (st_dir.permissions, st_script.permissions) == (0o700, 0o700)
    for kind in ("out", "err", "rc"):  # sbatch's recorded answer: private like the script
        assert (await any_transport.stat(f"{workdir}/ok.sh.1.sbatch-{kind}")).permissions == 0o600, kind
    final = await watch(any_transport, jid)
    assert final[jid].state is S.COMPLETED  # type: ignore[attr-defined]
    assert await tail(any_transport, f"{workdir}/ok.sh-{jid.job_id}.out") == [f"hello from {jid.job_id}"]


async def test_submission_refused_and_bad_input(sched_ssh: SSHTransport, workdir: str) -> None:
    with pytest.raises(SubmissionError, match="invalid partition"):
        await submit(
            sched_ssh, script(workdir, "true", "--partition=nosuchpartition"), directory=workdir, name="r.sh"
        )
    with pytest.raises(ValidationError, match=re.escape("'../x.sh'")):
        await submit(sched_ssh, "#!/bin/sh\n", directory=workdir, name="../x.sh")
    with pytest.raises(ValidationError, match="interpreter line"):
        await submit(sched_ssh, "echo no shebang\n", directory=f"{workdir}/never", name="x.sh")
    assert not await sched_ssh.exists(f"{workdir}/never")  # refused before any side effect


async def test_state_root_follows_environment(sched_ssh: SSHTransport) -> None:
    root = await state_root(sched_ssh)
    assert root.endswith("/xm-slurm") and root.startswith("/")


async def test_array_of_20_one_squeue_per_poll(sched_ssh: SSHTransport, workdir: str) -> None:
    counting = CountingTransport(sched_ssh)
    jid = await submit(
        counting,
        script(workdir, "echo task $SLURM_ARRAY_TASK_ID", "--array=0-19"),
        directory=workdir,
        name="a.sh",
    )
    tasks = [jid.task(i) for i in range(20)]
    watcher = JobWatcher(counting, min_interval=0.3, max_interval=2.0)
    watcher.register(jid, array_size=20)
    final = await watcher.wait([*tasks, jid], timeout=WAIT)
    await watcher.aclose()
    assert [final[t].state for t in tasks] == [S.COMPLETED] * 20
    assert final[jid].state is S.COMPLETED
    # ONE squeue per poll for 21 ids; squeue still lists every task, so sacct is never needed.
    assert watcher.polls >= 1 and counting.counts["squeue"] == watcher.polls
    assert counting.counts["sacct"] == 0
    logs = (await sched_ssh.run(f"cat {shlex.quote(workdir)}/a.sh-*.out | sort -n -k2")).stdout.splitlines()
    assert logs == [f"task {i}" for i in range(20)]


async def test_hetjob_components(sched_ssh: SSHTransport, workdir: str) -> None:
    # Held, because the single-node test cluster cannot start a hetjob (its components need separate nodes);
    # a pending hetjob would also block the queue for other tests.
    body = "#!/bin/bash\n#SBATCH --output=/dev/null\n#SBATCH -n1 --time=1 --hold\n#SBATCH hetjob\n#SBATCH -n1 --time=1\ntrue\n"
    jid = await submit(sched_ssh, body, directory=workdir, name="het.sh")
    comps = [jid.component(0), jid.component(1)]
    try:
        states = await get_job_states(sched_ssh, [*comps, jid], submitted_at={c: time.time() for c in comps})
        assert [states[c].state for c in comps] == [S.PENDING, S.PENDING]
    finally:
        await cancel(sched_ssh, [jid])
    final = await watch(sched_ssh, *comps)
    assert all(final[c].state is S.CANCELLED for c in comps)  # type: ignore[attr-defined]


async def test_afterok_chain(sched_ssh: SSHTransport, workdir: str) -> None:
    marker = f"{workdir}/first-done"
    first = await submit(
        sched_ssh, script(workdir, f"sleep 2; touch {marker}"), directory=workdir, name="first.sh"
    )
    second = await submit(
        sched_ssh,
        script(workdir, f"cat {marker}", f"--dependency=afterok:{first}"),
        directory=workdir,
        name="second.sh",
    )
    early = (await get_job_states(sched_ssh, [second], submitted_at={second: time.time()}))[second]
    assert early.state is S.PENDING
    final = await watch(sched_ssh, first, second)
    assert final[first].state is S.COMPLETED and final[second].state is S.COMPLETED  # type: ignore[attr-defined]


async def test_cancelled_job(sched_ssh: SSHTransport, workdir: str) -> None:
    jid = await submit(sched_ssh, script(workdir, "sleep 300"), directory=workdir, name="c.sh")
    await cancel(sched_ssh, [jid])
    final = await watch(sched_ssh, jid)
    status = SlurmWorkUnitStatus([final[jid]])  # type: ignore[list-item]
    assert status.is_cancelled and not status.is_active and not status.is_failed
    await cancel(sched_ssh, [jid])  # cancelling a finished job again is fine


async def test_failing_job_reports_exit_code(sched_ssh: SSHTransport, workdir: str) -> None:
    jid = await submit(
        sched_ssh, script(workdir, "echo about to fail >&2; exit 3"), directory=workdir, name="f.sh"
    )
    final = (await watch(sched_ssh, jid))[jid]
    assert (final.state, final.exit_code) == (S.FAILED, 3)  # type: ignore[attr-defined]
    assert "exit code 3" in SlurmWorkUnitStatus([final]).message  # type: ignore[list-item]


class _NoAccountingTransport(Transport):
    """Runs the REAL sacct with a slurm.conf copy that has accounting switched off, so it fails for real."""

    def __init__(self, inner: Transport, conf: str) -> None:
        self.inner, self.conf = inner, conf

    async def run(self, command, **kw):  # type: ignore[no-untyped-def,override]
        if not isinstance(command, str) and command[0] == "sacct":
            command = ["env", f"SLURM_CONF={self.conf}", *command]
        result: CommandResult = await self.inner.run(command, **kw)
        return result

    async def start(self, command):  # type: ignore[no-untyped-def,override]
        return await self.inner.start(command)

    read_text = write_text = mkdir = stat = close = None  # type: ignore[assignment]


async def test_squeue_fallback_when_accounting_is_disabled(sched_ssh: SSHTransport, workdir: str) -> None:
    conf = f"{workdir}/noacct.conf"
    await sched_ssh.mkdir(workdir)
    original = await sched_ssh.read_text("/etc/slurm/slurm.conf")
    lines = [ln for ln in original.splitlines() if not ln.startswith("AccountingStorage")]
    await sched_ssh.write_text(conf, "\n".join([*lines, "AccountingStorageType=accounting_storage/none", ""]))
    broken = _NoAccountingTransport(sched_ssh, conf)
    probe = await broken.run(["sacct", "-X", "-n", "-j", "1"], check=False)
    assert probe.exit_status == 1 and "accounting storage is disabled" in probe.stderr

    ok = await submit(sched_ssh, script(workdir, "true"), directory=workdir, name="ok.sh")
    bad = await submit(sched_ssh, script(workdir, "exit 4"), directory=workdir, name="bad.sh")
    counting = CountingTransport(broken)  # type: ignore[arg-type]
    final = await watch(counting, ok, bad)
    assert final[ok].state is S.COMPLETED  # type: ignore[attr-defined]
    assert (final[bad].state, final[bad].exit_code) == (S.FAILED, 4)  # type: ignore[attr-defined]
    assert all(s.source == "squeue" for s in final.values())  # type: ignore[attr-defined]
    assert counting.counts["sacct"] == 0  # squeue still lists both: accounting was never needed

    # A job squeue does not list (id 1 is long gone) needs sacct, which fails: the others still get their
    # answer from squeue, and a watcher then stops asking sacct.
    gone = SlurmJobId.parse("1")
    watcher = JobWatcher(counting)
    for _ in range(2):
        states = await watcher.poll([ok, bad, gone], max_age=0)
        assert (states[ok].state, states[ok].source) == (S.COMPLETED, "squeue")
        assert (states[bad].state, states[bad].exit_code) == (S.FAILED, 4)
        assert (states[gone].state, states[gone].source) == (S.PENDING, "grace")  # just registered
    await watcher.aclose()
    assert counting.counts["sacct"] == 1  # tried once, then squeue only


async def test_running_is_reported_while_the_job_runs(sched_ssh: SSHTransport, workdir: str) -> None:
    """sacct says PENDING for the whole run of a short job (slurmdbd lags); squeue's live view says RUNNING."""
    marker = f"{workdir}/release"
    body = f"while [ ! -e {marker} ]; do sleep 0.2; done"  # runs until the test has seen it RUNNING
    jid = await submit(sched_ssh, script(workdir, body), directory=workdir, name="run.sh")
    counting = CountingTransport(sched_ssh)
    seen: list[S] = []
    try:
        deadline = time.monotonic() + WAIT
        while S.RUNNING not in seen and time.monotonic() < deadline:
            state = (await get_job_states(counting, [jid], submitted_at={jid: time.time()}))[jid]
            if not seen or seen[-1] is not state.state:
                seen.append(state.state)
            assert state.state in (S.PENDING, S.RUNNING), state
            if state.state is S.RUNNING:
                assert state.source == "squeue"
            else:
                await asyncio.sleep(0.2)
    finally:
        await sched_ssh.run(["touch", marker])
    assert seen[-1] is S.RUNNING, seen
    final = await watch(counting, jid)
    assert final[jid].state is S.COMPLETED  # type: ignore[attr-defined]
    assert counting.counts["sacct"] == 0  # the controller knew the job the whole time


class _ForgetfulSqueue(Transport):
    """Runs the REAL squeue, but without the `forget` ids in its -j list: as when squeue has purged them."""

    def __init__(self, inner: Transport, forget: set[str]) -> None:
        self.inner, self.forget = inner, forget

    async def run(self, command, **kw):  # type: ignore[no-untyped-def,override]
        if not isinstance(command, str) and command[0] == "squeue" and "-j" in command:
            at = command.index("-j") + 1
            kept = [j for j in command[at].split(",") if j not in self.forget]
            command = [*command[:at], ",".join(kept) or "1", *command[at + 1 :]]  # "1": an id long gone
        result: CommandResult = await self.inner.run(command, **kw)
        return result

    async def start(self, command):  # type: ignore[no-untyped-def,override]
        return await self.inner.start(command)

    read_text = write_text = mkdir = stat = close = None  # type: ignore[assignment]


async def test_jobs_squeue_forgot_are_resolved_by_sacct(sched_ssh: SSHTransport, workdir: str) -> None:
    old = await submit(sched_ssh, script(workdir, "exit 5"), directory=workdir, name="old.sh")
    arr = await submit(sched_ssh, script(workdir, "true", "--array=0-3"), directory=workdir, name="arr.sh")
    await watch(sched_ssh, old, *(arr.task(i) for i in range(4)))
    recent = await submit(sched_ssh, script(workdir, "exit 6"), directory=workdir, name="recent.sh")
    await watch(sched_ssh, recent)

    # Everyone asks about old, recent and the array; squeue "forgot" old and the array.
    counting = CountingTransport(_ForgetfulSqueue(sched_ssh, {str(old.job_id), str(arr.job_id)}))  # type: ignore[arg-type]
    watcher = JobWatcher(counting, min_interval=0.3, max_interval=2.0)
    watcher.register(arr, array_size=4)
    final = await watcher.wait([old, recent, arr, arr.task(2)], timeout=WAIT)
    await watcher.aclose()
    assert (final[old].state, final[old].exit_code, final[old].source) == (S.FAILED, 5, "sacct")
    assert (final[recent].state, final[recent].exit_code, final[recent].source) == (S.FAILED, 6, "squeue")
    assert (final[arr].state, final[arr.task(2)].state) == (S.COMPLETED, S.COMPLETED)
    assert final[arr.task(2)].source == "sacct"
    # One round: ONE squeue for all, then ONE sacct for just the two squeue no longer lists.
    assert watcher.polls >= 1 and counting.counts["squeue"] == counting.counts["sacct"] == watcher.polls
    asked = [c.rsplit(" -j ", 1)[1].split(",") for c in counting.commands if c.startswith("sacct ")]
    forgotten = sorted([str(old.job_id), str(arr.job_id)], key=int)
    assert asked[0] == forgotten and all(set(a) <= set(forgotten) for a in asked), asked


async def test_tail_and_follow_log(any_transport: Transport, workdir: str) -> None:
    body = "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done; echo 'last line'"
    jid = await submit(any_transport, script(workdir, body), directory=workdir, name="log.sh")
    log_path = f"{workdir}/log.sh-{jid.job_id}.out"
    watcher = JobWatcher(any_transport, min_interval=0.3, max_interval=1.0)
    lines = [line async for line in follow(any_transport, log_path, num_lines=100, until=watcher.wait([jid]))]
    await watcher.aclose()
    assert lines == [f"line {i}" for i in range(1, 6)] + ["last line"]
    assert await tail(any_transport, log_path, 2) == ["line 5", "last line"]
    assert await tail(any_transport, f"{workdir}/not-yet.out") == []

    # The caller may stop early; the remote tail ends with the channel.
    async for line in follow(any_transport, log_path, num_lines=1):
        assert line == "last line"
        break
    if isinstance(any_transport, LocalTransport):
        await asyncio.sleep(0)  # nothing to check remotely


async def test_time_limit_gives_timeout(
    sched_ssh: SSHTransport, timeout_job: tuple[SlurmJobId, float]
) -> None:
    jid, _submitted = timeout_job
    final = (await watch(sched_ssh, jid))[jid]
    assert final.state is S.TIMEOUT  # type: ignore[attr-defined]
    assert SlurmWorkUnitStatus([final]).is_failed  # type: ignore[list-item]
