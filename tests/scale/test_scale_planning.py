"""Pure checks (no cluster) of the scale pieces: splitting, aftercorr pairing across chunks, throttle
chaining, limits parsing, array-id ranges, retry bookkeeping, rendering of `%N`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from xmanager import xm

import xm_slurm
from xm_slurm.dependencies import afterok
from xm_slurm.errors import ValidationError
from xm_slurm.experiment.handles import SlurmLaunchedJob
from xm_slurm.experiment.launching import current_jobs
from xm_slurm.experiment.planning import make_pending, plan
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.rendering import JobScriptRequest, render_job_script
from xm_slurm.scheduler.limits import ClusterLimits, parse_limits
from xm_slurm.scheduler.resubmit import _script_from, compact_ranges

SSH = xm_slurm.SlurmSSHConfig(host="login.example.org", user="me", config_files=())
CLUSTER = xm_slurm.SlurmClusterConfig(name="c", ssh=SSH, runtime=xm_slurm.ContainerRuntime.PODMAN)


def job(**executor_kw: Any) -> xm.Job:
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=CLUSTER),
        time=dt.timedelta(minutes=1),
        **executor_kw,
    )
    return xm.Job(executable=xm_slurm.RemoteImage(image="busybox:1", entrypoint=["true"]), executor=executor)


def adds(n: int, deps: list[Any] | None = None, **executor_kw: Any) -> list[Any]:
    j = job(**executor_kw)
    return [
        make_pending(
            object(),
            i + 1,
            i,
            xm.Job(executable=j.executable, executor=j.executor, args={"i": i}),
            deps[i] if deps else None,
        )
        for i in range(n)
    ]


async def test_sweep_splits_at_max_array_size_in_order() -> None:
    subs = plan(adds(2500), lambda c: 1001)
    assert [len(s.trials) for s in subs] == [1001, 1001, 498]
    assert all(s.array for s in subs)
    assert [t.work_unit_id for s in subs for t in s.trials] == list(range(1, 2501))
    assert all(s.after is None for s in subs)  # no throttle: all arrays at once
    assert len(plan(adds(2500))) == 1  # no limit given: one array


async def test_aftercorr_pairs_chunk_by_chunk() -> None:
    # An earlier 2,500-trial sweep split into arrays 100 (1001), 200 (1001), 300 (498).
    old = [SlurmJobId(100 + 100 * (i // 1001), array_task=i % 1001) for i in range(2500)]
    subs = plan(adds(2500, [afterok(str(j)) for j in old]), lambda c: 1001)
    assert [(len(s.trials), s.dependency.to_dependency_str()) for s in subs] == [
        (1001, "aftercorr:100"),
        (1001, "aftercorr:200"),
        (498, "aftercorr:300"),
    ]


async def test_aftercorr_with_a_lower_limit_falls_back_to_afterok() -> None:
    old = [SlurmJobId(7, array_task=i) for i in range(6)]
    subs = plan(adds(6, [afterok(str(j)) for j in old]), lambda c: 4)
    assert subs[0].dependency.to_dependency_str() == "aftercorr:7" and len(subs[0].trials) == 4
    assert [s.dependency.to_dependency_str() for s in subs[1:]] == ["afterok:7_4", "afterok:7_5"]


async def test_throttled_chunks_are_chained_and_any_of_is_refused() -> None:
    subs = plan(adds(12, array_throttle=2), lambda c: 5)
    assert [len(s.trials) for s in subs] == [5, 5, 2]
    assert [s.after for s in subs] == [None, subs[0], subs[1]]
    assert all(s.throttle == 2 for s in subs)
    either = afterok("1") | afterok("2")
    with pytest.raises(ValidationError, match="any-of"):
        plan(adds(12, [either] * 12, array_throttle=2), lambda c: 5)
    assert len(plan(adds(4, [either] * 4, array_throttle=2), lambda c: 5)) == 1  # one array: fine


async def test_throttle_renders_as_percent() -> None:
    s = plan(adds(3, array_throttle=2))[0]
    request = JobScriptRequest(
        cluster=CLUSTER,
        jobs=s.components,
        trials=s.trials,
        experiment_id=1,
        job_name="t",
        state_dir="/tmp/x",
        array=True,
    )
    assert "#SBATCH --array=0-2%2\n" in render_job_script(request)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3"])
def test_array_throttle_validated(bad: Any) -> None:
    with pytest.raises(ValidationError, match="array_throttle"):
        job(array_throttle=bad)


def test_limits_parsing() -> None:
    text = "Configuration data as of ...\nMaxArraySize            = 1001\nMaxJobCount             = 10000\n"
    assert parse_limits(text) == ClusterLimits(1001, 10000, "scontrol")
    assert parse_limits("nothing here") == ClusterLimits(source="default")
    assert parse_limits(text).capped(50).max_array_size == 50
    assert parse_limits(text).capped(5000).max_array_size == 1001


def test_compact_ranges_and_script_paths() -> None:
    assert compact_ranges([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert compact_ranges([3]) == "3"
    with pytest.raises(ValidationError):
        compact_ranges([])
    assert _script_from("sbatch --parsable --comment=x /s/a.sh", "/home") == "/s/a.sh"
    assert _script_from("sbatch rel.sh", "/home/me") == "/home/me/rel.sh"
    assert _script_from("sbatch --wrap true", "/") is None


def test_current_jobs_drop_replaced_ones() -> None:
    def handle(name: str, jid: str, retry_of: str | None = None) -> SlurmLaunchedJob:
        of = None if retry_of is None else SlurmJobId.parse(retry_of)
        return SlurmLaunchedJob(
            name=name, job_id=SlurmJobId.parse(jid), ssh=SSH, experiment_id=1, retry_of=of
        )

    old, other = handle("train", "5_3"), handle("eval", "6")
    new = handle("train", "9_3", retry_of="5_3")
    assert current_jobs([old, other, new]) == [other, new]
    assert new.name == "train"  # the name stays the user's
