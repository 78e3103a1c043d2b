"""The live view (`xm-slurm wait`, `show --watch`, `experiment.wait(progress=True)`) costs no status command
of its own: with 1,000 jobs tracked on the fake Slurm each tick is one status round of the cluster's watcher
(one squeue, plus one sacct once squeue no longer lists jobs), redraws read the watcher's cache. Fast: on
FakeSlurm (tests/fakes) with a real SQLite store; the same views run on the real cluster in a terminal in
test_live_terminal.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import time
from collections.abc import Callable
from typing import Any

import pytest
from counting_transport import CountingTransport
from fake_slurm import FakeSlurm
from xmanager import xm

import xm_slurm
from xm_slurm import api
from xm_slurm.cli import live
from xm_slurm.cli.selection import select_units
from xm_slurm.experiment import progress
from xm_slurm.experiment.experiment import SlurmExperiment

STATUS_PROGRAMS = {"squeue", "sacct"}


class Counted:
    """Each fake behind one counting wrapper (one per cluster, as the experiment's connections hold)."""

    def __init__(self, fake: FakeSlurm) -> None:
        self.transport = CountingTransport(fake)

    def __call__(self, config: xm_slurm.SlurmSSHConfig) -> CountingTransport:
        return self.transport


def job_on(fake: FakeSlurm) -> xm.Job:
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=fake.cluster()), time=dt.timedelta(minutes=5)
    )
    image = xm_slurm.RemoteImage(image="registry.invalid/team/train:1", entrypoint=["python", "-m", "train"])
    return xm.Job(executable=image, executor=executor, name="train")


async def launch(fake: FakeSlurm, counted: Counted, trials: int) -> int:
    async with xm_slurm.create_experiment("live budget", transport_factory=counted) as experiment:
        await experiment.add(job_on(fake), args=[{"args": {"seed": i}} for i in range(trials)])
        return experiment.experiment_id


def reopen(xid: int, counted: Counted) -> SlurmExperiment:
    """As the CLI opens it (`cli.selection.opened`), with the counting fake for its cluster."""
    client = api.client()
    return SlurmExperiment(api=client, record=client.get_experiment(xid), transport_factory=counted)


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the watcher never saw the change"
        await asyncio.sleep(0.01)


def fast(experiment: SlurmExperiment, fake: FakeSlurm, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The watcher's pace scaled down (same rules: it slows while nothing changes), redraws every 20 ms."""
    watcher = experiment.connections.watcher(fake.config)
    watcher.min_interval, watcher.max_interval = 0.02, 0.2
    monkeypatch.setattr(progress, "REFRESH_SECONDS", 0.02)
    return watcher


def ticks(commands: list[str]) -> list[list[str]]:
    """The status commands grouped by round: each round starts with its squeue."""
    rounds: list[list[str]] = []
    for program in (c.split()[0] for c in commands):
        if program == "squeue":
            rounds.append([program])
        elif program == "sacct":
            rounds[-1].append(program)
    return rounds


async def test_show_watch_with_1000_jobs_costs_one_status_round_per_tick(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeSlurm(max_array_size=1001)
    counted = Counted(fake)
    xid = await launch(fake, counted, 1000)
    experiment = reopen(xid, counted)
    units = select_units(experiment)
    watcher = fast(experiment, fake, monkeypatch)
    [base] = {j.job_id.job_id for u in units for j in u.slurm_jobs}
    ids = [j.job_id for u in units for j in u.slurm_jobs]
    assert len(ids) == 1000
    counted.transport.reset()
    screen = io.StringIO()
    view = asyncio.ensure_future(live.watch(experiment, units, stream=screen, terminal=True))
    redraws: list[str] = []

    async def step(change: Callable[[], None], seen: Callable[[], bool]) -> None:
        change()
        await until(seen)
        redraws.append(screen.getvalue())

    def state(i: int) -> str:
        status = watcher.latest(ids[i])
        return "" if status is None else status.state.value

    await until(lambda: state(999) == "PENDING")
    await step(lambda: [fake.start_job(f"{base}_{t}") for t in range(500)], lambda: state(499) == "RUNNING")
    idle = watcher.polls
    await until(lambda: watcher.polls >= idle + 4)  # nothing changes: the watcher slows, the view redraws
    await step(
        lambda: [fake.finish(f"{base}_{t}") for t in range(400)] + [fake.start_job(str(base))],
        lambda: state(999) == "RUNNING",
    )
    await step(
        lambda: [fake.finish(f"{base}_{t}", "FAILED", exit_code=3) for t in range(400, 410)],
        lambda: state(409) == "FAILED",
    )
    # slurmctld forgets the job (MinJobAge): from now on sacct answers too, in the same round.
    await step(lambda: (fake.finish(str(base)), fake.forget(str(base))), lambda: view.done())
    final = await view
    await experiment.aclose()

    assert len(final) == 1000
    rounds = ticks(counted.transport.commands)
    others = [c for c in counted.transport.commands if c.split()[0] not in STATUS_PROGRAMS]
    assert others == []  # the view asks nothing else (no pending-details squeue, no log reads)
    assert len(rounds) == watcher.polls >= 5
    assert max(len(r) for r in rounds) <= 2  # one squeue, at most one sacct, per tick
    assert any(r == ["squeue", "sacct"] for r in rounds)
    text = screen.getvalue()
    assert "1000/1000 ended" in text and "exit code 3" in text
    with capsys.disabled():
        sacct = sum(len(r) - 1 for r in rounds)
        print(
            f"\n[figure] show --watch, 1000 jobs on the fake Slurm: {len(rounds)} ticks, "
            f"{len(rounds)} squeue + {sacct} sacct = {len(rounds) + sacct} status commands "
            f"({(len(rounds) + sacct) / len(rounds):.2f} per tick, at most {max(len(r) for r in rounds)}); "
            f"{text.count('ended')} redraws"
        )


async def test_piped_view_prints_one_line_per_change(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSlurm()
    counted = Counted(fake)
    xid = await launch(fake, counted, 3)
    experiment = reopen(xid, counted)
    units = select_units(experiment)
    watcher = fast(experiment, fake, monkeypatch)
    [base] = {j.job_id.job_id for u in units for j in u.slurm_jobs}
    piped = io.StringIO()
    view = asyncio.ensure_future(live.watch(experiment, units, stream=piped, terminal=False))
    await until(lambda: piped.getvalue() != "")
    fake.start_job(f"{base}_0")
    await until(lambda: "wid 1 running" in piped.getvalue())
    fake.finish(f"{base}_0")
    fake.finish(f"{base}_1", "FAILED", exit_code=3)
    fake.finish(f"{base}_2", "CANCELLED")
    await view
    await experiment.aclose()
    del watcher
    lines = piped.getvalue().splitlines()
    assert "\x1b" not in piped.getvalue()  # plain text: no cursor movement, no colour
    assert lines[0].startswith("[0:00:0") and lines[0].split("] ", 1)[1].startswith("wid 1-3 pending ·")
    assert "wid 1 running · pending 2, running 1, completed 0, failed 0, cancelled 0" in lines[1]
    assert lines[-1].endswith("pending 0, running 0, completed 1, failed 1, cancelled 1")
    assert len(lines) == len(set(lines))  # nothing printed twice: a line only for a change


async def test_experiment_wait_with_progress_explains_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSlurm()
    counted = Counted(fake)
    async with xm_slurm.create_experiment("wait progress", transport_factory=counted) as experiment:
        units = await experiment.add(job_on(fake), args=[{"args": {"seed": i}} for i in range(3)])
        fast(experiment, fake, monkeypatch)
        [base] = {j.job_id.job_id for u in units for j in u.slurm_jobs}
        folder = await experiment.connections.experiment_dir(fake.config, experiment.experiment_id)
        failed = units[1].slurm_jobs[0]
        await fake.write_text(
            f"{folder}/slurm-{failed.job_id}.out", "".join(f"step {i}\n" for i in range(30)) + "boom\n"
        )
        fake.start_job(f"{base}_0")
        fake.finish(f"{base}_0")
        fake.start_job(f"{base}_1")
        fake.finish(f"{base}_1", "FAILED", exit_code=3)
        fake.finish(f"{base}_2", "CANCELLED")  # never started: no log
        out = io.StringIO()
        statuses = await experiment.wait(progress=True, log_lines=5, stream=out)
    assert [statuses[u.work_unit_id].status.label for u in units] == ["completed", "failed", "cancelled"]
    report = out.getvalue().split("\n")
    start = report.index(f"wid {units[1].work_unit_id} failed: {base}_1 FAILED, exit code 3: NonZeroExitCode")
    assert report[start + 1 : start + 7] == [
        "  last 5 lines of its log:",
        "  | step 26",
        "  | step 27",
        "  | step 28",
        "  | step 29",
        "  | boom",
    ]
    assert f"  job {base}_2 ended before it started: CANCELLED" in report


def test_logs_of_jobs_that_have_not_started_say_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from xm_slurm.cli import main
    from xm_slurm.experiment import connections

    fake = FakeSlurm()
    counted = Counted(fake)
    xid = asyncio.run(launch(fake, counted, 3))
    monkeypatch.setattr(connections, "ssh_transport_factory", counted)  # the CLI's clusters: the fake
    [base] = list(fake.jobs)  # one job array

    assert main(["logs", str(xid)]) == 3  # nothing has started: nothing to print, and it says why
    out, err = capsys.readouterr()
    assert out == ""
    assert f"xm-slurm logs: wid 1: job {base}_0 has not started: PENDING" in err.splitlines()

    fake.start_job(f"{base}_0")
    fake.finish(f"{base}_0", "FAILED", exit_code=2)
    folder = asyncio.run(reopen(xid, counted).connections.experiment_dir(fake.config, xid))
    asyncio.run(fake.write_text(f"{folder}/slurm-{base}_0.out", "loading\nTraceback: boom\n"))
    fake.finish(f"{base}_1", "CANCELLED")
    assert main(["logs", str(xid), "-n", "1"]) == 0  # one unit printed: the others are noted
    out, err = capsys.readouterr()
    assert out == "[wid 1] Traceback: boom\n"
    assert f"xm-slurm logs: wid 2: job {base}_1 ended before it started: CANCELLED" in err
    assert f"xm-slurm logs: wid 3: job {base}_2 has not started: PENDING" in err

    assert main(["logs", str(xid), "--failed"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == [
        f"== wid 1 failed: {base}_0 FAILED, exit code 2: NonZeroExitCode",
        "loading",
        "Traceback: boom",
    ]
