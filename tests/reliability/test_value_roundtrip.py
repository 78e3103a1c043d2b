"""Property: any string given as an arg or env value reaches the program unchanged.

Checked through the real rendered script, run locally with bash: `srun` and `podman` are replaced by shims
that run the container command on this machine (so the script's own payload decoding runs, without Slurm),
and for a sample through the real cluster."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from local_cluster import LocalCluster
from reliability_helpers import cluster_config
from xmanager import xm

import xm_slurm
from xm_slurm.rendering import JobComponent, JobScriptRequest, Trial, render_job_script

DUMP = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'env': os.environ.get('ODD_VALUE')}))"

# Values a program can receive at all: no NUL (argv and environ are C strings), no lone surrogates.
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)

SRUN = '#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in --*) shift ;; *) break ;; esac; done\nexec "$@"\n'
# `podman run [options] IMAGE ARGS...`: run ARGS with the --entrypoint on this machine, with only the --env
# variables the real runtime would pass on (so nothing leaks from the host shell into the check).
PODMAN = r"""#!/usr/bin/env python3
import fnmatch, os, sys
if sys.argv[1:2] != ["run"]:  # `podman image exists` / `podman pull` before the tasks: the image is here
    sys.exit(0)
args = sys.argv[2:]
entrypoint, names, i = None, [], 0
with_value = {"-e", "--env", "--label", "-v", "--volume", "--mount", "--name", "-w", "--workdir", "--user", "-u"}
while i < len(args) and args[i].startswith("-"):
    opt, _, value = args[i].partition("=")
    if not value and opt in with_value:
        i += 1
        value = args[i]
    if opt == "--entrypoint":
        entrypoint = value
    elif opt in ("-e", "--env"):
        names.append(value)
    i += 1
rest = args[i + 1:]
env = {"PATH": os.environ["PATH"]}
for name in names:
    if "=" in name:
        key, _, val = name.partition("=")
        env[key] = val
    else:
        env.update({k: v for k, v in os.environ.items() if fnmatch.fnmatchcase(k, name)})
os.execvpe(entrypoint, [entrypoint, *rest], env)
"""


@pytest.fixture(scope="module")
def shims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shims")
    for name, text in (("srun", SRUN), ("podman", PODMAN)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def _request(values: list[str], state_dir: str, image: str = "localhost:5000/x/y:latest") -> JobScriptRequest:
    cluster = xm_slurm.SlurmClusterConfig(
        name="local", ssh=xm_slurm.SlurmSSHConfig(host="127.0.0.1"), runtime=xm_slurm.ContainerRuntime.PODMAN
    )
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )
    job = JobComponent(
        executable=xm_slurm.RemoteImage(image=image, entrypoint=[sys.executable, "-c", DUMP]),
        executor=executor,
    )
    trials = [
        Trial(work_unit_id=i + 1, args=xm.SequentialArgs.from_collection([v]), env_vars={"ODD_VALUE": v})
        for i, v in enumerate(values)
    ]
    return JobScriptRequest(
        cluster=cluster,
        jobs=[job],
        trials=trials,
        experiment_id=7,
        job_name="roundtrip",
        state_dir=state_dir,
        array=len(values) > 1,
    )


def _run_locally(script: str, task: int, shims: Path, tmp: Path) -> dict[str, object]:
    env = {
        "PATH": f"{shims}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "99",
        "SLURM_ARRAY_JOB_ID": "99",
        "SLURM_ARRAY_TASK_ID": str(task),
        "TMPDIR": str(tmp),
        "HOME": str(tmp),
    }
    result = subprocess.run(["bash", "-c", script], capture_output=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(VALUES, min_size=1, max_size=3))
def test_any_value_survives_the_rendered_script(values: list[str], shims: Path, tmp_path: Path) -> None:
    script = render_job_script(_request(values, str(tmp_path / "state")))
    for task, value in enumerate(values):
        seen = _run_locally(script, task, shims, tmp_path)
        assert seen == {"argv": [value], "env": value}, (task, value)


SAMPLE = [
    "",
    " ",
    "a b",
    "$HOME",
    "`id`",
    "'\"",
    "\\",
    "line\nbreak",
    "\r",
    "ünï ✓",
    "-n",
    "%s%%",
    "*?[]",
    "\t",
]


@pytest.mark.cluster
async def test_sample_survives_the_real_cluster(local_cluster: LocalCluster) -> None:
    cluster = cluster_config(local_cluster)
    image = xm_slurm.RemoteImage(image=local_cluster.python_image, entrypoint=["python3", "-c", DUMP])
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )
    job = xm.Job(executable=image, executor=executor, name="rel-roundtrip")
    async with xm_slurm.create_experiment("roundtrip") as experiment:
        units = await experiment.add(
            job,
            args=[
                {"args": xm.SequentialArgs.from_collection([v]), "env_vars": {"ODD_VALUE": v}} for v in SAMPLE
            ],
        )
        for unit, value in zip(units, SAMPLE, strict=True):
            await unit.wait_until_complete()
            lines = [line async for line in unit.logs(num_lines=100) if line.startswith('{"argv"')]
            assert [json.loads(line) for line in lines] == [{"argv": [value], "env": value}], value
