"""Each preset carries the site facts as the sites publish them (the shared sites.md: xmanager-slurm 0.5.0's
presets, 0.4.7's for the retired sites), checked through what a job gets: its SSH endpoint and pinned key, its
directives, its script's prolog and environment, and its mounts.

The expected facts are written out here from sites.md, not read back from `sites.py`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig
from xm_slurm.contrib import clusters
from xm_slurm.contrib.clusters.factory import RetiredSiteWarning, endpoints
from xm_slurm.errors import ValidationError
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import Slurm
from xm_slurm.rendering import JobComponent, JobScriptRequest, Trial, render_job_script
from xm_slurm.resources import JobRequirements, ResourceType

R = ResourceType
GIB = 1024**3

# --- sites.md, "Login endpoints and pinned host keys" (all ssh-ed25519) -----------------------------------
HOST_KEYS = {
    "mila": "AAAAC3NzaC1lZDI1NTE5AAAAIBTPCzWRkwYDr/cFb4d2uR6rFlUtqfH3MoLMXPpJHK0n",
    "fir": "AAAAC3NzaC1lZDI1NTE5AAAAIJtenyJz+inwobvlJntWYFNu+ANcVWNcOHRKcEN6zmDo",
    "narval": "AAAAC3NzaC1lZDI1NTE5AAAAILFxB0spH5RApc43sBx0zOxo1ARVH0ezU+FbQH95FW+h",
    "nibi": "AAAAC3NzaC1lZDI1NTE5AAAAIEcmFoQZr6+KUHm/zm/BJpnNIlME7GytMxbHgfAUfoQX",
    "rorqual": "AAAAC3NzaC1lZDI1NTE5AAAAINME5e9bifKZbuKKOQSpe3xrvC4g1b0QLMYj+AXBQGJe",
    "killarney": "AAAAC3NzaC1lZDI1NTE5AAAAIGlzaBBtvhJsSr23rMoY41gy8Svv1IOct8TBRH9CGuJf",
    "tamia": "AAAAC3NzaC1lZDI1NTE5AAAAIN2wL9wOa0VveA/2l2ky/OhPsQfYtKuX99dyNnUTSYeU",
    "vulcan": "AAAAC3NzaC1lZDI1NTE5AAAAIMuIj6T45HqVeJgRotH9Qq46FzidekS2lXkD7FOTltnC",
    # Older presets (0.4.7).
    "beluga": "AAAAC3NzaC1lZDI1NTE5AAAAIOAzTHRerKjcFhDqqgRss7Sj4xePWVn1f1QvBfUmX6Pe",
    "cedar": "AAAAC3NzaC1lZDI1NTE5AAAAIEsmR+vxeKYEDFIFj+nxlgp3ACs64VwVD5qBifQ2I5VS",
    "graham": "AAAAC3NzaC1lZDI1NTE5AAAAIDPcZ+yKur5GvPoisN2KjtEbrem/0j+JviMfAk7GVlL9",
}
# Endpoints in the order tried. tamIA: sites.md lists none, but the site documents an automation node
# (docs/clusters.md), and the preset follows the site.
ENDPOINTS: dict[str, list[tuple[str, int | None]]] = {
    "mila": [("login.server.mila.quebec", 2222)],
    **{
        site: [(f"robot.{site}.alliancecan.ca", None), (f"{site}.alliancecan.ca", 22)]
        for site in ("fir", "narval", "nibi", "rorqual")
    },
    "killarney": [("killarney.alliancecan.ca", 22)],
    "vulcan": [("vulcan.alliancecan.ca", 22)],
    "tamia": [("robot.tamia.ecpia.ca", None), ("tamia.alliancecan.ca", 22)],
    **{site: [(f"robot.{site}.alliancecan.ca", 22)] for site in ("beluga", "cedar", "graham")},
    # Not in sites.md: our own, login node only, nothing pinned.
    "trillium": [("trillium.alliancecan.ca", 22)],
    "trillium-gpu": [("trillium-gpu.alliancecan.ca", 22)],
}
RETIRED = {"beluga", "cedar", "graham"}
DRAC = ["fir", "narval", "nibi", "rorqual", "killarney", "tamia", "vulcan"]

# --- sites.md, "Mila" and "DRAC sites" ---------------------------------------------------------------------
MILA_HOST_ENV = {
    "SINGULARITY_CACHEDIR": "$SCRATCH/.apptainer",
    "SINGULARITY_TMPDIR": "$SLURM_TMPDIR",
    "SINGULARITY_LOCALCACHEDIR": "$SLURM_TMPDIR",
}
DRAC_HOST_ENV = {
    "XDG_DATA_HOME": "$SLURM_TMPDIR/.local",
    "APPTAINER_CACHEDIR": "$SCRATCH/.apptainer",
    "APPTAINER_TMPDIR": "$SLURM_TMPDIR",
    "APPTAINER_LOCALCACHEDIR": "$SLURM_TMPDIR",
}
CONTAINER_ENV = {"SCRATCH": "/scratch", "XM_SLURM_STATE_DIR": "/xm-slurm-state"}
# (source, destination, read-only) for every job.
MILA_MOUNTS = [
    ("/network/scratch/${USER:0:1}/$USER", "/scratch", False),
    ("/home/mila/${USER:0:1}/$USER/.local/state/xm-slurm", "/xm-slurm-state", False),
    ("/home/mila/${USER:0:1}/$USER/.ssh", "/home/mila/${USER:0:1}/$USER/.ssh", False),
]
DRAC_MOUNTS = [
    ("/scratch/$USER", "/scratch", False),
    ("/home/$USER/.ssh", "/home/$USER/.ssh", False),
    ("/home/$USER/.local/state/xm-slurm", "/xm-slurm-state", False),
]
INFINIBAND = [("/dev/infiniband", "/dev/infiniband", False)]
NVIDIA = [
    *((f"/usr/bin/{tool}", f"/usr/bin/{tool}", True) for tool in (
        "nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
        "nvidia-cuda-mps-server",
    )),
    ("/run/nvidia-persistenced/socket", "/run/nvidia-persistenced/socket", False),
]  # fmt: skip

# --- sites.md, "Accelerators and recommended CPU / memory per unit" ----------------------------------------
# site -> {ResourceType name: (gres, CPUs per unit or None, GiB per unit or None)}
H100_MIG_FULL = "nvidia_h100_80gb_hbm3_"
GPUS: dict[str, dict[str, tuple[str, int | None, int | None]]] = {
    "mila": {
        "RTX8000": ("rtx8000", None, None),
        "V100": ("v100", None, None),
        "A100": ("a100", None, None),
        "A100_80GIB": ("a100l", None, None),
        "A6000": ("a6000", None, None),
        "L40S": ("l40s", None, None),
        "H100": ("h100", None, None),
    },
    "narval": {
        "A100_40GIB": ("a100", 12, 128),
        "A100_40GIB_1G_5GIB": ("a100_1g.5gb", 1, 15),
        "A100_40GIB_2G_10GIB": ("a100_2g.10gb", 3, 31),
        "A100_40GIB_3G_20GIB": ("a100_3g.20gb", 6, 62),
        "A100_40GIB_4G_20GIB": ("a100_4g.20gb", 6, 62),
    },
    "rorqual": {
        "H100_80GIB": ("h100", 16, 124),
        "H100_80GIB_1G_10GIB": ("h100_1g.10gb", 2, 15),
        "H100_80GIB_2G_20GIB": ("h100_2g.20gb", 4, 31),
        "H100_80GIB_3G_40GIB": ("h100_3g.40gb", 8, 62),
    },
    "fir": {
        "H100_80GIB": ("h100", 12, 280),
        "H100_80GIB_1G_10GIB": (H100_MIG_FULL + "1g.10gb", 1, 35),
        "H100_80GIB_2G_20GIB": (H100_MIG_FULL + "2g.20gb", 3, 70),
        "H100_80GIB_3G_40GIB": (H100_MIG_FULL + "3g.40gb", 6, 140),
    },
    "nibi": {
        "H100_80GIB": ("h100", 14, 250),
        "H100_80GIB_1G_10GIB": (H100_MIG_FULL + "1g.10gb", 2, 31),
        "H100_80GIB_2G_20GIB": (H100_MIG_FULL + "2g.20gb", 4, 62),
        "H100_80GIB_3G_40GIB": (H100_MIG_FULL + "3g.40gb", 6, 124),
    },
    "tamia": {"H100_80GIB": ("h100", 12, 124)},
    "killarney": {"L40S_48GIB": ("l40s", None, None), "H100_80GIB": ("h100", None, None)},
    "vulcan": {"L40S_48GIB": ("l40s", None, None)},
    # Older presets (0.4.7).
    "beluga": {"V100": ("tesla_v100-sxm2-16gb", None, None)},
    "cedar": {"V100_32GIB": ("v100l", None, None), "P100": ("p100", None, None)},
    "graham": {
        "V100": ("v100", None, None),
        "P100": ("p100", None, None),
        "A100": ("a100", None, None),
        "A5000": ("a5000", None, None),
    },
}
# The generic GPU gets the site's full-GPU recommendation.
FULL_GPU = {"narval": "A100_40GIB", "rorqual": "H100_80GIB", "fir": "H100_80GIB", "nibi": "H100_80GIB",
            "tamia": "H100_80GIB"}  # fmt: skip


@pytest.fixture(autouse=True)
def _retired_sites_warn_quietly() -> Iterator[None]:
    # Their warning has its own test below; here it is expected noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetiredSiteWarning)
        yield


def _preset(name: str, **options: Any) -> SlurmClusterConfig:
    return clusters.by_name(name, **options)


def _script(cluster: SlurmClusterConfig, **resources: Any) -> str:
    executor = Slurm(requirements=JobRequirements(cluster=cluster, **resources), time=dt.timedelta(hours=2))
    job = JobComponent(
        executable=RemoteImage(image="registry.example.org/img:1", entrypoint=["python"]), executor=executor
    )
    script = render_job_script(
        JobScriptRequest(
            cluster=cluster,
            jobs=[job],
            trials=[Trial(work_unit_id=1)],
            experiment_id=7,
            job_name="facts",
            state_dir="/home/me/.local/state/xm-slurm",
        )
    )
    if shutil.which("bash"):
        checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True, check=False)
        assert checked.returncode == 0, checked.stderr
    return script


def _mounts(cluster: SlurmClusterConfig, requirements: JobRequirements) -> list[tuple[str, str, bool]]:
    return [(m.source, m.target, m.read_only) for m in cluster.mount_specs if m.applies_to(requirements)]


def _directives(cluster: SlurmClusterConfig, **resources: Any) -> list[str]:
    return JobRequirements(cluster=cluster, **resources).to_directives()


# --- logins -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_login_goes_to_the_first_endpoint_with_the_sites_pinned_key(name: str) -> None:
    cluster = _preset(name, user="me")
    first_host, first_port = ENDPOINTS[name][0]
    assert (cluster.ssh.host, cluster.ssh.port, cluster.ssh.user) == (first_host, first_port, "me")
    key = cluster.ssh.host_public_key
    if name in HOST_KEYS:
        assert key is not None and (key.algorithm, key.key) == ("ssh-ed25519", HOST_KEYS[name])
    else:
        assert key is None  # known_hosts decides


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_every_endpoint_is_listed_in_order(name: str) -> None:
    # What the transport's failover tries (robot node first, then the login node), one key for all.
    cluster = _preset(name, user="me")
    assert [(e.hostname, e.port) for e in cluster.ssh.endpoints] == ENDPOINTS[name]
    assert cluster.ssh.user == "me"
    listed = endpoints(clusters.PRESETS[name].site)
    assert [(e.hostname, e.port) for e in listed] == ENDPOINTS[name]


def test_a_job_row_stores_the_preset_as_0_4_19_does() -> None:
    # sites.md, "Stored per job": keys in this order, default separators, robot endpoints with a null port.
    assert clusters.narval().ssh.to_json() == (
        '{"endpoints": [["robot.narval.alliancecan.ca", null], ["narval.alliancecan.ca", 22]], '
        f'"public_key": ["ssh-ed25519", "{HOST_KEYS["narval"]}"], "user": null}}'
    )


def test_host_replaces_the_endpoints_and_keeps_the_pin() -> None:
    cluster = clusters.narval("me", host="narval.alliancecan.ca")
    assert [(e.hostname, e.port) for e in cluster.ssh.endpoints] == [("narval.alliancecan.ca", None)]
    assert cluster.ssh.host_public_key is not None
    assert cluster.ssh.host_public_key.key == HOST_KEYS["narval"]


# --- prolog, environment, directives ----------------------------------------------------------------------


def _prolog_line(script: str) -> list[str]:
    return re.findall(r"^module load .*$", script, re.MULTILINE)


@pytest.mark.parametrize(
    ("name", "options", "prolog"),
    [
        ("mila", {}, "module load singularity"),
        ("narval", {}, "module load apptainer httpproxy"),
        ("rorqual", {}, "module load apptainer httpproxy"),
        ("narval", {"proxy": "submission-host"}, "module load apptainer"),
        ("rorqual", {"proxy": "submission-host"}, "module load apptainer"),
        ("narval", {"proxy": "me@gateway.example.org"}, "module load apptainer httpproxy"),
        ("fir", {}, "module load apptainer"),
        ("nibi", {}, "module load apptainer"),
        ("killarney", {}, "module load apptainer"),
        ("tamia", {}, "module load apptainer"),
        ("vulcan", {}, "module load apptainer"),
        # 0.4.7: beluga as narval; graham tunnels through the submission host unless told otherwise.
        ("beluga", {}, "module load apptainer httpproxy"),
        ("beluga", {"proxy": "submission-host"}, "module load apptainer"),
        ("cedar", {}, "module load apptainer"),
        ("graham", {}, "module load apptainer"),
        ("graham", {"proxy": "me@gateway.example.org"}, "module load apptainer httpproxy"),
    ],
)
def test_the_job_script_loads_the_sites_modules(name: str, options: dict[str, Any], prolog: str) -> None:
    cluster = _preset(name, **options)
    assert _prolog_line(_script(cluster, CPU=1)) == [prolog]


@pytest.mark.parametrize(
    ("name", "options", "tunnel"),
    [
        ("narval", {}, None),
        ("narval", {"proxy": "submission-host"}, '"${SLURM_SUBMIT_HOST}"'),
        ("rorqual", {"proxy": "me@gateway.example.org"}, "me@gateway.example.org"),
        ("graham", {}, '"${SLURM_SUBMIT_HOST}"'),
        ("fir", {}, None),
    ],
)
def test_proxy_selects_the_tunnel(name: str, options: dict[str, Any], tunnel: str | None) -> None:
    script = _script(_preset(name, **options), CPU=1)
    if tunnel is None:
        assert "ssh -D" not in script and "ALL_PROXY" not in script
    else:
        assert "ALL_PROXY" in script and tunnel in script


@pytest.mark.parametrize("name", ["mila", *DRAC, "beluga", "cedar", "graham"])
def test_host_and_container_environment(name: str) -> None:
    cluster = _preset(name)
    host_env = MILA_HOST_ENV if name == "mila" else DRAC_HOST_ENV
    assert dict(cluster.host_environment) == host_env
    assert dict(cluster.container_environment) == CONTAINER_ENV
    script = _script(cluster, CPU=1)
    for variable, value in host_env.items():
        # Exported on the node, where the job's bash expands $SCRATCH and $SLURM_TMPDIR.
        assert f'export {variable}="{value}"' in script
    runtime = ContainerRuntime.SINGULARITY if name == "mila" else ContainerRuntime.APPTAINER
    assert cluster.runtime is runtime and f"{runtime.value} exec" in script


@pytest.mark.parametrize("name", ["mila", *DRAC])
def test_no_preset_sets_account_partition_qos_or_working_folder(name: str) -> None:
    cluster = _preset(name)
    assert (cluster.account, cluster.partition, cluster.qos, cluster.cwd, cluster.epilog) == (None,) * 5
    assert not any(d.startswith(("--account", "--partition", "--qos")) for d in _directives(cluster, CPU=1))


# --- mounts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mila", *DRAC])
def test_mounts_for_cpu_and_gpu_jobs(name: str) -> None:
    cluster = _preset(name)
    every_job = MILA_MOUNTS if name == "mila" else DRAC_MOUNTS
    gpu_only = [*NVIDIA, *INFINIBAND] if name == "mila" else INFINIBAND
    cpu_job = JobRequirements(CPU=1, cluster=cluster)
    assert sorted(_mounts(cluster, cpu_job)) == sorted(every_job)
    for gpu_job in (JobRequirements(GPU=1, cluster=cluster), *(
        JobRequirements({R[kind]: 1}, cluster=cluster) for kind in GPUS[name]
    )):  # fmt: skip
        assert sorted(_mounts(cluster, gpu_job)) == sorted(every_job + gpu_only), gpu_job


def test_user_mounts_are_added_and_win_at_the_same_container_path() -> None:
    cluster = clusters.narval(mounts={"/project/def-pi/data": "/data", "/project/def-pi/me": "/scratch"})
    mounts = {m.target: m.source for m in cluster.mount_specs}
    assert mounts["/data"] == "/project/def-pi/data"
    assert mounts["/scratch"] == "/project/def-pi/me"  # the user's, not /scratch/$USER
    assert mounts["/xm-slurm-state"] == "/home/$USER/.local/state/xm-slurm"  # the preset's stay
    assert len(mounts) == len(cluster.mount_specs)  # one per container path


def test_the_mila_scratch_mount_reaches_the_runtime() -> None:
    script = _script(clusters.mila(), CPU=1)
    # The job's bash expands the user's name on the node.
    assert "/network/scratch/${USER:0:1}/$USER" in script and ":/scratch" in script


# --- GPUs -----------------------------------------------------------------------------------------------------


def _gpu_cases() -> list[tuple[str, str, str, int | None, int | None]]:
    return [(site, kind, *facts) for site, kinds in GPUS.items() for kind, facts in kinds.items()]


@pytest.mark.parametrize(("name", "kind", "gres", "cpus", "gib"), _gpu_cases())
def test_each_accelerator_asks_for_the_sites_gres(
    name: str, kind: str, gres: str, cpus: int | None, gib: int | None
) -> None:
    cluster = _preset(name)
    directives = _directives(cluster, **{kind: 1})
    gpu = [d for d in directives if d.startswith(("--gres", "--gpus"))]
    assert len(gpu) == 1 and re.fullmatch(rf"--(gres=gpu|gpus(-per-task)?)[=:]{re.escape(gres)}:1", gpu[0]), (
        gpu
    )


@pytest.mark.parametrize(("name", "kind", "gres", "cpus", "gib"), [c for c in _gpu_cases() if c[3]])
def test_recommended_cpus_and_memory_fill_in_where_the_job_sets_none(
    name: str, kind: str, gres: str, cpus: int, gib: int
) -> None:
    cluster = _preset(name)
    directives = _directives(cluster, **{kind: 2})
    assert f"--cpus-per-task={2 * cpus}" in directives
    assert (
        f"--mem={2 * gib * 1024}M" in directives or f"--mem-per-cpu={-(-gib * 1024 // cpus)}M" in directives
    )


@pytest.mark.parametrize(("name", "kind"), FULL_GPU.items())
def test_the_generic_gpu_gets_the_full_gpu_recommendation(name: str, kind: str) -> None:
    cluster = _preset(name)
    _, cpus, gib = GPUS[name][kind]
    directives = _directives(cluster, GPU=1)
    assert f"--cpus-per-task={cpus}" in directives and f"--mem={gib * 1024}M" in directives


@pytest.mark.parametrize("name", ["mila", "killarney", "vulcan"])
def test_no_recommendation_no_filled_in_resources(name: str) -> None:
    directives = _directives(_preset(name), GPU=1)
    assert not any(d.startswith(("--cpus-per-task", "--mem")) for d in directives)


def test_a_different_cpu_count_is_kept_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    cluster = clusters.rorqual()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            directives = _directives(cluster, H100=1, CPU=4, RAM=124 * GIB)
    assert "--cpus-per-task=4" in directives and "--mem=126976M" in directives
    warned = [r.getMessage() for r in caplog.records if "recommends" in r.getMessage()]
    assert len(warned) == 1 and "rorqual" in warned[0] and "16" in warned[0], warned


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("narval", "H100"),
        ("fir", "A100"),
        ("vulcan", "H100"),
        ("killarney", "A100"),
        ("mila", "V100_32GIB"),
        ("rorqual", "A100_40GIB_1G_5GIB"),
        ("trillium", "H100"),
    ],
)
def test_an_accelerator_the_site_does_not_list_is_refused(name: str, kind: str) -> None:
    with pytest.raises(ValidationError, match=rf"{kind}|{R[kind]}"):
        JobRequirements({R[kind]: 1}, cluster=_preset(name))


# --- retired sites --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RETIRED))
def test_retired_sites_import_build_and_warn_that_they_are_retired(name: str) -> None:
    function = getattr(clusters.drac, name)
    with pytest.warns(RetiredSiteWarning, match=rf"'{name}' is retired") as caught:
        cluster = function(user="me")
    assert cluster.name == name
    assert [w.filename for w in caught] == [__file__]  # the warning points at the caller's line


@pytest.mark.parametrize("name", sorted(set(ENDPOINTS) - RETIRED))
def test_current_sites_do_not_warn(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _preset(name)
