"""The 0.5.0 job surface, rendered: every new directive (bash -n, shellcheck), requeue_on_timeout's
watchdog for long limits, mounts (MountSpec), rendezvous variables, job-group variables, debug tracing, and
bad values refused up front with the value named."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from render_helpers import cluster_config, request
from surface_cases import DIRECTIVES, case_id

import xm_slurm
from xm_slurm.config import (
    ContainerRuntime,
    MountKind,
    MountMode,
    MountSpec,
    infiniband_mounts,
    nvidia_mounts,
)
from xm_slurm.errors import ValidationError
from xm_slurm.executors import Slurm
from xm_slurm.rendering import BOOTSTRAP, render_job_script
from xm_slurm.resources import JobRequirements


def _check_bash(script: str, tmp_path: Path) -> None:
    path = tmp_path / "job.sh"
    path.write_text(script, encoding="utf-8")
    subprocess.run(["bash", "-n", str(path)], check=True)
    result = subprocess.run(
        ["shellcheck", "-S", "error", "-s", "bash", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def _directives(script: str) -> list[str]:
    return re.findall(r"^#SBATCH (.*)$", script, flags=re.M)


@pytest.mark.parametrize(("kw", "directive", "known"), DIRECTIVES, ids=[case_id(c) for c in DIRECTIVES])
@pytest.mark.parametrize("kind", ["single", "array", "group"])
def test_each_new_option_renders_its_directive(
    kw: dict[str, Any], directive: str, known: bool, kind: str, tmp_path: Path
) -> None:
    shape: dict[str, Any] = {"array": {"array": True}, "group": {"components": 2}}.get(kind, {})
    script = render_job_script(request(cluster_config(), requirements={"GPU": 1}, **shape, **kw))
    directives = _directives(script)
    # A per-allocation option is given to every component of a group; --nice to the whole job.
    expected = 1 if directive.startswith("--nice") or kind != "group" else 2
    assert directives.count(directive) == expected, directives
    _check_bash(script, tmp_path)


def test_requeue_on_timeout_sleeps_the_whole_limit_less_the_margin(tmp_path: Path) -> None:
    # 25 h = 90,000 s; the margin is a third of the 90-s grace period: 89,970 s (not 3,600 - 90 = 58.5 min).
    script = render_job_script(
        request(cluster_config(), requeue_on_timeout=True, time=dt.timedelta(hours=25))
    )
    assert 'sleep "$(( 89970 - SECONDS ))"' in script
    assert "time limit in 30 s: requeueing" in script
    assert "--time=1-01:00:00" in _directives(script)
    _check_bash(script, tmp_path)
    week = render_job_script(request(cluster_config(), requeue_on_timeout=True, time=dt.timedelta(days=7)))
    assert f'sleep "$(( {7 * 86400 - 30} - SECONDS ))"' in week
    plain = render_job_script(request(cluster_config()))
    assert "requeueing ${xm_job_ref} (restart" in plain and "SECONDS" not in plain  # no watchdog unless asked


def test_requeue_on_timeout_counts_whole_minutes_and_the_grace_period() -> None:
    cluster = cluster_config()
    executor = Slurm(
        requirements=JobRequirements(cluster=cluster),
        time=dt.timedelta(minutes=90, seconds=1),  # Slurm rounds the limit up to 91 minutes
        timeout_signal_grace_period=dt.timedelta(minutes=5),
        requeue_on_timeout=True,
    )
    assert executor.requeue_margin() == dt.timedelta(seconds=100)
    assert executor.requeue_after() == 91 * 60 - 100


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"nice": 2**31}, "nice=2147483648"),
        ({"nice": -(2**31)}, "nice=-2147483648"),
        ({"nice": "5"}, "nice='5'"),
        ({"bind": {"cpu": "cores"}}, "unknown kind 'cpu'"),
        ({"bind": {"gpu": "close st"}}, "bind['gpu']='close st'"),
        ({"gres_flags": "enforce_binding"}, "'enforce_binding' is not a --gres-flags value"),
        ({"exclusive": "node"}, "exclusive='node'"),
        ({"exclusive": True, "oversubscribe": True}, "oversubscribe=True"),
        ({"reservation": "a b"}, "reservation='a b'"),
        ({"requeue_on_timeout": True, "requeue": False}, "requeue_on_timeout=True needs requeue=True"),
        ({"requeue_on_timeout": True, "time": dt.timedelta(seconds=30)}, "less than half its time"),
    ],
)
def test_bad_options_are_refused_naming_the_value(kw: dict[str, Any], named: str) -> None:
    kw = {"time": dt.timedelta(hours=1), **kw}
    with pytest.raises(ValidationError) as error:
        Slurm(requirements=JobRequirements(cluster=cluster_config()), **kw)
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("mount", "named"),
    [
        (lambda: MountSpec("data", "/data"), "'data' must be an absolute path"),
        (lambda: MountSpec("/data", "data"), "'data' must be an absolute path"),
        (lambda: MountSpec("/data", "/"), "the destination '/'"),
        (lambda: MountSpec("/a:b", "/data"), "contains ':'"),
        (lambda: MountSpec("/data", kind="dir"), "kind='dir'"),
        (lambda: MountSpec("/data", mode="ro"), "mode='ro'"),
        (lambda: cluster_config(mounts=[MountSpec("/a", "/x"), MountSpec("/b", "/x/")]), "both go to"),
        (lambda: cluster_config(mounts=["/data"]), "list of xm_slurm.config.MountSpec"),
    ],
)
def test_bad_mounts_are_refused_naming_the_value(mount: Any, named: str) -> None:
    with pytest.raises(ValidationError) as error:
        mount()
    assert named in str(error.value)


def test_mount_names_are_exported_as_upstream_spells_them() -> None:
    for name in ("MountSpec", "MountKind", "MountMode", "nvidia_mounts", "infiniband_mounts"):
        assert getattr(xm_slurm, name) is getattr(xm_slurm.config, name)
    assert MountSpec("/scratch") == MountSpec(
        "/scratch", "/scratch", mode=MountMode.READ_ONLY
    )  # paths decide


@pytest.mark.parametrize("runtime", [ContainerRuntime.PODMAN, ContainerRuntime.APPTAINER])
def test_mounts_render_mode_selection_and_shell_syntax(runtime: ContainerRuntime, tmp_path: Path) -> None:
    mounts = [
        MountSpec("/network/scratch/${USER:0:1}/$USER", "/scratch"),
        MountSpec("/datasets", "/data", mode=MountMode.READ_ONLY),
        MountSpec("/etc/site.conf", kind=MountKind.FILE, mode=MountMode.READ_ONLY),
        *nvidia_mounts(),
        *infiniband_mounts(),
    ]
    cluster = cluster_config(runtime, mounts=mounts)
    cpu_job = render_job_script(request(cluster))
    gpu_job = render_job_script(request(cluster, requirements={"GPU": 1}))
    flag = "--volume" if runtime is ContainerRuntime.PODMAN else "--bind"
    for script in (cpu_job, gpu_job):
        assert (
            f'{flag}="/network/scratch/${{USER:0:1}}/$USER:/scratch:rw"' in script
        )  # the node's bash expands
        assert f'{flag}="/datasets:/data:ro"' in script
        assert f'{flag}="/etc/site.conf:/etc/site.conf:ro"' in script
        _check_bash(script, tmp_path)
    # NVIDIA tools and InfiniBand: GPU jobs only.
    assert "nvidia-smi" not in cpu_job and "/dev/infiniband" not in cpu_job
    assert f'{flag}="/usr/bin/nvidia-smi:/usr/bin/nvidia-smi:ro"' in gpu_job
    if runtime is ContainerRuntime.PODMAN:
        assert '--device="/dev/infiniband:/dev/infiniband:rw"' in gpu_job
    else:
        assert '--bind="/dev/infiniband:/dev/infiniband:rw"' in gpu_job


def test_tasks_start_with_srun_exact_after_a_per_node_pull(tmp_path: Path) -> None:
    script = render_job_script(request(cluster_config(), requirements={"replicas": 4}))
    pull = script.index("--ntasks-per-node=1 --kill-on-bad-exit=1 bash -c 'xm_pull")
    assert '--nodes="${SLURM_JOB_NUM_NODES}" --ntasks="${SLURM_JOB_NUM_NODES}"' in script
    assert pull < script.index("srun --ntasks=4 --exact")
    assert "for attempt in 1 2 3 4; do" in script  # retried with a growing pause
    one = render_job_script(request(cluster_config()))
    assert "\nxm_pull localhost:5000/" in one and "bash -c 'xm_pull" not in one  # one task: no extra step
    group = render_job_script(request(cluster_config(), components=2))
    assert group.count("--ntasks-per-node=1") == 2 and "SLURM_JOB_NUM_NODES_HET_GROUP_1" in group
    apptainer = render_job_script(
        request(cluster_config(ContainerRuntime.APPTAINER), image="r.example.org/i@sha256:" + "a" * 64)
    )
    assert "for xm_attempt in 1 2 3 4; do" in apptainer and "srun --ntasks=1 --exact" in apptainer
    for text in (script, one, group, apptainer):
        _check_bash(text, tmp_path)


def test_rendezvous_and_group_variables(tmp_path: Path) -> None:
    req = dataclasses.replace(request(cluster_config(), components=2), names=("learner", "actor-1"))
    script = render_job_script(req)
    assert 'xm_rendezvous "$SLURM_JOB_NODELIST_HET_GROUP_1" "$SLURM_JOB_ID_HET_GROUP_1"' in script
    assert "export XM_SLURM_JOB_GROUP_INDEX=1 XM_SLURM_JOB_GROUP_NAME=actor-1" in script
    assert "XM_SLURM_JOB_GROUP_ACTOR_1_NODELIST=" in script
    for name in ("MASTER_ADDR", "MASTER_PORT", "XM_SLURM_JOB_GROUP_LEARNER_NODELIST"):
        assert f"--env={name} \\" in script
    assert "local port=$(( 10000 + $2 % 10000 ))" in script and 'MASTER_PORT="$port"' in script
    # Component 1 logs apart, component 0 with the batch script.
    assert '--output=/tmp/xm-slurm-render-tests/00000042/"slurm-${SLURM_JOB_ID}+1.out"' in script
    _check_bash(script, tmp_path)
    with pytest.raises(ValidationError, match="both give XM_SLURM_JOB_GROUP_A_B_NODELIST"):
        render_job_script(dataclasses.replace(req, names=("a-b", "a_b")))
    with pytest.raises(ValidationError, match="one non-empty name per job"):
        dataclasses.replace(req, names=("only-one",))


@pytest.mark.parametrize("shell", ["dash", "busybox"])
@pytest.mark.parametrize(
    ("tasks_per_node", "node", "local_world"),
    [("1", "0", "1"), ("2(x2)", "1", "2"), ("2(x3),1", "3", "1"), ("4,2(x2),1", "2", "2"), ("3", "0", "3")],
)
def test_bootstrap_sets_the_rendezvous_variables(
    shell: str, tasks_per_node: str, node: str, local_world: str
) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    argv = [exe, "sh"] if shell == "busybox" else [exe]
    payload = base64.b64encode(b'echo "$RANK $LOCAL_RANK $LOCAL_WORLD_SIZE $NODE_RANK $WORLD_SIZE"').decode()
    env = {
        "PATH": "/usr/bin:/bin",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": node,
        "SLURM_STEP_NUM_TASKS": "7",
        "SLURM_STEP_TASKS_PER_NODE": tasks_per_node,
        "XM_SLURM_PAYLOAD": payload,
    }
    out = subprocess.run([*argv, "-c", BOOTSTRAP], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["5", "1", local_world, node, "7"]


def test_debug_renders_the_trace(tmp_path: Path) -> None:
    req = request(cluster_config())
    script = render_job_script(dataclasses.replace(req, debug=True))
    assert "export XM_SLURM_DEBUG=1" in script and "--env=XM_SLURM_DEBUG \\" in script
    # Tracing starts after the payloads are set and is off while each step's payload is exported.
    assert script.index("xm_payload_0='") < script.index("\nxm_trace\n")
    assert '{ set +x; } 2>/dev/null; export XM_SLURM_PAYLOAD="$xm_payload_0"; xm_trace' in script
    assert "export XM_SLURM_DEBUG=1" not in render_job_script(req)
    _check_bash(script, tmp_path)


def test_the_pull_is_retried_with_a_growing_pause(tmp_path: Path) -> None:
    """The rendered xm_pull, run with a podman that fails twice and a sleep that only records its pauses."""
    script = render_job_script(request(cluster_config(), requirements={"replicas": 2}))
    function = script[script.index("xm_pull() {") : script.index("export -f xm_pull")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    (bin_dir / "podman").write_text(
        f'#!/bin/sh\necho "podman $*" >>{log}\n'
        f'[ "$1" = pull ] && [ "$(grep -c "^podman pull" {log})" -le 2 ] && exit 1\n'
        '[ "$1" = image ] && exit 1\nexit 0\n'
    )
    (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "sleep $1" >>{log}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    result = subprocess.run(
        ["bash", "-c", function + "xm_pull r.example.org/img:1 --authfile=/a.json"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURMD_NODENAME": "n7"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        "podman image exists r.example.org/img:1",
        "podman pull --quiet --authfile=/a.json r.example.org/img:1",
        "sleep 5",
        "podman pull --quiet --authfile=/a.json r.example.org/img:1",
        "sleep 15",
        "podman pull --quiet --authfile=/a.json r.example.org/img:1",
    ]
    assert "pulling r.example.org/img:1 on n7 failed (attempt 2 of 4); retrying in 15 s" in result.stderr


def test_the_apptainer_conversion_is_retried_with_a_growing_pause(tmp_path: Path) -> None:
    image = "r.example.org/img@sha256:" + "b" * 64
    script = render_job_script(request(cluster_config(ContainerRuntime.APPTAINER), image=image))
    function = script[script.index("xm_image_cache=") : script.index("xm_convert r.example.org")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    (bin_dir / "apptainer").write_text(
        f'#!/bin/sh\necho "apptainer $1" >>{log}\n'
        f'[ "$(grep -c "^apptainer build" {log})" -le 2 ] && exit 1\necho sif >"$2"\n'
    )
    (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "sleep $1" >>{log}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    cache = tmp_path / "cache"
    result = subprocess.run(
        ["bash", "-c", function + f"xm_convert {image} sha256-{'b' * 64} ''"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "9", "XM_SLURM_IMAGE_CACHE": str(cache)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert log.read_text().split("\n")[:-1] == [
        "apptainer build",
        "sleep 5",
        "apptainer build",
        "sleep 15",
        "apptainer build",
    ]
    assert (cache / f"sha256-{'b' * 64}.sif").read_text() == "sif\n"
    assert not list(cache.glob("*.part-*"))
