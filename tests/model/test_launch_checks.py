"""The pure checks of issue 21 (finding 7), without a cluster: names, env values, mounts, bounds, and the
launch pre-flight's parsing and decisions (partitions, gres, sizes, dependency ids)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from xmanager import xm

from xm_slurm import dependencies as deps
from xm_slurm.config import SlurmClusterConfig
from xm_slurm.errors import ValidationError
from xm_slurm.executables import RESERVED_ENV_VARS, RemoteImage, validate_env_vars
from xm_slurm.executors import MAX_TIME, Slurm
from xm_slurm.experiment.planning import Submission, describe
from xm_slurm.experiment.preflight import dependency_ids, placement_problems, size_problems
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.rendering import JobComponent, Trial
from xm_slurm.resources import MAX_UNITS_PER_TASK, JobRequirements
from xm_slurm.scheduler.limits import ClusterLimits, Partition, parse_gres, parse_limits
from xm_slurm.scheduler.preflight import partition_problems

IMAGE = RemoteImage(image="reg/x:1", entrypoint=["true"])


def _executor(cluster: SlurmClusterConfig, **kw: Any) -> Slurm:
    resources = kw.pop("resources", {})
    requirements = JobRequirements(CPU=1, cluster=cluster, **resources)
    return Slurm(requirements=requirements, time=dt.timedelta(hours=1), **kw)


def _job(cluster: SlurmClusterConfig, **kw: Any) -> xm.Job:
    return xm.Job(executable=IMAGE, executor=_executor(cluster, **kw.pop("executor", {})), **kw)


# --- names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a\nb", "a\0b", "a\rb", "a\tb", "a\x1b[2J", "a\x85", "a\ud800"])
def test_job_and_member_names_are_one_line(cluster: SlurmClusterConfig, name: str) -> None:
    with pytest.raises(ValidationError, match="job name") as info:
        describe(_job(cluster, name=name), "job")
    assert repr(name)[1:-1] in str(info.value)
    with pytest.raises(ValidationError, match="member name"):
        describe(xm.JobGroup(**{name: _job(cluster)}), "job")


def test_printable_names_pass(cluster: SlurmClusterConfig) -> None:
    _, members, _ = describe(_job(cluster, name="train é 1/2"), "job")
    assert members[0][0] == "train é 1/2"
    _, members, group = describe(xm.JobGroup(learner=_job(cluster), actor=_job(cluster)), "job")
    assert group and [n for n, _ in members] == ["learner", "actor"]
    with pytest.raises(ValidationError, match="RemoteImage name"):
        RemoteImage(image="reg/x:1", name="x\ny")


# --- env vars -------------------------------------------------------------------------------------------


def test_env_values_are_strings_or_numbers() -> None:
    env = validate_env_vars({"S": "a b", "I": 3, "F": 0.5, "BIG": 10**30})
    assert dict(env) == {"S": "a b", "I": "3", "F": "0.5", "BIG": str(10**30)}


@pytest.mark.parametrize(
    ("value", "needle"),
    [(None, "None"), (object(), "object"), ([1], "[1]"), ({"k": 1}, "{'k': 1}"), (b"x", "b'x'")],
)
def test_other_env_values_are_refused(value: object, needle: str) -> None:
    with pytest.raises(ValidationError, match="str, an int or a float") as info:
        validate_env_vars({"A": value})
    assert needle in str(info.value) and "'A'" in str(info.value)


def test_bool_env_values_are_refused_with_a_hint() -> None:
    with pytest.raises(ValidationError, match="'1'/'0' or 'true'/'false'"):
        validate_env_vars({"FLAG": True})


@pytest.mark.parametrize("name", sorted(RESERVED_ENV_VARS))
def test_reserved_names_are_refused_everywhere(cluster: SlurmClusterConfig, name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        validate_env_vars({name: "x"})
    for field in ("host_environment", "container_environment"):
        with pytest.raises(ValidationError, match=name):
            dataclasses.replace(cluster, **{field: {name: "x"}})


def test_the_reserved_list_holds_what_jobs_and_sbatch_set() -> None:
    assert {"XM_SLURM_SUBMISSION", "SLURM_UMASK", "XM_SLURM_EXPERIMENT_ID", "XM_SLURM_WORK_UNIT_ID"} <= (
        RESERVED_ENV_VARS
    )
    # Set by the parameter controller through env_vars: must stay allowed.
    assert validate_env_vars({"XM_SLURM_STATE_DIR": "/s", "XM_SLURM_API_BACKEND": "sqlite"})


# --- mounts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mounts", "needle"),
    [
        ({"/data,x": "/data"}, "','"),
        ({"/data": "/d,x"}, "','"),
        ({"/data:x": "/data"}, "':'"),
        ({"/data": "/"}, "destination '/'"),
        ({"/data": "//"}, "destination '/'"),
        ({"/data/../etc": "/data"}, "'..'"),
        ({"/data": "/mnt/.."}, "'..'"),
        ({"/da\0ta": "/data"}, "control character"),
        ({"/data": "data"}, "absolute"),
        ({"/a": "/data", "/b": "/data/"}, "both go to"),
    ],
)
def test_bad_mounts_are_refused(cluster: SlurmClusterConfig, mounts: dict[str, str], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        dataclasses.replace(cluster, mounts=mounts)


def test_good_mounts_pass(cluster: SlurmClusterConfig) -> None:
    mounts = {"/project": "/project", "/scratch/me/..data": "/data", "/a b": "/mnt/a b"}
    assert dict(dataclasses.replace(cluster, mounts=mounts).mounts) == mounts


# --- bounds ---------------------------------------------------------------------------------------------


def test_units_per_task_bound(cluster: SlurmClusterConfig) -> None:
    assert JobRequirements(CPU=MAX_UNITS_PER_TASK).cpus == MAX_UNITS_PER_TASK
    for resources in ({"CPU": MAX_UNITS_PER_TASK + 1}, {"GPU": 10**6}, {"A100": 10**6}):
        with pytest.raises(ValidationError, match=str(next(iter(resources.values())))):
            JobRequirements(cluster=cluster, **resources)


def test_time_bound(cluster: SlurmClusterConfig) -> None:
    assert _executor(cluster).time == dt.timedelta(hours=1)
    assert dataclasses.replace(_executor(cluster), time=MAX_TIME).time == MAX_TIME
    with pytest.raises(ValidationError, match="days=1000000"):
        dataclasses.replace(_executor(cluster), time=dt.timedelta(days=10**6))
    with pytest.raises(ValidationError, match="365 days"):
        dataclasses.replace(_executor(cluster), time=MAX_TIME + dt.timedelta(seconds=1))


# --- what the cluster says: sinfo and scontrol output -----------------------------------------------------

SINFO = """debug*|(null)|(null)
gpu|gpu:a100:4(S:0-1),shard:a100:16|a100,avx512
gpu|gpu:v100:2(S:0,1)|volta
empty|(null)|(null)
"""


def test_gres_parsing() -> None:
    assert parse_gres("gpu:a100:4(S:0-1),shard:8") == {"gpu", "gpu:a100", "shard"}
    assert parse_gres("gpu:tesla_v100-sxm2-16gb:4(S:0,1)") == {"gpu", "gpu:tesla_v100-sxm2-16gb"}
    assert parse_gres("gpu:2") == {"gpu"}
    assert parse_gres("(null)") == frozenset()


def test_limits_with_partitions() -> None:
    config = "MaxArraySize            = 1001\nMaxJobCount             = 10000\n"
    limits = parse_limits(f"{config}#xm-slurm-partitions\n{SINFO}#xm-slurm-end\n")
    assert (limits.max_array_size, limits.max_job_count, limits.default_partition) == (1001, 10000, "debug")
    gpu = limits.partition("gpu")
    assert gpu is not None
    assert gpu.gres == {"gpu", "gpu:a100", "gpu:v100", "shard", "shard:a100"}
    assert gpu.features == {"a100", "avx512", "volta"}
    assert [p.name for p in limits.partitions or ()] == ["debug", "empty", "gpu"]
    # sinfo failed (no end mark), or was never reached: partitions unknown, limits kept.
    for text in (f"{config}#xm-slurm-partitions\nsinfo: error\n", config):
        unknown = parse_limits(text)
        assert (unknown.partitions, unknown.max_array_size) == (None, 1001)


LIMITS = ClusterLimits(
    partitions=(
        Partition("debug"),
        Partition("gpu", frozenset({"gpu", "gpu:a100"}), frozenset({"volta"})),
    ),
    default_partition="debug",
)


@pytest.mark.parametrize(
    ("partition", "gres", "needles"),
    [
        ("debug", None, []),
        (None, None, []),
        ("gpu", ("gpu", "a100", None), []),
        ("debug,gpu", ("gpu", None, "volta"), []),  # any of the two may run it
        ("nosuch", None, ["'nosuch' does not exist", "debug, gpu"]),
        ("debug,nosuch", None, ["'nosuch' does not exist"]),
        (None, ("gpu", None, None), ["partition 'debug'", "'gpu'", "gres there: none"]),
        ("gpu", ("gpu", "h100", None), ["'gpu:h100'", "gpu, gpu:a100"]),
        ("gpu", ("shard", "a100", None), ["'shard:a100'"]),
        ("gpu", ("gpu", None, "hopper"), ["feature 'hopper'", "features there: volta"]),
    ],
)
def test_partition_problems(
    partition: str | None, gres: tuple[str, str | None, str | None] | None, needles: list[str]
) -> None:
    problems = partition_problems(LIMITS, "c", partition, gres)
    assert bool(problems) == bool(needles)
    for needle in needles:
        assert needle in " ".join(problems)


def test_nothing_is_refused_when_the_cluster_could_not_tell() -> None:
    assert partition_problems(ClusterLimits(), "c", "nosuch", ("gpu", "x", "y")) == []
    no_default = dataclasses.replace(LIMITS, default_partition=None)
    assert partition_problems(no_default, "c", None, ("gpu", "h100", None)) == []


# --- the pre-flight's decisions on planned submissions --------------------------------------------------


def _submission(
    cluster: SlurmClusterConfig, trials: int, *, dependency: Any = None, **executor: Any
) -> Submission:
    component = JobComponent(executable=IMAGE, executor=_executor(cluster, **executor))
    rows = [Trial(work_unit_id=i + 1) for i in range(trials)]
    return Submission(cluster, [component], rows, trials > 1, dependency, adds=[object()] * trials)  # type: ignore[list-item]


def test_a_launch_larger_than_max_job_count_is_refused(cluster: SlurmClusterConfig) -> None:
    limits = ClusterLimits(max_job_count=10_000, source="scontrol")
    fits = [_submission(cluster, 1001) for _ in range(9)] + [_submission(cluster, 991)]
    assert size_problems(fits, limits) == []
    [problem] = size_problems([*fits, _submission(cluster, 1)], limits)
    assert "10,001 jobs" in problem and "MaxJobCount of 10,000" in problem
    # Limits the cluster did not tell (Slurm's defaults assumed) refuse nothing.
    assert size_problems([*fits, _submission(cluster, 1)], ClusterLimits()) == []


def test_placement_problems_come_from_each_component(cluster: SlurmClusterConfig) -> None:
    limits = dataclasses.replace(LIMITS, partitions=(*(LIMITS.partitions or ()), Partition("normal")))
    good = _submission(cluster, 2, partition="gpu", resources={"A100": 1})
    assert placement_problems([good], limits) == []
    # The cluster's partition ("debug" in the fixture) is used when the executor names none.
    bad = [_submission(cluster, 1, resources={"GPU": 1}), _submission(cluster, 3, resources={"GPU": 2})]
    [problem] = placement_problems(bad, limits)  # the same problem once
    assert "partition 'debug'" in problem


def test_dependency_ids_of_a_batch(cluster: SlurmClusterConfig) -> None:
    batch = [
        _submission(cluster, 1, dependency=deps.afterok("10", "11_2") & deps.singleton()),
        _submission(
            cluster, 1, dependency=deps.after("12+1", time=dt.timedelta(minutes=1)) | deps.afterany("10")
        ),
        _submission(cluster, 2),
    ]
    assert dependency_ids(batch) == [SlurmJobId.parse(i) for i in ("10", "11_2", "12+1")]


def test_an_accelerator_the_cluster_does_not_map_is_refused_at_add_time(cluster: SlurmClusterConfig) -> None:
    requirements = JobRequirements(V100=1)  # no cluster yet: nothing to check against
    requirements.cluster = cluster  # the fixture maps A100, H100 and L40S, not V100
    executor = Slurm(requirements=requirements, time=dt.timedelta(hours=1))
    with pytest.raises(ValidationError, match="V100 is not available on cluster 'testcluster'"):
        describe(xm.Job(executable=IMAGE, executor=executor), "job")
