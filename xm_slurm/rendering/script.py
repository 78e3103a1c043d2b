"""`render_job_script`: a request -> the text of one sbatch script (rendering layer, pure: no I/O).

Shape of every script (templates under `templates/`):
  directives -> host environment -> pick this task's payload -> prolog -> [SOCKS proxy]
  -> prepare images (registry login file; Apptainer: convert once into the shared SIF cache, see images.py)
  -> `srun` the container runtime (one step; one per component for a job group) -> epilog -> requeue monitor.

Why `srun`: the batch shell stays alive to read the program's exit code (requeue monitor), while the
container runtime is the step's task itself (no shell in between), so `scancel` and the timeout signal
(`--signal=USR2@90`, sent to steps) reach the runtime, which forwards them to the program
(`podman run --init`, apptainer's starter).
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xmanager import xm

from xm_slurm.config import SUBMISSION_HOST, ContainerRuntime
from xm_slurm.errors import ValidationError
from xm_slurm.paths import component_log_name, log_pattern, runtime_log_name
from xm_slurm.rendering.images import auth_file_path, cache_key, default_image_cache
from xm_slurm.rendering.payload import (
    BOOTSTRAP,
    PAYLOAD_VAR,
    entrypoint_script,
    quote_args,
    render_payload,
    task_table,
)
from xm_slurm.rendering.request import JobComponent, JobScriptRequest, Trial
from xm_slurm.rendering.run_identity import GENERATION_VAR, run_lines
from xm_slurm.rendering.steps import (
    DEBUG_VAR,
    MASTER_PORT_BASE,
    MASTER_PORT_SPAN,
    RENDEZVOUS_VARS,
    group_environment,
    group_variables,
    mount_options,
    needs_setup_step,
    rendezvous_sources,
)

if TYPE_CHECKING:
    import jinja2

PROXY_VARS = ("ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")
GPU_VARS = ("CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES")


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2  # only when a script is rendered: `import xm_slurm` stays light

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("xm_slurm.rendering", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates ship with the package: no stat() per render
    )
    env.filters["quote"] = shlex.quote
    return env


_RESERVED = ("XM_SLURM_EXPERIMENT_ID", "XM_SLURM_WORK_UNIT_ID", PAYLOAD_VAR)


def _task_payload(request: JobScriptRequest, job: JobComponent, trials: Sequence[Trial]) -> list[str]:
    """The payload of each trial run by `job`: what all trials share is merged once, then each trial's own
    env vars and args on top (in that order, so a trial overrides the job, the job the image)."""
    image = job.executable
    shared_env: dict[str, str] = {**request.cluster.container_environment, **image.env_vars, **job.env_vars}
    shared_args = xm.merge_args(image.args, job.args)
    entrypoint = quote_args(image.entrypoint)
    payloads = []
    for trial in trials:
        env = {**shared_env, **trial.env_vars}
        for reserved in _RESERVED:  # set by the entrypoint itself
            env.pop(reserved, None)
        args = xm.merge_args(shared_args, trial.args) if trial.args else shared_args
        payloads.append(
            render_payload(
                entrypoint_script(
                    experiment_id=request.experiment_id,
                    work_unit_id=trial.work_unit_id,
                    env=env,
                    workdir=image.workdir,
                    command=entrypoint + quote_args(args),
                    run=run_lines(request.run, request.experiment_id, trial.work_unit_id)
                    if request.run is not None
                    else (),
                ),
                work_unit_id=trial.work_unit_id,
            )
        )
    return payloads


def _component(request: JobScriptRequest, index: int, job: JobComponent) -> dict[str, Any]:
    executor = job.executor
    requirements = executor.requirements
    group = len(request.jobs) > 1
    # --exact: the step gets only what its tasks ask for, so steps of one allocation can run side by side.
    srun = [f"--ntasks={requirements.replicas}", "--exact"]
    if requirements.cpus is not None:
        srun.append(f"--cpus-per-task={requirements.cpus}")  # Slurm 22.05's srun does not inherit it
    if group:
        srun.insert(0, f"--het-group={index}")
    log = None
    if group and index > 0:  # each component its own log (component 0 shares the job's, see paths.py)
        log = f"{shlex.quote(request.experiment_dir)}/{component_log_name(index)}"
        srun += [f"--output={log}", f"--error={log}", "--open-mode=append"]
    forward = [PAYLOAD_VAR, *RENDEZVOUS_VARS, DEBUG_VAR, GENERATION_VAR]
    if group:
        forward += group_variables(_member_names(request))
    if requirements.accelerator is not None:
        forward += GPU_VARS
    if request.cluster.proxy:
        forward += PROXY_VARS
    return {
        "index": index,
        "directives": executor.allocation_directives(),
        "srun_options": srun,
        "image": job.executable.image,
        "auth_file": auth_file_path(request.experiment_dir, job.executable),
        "cache_key": cache_key(job.executable.image),
        "gpus": requirements.accelerator is not None,
        "forward": forward,
        "mounts": mount_options(request.cluster.mount_specs, requirements, request.cluster.runtime),
        "rendezvous": rendezvous_sources(index, group),
        "setup_step": needs_setup_step(request.cluster, requirements.replicas, group),
        "log": log,
        "name": _member_names(request)[index],
    }


def _member_names(request: JobScriptRequest) -> list[str]:
    """A job group's member names (their indices when the request names none)."""
    return list(request.names) or [str(i) for i in range(len(request.jobs))]


def render_job_script(request: JobScriptRequest) -> str:
    """The sbatch script for `request`: a single job, a job array or a heterogeneous job group."""
    cluster = request.cluster
    runtime = cluster.runtime
    if runtime is ContainerRuntime.DOCKER:
        raise ValidationError(
            f"cluster {cluster.name!r}: ContainerRuntime.DOCKER is not implemented for jobs; "
            "use ContainerRuntime.PODMAN, APPTAINER or SINGULARITY"
        )
    first = request.jobs[0].executor
    log_dir = shlex.quote(request.experiment_dir)
    table = None
    if request.array:
        kind = "array"
        log = f"{request.experiment_dir}/{log_pattern(array=True)}"
        # The same path at run time, for the first attempt to empty it (see base.sh.j2).
        run_log = f"{log_dir}/{runtime_log_name(array=True)}"
        payloads = _task_payload(request, request.jobs[0], request.trials)
        table = task_table([(t.work_unit_id, p) for t, p in zip(request.trials, payloads, strict=True)])
        tasks = []
    else:
        kind = "group" if len(request.jobs) > 1 else "single"
        log = f"{request.experiment_dir}/{log_pattern(array=False)}"
        run_log = f"{log_dir}/{runtime_log_name(array=False)}"  # a hetjob's batch script has the leader's id
        trial = request.trials[0]
        tasks = [
            {"work_unit_id": trial.work_unit_id, "payload": _task_payload(request, job, [trial])[0]}
            for job in request.jobs
        ]

    job_directives = [f"--job-name={request.job_name}", f"--output={log}", f"--error={log}"]
    # Append so that the log of every requeued attempt is kept.
    job_directives.append("--open-mode=append")
    if request.array:
        throttle = f"%{first.array_throttle}" if first.array_throttle is not None else ""
        job_directives.append(f"--array=0-{len(request.trials) - 1}{throttle}")
    if request.dependency is not None:
        job_directives.append(f"--dependency={request.dependency.to_dependency_str()}")
    job_directives += first.job_directives()

    proxy_host = None
    if cluster.proxy:
        proxy_host = (
            '"${SLURM_SUBMIT_HOST}"' if cluster.proxy == SUBMISSION_HOST else shlex.quote(cluster.proxy)
        )

    env_prefix = {
        ContainerRuntime.APPTAINER: "APPTAINERENV_",
        ContainerRuntime.SINGULARITY: "SINGULARITYENV_",
    }
    context: dict[str, Any] = {
        "kind": kind,
        "experiment_id": request.experiment_id,
        "job_name": request.job_name,
        "job_directives": job_directives,
        "components": [_component(request, i, job) for i, job in enumerate(request.jobs)],
        "tasks": tasks,
        "task_table": table,
        "task_count": len(request.trials),
        "run_log": run_log,
        "host_environment": _expandable(cluster.host_environment),
        "cwd": _expandable({"cwd": cluster.cwd})[0][1] if cluster.cwd else None,
        "group_environment": group_environment(_member_names(request)) if kind == "group" else [],
        "master_port_base": MASTER_PORT_BASE,
        "master_port_span": MASTER_PORT_SPAN,
        "debug": request.debug,
        "requeue_after": first.requeue_after() if first.requeue_on_timeout else None,
        "requeue_margin": int(first.requeue_margin().total_seconds()),
        "prolog": cluster.prolog,
        "epilog": cluster.epilog,
        "proxy_host": proxy_host,
        "proxy_vars": PROXY_VARS,
        "runtime": runtime.value,
        "image_cache": default_image_cache(request.state_dir),
        "runtime_template": "runtimes/podman.sh.j2"
        if runtime is ContainerRuntime.PODMAN
        else "runtimes/apptainer.sh.j2",
        "env_prefix": env_prefix.get(runtime, ""),
        "payload_var": PAYLOAD_VAR,
        "bootstrap": BOOTSTRAP,
        "requeue": first.requeue,
        "requeue_exit_code": first.requeue_on_exit_code,
        "requeue_max_attempts": first.requeue_max_attempts,
    }
    return _environment().get_template(f"{kind}.sh.j2").render(context)


def _expandable(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Double-quoted: the job's bash expands `$VARS` (site config such as `$HOME/bin:$PATH`), nothing else."""
    table = str.maketrans({"\\": "\\\\", '"': '\\"', "`": "\\`"})
    return [(name, f'"{value.translate(table)}"') for name, value in env.items()]
