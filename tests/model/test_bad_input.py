"""Every bad input is refused at construction with a ValidationError naming the bad value."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Callable
from typing import Any

import pytest
from xmanager import xm

from xm_slurm import dependencies as deps
from xm_slurm.config import ContainerRuntime, SlurmClusterConfig, SlurmSSHConfig
from xm_slurm.errors import ValidationError
from xm_slurm.executables import DockerImage, RemoteImage
from xm_slurm.executors import Slurm, SlurmSpec
from xm_slurm.resources import JobRequirements, ResourceType

SSH = SlurmSSHConfig(host="h")


def _cluster(**kw: Any) -> SlurmClusterConfig:
    return SlurmClusterConfig(**{"name": "c", "ssh": SSH, "runtime": ContainerRuntime.PODMAN, **kw})


def _slurm(cluster: SlurmClusterConfig, **kw: Any) -> Slurm:
    return Slurm(
        **{"requirements": JobRequirements(CPU=1, cluster=cluster), "time": dt.timedelta(hours=1), **kw}
    )


# (case id, factory taking the fixture cluster, text the message must contain)
CASES: list[tuple[str, Callable[[SlurmClusterConfig], object], str]] = [
    ("zero cpus", lambda c: JobRequirements(CPU=0), "CPU=0"),
    ("negative cpus", lambda c: JobRequirements(CPU=-2), "CPU=-2"),
    ("fractional cpus", lambda c: JobRequirements(CPU=0.5), "CPU=0.5"),
    ("memory not a number", lambda c: JobRequirements(RAM="lots"), "'lots'"),
    ("memory as list", lambda c: JobRequirements(MEMORY=[1]), "[1]"),
    ("memory too small", lambda c: JobRequirements(RAM=16), "RAM=16".replace("RAM", "MEMORY")),
    ("nan disk", lambda c: JobRequirements(DISK=float("nan")), "nan"),
    ("unknown resource", lambda c: JobRequirements(FOO=1), "'FOO'"),
    ("unknown accelerator for cluster", lambda c: JobRequirements(V100=1, cluster=c), "V100"),
    ("two accelerators", lambda c: JobRequirements(A100=1, GPU=1, cluster=c), "GPU"),
    ("fractional gpu", lambda c: JobRequirements(GPU=1.5), "GPU=1.5"),
    ("resource twice", lambda c: JobRequirements({"cpu": 1}, CPU=2), "CPU"),
    ("replicas zero", lambda c: JobRequirements(replicas=0), "replicas=0"),
    ("replicas str", lambda c: JobRequirements(replicas="2"), "replicas='2'"),
    ("bad location", lambda c: JobRequirements(location="node 1"), "'node 1'"),
    ("cluster wrong type", lambda c: JobRequirements(cluster="mila"), "'mila'"),
    ("bad cluster name", lambda c: _cluster(name="my cluster!"), "'my cluster!'"),
    ("empty cluster name", lambda c: _cluster(name=""), "''"),
    ("runtime as str", lambda c: _cluster(runtime="podman"), "'podman'"),
    ("relative mount src", lambda c: _cluster(mounts={"data": "/data"}), "'data'"),
    ("relative mount dst", lambda c: _cluster(mounts={"/data": "data"}), "'data'"),
    ("bad env name", lambda c: _cluster(host_environment={"A-B": "x"}), "'A-B'"),
    ("bad partition", lambda c: _cluster(partition="a b"), "'a b'"),
    ("bad proxy", lambda c: _cluster(proxy="host; rm -rf /"), "'host; rm -rf /'"),
    ("gres key not accelerator", lambda c: _cluster(resources={ResourceType.CPU: "x"}), "CPU"),
    (
        "no cluster in executor",
        lambda c: Slurm(requirements=JobRequirements(CPU=1), time=dt.timedelta(1)),
        "cluster",
    ),
    ("time not timedelta", lambda c: _slurm(c, time=3600), "time=3600"),
    ("time zero", lambda c: _slurm(c, time=dt.timedelta(0)), "time=datetime.timedelta(0)"),
    ("time negative", lambda c: _slurm(c, time=dt.timedelta(hours=-1)), "days=-1"),
    ("requeue code 0", lambda c: _slurm(c, requeue_on_exit_code=0), "requeue_on_exit_code=0"),
    ("requeue code 256", lambda c: _slurm(c, requeue_on_exit_code=256), "requeue_on_exit_code=256"),
    ("requeue attempts negative", lambda c: _slurm(c, requeue_max_attempts=-1), "requeue_max_attempts=-1"),
    ("timeout signal kill", lambda c: _slurm(c, timeout_signal=signal.SIGKILL), "SIGKILL"),
    ("timeout signal bogus", lambda c: _slurm(c, timeout_signal=999), "999"),
    ("grace too long", lambda c: _slurm(c, timeout_signal_grace_period=dt.timedelta(days=2)), "days=2"),
    ("priority negative", lambda c: _slurm(c, priority=-5), "priority=-5"),
    ("bad account", lambda c: _slurm(c, account="x y"), "account='x y'"),
    ("bad image ref", lambda c: RemoteImage(image="Not An Image"), "'Not An Image'"),
    ("bad digest", lambda c: DockerImage(image="reg/x@sha256:abc"), "'reg/x@sha256:abc'"),
    ("relative workdir", lambda c: RemoteImage(image="reg/x:1", workdir="app"), "'app'"),
    ("bad env var name", lambda c: RemoteImage(image="reg/x:1", env_vars={"1X": "v"}), "'1X'"),
    ("args as str", lambda c: RemoteImage(image="reg/x:1", args="--lr=1"), "'--lr=1'"),
    ("bad spec tag", lambda c: SlurmSpec(tag="a b"), "'a b'"),
    ("bad job id", lambda c: deps.afterok("12;rm"), "'12;rm'"),
    ("no job ids", lambda c: deps.afterany(), "at least one"),
    ("after time zero", lambda c: deps.after("1", time=dt.timedelta(0)), "timedelta(0)"),
    (
        "mixed and/or",
        lambda c: (deps.afterok("1") & deps.afterok("2")) | deps.afterok("3"),
        "afterok:1,afterok:2",
    ),
    (
        "mixed or/and",
        lambda c: (deps.afterok("1") | deps.afterok("2")) & deps.afterok("3"),
        "afterok:1?afterok:2",
    ),
    ("combine with non-dependency", lambda c: deps.afterok("1") & "2", "'2'"),
]


@pytest.mark.parametrize(("factory", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_naming_the_value(
    cluster: SlurmClusterConfig, factory: Callable[[SlurmClusterConfig], object], needle: str
) -> None:
    with pytest.raises(ValidationError) as info:
        factory(cluster)
    assert needle in str(info.value)


def test_validation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        JobRequirements(CPU=0)


def test_xm_units_are_accepted() -> None:
    req = JobRequirements(RAM=2 * xm.GiB, DISK=1 * xm.GiB)
    assert req.task_requirements[ResourceType.MEMORY] == 2 * xm.GiB
