"""Each resource and executor option becomes the documented sbatch directive."""

from __future__ import annotations

import datetime as dt
import signal

import pytest
from xmanager import xm

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import Slurm, SlurmSpec, format_time
from xm_slurm.resources import JobRequirements, ResourceType


def test_cpu_memory_disk_single_task(cluster: SlurmClusterConfig) -> None:
    req = JobRequirements(CPU=4, RAM=16 * xm.GiB, DISK=10 * xm.GiB, cluster=cluster)
    assert req.to_directives() == ["--ntasks=1", "--cpus-per-task=4", "--mem=16384M", "--tmp=10240M"]


def test_memory_is_per_cpu_with_replicas(cluster: SlurmClusterConfig) -> None:
    req = JobRequirements(CPU=3, MEMORY=10 * xm.GiB, replicas=4, cluster=cluster)
    assert "--ntasks=4" in req.to_directives()
    assert "--mem-per-cpu=3414M" in req.to_directives()  # ceil(10240 / 3)


def test_memory_rounds_up_to_mib() -> None:
    assert "--mem=2M" in JobRequirements(RAM=xm.MiB + 1).to_directives()


def test_generic_gpu() -> None:
    assert "--gpus-per-task=2" in JobRequirements(GPU=2).to_directives()


def test_named_accelerator_through_gres_map(cluster: SlurmClusterConfig) -> None:
    assert "--gpus-per-task=a100:2" in JobRequirements(A100=2, cluster=cluster).to_directives()
    assert "--gres=shard:h100:1" in JobRequirements({"h100": 1}, cluster=cluster).to_directives()


def test_named_accelerator_through_feature_map(cluster: SlurmClusterConfig) -> None:
    d = JobRequirements(L40S=1, cluster=cluster).to_directives()
    assert "--gpus-per-task=1" in d and "--constraint=l40s_node" in d


def test_xm_resource_type_keys_map_by_name(cluster: SlurmClusterConfig) -> None:
    req = JobRequirements({xm.ResourceType.A100: 1, xm.ResourceType.CPU: 2}, cluster=cluster)
    assert req.accelerator is ResourceType.A100 and req.cpus == 2


def test_replicas_keyword_and_location() -> None:
    req = JobRequirements({"replicas": 3}, location="node[01-03]")
    assert req.replicas == 3
    assert req.to_directives() == ["--ntasks=3", "--nodelist=node[01-03]"]


def test_aliases_are_the_same_member() -> None:
    assert ResourceType.RAM is ResourceType.MEMORY and ResourceType.DISK is ResourceType.EPHEMERAL_STORAGE
    assert ResourceType["ram"] is ResourceType.MEMORY


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (dt.timedelta(hours=4), "0-04:00:00"),
        (dt.timedelta(days=2, minutes=3, seconds=4), "2-00:03:04"),
        (dt.timedelta(seconds=0.2), "0-00:00:01"),
    ],
)
def test_time_format(delta: dt.timedelta, text: str) -> None:
    assert format_time(delta) == text


def test_executor_defaults(cluster: SlurmClusterConfig) -> None:
    ex = Slurm(requirements=JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5))
    assert ex.to_directives() == [
        "--time=0-00:05:00",
        "--account=acct",
        "--partition=debug",
        "--qos=normal",
        "--ntasks=1",
        "--cpus-per-task=1",
        "--signal=USR2@90",
        "--requeue",
        "--kill-on-invalid-dep=yes",
    ]
    assert ex.requeue_on_exit_code == 42 and ex.requeue_max_attempts == 5


def test_executor_options_override_cluster(cluster: SlurmClusterConfig) -> None:
    ex = Slurm(
        requirements=JobRequirements(cluster=cluster),
        time=dt.timedelta(hours=1),
        account="other",
        partition="gpu",
        qos="high",
        priority=7,
        kill_on_invalid_dependencies=False,
        timeout_signal=signal.SIGTERM,
        timeout_signal_grace_period=dt.timedelta(minutes=3),
        requeue=False,
    )
    d = ex.to_directives()
    for expected in (
        "--account=other",
        "--partition=gpu",
        "--qos=high",
        "--priority=7",
        "--kill-on-invalid-dep=no",
        "--signal=TERM@180",
        "--no-requeue",
    ):
        assert expected in d
    assert "--account=acct" not in d


def test_spec_is_slurm_spec() -> None:
    assert Slurm.Spec is SlurmSpec
    assert Slurm.Spec("reg/x:1") == Slurm.Spec(tag="reg/x:1")  # the tag positional, as in 0.4.x
    assert isinstance(Slurm.Spec(tag="reg/x:1"), xm.ExecutorSpec)


def test_remote_image_defaults_and_secret_free_repr() -> None:
    from xm_slurm.executables import ImageCredentials

    img = RemoteImage(
        image="localhost:5000/me/train@sha256:" + "a" * 64,
        entrypoint=xm.SequentialArgs.from_collection(["python3", "-m", "train"]),
        credentials=ImageCredentials(username="u", password="hunter2"),
    )
    assert img.name == "train"
    assert "hunter2" not in repr(img)
    assert isinstance(img, xm.Executable)
