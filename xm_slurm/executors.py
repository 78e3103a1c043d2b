"""The Slurm executor (`Slurm`) and its executor spec (`SlurmSpec`) (model layer, pure data).

Directive rules (see `Slurm.to_directives`): time -> `--time=D-HH:MM:SS` (rounded up to seconds);
timeout signal -> `--signal=USR2@90`: without `B:`, Slurm signals the job *steps*, i.e. the `srun`-launched
container runtime, which forwards the signal to the program (podman `--init` / apptainer's starter);
requeue -> `--requeue` / `--no-requeue`; account/partition/qos override the cluster's;
`--priority`, `--kill-on-invalid-dep=yes|no`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import signal

from xmanager import xm

from xm_slurm.errors import ValidationError
from xm_slurm.resources import JobRequirements

_SLURM_NAME = re.compile(r"[A-Za-z0-9_.\-+,]+")
_MAX_SIGNAL_DELAY = dt.timedelta(seconds=65535)  # sbatch: sig_time is 0..65535 seconds
#: The longest `time=` accepted. Slurm stores a time limit in minutes in 32 bits (INFINITE is a separate
#: sentinel, not a long time), so even 10**6 days fits its format and is passed on as "run for ~2,700
#: years". No site sets a partition MaxTime anywhere near a year (hours to a few weeks; "no limit" is
#: INFINITE, which `time=` does not express): a longer value is a unit mistake, refused before submission.
MAX_TIME = dt.timedelta(days=365)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmSpec(xm.ExecutorSpec):
    """Where packaging pushes the image: `tag` is an image reference such as `registry/me/train:latest`."""

    tag: str | None = None

    def __post_init__(self) -> None:
        if self.tag is not None and (
            not isinstance(self.tag, str) or not self.tag or any(c.isspace() for c in self.tag)
        ):
            raise ValidationError(
                f"SlurmSpec(tag={self.tag!r}): give an image reference such as 'registry/me/img:tag'"
            )


def format_time(value: dt.timedelta) -> str:
    """A positive timedelta as Slurm's `D-HH:MM:SS`, rounded up to whole seconds."""
    total = math.ceil(value.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{seconds:02d}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Slurm(xm.Executor):
    """Run a job on a Slurm cluster (the cluster comes from `requirements.cluster`)."""

    requirements: JobRequirements
    time: dt.timedelta
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    priority: int | None = None
    kill_on_invalid_dependencies: bool = True
    timeout_signal: signal.Signals = signal.SIGUSR2
    timeout_signal_grace_period: dt.timedelta = dt.timedelta(seconds=90)
    requeue: bool = True
    requeue_on_exit_code: int = 42
    requeue_max_attempts: int = 5
    array_throttle: int | None = None  # a sweep runs at most this many trials at once (`--array=...%N`)

    Spec = SlurmSpec  # xm.Executor.Spec: the executor-spec type, called as Slurm.Spec(tag=...)

    def __post_init__(self) -> None:
        if not isinstance(self.requirements, JobRequirements):
            raise ValidationError(
                f"requirements={self.requirements!r} must be xm_slurm.JobRequirements(..., cluster=...)"
            )
        if self.requirements.cluster is None:
            raise ValidationError(
                "requirements has no cluster; pass JobRequirements(..., cluster=SlurmClusterConfig(...))"
            )
        if not isinstance(self.time, dt.timedelta) or self.time <= dt.timedelta(0):
            raise ValidationError(
                f"time={self.time!r} must be a datetime.timedelta > 0, e.g. dt.timedelta(hours=4)"
            )
        if self.time > MAX_TIME:
            raise ValidationError(
                f"time={self.time!r} is longer than {MAX_TIME.days} days, more than any cluster lets a job "
                "run; give the job's real time limit, e.g. dt.timedelta(days=2)"
            )
        for field in ("account", "partition", "qos"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not _SLURM_NAME.fullmatch(value)):
                raise ValidationError(f"{field}={value!r} is not a valid Slurm {field} name")
        if self.priority is not None and (
            isinstance(self.priority, bool) or not isinstance(self.priority, int) or self.priority < 0
        ):
            raise ValidationError(f"priority={self.priority!r} must be an integer >= 0")
        if not isinstance(self.kill_on_invalid_dependencies, bool):
            raise ValidationError(
                f"kill_on_invalid_dependencies={self.kill_on_invalid_dependencies!r} must be a bool"
            )
        try:
            sig = signal.Signals(self.timeout_signal)
        except (ValueError, TypeError):
            raise ValidationError(
                f"timeout_signal={self.timeout_signal!r} must be a signal.Signals such as signal.SIGUSR2"
            ) from None
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            raise ValidationError(
                f"timeout_signal={sig.name} cannot be caught by the program; use SIGUSR2 or SIGTERM"
            )
        object.__setattr__(self, "timeout_signal", sig)
        grace = self.timeout_signal_grace_period
        if not isinstance(grace, dt.timedelta) or grace < dt.timedelta(0) or grace > _MAX_SIGNAL_DELAY:
            raise ValidationError(
                f"timeout_signal_grace_period={grace!r} must be a datetime.timedelta between 0 and 65535 s"
            )
        if not isinstance(self.requeue, bool):
            raise ValidationError(f"requeue={self.requeue!r} must be a bool")
        code = self.requeue_on_exit_code
        if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 255:
            raise ValidationError(
                f"requeue_on_exit_code={code!r} must be an exit code between 1 and 255 (0 means success)"
            )
        attempts = self.requeue_max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise ValidationError(f"requeue_max_attempts={attempts!r} must be an integer >= 0")
        throttle = self.array_throttle
        if throttle is not None and (
            isinstance(throttle, bool) or not isinstance(throttle, int) or throttle < 1
        ):
            raise ValidationError(
                f"array_throttle={throttle!r} must be None (no limit) or an integer >= 1: the most trials "
                "of a sweep that run at once"
            )

    @property
    def cluster(self):  # -> SlurmClusterConfig; not annotated to keep this module free of config imports
        return self.requirements.cluster

    def allocation_directives(self) -> list[str]:
        """Per-allocation options: time, account/partition/qos and the requirements (one het component)."""
        cluster = self.requirements.cluster
        out = [f"--time={format_time(self.time)}"]
        for field in ("account", "partition", "qos"):
            value = getattr(self, field) or getattr(cluster, field, None)
            if value:
                out.append(f"--{field}={value}")
        return out + self.requirements.to_directives()

    def job_directives(self) -> list[str]:
        """Whole-job options: timeout signal, requeue, priority, invalid-dependency policy."""
        grace = math.ceil(self.timeout_signal_grace_period.total_seconds())
        out = [f"--signal={self.timeout_signal.name.removeprefix('SIG')}@{grace}"]
        out.append("--requeue" if self.requeue else "--no-requeue")
        if self.priority is not None:
            out.append(f"--priority={self.priority}")
        out.append(f"--kill-on-invalid-dep={'yes' if self.kill_on_invalid_dependencies else 'no'}")
        return out

    def to_directives(self) -> list[str]:
        """sbatch options (without `#SBATCH`) for this executor and its requirements."""
        return self.allocation_directives() + self.job_directives()
