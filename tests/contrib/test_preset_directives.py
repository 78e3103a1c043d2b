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

# (preset, accelerator, count per task, the directives the site documents for it)
CASES = [
    ("narval", R.A100, 2, ["--gres=gpu:a100:2"]),
    ("beluga", R.V100, 1, ["--gres=gpu:v100:1"]),
    ("cedar", R.V100, 4, ["--gres=gpu:v100l:4"]),
    ("cedar", R.V100_32GIB, 1, ["--gres=gpu:v100l:1"]),
    ("graham", R.T4, 2, ["--gres=gpu:t4:2"]),
    ("graham", R.V100, 1, ["--gres=gpu:v100:1"]),
    ("graham", R.A100, 2, ["--gres=gpu:a100:2"]),
    ("graham", R.A5000, 2, ["--gres=gpu:a5000:2"]),
    ("fir", R.H100, 4, ["--gres=gpu:h100:4"]),
    ("nibi", R.H100_80GIB, 8, ["--gres=gpu:h100:8"]),
    ("rorqual", R.H100, 1, ["--gres=gpu:h100:1"]),
    ("trillium-gpu", R.H100, 4, ["--gres=gpu:h100:4"]),
    ("killarney", R.L40S, 1, ["--gres=gpu:l40s:1"]),
    ("killarney", R.H100, 8, ["--gres=gpu:h100:8"]),
    ("vulcan", R.L40S, 4, ["--gres=gpu:l40s:4"]),
    ("tamia", R.H100, 4, ["--gres=gpu:h100:4"]),
    ("tamia", R.H200, 8, ["--gres=gpu:h200:8"]),
    ("mila", R.A100, 1, ["--gres=gpu:a100:1"]),
    ("mila", R.A100_80GIB, 2, ["--gres=gpu:a100l:2"]),
    ("mila", R.RTX8000, 1, ["--gres=gpu:1", "--constraint=turing"]),
    ("mila", R.V100, 2, ["--gres=gpu:2", "--constraint=volta"]),
    ("mila", R.L40S, 1, ["--gres=gpu:1", "--constraint=lovelace"]),
    ("mila", R.H100, 4, ["--gres=gpu:4", "--constraint=hopper"]),
]


@pytest.mark.parametrize(("name", "accelerator", "count", "expected"), CASES)
def test_gres_map_renders_the_documented_directive(
    name: str, accelerator: ResourceType, count: int, expected: list[str]
) -> None:
    cluster = clusters.by_name(name, "me", account="def-pi")
    requirements = JobRequirements({accelerator: count}, CPU=2, cluster=cluster)
    executor = Slurm(requirements=requirements, time=dt.timedelta(hours=3))
    directives = executor.to_directives()
    gpu_directives = [d for d in directives if d.startswith(("--gres", "--gpus", "--constraint"))]
    assert gpu_directives == expected
    assert "--account=def-pi" in directives and "--cpus-per-task=2" in directives


@pytest.mark.parametrize("name", clusters.names())
def test_generic_gpu_works_everywhere(name: str) -> None:
    requirements = JobRequirements(GPU=1, cluster=clusters.by_name(name))
    assert "--gres=gpu:1" in requirements.to_directives()


@pytest.mark.parametrize(
    ("name", "accelerator", "known"),
    [
        ("narval", R.V100, "A100"),
        ("fir", R.A100, "H100"),
        ("vulcan", R.H100, "L40S"),
        ("cedar", R.P100, "V100"),  # P100 specifiers unverified: not mapped
        ("mila", R.A6000, "RTX8000"),  # A6000 has no single-word feature and no verified GRES name
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
    assert "#SBATCH --gres=gpu:a100:1" in script
    assert "#SBATCH --account=def-pi" in script
    assert re.search(r"^module load apptainer$", script, re.MULTILINE)
    assert 'export APPTAINER_CACHEDIR="${SLURM_TMPDIR:-/tmp}/apptainer-cache"' in script
    assert "--bind=/scratch:/scratch" in script and "--bind=/project:/project" in script
    assert "apptainer exec" in script and "--nv" in script
    if shutil.which("bash"):
        checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True, check=False)
        assert checked.returncode == 0, checked.stderr
