"""Building render requests and running rendered scripts on the local cluster (test helpers)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig, SlurmSSHConfig
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import Slurm
from xm_slurm.rendering import JobComponent, JobScriptRequest, Trial, render_job_script
from xm_slurm.resources import JobRequirements, ResourceType

FAKE_APPTAINER_DIR = Path(__file__).resolve().parent.parent / "fakes" / "fake-apptainer"

# Every kind of value a shell, Slurm or a container runtime could mangle.
ODD_VALUES: list[str] = [
    "two words",
    "it's",
    'say "hi"',
    "$HOME",
    "${PATH}",
    "`id`",
    "$(id -u)",
    "a;b",
    "a && b",
    "back\\slash",
    "trailing\\",
    "line\nbreak",
    "tab\there",
    "ünïcødé ✓ 日本",
    "*",
    "{a,b}",
    "!event",
    "#comment",
    "100%",
    "",
    "-n",
    "--flag=value",
    "'",
    '"',
    "a|b>c<d",
    "~",
    "  spaces  ",
    "\r\n",
    "=",
    "€$'x'",
]

# The program: dumps its argv and the ODD_* / XM_SLURM_* env vars as JSON into the bind-mounted /out.
DUMP_PROGRAM = (
    "import json, os, sys; "
    "env = {k: v for k, v in os.environ.items() if k.startswith(('ODD_', 'XM_SLURM_'))}; "
    "name = '/out/wu-%s.json' % os.environ['XM_SLURM_WORK_UNIT_ID']; "
    "open(name, 'w', encoding='utf-8').write(json.dumps({'argv': sys.argv[1:], 'env': env}))"
)


def cluster_config(
    runtime: ContainerRuntime = ContainerRuntime.PODMAN,
    *,
    partition: str | None = "debug",
    mounts: Mapping[str, str] | None = None,
    **kw: Any,
) -> SlurmClusterConfig:
    host_env = dict(kw.pop("host_environment", {}))
    if runtime is not ContainerRuntime.PODMAN:
        host_env["PATH"] = f"{FAKE_APPTAINER_DIR}:$PATH"
    return SlurmClusterConfig(
        name="local",
        ssh=SlurmSSHConfig(host="127.0.0.1"),
        runtime=runtime,
        partition=partition,
        mounts=mounts or {},
        host_environment=host_env,
        resources={ResourceType.A100: "a100"},
        **kw,
    )


def request(
    cluster: SlurmClusterConfig,
    *,
    image: str = "localhost:5000/xm-test/debian-python:bookworm",
    entrypoint: Sequence[str] = ("python3", "-c", DUMP_PROGRAM),
    trials: Sequence[Trial] = (Trial(work_unit_id=1),),
    array: bool = False,
    components: int = 1,
    state_dir: str = "/tmp/xm-slurm-render-tests",
    requirements: Mapping[str, Any] | None = None,
    time: dt.timedelta = dt.timedelta(minutes=5),
    **executor_kw: Any,
) -> JobScriptRequest:
    executor = Slurm(
        requirements=JobRequirements(**{"CPU": 1, **(requirements or {})}, cluster=cluster),
        time=time,
        **executor_kw,
    )
    job = JobComponent(executable=RemoteImage(image=image, entrypoint=list(entrypoint)), executor=executor)
    return JobScriptRequest(
        cluster=cluster,
        jobs=[job] * components,
        trials=trials,
        experiment_id=42,
        job_name="xm-render-test",
        state_dir=state_dir,
        array=array,
    )


def shared_dir(path: Path) -> Path:
    """A folder jobs may write to even if they run as another user."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def write_script(tmp: Path, req: JobScriptRequest, name: str = "job.sh") -> Path:
    shared_dir(Path(req.experiment_dir))
    script = tmp / name
    script.write_text(render_job_script(req), encoding="utf-8")
    return script


def sbatch_wait(*scripts: Path, before_release: Callable[[str], None] | None = None) -> list[tuple[str, int]]:
    """Submits every script at once with `sbatch --parsable --wait`; returns (job id, exit code) of each.

    `before_release(job_id)`: the jobs are submitted held, this runs for each, then they are released
    (e.g. to put a file where a job's log will go before the job can start)."""
    hold = ["--hold"] if before_release is not None else []
    procs = [
        subprocess.Popen(
            ["sbatch", "--parsable", "--wait", *hold, str(s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in scripts
    ]
    if before_release is not None:
        for script in scripts:  # sbatch --wait prints the id only at the end: find the held job by its script
            job_id = _held_job_of(script)
            before_release(job_id)
            subprocess.run(["scontrol", "release", job_id], check=True)
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        job_id = out.strip().split(";")[0]
        assert job_id, f"sbatch printed no job id: {err}"
        results.append((job_id, proc.returncode))
    return results


def _held_job_of(script: Path) -> str:
    """The id of the held job (a hetjob: its leader) whose batch script is `script`; waits for sbatch."""
    while True:
        out = subprocess.run(
            ["squeue", "-h", "-t", "PD", "-u", str(os.getuid()), "-o", "%i|%o"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in out.splitlines():
            job_id, _, command = line.partition("|")
            if command.strip() == str(script):
                return re.split(r"[+_]", job_id.strip())[0]  # `123+1` (hetjob), `123_[0]` (array): 123
        time.sleep(0.1)


def sacct_state(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["sacct", "-j", job_id, "-X", "-n", "-P", "--format=JobID,State,ExitCode"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SLURM_TIME_FORMAT": "standard"},
    ).stdout
    return {line.split("|")[0]: line.split("|", 1)[1] for line in out.splitlines() if line}
