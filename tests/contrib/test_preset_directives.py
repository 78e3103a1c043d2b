"""The presets' GPU maps render to the sites' documented sbatch directives, through the real model."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess

import pytest
from xmanager import xm

from xm_slurm.contrib import clusters
from xm_slurm.errors import ValidationError
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import Slurm
from xm_slurm.rendering import JobComponent, JobScriptRequest, Trial, render_job_script
from xm_slurm.resources import JobRequirements, ResourceType

R = ResourceType

# Retired sites warn when built; their warning has its own test (test_site_facts.py).
pytestmark = pytest.mark.filterwarnings("ignore::xm_slurm.contrib.clusters.factory.RetiredSiteWarning")

# Maps beyond sites.md (which test_site_facts.py checks): types our own presets add, from the sites' pages.
# (preset, accelerator, count per task, the GPU type the site documents for it)
CASES = [
    ("cedar", R.V100, 4, "v100l"),
    ("graham", R.T4, 2, "t4"),
    ("graham", R.V100_32GIB, 1, "v100"),
    ("trillium-gpu", R.H100, 4, "h100"),
    ("tamia", R.H200, 8, "h200"),
]


def _gpu_directive(directives: list[str]) -> str:
    [gpu] = [d for d in directives if d.startswith(("--gres", "--gpus"))]
    return gpu


@pytest.mark.parametrize(("name", "accelerator", "count", "gres"), CASES)
def test_gres_map_renders_the_documented_directive(
    name: str, accelerator: ResourceType, count: int, gres: str
) -> None:
    cluster = clusters.by_name(name, "me", account="def-pi")
    requirements = JobRequirements({accelerator: count}, CPU=2, cluster=cluster)
    executor = Slurm(requirements=requirements, time=dt.timedelta(hours=3))
    directives = executor.to_directives()
    assert re.fullmatch(rf"--(gres=gpu:|gpus-per-task=){gres}:{count}", _gpu_directive(directives))
    assert "--account=def-pi" in directives and "--cpus-per-task=2" in directives


@pytest.mark.parametrize("name", clusters.names())
def test_generic_gpu_works_everywhere(name: str) -> None:
    requirements = JobRequirements(GPU=1, cluster=clusters.by_name(name))
    assert re.fullmatch(r"--(gres=gpu:|gpus-per-task=)1", _gpu_directive(requirements.to_directives()))


@pytest.mark.parametrize(
    ("name", "accelerator", "known"),
    [
        ("narval", R.V100, "A100"),
        ("fir", R.A100, "H100"),
        ("vulcan", R.H100, "L40S"),
        ("cedar", R.A100, "P100"),
        ("mila", R.V100_32GIB, "RTX8000"),
        ("trillium", R.H100, "none"),  # the CPU subcluster has no GPUs; use trillium-gpu
    ],
)
def test_unknown_accelerator_on_a_site_is_a_clear_error(
    name: str, accelerator: ResourceType, known: str
) -> None:
    cluster = clusters.by_name(name)
    with pytest.raises(ValidationError) as info:
        JobRequirements({accelerator: 1}, cluster=cluster)
    message = str(info.value)
    assert str(accelerator) in message
    assert repr(name) in message
    assert known in message


def _job(cluster_name: str, *, time: dt.timedelta, **resources: int) -> xm.Job:
    cluster = clusters.by_name(cluster_name)
    executor = Slurm(requirements=JobRequirements(cluster=cluster, **resources), time=time)
    return xm.Job(
        executable=RemoteImage(image="registry.example.org/img:1", entrypoint=["python"]), executor=executor
    )


@pytest.mark.parametrize("name", ["narval", "fir", "rorqual", "graham", "beluga", "vulcan"])
def test_site_maximum_job_duration_is_checked(name: str) -> None:
    validate = clusters.by_name(name).validate
    assert validate is not None
    validate(_job(name, time=dt.timedelta(days=7)))  # at the limit: accepted
    with pytest.raises(ValidationError, match=rf"exceeds {name}'s maximum job duration of 7 days"):
        validate(_job(name, time=dt.timedelta(days=7, seconds=1)))


def test_tamia_wants_whole_gpu_nodes_for_a_day_at_most() -> None:
    validate = clusters.tamia().validate
    assert validate is not None
    validate(_job("tamia", time=dt.timedelta(hours=24), H100=4))
    validate(_job("tamia", time=dt.timedelta(hours=1), H200=8))
    with pytest.raises(ValidationError, match=r"H100=2 per task.*H100=4"):
        validate(_job("tamia", time=dt.timedelta(hours=1), H100=2))
    with pytest.raises(ValidationError, match=r"H200=4 per task.*H200=8"):
        validate(_job("tamia", time=dt.timedelta(hours=1), H200=4))
    with pytest.raises(ValidationError, match="maximum job duration of 1 day"):
        validate(_job("tamia", time=dt.timedelta(hours=25), H100=4))


def test_the_callers_validate_hook_runs_after_the_sites() -> None:
    seen: list[object] = []
    cluster = clusters.narval(validate=seen.append)
    assert cluster.validate is not None
    job = _job("narval", time=dt.timedelta(hours=1), A100=1)
    cluster.validate(job)
    assert seen == [job]
    with pytest.raises(ValidationError):  # the site's check still refuses first
        cluster.validate(_job("narval", time=dt.timedelta(days=8)))
    assert seen == [job]


def test_presets_without_limits_take_the_callers_hook_as_is() -> None:
    def hook(job: object) -> None:
        raise ValidationError("mine")

    assert clusters.nibi(validate=hook).validate is hook
    assert clusters.nibi().validate is None


def test_validate_ignores_objects_without_a_slurm_executor() -> None:
    validate = clusters.narval().validate
    assert validate is not None
    validate(object())  # e.g. a job group: nothing to check here, and no crash


def test_rendered_script_carries_the_preset_set_up() -> None:
    cluster = clusters.narval("me", account="def-pi")
    executor = Slurm(requirements=JobRequirements(A100=1, CPU=4, cluster=cluster), time=dt.timedelta(hours=2))
    job = JobComponent(
        executable=RemoteImage(image="registry.example.org/img:1", entrypoint=["python"]), executor=executor
    )
    script = render_job_script(
        JobScriptRequest(
            cluster=cluster,
            jobs=[job],
            trials=[Trial(work_unit_id=1)],
            experiment_id=7,
            job_name="preset-test",
            state_dir="/scratch/me/xm-slurm",
        )
    )
    assert re.search(r"^#SBATCH --(gres=gpu:|gpus-per-task=)a100:1$", script, re.MULTILINE)
    assert "#SBATCH --account=def-pi" in script
    assert "#SBATCH --cpus-per-task=4" in script  # the job's own CPU count, not the site's 12
    assert "#SBATCH --mem=131072M" in script  # the site's 128 GiB per A100, filled in
    assert re.search(r"^module load apptainer httpproxy$", script, re.MULTILINE)
    assert 'export APPTAINER_CACHEDIR="$SCRATCH/.apptainer"' in script
    assert re.search(r"--bind=\S*/scratch/\$USER:/scratch", script)
    assert re.search(r"--bind=\S*/dev/infiniband:/dev/infiniband", script)  # a GPU job
    assert "apptainer exec" in script and "--nv" in script
    if shutil.which("bash"):
        checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True, check=False)
        assert checked.returncode == 0, checked.stderr
