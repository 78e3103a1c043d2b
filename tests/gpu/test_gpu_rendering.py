"""GPU requests render per replica (--gpus-per-task), in every layout, and bad ones fail up front.

The Podman step wrapper (which GPUs a container gets) is run here with a stand-in `podman` that prints
what it was given; tests/gpu/test_gpu_jobs_cluster.py runs the real thing on the local cluster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from gpu_helpers import MIG_MAP
from render_helpers import cluster_config, request

from xm_slurm.config import ContainerRuntime
from xm_slurm.errors import ValidationError
from xm_slurm.rendering import render_job_script
from xm_slurm.resources import JobRequirements, ResourceType
from xm_slurm.topology import Topology

R = ResourceType
CLUSTER = cluster_config()  # A100 -> gres type a100
MIG_CLUSTER = dataclasses.replace(CLUSTER, resources={**CLUSTER.resources, **MIG_MAP})
SHARD_CLUSTER = dataclasses.replace(CLUSTER, resources={R.H100: "shard:h100"})


def _layout(req: JobRequirements) -> list[str]:
    keep = ("--ntasks", "--nodes", "--gpus", "--gres", "--switches", "--constraint")
    return [d for d in req.to_directives() if d.startswith(keep)]


@pytest.mark.parametrize(
    ("requirements", "expected"),
    [
        # Per replica: 4 tasks x 2 GPUs = 8, wherever Slurm puts the tasks; never --gres=gpu:2 per node.
        (JobRequirements(GPU=2, replicas=4), ["--ntasks=4", "--gpus-per-task=2"]),
        (JobRequirements(GPU=1), ["--ntasks=1", "--gpus-per-task=1"]),
        (JobRequirements(A100=2, replicas=3, cluster=CLUSTER), ["--ntasks=3", "--gpus-per-task=a100:2"]),
        (JobRequirements(GPU=Topology("4x2")), ["--ntasks=2", "--gpus-per-task=4"]),
        (
            JobRequirements(A100=Topology("8x4", switches=1), cluster=CLUSTER),
            ["--ntasks=4", "--switches=1", "--gpus-per-task=a100:8"],
        ),
        (  # a wait of a day and more: D-HH:MM:SS, as sbatch reads it
            JobRequirements(GPU=Topology("2x2", switches=2, switch_wait=dt.timedelta(days=1, hours=2))),
            ["--ntasks=2", "--switches=2@1-02:00:00", "--gpus-per-task=2"],
        ),
        (
            JobRequirements(GPU=Topology("1x2", switches=1, switch_wait=dt.timedelta(seconds=90.5))),
            ["--ntasks=2", "--switches=1@00:01:31", "--gpus-per-task=1"],
        ),
        (
            JobRequirements(GPU=1, nodes=2, tasks_per_node=4),
            ["--ntasks=8", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-task=1"],
        ),
        (JobRequirements(GPU=2, replicas=4, nodes=2), ["--ntasks=4", "--nodes=2", "--gpus-per-task=2"]),
        (
            JobRequirements(H100_80GIB_1G_10GIB=1, replicas=2, cluster=MIG_CLUSTER),
            ["--ntasks=2", "--gpus-per-task=1g.10gb:1"],
        ),
        # A gres other than gpu has no per-task form in Slurm 22.05: per node, x the tasks on a node.
        (JobRequirements(H100=2, cluster=SHARD_CLUSTER), ["--ntasks=1", "--gres=shard:h100:2"]),
        (
            JobRequirements(H100=2, nodes=2, tasks_per_node=3, cluster=SHARD_CLUSTER),
            ["--ntasks=6", "--nodes=2", "--ntasks-per-node=3", "--gres=shard:h100:6"],
        ),
    ],
    ids=repr,
)
def test_layouts_render_per_replica(requirements: JobRequirements, expected: list[str]) -> None:
    assert _layout(requirements) == expected


def test_a_feature_mapped_gpu_is_per_task_with_its_constraint() -> None:
    cluster = dataclasses.replace(CLUSTER, features={R.L40S: "lovelace"})
    assert _layout(JobRequirements(L40S=1, replicas=2, cluster=cluster)) == [
        "--ntasks=2",
        "--gpus-per-task=1",
        "--constraint=lovelace",
    ]


def test_mig_members_and_aliases() -> None:
    assert R.H100_80GIB_1G_10GIB.mig_profile == "1g.10gb" and R.H100_80GIB_1G_10GIB.is_mig
    assert R.B200_180GIB_3G_90GIB.mig_profile == "3g.90gb"
    assert R.A100_40GIB_7G_40GIB is R.A100 and R.H100_80GIB is R.H100 and R.L40S_48GIB is R.L40S
    assert not R.H100.is_mig and R.H100.mig_profile is None and not R.CPU.is_mig
    assert R["h100_80gib_1g_10gib"] is R.H100_80GIB_1G_10GIB


@pytest.mark.parametrize("spec", ["4by2", "0x2", "2x0", "x2", "", "2x2x2", "-1x2", "2.5x2", "70000x1"])
def test_a_bad_topology_string_is_refused_naming_it(spec: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(repr(spec))):
        Topology(spec)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: Topology(42), "Topology(42)"),  # type: ignore[arg-type]
        (lambda: Topology("2x2", switch_wait=dt.timedelta(minutes=5)), "needs switches=N"),
        (lambda: Topology("2x2", switches=0), "switches=0"),
        (
            lambda: Topology("2x2", switches=1, switch_wait=dt.timedelta(0)),
            "switch_wait=datetime.timedelta(0)",
        ),
        (lambda: JobRequirements(GPU=Topology("2x4"), replicas=3), "replicas=3"),
        (lambda: JobRequirements(GPU=1, nodes=2, tasks_per_node=2, replicas=5), "replicas=5"),
        (lambda: JobRequirements(GPU=1, nodes=3, replicas=2), "nodes=3"),
        (lambda: JobRequirements(GPU=1, tasks_per_node=4, replicas=6), "tasks_per_node=4"),
        (lambda: JobRequirements(GPU=1, nodes=0), "nodes=0"),
        (lambda: JobRequirements(CPU=Topology("2x2")), "CPU=Topology('2x2')"),
        (lambda: JobRequirements(H100_80GIB_1G_10GIB=1, cluster=CLUSTER), "MIG profile H100_80GIB_1G_10GIB"),
        (lambda: JobRequirements(H100_80GIB_1G_10GIB=1).to_directives(), "(1g.10gb) is not mapped"),
        (
            lambda: JobRequirements(H100=2, replicas=4, cluster=SHARD_CLUSTER),
            "gres 'shard' is counted per node",
        ),
    ],
)
def test_bad_layouts_and_unmapped_mig_are_refused(make: object, needle: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(needle)):
        make()  # type: ignore[operator]


def test_a_mig_profile_only_in_the_feature_map_is_refused() -> None:
    # A feature picks the node, then --gpus would take any whole GPU there: never a slice.
    cluster = dataclasses.replace(CLUSTER, features={R.A100_80GIB_1G_10GIB: "a100mig"})
    with pytest.raises(ValidationError, match="A100_80GIB_1G_10GIB"):
        JobRequirements(A100_80GIB_1G_10GIB=1, cluster=cluster)


GPU_FORMS = {
    "topology": {"GPU": Topology("2x2", switches=1, switch_wait=dt.timedelta(days=1, minutes=30))},
    "mig": {"H100_80GIB_1G_10GIB": 1, "replicas": 2},
    "nodes": {"GPU": 1, "nodes": 2, "tasks_per_node": 1},
}


@pytest.mark.parametrize("runtime", [ContainerRuntime.PODMAN, ContainerRuntime.APPTAINER])
@pytest.mark.parametrize("form", sorted(GPU_FORMS))
def test_gpu_forms_render_valid_bash(form: str, runtime: ContainerRuntime, tmp_path: Path) -> None:
    cluster = dataclasses.replace(cluster_config(runtime), resources={**CLUSTER.resources, **MIG_MAP})
    script = render_job_script(request(cluster, requirements=GPU_FORMS[form]))
    assert "--gres=gpu" not in script and "nvidia.com/gpu=all" not in script
    path = tmp_path / "job.sh"
    path.write_text(script, encoding="utf-8")
    subprocess.run(["bash", "-n", str(path)], check=True)
    lint = subprocess.run(
        ["shellcheck", "-s", "bash", "-S", "error", str(path)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout


def _podman_wrapper() -> list[str]:
    """The `bash -c '...' xm-gpus` words a Podman GPU step starts with, from a rendered script."""
    script = render_job_script(request(cluster_config(), requirements={"GPU": 2, "replicas": 2}))
    line = next(x for x in script.splitlines() if "xm-gpus" in x)
    words = shlex.split(line.rstrip("\\"))
    return words[: words.index("xm-gpus") + 1]


@pytest.mark.parametrize(
    ("slurm_env", "devices", "ordinals"),
    [
        ({"SLURM_STEP_GPUS": "2,3", "SLURM_JOB_GPUS": "0,1,2,3"}, ["2", "3"], "0,1"),  # a step: its own
        ({"SLURM_JOB_GPUS": "1"}, ["1"], "0"),  # no step variable: the job's
        ({}, [], "physical-7"),  # no GPU at all: nothing passed, the variables left alone
    ],
)
def test_podman_step_passes_exactly_its_gpus_renumbered(
    slurm_env: dict[str, str], devices: list[str], ordinals: str, tmp_path: Path
) -> None:
    stub = tmp_path / "podman"  # prints its argv and the GPU variables it inherited
    stub.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@"\necho "CVD=$CUDA_VISIBLE_DEVICES GDO=$GPU_DEVICE_ORDINAL"\n'
    )
    stub.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "CUDA_VISIBLE_DEVICES": "physical-7",
        "GPU_DEVICE_ORDINAL": "physical-7",
        **slurm_env,
    }
    out = subprocess.run(
        [*_podman_wrapper(), "--rm", "img", "-c", "x"], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    passed = [f"--device=nvidia.com/gpu={d}" for d in devices]
    assert out == ["run", *passed, "--rm", "img", "-c", "x", f"CVD={ordinals} GDO={ordinals}"]


def test_replace_keeps_the_layout() -> None:
    req = JobRequirements(GPU=Topology("2x2", switches=1), CPU=2, nodes=1)
    again = req.replace(CPU=4)
    assert again.topology == req.topology and again.nodes == 1 and again.cpus == 4
    assert _layout(again) == ["--ntasks=2", "--nodes=1", "--switches=1", "--gpus-per-task=2"]
    plain = req.replace(GPU=1)  # a new amount replaces the topology; the tasks and nodes stay
    assert plain.topology is None and _layout(plain) == ["--ntasks=2", "--nodes=1", "--gpus-per-task=1"]
