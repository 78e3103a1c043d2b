"""What a job script is rendered from: frozen, validated request dataclasses (rendering layer, pure)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from immutabledict import immutabledict
from xmanager import xm

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.dependencies import SlurmDependency
from xm_slurm.errors import ValidationError
from xm_slurm.executables import RemoteImage, validate_env_vars
from xm_slurm.executors import Slurm
from xm_slurm.paths import experiment_dir
from xm_slurm.rendering.run_identity import RunIdentity

_JOB_NAME = re.compile(r"[A-Za-z0-9_.:+@=\-]{1,200}")
_STATE_DIR = re.compile(r"/[A-Za-z0-9_./+@\-]*")


def _args(value: Any, field: str) -> xm.SequentialArgs:
    try:
        args = xm.SequentialArgs.from_collection(value)
        rendered = args.to_list()
    except (ValueError, TypeError) as e:
        raise ValidationError(
            f"{field}={value!r} are not XManager args (a list, a dict or xm.SequentialArgs): {e}"
        ) from None
    for arg in rendered:
        if "\0" in arg:  # an argv entry ends at NUL: the program would get a truncated value
            raise ValidationError(
                f"{field}: argument {arg!r} contains a NUL byte, which no command line can hold"
            )
    return args


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trial:
    """One task: a work unit's own args and env vars (a sweep has one trial per work unit)."""

    work_unit_id: int
    args: xm.SequentialArgs | Sequence[Any] | Mapping[str, Any] = ()
    env_vars: Mapping[str, Any] = dataclasses.field(default_factory=immutabledict)

    def __post_init__(self) -> None:
        wid = self.work_unit_id
        if isinstance(wid, bool) or not isinstance(wid, int) or wid < 0:
            raise ValidationError(f"work_unit_id={wid!r} must be an integer >= 0")
        object.__setattr__(self, "args", _args(self.args, "trial args"))
        object.__setattr__(self, "env_vars", validate_env_vars(self.env_vars, field="trial env_vars"))

    @classmethod
    def of_component(cls, work_unit_id: int, component: JobComponent) -> Trial:
        """The trial that runs `component`'s own args and env vars, which `JobComponent` validated already
        (a sweep of 1,000 trials would otherwise check every value twice)."""
        if isinstance(work_unit_id, bool) or not isinstance(work_unit_id, int) or work_unit_id < 0:
            raise ValidationError(f"work_unit_id={work_unit_id!r} must be an integer >= 0")
        if not isinstance(component, JobComponent):
            raise ValidationError(f"component={component!r} must be a JobComponent")
        trial = object.__new__(cls)
        object.__setattr__(trial, "work_unit_id", work_unit_id)
        object.__setattr__(trial, "args", component.args)
        object.__setattr__(trial, "env_vars", component.env_vars)
        return trial


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobComponent:
    """One `xm.Job`: its packaged image, executor, and the job's own args/env (after the image's)."""

    executable: RemoteImage
    executor: Slurm
    args: xm.SequentialArgs | Sequence[Any] | Mapping[str, Any] = ()
    env_vars: Mapping[str, Any] = dataclasses.field(default_factory=immutabledict)

    def __post_init__(self) -> None:
        if not isinstance(self.executable, RemoteImage):
            raise ValidationError(f"executable={self.executable!r} must be a packaged xm_slurm RemoteImage")
        if not isinstance(self.executor, Slurm):
            raise ValidationError(f"executor={self.executor!r} must be an xm_slurm.Slurm executor")
        if not self.executable.entrypoint.to_list():
            raise ValidationError(
                f"image {self.executable.image!r} has no entrypoint; set RemoteImage(entrypoint=[...]) "
                "(packaging resolves an image's ENTRYPOINT/CMD into it)"
            )
        object.__setattr__(self, "args", _args(self.args, "job args"))
        object.__setattr__(self, "env_vars", validate_env_vars(self.env_vars, field="job env_vars"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobScriptRequest:
    """Everything `render_job_script` needs.

    jobs: one component (a plain job, or a job array when `array` is set) or several (one heterogeneous job).
    trials: one per task; an array gets `--array=0-(N-1)` and task i runs trials[i]; otherwise exactly one.
    names: a job group's member names (`xm.JobGroup` keys), in the order of `jobs`; a group without names
      calls its members by index.
    state_dir: absolute remote state folder (`paths.REMOTE_STATE_DIR` resolved on the cluster); logs go to
      `paths.experiment_dir(state_dir, experiment_id, store_id)/<paths.log_pattern>`; that folder must exist.
    """

    cluster: SlurmClusterConfig
    jobs: Sequence[JobComponent]
    trials: Sequence[Trial]
    experiment_id: int
    job_name: str
    state_dir: str
    dependency: SlurmDependency | None = None
    array: bool = False
    names: Sequence[str] = ()  # a job group's member names, one per job (XM_SLURM_JOB_GROUP_NAME)
    debug: bool = False  # XM_SLURM_DEBUG=1 in the job: `set -x` in the script, its steps and the entrypoint
    run: RunIdentity | None = None  # XM_SLURM_RUN_ID / XM_SLURM_ATTEMPT (and W&B/MLflow) in every task
    store_id: str | None = None  # names the experiment's folder (`paths.experiment_dir`); None: old layout

    def __post_init__(self) -> None:
        if not isinstance(self.cluster, SlurmClusterConfig):
            raise ValidationError(f"cluster={self.cluster!r} must be a SlurmClusterConfig")
        object.__setattr__(self, "jobs", tuple(self.jobs))
        object.__setattr__(self, "trials", tuple(self.trials))
        if not self.jobs:
            raise ValidationError("jobs=() is empty; give at least one JobComponent")
        if not self.trials:
            raise ValidationError("trials=() is empty; give at least one Trial")
        for job in self.jobs:
            if not isinstance(job, JobComponent):
                raise ValidationError(f"jobs: {job!r} must be a JobComponent")
        for trial in self.trials:
            if not isinstance(trial, Trial):
                raise ValidationError(f"trials: {trial!r} must be a Trial")
        if self.array and len(self.jobs) > 1:
            raise ValidationError(
                f"a job group of {len(self.jobs)} jobs cannot be a job array; submit one per trial"
            )
        if not self.array and len(self.trials) != 1:
            raise ValidationError(
                f"{len(self.trials)} trials need array=True (a job array), or pass one trial"
            )
        xid = self.experiment_id
        if isinstance(xid, bool) or not isinstance(xid, int) or not 0 <= xid <= 99_999_999:
            raise ValidationError(f"experiment_id={xid!r} must be an integer between 0 and 99999999")
        if not isinstance(self.job_name, str) or not _JOB_NAME.fullmatch(self.job_name):
            raise ValidationError(
                f"job_name={self.job_name!r}: use 1-200 of letters, digits and _ . : + @ = -"
            )
        if not isinstance(self.state_dir, str) or not _STATE_DIR.fullmatch(self.state_dir):
            raise ValidationError(
                f"state_dir={self.state_dir!r} must be an absolute path of letters, digits and _ . / + @ - "
                "(resolve ~ and $VARS on the cluster first)"
            )
        object.__setattr__(self, "names", tuple(self.names))
        if self.names and (
            len(self.names) != len(self.jobs) or not all(isinstance(n, str) and n for n in self.names)
        ):
            raise ValidationError(
                f"names={self.names!r}: give one non-empty name per job ({len(self.jobs)}), or none"
            )
        if not isinstance(self.debug, bool):
            raise ValidationError(f"debug={self.debug!r} must be a bool")
        if self.run is not None and not isinstance(self.run, RunIdentity):
            raise ValidationError(f"run={self.run!r} must be a rendering.run_identity.RunIdentity")
        if self.dependency is not None and not isinstance(self.dependency, SlurmDependency):
            raise ValidationError(f"dependency={self.dependency!r} must be an xm_slurm.dependencies value")
        for job in self.jobs:
            target = job.executor.requirements.cluster
            if target != self.cluster:
                raise ValidationError(
                    f"a job's executor targets cluster {getattr(target, 'name', None)!r} "
                    f"but the request is for {self.cluster.name!r}"
                )

    @property
    def experiment_dir(self) -> str:
        return experiment_dir(self.state_dir, self.experiment_id, self.store_id)
