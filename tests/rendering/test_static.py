"""Every rendered variant is valid bash (`bash -n`) with no shellcheck error, and renders what it should."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
from render_helpers import ODD_VALUES, cluster_config, request

from xm_slurm import dependencies as deps
from xm_slurm.config import ContainerRuntime
from xm_slurm.errors import ValidationError
from xm_slurm.rendering import Trial, render_job_script
from xm_slurm.rendering.payload import read_task_table

RUNTIMES = [ContainerRuntime.PODMAN, ContainerRuntime.APPTAINER, ContainerRuntime.SINGULARITY]
ODD_TRIALS = [Trial(work_unit_id=i, args=ODD_VALUES, env_vars={"ODD": v}) for i, v in enumerate(ODD_VALUES)]


def _variants() -> list[tuple[str, str]]:
    out = []
    for runtime in RUNTIMES:
        for proxy in (None, "submission-host", "me@gateway.example.org"):
            for requeue in (True, False):
                for gpus in ({}, {"GPU": 1}, {"A100": 2}):
                    cluster = cluster_config(
                        runtime, proxy=proxy, mounts={"/data": "/data"}, prolog="echo pro", epilog="echo epi"
                    )
                    common = {"requeue": requeue, "requirements": gpus}
                    tag = f"{runtime.value}-proxy={proxy}-requeue={requeue}-gpus={gpus}"
                    out.append(
                        (
                            f"single-{tag}",
                            render_job_script(request(cluster, trials=ODD_TRIALS[:1], **common)),
                        )
                    )
                    out.append(
                        (
                            f"array-{tag}",
                            render_job_script(request(cluster, trials=ODD_TRIALS, array=True, **common)),
                        )
                    )
                    out.append((f"group-{tag}", render_job_script(request(cluster, components=3, **common))))
    return out


VARIANTS = _variants()


@pytest.mark.parametrize("script", [v[1] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_bash_n_and_shellcheck(script: str, tmp_path: Path) -> None:
    path = tmp_path / "job.sh"
    path.write_text(script, encoding="utf-8")
    subprocess.run(["bash", "-n", str(path)], check=True)
    result = subprocess.run(
        ["shellcheck", "-S", "error", "-s", "bash", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def _directives(script: str) -> list[str]:
    return re.findall(r"^#SBATCH (.*)$", script, flags=re.M)


def test_single_job_directives() -> None:
    cluster = cluster_config()
    script = render_job_script(request(cluster, requirements={"GPU": 1}))
    d = _directives(script)
    assert "--output=/tmp/xm-slurm-render-tests/00000042/slurm-%j.out" in d
    assert "--error=/tmp/xm-slurm-render-tests/00000042/slurm-%j.out" in d
    assert "--job-name=xm-render-test" in d and "--signal=USR2@90" in d and "--gpus-per-task=1" in d
    assert not any(x.startswith(("--array", "--gres")) for x in d)
    # The batch shell never execs podman; a GPU step's task is a bash that picks its devices, then does.
    assert not re.search(r"^\s*exec podman", script, re.M) and "xm-gpus --rm --init --network=host" in script


def test_array_has_one_task_per_trial_and_array_logs() -> None:
    script = render_job_script(request(cluster_config(), trials=ODD_TRIALS, array=True))
    d = _directives(script)
    assert f"--array=0-{len(ODD_TRIALS) - 1}" in d
    assert "--output=/tmp/xm-slurm-render-tests/00000042/slurm-%A_%a.out" in d
    assert 'xm_job_ref="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"' in script
    tasks = read_task_table(_table(script))
    assert [wid for wid, _ in tasks] == [t.work_unit_id for t in ODD_TRIALS]  # task i runs trial i
    decoded = base64.b64decode(tasks[3][1]).decode()
    assert "export XM_SLURM_WORK_UNIT_ID=3" in decoded and "export XM_SLURM_EXPERIMENT_ID=42" in decoded


def _table(script: str) -> str:
    match = re.search(r"^xm_tasks='\n([A-Za-z0-9+/=\n]+)\n'$", script, re.M)
    assert match is not None, "no task table in the script"
    return match.group(1)


def test_a_sweep_script_stays_small() -> None:
    # 1,000 similar trials: the compressed task table keeps the script far below one payload per task.
    trials = [Trial(work_unit_id=i + 1, args={"trial": i}, env_vars={"TRIAL": str(i)}) for i in range(1000)]
    script = render_job_script(request(cluster_config(), trials=trials, array=True))
    tasks = read_task_table(_table(script))
    assert len(tasks) == 1000 and tasks[999][0] == 1000
    assert "--trial=999" in base64.b64decode(tasks[999][1]).decode()
    assert len(script) < 60_000, len(script)
    assert sum(len(p) for _, p in tasks) > 300_000  # what the script would carry uncompressed


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("single", '/tmp/xm-slurm-render-tests/00000042/"slurm-${SLURM_JOB_ID}.out"'),
        ("group", '/tmp/xm-slurm-render-tests/00000042/"slurm-${SLURM_JOB_ID}.out"'),
        (
            "array",
            '/tmp/xm-slurm-render-tests/00000042/"slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out"',
        ),
    ],
)
def test_first_attempt_empties_its_own_log(kind: str, path: str) -> None:
    kw = {"single": {}, "group": {"components": 2}, "array": {"trials": ODD_TRIALS, "array": True}}[kind]
    script = render_job_script(request(cluster_config(), **kw))  # type: ignore[arg-type]
    guard = f'if [[ "${{SLURM_RESTART_COUNT:-0}}" == 0 && -f {path} ]]; then\n  : >{path}\nfi\n'
    assert guard in script
    # Before anything else runs (nothing may have written to the log yet).
    assert script.index(guard) < script.index("set -o pipefail")


def test_group_is_one_hetjob_with_a_step_per_component() -> None:
    script = render_job_script(request(cluster_config(), components=3))
    assert script.count("#SBATCH hetjob") == 2
    for i in range(3):
        assert f"srun --het-group={i} " in script
    assert script.count("#SBATCH --job-name=") == 1


def test_dependency_and_requeue_off() -> None:
    req = request(cluster_config(), requeue=False)
    req = type(req)(**{**req.__dict__, "dependency": deps.afterok("10") & deps.afterany("11_2")})
    script = render_job_script(req)
    assert "--dependency=afterok:10,afterany:11_2" in _directives(script)
    assert "--no-requeue" in _directives(script) and "scontrol requeue" not in script


def test_requeue_monitor_uses_the_executor_settings() -> None:
    script = render_job_script(request(cluster_config(), requeue_on_exit_code=7, requeue_max_attempts=3))
    assert "if (( xm_rc == 7 )); then" in script and "(( xm_restarts < 3 ))" in script
    assert 'scontrol requeue "${xm_job_ref}"' in script


def test_apptainer_fragment() -> None:
    cluster = cluster_config(ContainerRuntime.APPTAINER, mounts={"/data": "/mnt/data"})
    script = render_job_script(request(cluster, requirements={"A100": 1}))
    assert (
        "apptainer exec --containall" in script
        and "--nv" in script
        and '--bind="/data:/mnt/data:rw"' in script
    )
    assert 'export "APPTAINERENV_$xm_v=${!xm_v}"' in script
    assert "--gpus-per-task=a100:1" in _directives(script)
    singularity = render_job_script(request(cluster_config(ContainerRuntime.SINGULARITY)))
    assert "singularity exec" in singularity and "SINGULARITYENV_" in singularity


def test_proxy_is_rendered_only_when_configured() -> None:
    assert "ssh -N" not in render_job_script(request(cluster_config()))
    script = render_job_script(request(cluster_config(proxy="submission-host")))
    assert '"${SLURM_SUBMIT_HOST}"' in script and "--env=ALL_PROXY" in script


def test_docker_runtime_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="DOCKER is not implemented"):
        render_job_script(request(cluster_config(ContainerRuntime.DOCKER)))


def test_no_secret_in_script() -> None:
    from xm_slurm.executables import ImageCredentials, RemoteImage
    from xm_slurm.rendering import JobComponent

    req = request(cluster_config())
    image = RemoteImage(
        image="localhost:5000/x:1",
        entrypoint=["true"],
        credentials=ImageCredentials(username="u", password="s3cr3t-pw"),
    )
    job = JobComponent(executable=image, executor=req.jobs[0].executor)
    script = render_job_script(type(req)(**{**req.__dict__, "jobs": [job]}))
    assert (
        "s3cr3t-pw" not in script
        and "s3cr3t-pw"
        not in base64.b64decode(
            re.search(r"xm_payload_0='([^']*)'", script).group(1)  # type: ignore[union-attr]
        ).decode()
    )
    array = render_job_script(
        type(req)(**{**req.__dict__, "jobs": [job], "trials": ODD_TRIALS, "array": True})
    )
    decoded = [base64.b64decode(p).decode() for _, p in read_task_table(_table(array))]
    assert "s3cr3t-pw" not in array and not any("s3cr3t-pw" in d for d in decoded)


def test_no_site_variables_assumed() -> None:
    script = render_job_script(request(cluster_config()))
    assert '"${SLURM_TMPDIR:-${TMPDIR:-}}"' in script


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"state_dir": "relative/dir"}, "relative/dir"),
        ({"state_dir": "/has space"}, "/has space"),
        ({"trials": [Trial(work_unit_id=1), Trial(work_unit_id=2)]}, "2 trials"),
        ({"trials": []}, "trials=()"),
    ],
)
def test_bad_requests(kw: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        request(cluster_config(), **kw)
    assert needle in str(info.value)


def test_bad_trial_values() -> None:
    with pytest.raises(ValidationError, match="'BAD-NAME'"):
        Trial(work_unit_id=1, env_vars={"BAD-NAME": "x"})
    with pytest.raises(ValidationError, match="work_unit_id=-1"):
        Trial(work_unit_id=-1)


def test_oversized_payload_is_refused() -> None:
    with pytest.raises(ValidationError, match="limit"):
        render_job_script(request(cluster_config(), trials=[Trial(work_unit_id=1, args=["x" * 200_000])]))


@pytest.mark.parametrize("task", ["30", "", "x"])
def test_an_array_task_without_a_trial_stops_before_running_anything(task: str, tmp_path: Path) -> None:
    script = render_job_script(request(cluster_config(), trials=ODD_TRIALS, array=True))  # 30 trials
    env = {
        "PATH": "/usr/bin:/bin",
        "SLURM_ARRAY_JOB_ID": "7",
        "SLURM_ARRAY_TASK_ID": task,
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 1
    assert f"no trial for array task '{task}'" in result.stderr
