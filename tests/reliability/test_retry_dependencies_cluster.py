"""Issue 18's retry scenario on the local cluster: a 6-trial sweep whose trial 4 fails on purpose, an eval
waiting for every trial (`afterok`, term by term), a report waiting for the whole array (`afterok:<array>`)
and a scoring sweep waiting trial by trial (`aftercorr`). Slurm cancels the eval, the report and score task 4
(`DependencyNeverSatisfied`); `xm-slurm retry XID` resubmits trial 4 (naming what it left out) and
`xm-slurm retry XID --cancelled` resubmits the three, each waiting for the retried trial: Slurm shows the
dependency on its new id, and they start only after it has ended (sacct Start/End)."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import operator
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm.cli import exit_codes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scale"))
from cli_helpers import xm_cli
from scale_helpers import make_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

TRIALS = 6
BAD = 4
# Trial BAD fails the first time (leaving a mark) and, retried, runs long enough for its dependents to be
# seen waiting for it.
TRIAL = 'test "$1" != 4 || test -e /xmmarks/4 || { touch /xmmarks/4; exit 3; }; test "$1" != 4 || sleep 15'


def sh_job(lc: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, script: str, name: str) -> xm.Job:
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["sh", "-c", script, name])
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )
    return xm.Job(executable=image, executor=executor, name=name)


async def launch(lc: LocalCluster, cluster: xm_slurm.SlurmClusterConfig) -> tuple[int, dict[str, Any]]:
    async with xm_slurm.create_experiment("retry keeps dependencies") as experiment:
        trials = await experiment.add(
            sh_job(lc, cluster, TRIAL, "train"), args=[xm_slurm.JobArgs(args=[i]) for i in range(TRIALS)]
        )
        every = functools.reduce(operator.and_, [u.after_completed() for u in trials])
        evaluation = await experiment.add(sh_job(lc, cluster, "true", "eval"), dependency=every)
        array = str(trials[0].slurm_jobs[0].job_id.base)
        report = await experiment.add(
            sh_job(lc, cluster, "true", "report"), dependency=xm_slurm.dependencies.afterok(array)
        )
        score = await experiment.add(
            sh_job(lc, cluster, "true", "score"),
            args=[xm_slurm.JobArgs(args=[i]) for i in range(TRIALS)],
            dependency=[u.after_completed() for u in trials],
        )
        wids = {
            "trial": trials[BAD].work_unit_id,
            "eval": evaluation.work_unit_id,
            "report": report.work_unit_id,
            "score": score[BAD].work_unit_id,
        }
        first = {name: str(experiment.work_units[w].slurm_jobs[0].job_id) for name, w in wids.items()}
        return experiment.experiment_id, {"wids": wids, "first": first}


def squeue_reason(job_id: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-O", "JobArrayID:|,State:|,Reason:", "-j", job_id.split("_")[0]],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rows = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    return rows.get(job_id, "").replace("|", " ")


def shown_dependency(job_id: str) -> str:
    shown = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    return shown.split("Dependency=", 1)[1].split()[0]


def sacct_times(job_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """JobID -> (Start, End, SubmitLine), ISO times (comparable as text)."""
    bases = sorted({j.split("_")[0] for j in job_ids})
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "--format=JobID,Start,End,SubmitLine", "-j", ",".join(bases)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        job, start, end, submit = line.split("|", 3)
        rows[job] = (start, end, submit)
    return rows


def retried(result: subprocess.CompletedProcess[str]) -> dict[int, str]:
    assert result.returncode == exit_codes.OK, result.stderr
    return {row["wid"]: row["jobs"][0] for row in json.loads(result.stdout)["retried"]}


def names(job_id: str, dependency: str) -> bool:
    """Whether a shown dependency names job `job_id` (an array task, or the whole array `123_*`)."""
    return re.search(rf"(?<![0-9]){re.escape(job_id)}(?![0-9])", dependency) is not None


def test_retry_then_retry_cancelled_waits_for_the_retried_trial(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    cluster = make_cluster(local_cluster, mounts={str(marks): "/xmmarks"})
    xid, launched = asyncio.run(launch(local_cluster, cluster))
    wids, first = launched["wids"], launched["first"]
    assert xm_cli("wait", str(xid)).returncode == exit_codes.JOBS_FAILED
    for name in ("eval", "report", "score"):  # Slurm cancelled them: their dependency can never be met
        assert squeue_reason(first[name]).split() == ["CANCELLED", "DependencyNeverSatisfied"], name

    once = xm_cli("retry", str(xid), "--json")
    assert retried(once) == {wids["trial"]: retried(once)[wids["trial"]]}
    trial = retried(once)[wids["trial"]]
    assert trial.endswith(f"_{BAD}") and trial != first["trial"]
    assert "--cancelled" in once.stderr and f"{first['eval']} CANCELLED" in once.stderr

    again = retried(xm_cli("retry", str(xid), "--cancelled", "--json"))
    assert set(again) == {wids["eval"], wids["report"], wids["score"]}
    new = {name: again[wids[name]] for name in ("eval", "report", "score")}
    base = trial.split("_")[0]
    # While the retried trial runs, each waits for it: term by term, for the whole array, task by task.
    assert names(trial, shown_dependency(new["eval"])), shown_dependency(new["eval"])
    assert names(base, shown_dependency(new["report"])), shown_dependency(new["report"])
    assert names(base, shown_dependency(new["score"])), shown_dependency(new["score"])
    assert new["score"].endswith(f"_{BAD}")

    assert xm_cli("wait", str(xid)).returncode == exit_codes.OK
    times = sacct_times([trial, *new.values()])
    trial_end = times[trial][1]
    for name, job in new.items():
        start, _, submit_line = times[job]
        assert start >= trial_end, (name, start, trial_end)
        assert names(base, submit_line.split("--dependency=", 1)[1].split()[0]), submit_line
    shown = json.loads(xm_cli("show", str(xid), "--json").stdout)
    statuses = {u["wid"]: u["status"] for u in shown["work_units"]}
    assert set(statuses.values()) == {"completed"}, statuses
