"""The Slurm executor (`Slurm`) and its executor spec (`SlurmSpec`) (model layer, pure data).

Directive rules (see `Slurm.to_directives`): time -> `--time=D-HH:MM:SS` (rounded up to seconds);
timeout signal -> `--signal=USR2@90`: without `B:`, Slurm signals the job *steps*, i.e. the `srun`-launched
container runtime, which forwards the signal to the program (podman `--init` / apptainer's starter);
requeue -> `--requeue` / `--no-requeue`; account/partition/qos override the cluster's;
`--priority`, `--kill-on-invalid-dep=yes|no`.

0.5.0 options, per allocation (each component of a job group): `reservation` -> `--reservation=NAME`,
`exclusive` -> `--exclusive` (or `--exclusive=user|mcs`), `oversubscribe` -> `--oversubscribe`,
`overcommit` -> `--overcommit`, `bind` -> `--gpu-bind=` / `--mem-bind=` / `--tres-bind=`, `gres_flags` ->
`--gres-flags=`; per job: `nice` -> `--nice=N`. `requeue_on_timeout`: the job script requeues the job
`requeue_margin()` before its time limit (a watchdog, rendered by xm_slurm.rendering), so a program that
neither checkpoints nor exits on the timeout signal still gets its next attempt.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from immutabledict import immutabledict
from xmanager import xm

from xm_slurm.errors import ValidationError
from xm_slurm.resources import JobRequirements

_SLURM_NAME = re.compile(r"[A-Za-z0-9_.\-+,]+")
_MAX_SIGNAL_DELAY = dt.timedelta(seconds=65535)  # sbatch: sig_time is 0..65535 seconds
#: Slurm's bound on `--nice` (NICE_OFFSET - 3); below 0 only an operator may set it.
MAX_NICE = 2147483645
#: `bind=` keys: which sbatch option each one renders.
BIND_OPTIONS = {"gpu": "--gpu-bind", "mem": "--mem-bind", "memory": "--mem-bind", "tres": "--tres-bind"}
#: `--gres-flags` values: Slurm 22.05 knows the first two; the sharing ones came with Slurm 24.05.
GRES_FLAGS = (
    "disable-binding",
    "enforce-binding",
    "multiple-tasks-per-sharing",
    "one-task-per-sharing",
    "allow-task-sharing",
)
_BIND_VALUE = re.compile(r"[A-Za-z0-9_.:,/=+\-]+")
#: The longest `time=` accepted. Slurm stores a time limit in minutes in 32 bits (INFINITE is a separate
#: sentinel, not a long time), so even 10**6 days fits its format and is passed on as "run for ~2,700
#: years". No site sets a partition MaxTime anywhere near a year (hours to a few weeks; "no limit" is
#: INFINITE, which `time=` does not express): a longer value is a unit mistake, refused before submission.
MAX_TIME = dt.timedelta(days=365)


@dataclasses.dataclass(frozen=True)
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
    reservation: str | None = None
    exclusive: bool | str = False  # True, or "user" / "mcs"
    oversubscribe: bool = False
    overcommit: bool = False
    nice: int | None = None
    bind: Mapping[Any, str] = dataclasses.field(default_factory=immutabledict)  # {"gpu": "closest", ...}
    gres_flags: str | Sequence[str] | None = None
    requeue_on_timeout: bool = False

    # xm.Executor.Spec: the executor-spec type, called as Slurm.Spec("registry/me/img:tag") or Slurm.Spec(tag=...)
    Spec = SlurmSpec

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
        self._check_placement()
        object.__setattr__(self, "bind", _check_bind(self.bind))
        object.__setattr__(self, "gres_flags", _check_gres_flags(self.gres_flags))
        if not isinstance(self.requeue_on_timeout, bool):
            raise ValidationError(f"requeue_on_timeout={self.requeue_on_timeout!r} must be a bool")
        if self.requeue_on_timeout and not self.requeue:
            raise ValidationError(
                "requeue_on_timeout=True needs requeue=True: the job is requeued before its time limit"
            )
        if self.requeue_on_timeout and self.requeue_margin() * 2 > self.time:
            raise ValidationError(
                f"requeue_on_timeout=True with time={self.time!r}: the requeue {self.requeue_margin()} "
                "before the limit would leave the job less than half its time; give a longer time"
            )

    def _check_placement(self) -> None:
        if self.reservation is not None and (
            not isinstance(self.reservation, str) or not _SLURM_NAME.fullmatch(self.reservation)
        ):
            raise ValidationError(f"reservation={self.reservation!r} is not a valid Slurm reservation name")
        if self.exclusive not in (True, False, "user", "mcs"):
            raise ValidationError(
                f"exclusive={self.exclusive!r} must be True, False, 'user' or 'mcs' (sbatch --exclusive[=...])"
            )
        for field in ("oversubscribe", "overcommit"):
            if not isinstance(getattr(self, field), bool):
                raise ValidationError(f"{field}={getattr(self, field)!r} must be a bool")
        if self.exclusive is not False and self.oversubscribe:
            raise ValidationError(
                f"exclusive={self.exclusive!r} and oversubscribe=True contradict each other; choose one"
            )
        nice = self.nice
        if nice is not None and (
            isinstance(nice, bool) or not isinstance(nice, int) or not -MAX_NICE <= nice <= MAX_NICE
        ):
            raise ValidationError(
                f"nice={nice!r} must be an integer between {-MAX_NICE} and {MAX_NICE} (sbatch --nice; "
                "only an operator may give a negative one)"
            )

    def requeue_margin(self) -> dt.timedelta:
        """How long before its time limit `requeue_on_timeout` requeues the job: a third of the timeout
        signal's grace period, at least 10 s, so the program gets the signal first and most of the grace
        period to save its state."""
        return max(dt.timedelta(seconds=10), self.timeout_signal_grace_period / 3)

    def requeue_after(self) -> int:
        """Seconds from the start of an attempt until `requeue_on_timeout` requeues it (whole seconds of the
        whole limit: a 25 h limit is 90,000 s, not its `timedelta.seconds` of 3,600)."""
        limit = math.ceil(self.time.total_seconds() / 60) * 60  # Slurm keeps the limit in whole minutes
        return limit - math.ceil(self.requeue_margin().total_seconds())

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
        return out + self.requirements.to_directives() + self.placement_directives()

    def placement_directives(self) -> list[str]:
        """The 0.5.0 per-allocation options: reservation, node sharing, binding, gres flags."""
        out = [f"--reservation={self.reservation}"] if self.reservation else []
        if self.exclusive is True:
            out.append("--exclusive")
        elif self.exclusive:
            out.append(f"--exclusive={self.exclusive}")
        if self.oversubscribe:
            out.append("--oversubscribe")
        if self.overcommit:
            out.append("--overcommit")
        out += [f"{BIND_OPTIONS[kind]}={value}" for kind, value in self.bind.items()]
        if self.gres_flags:
            out.append(f"--gres-flags={','.join(self.gres_flags)}")
        return out

    def job_directives(self) -> list[str]:
        """Whole-job options: timeout signal, requeue, priority, invalid-dependency policy."""
        grace = math.ceil(self.timeout_signal_grace_period.total_seconds())
        out = [f"--signal={self.timeout_signal.name.removeprefix('SIG')}@{grace}"]
        out.append("--requeue" if self.requeue else "--no-requeue")
        if self.priority is not None:
            out.append(f"--priority={self.priority}")
        if self.nice is not None:
            out.append(f"--nice={self.nice}")
        out.append(f"--kill-on-invalid-dep={'yes' if self.kill_on_invalid_dependencies else 'no'}")
        return out

    def to_directives(self) -> list[str]:
        """sbatch options (without `#SBATCH`) for this executor and its requirements."""
        return self.allocation_directives() + self.job_directives()


def _check_bind(bind: Mapping[Any, str]) -> immutabledict[str, str]:
    """`{"gpu": "closest", "mem": "local", "tres": "gres/gpu:closest"}` -> kind -> value (kinds checked)."""
    if not isinstance(bind, Mapping):
        raise ValidationError(f"bind={bind!r:.100} must be a mapping such as {{'gpu': 'closest'}}")
    out: dict[str, str] = {}
    for key, value in bind.items():
        name = getattr(key, "value", key)  # ResourceType.GPU / MEMORY spell the same kinds
        kind = name.lower() if isinstance(name, str) else None
        if kind not in BIND_OPTIONS:
            raise ValidationError(
                f"bind: unknown kind {key!r}; use 'gpu' (--gpu-bind), 'mem' (--mem-bind) or 'tres' (--tres-bind)"
            )
        if not isinstance(value, str) or not _BIND_VALUE.fullmatch(value):
            raise ValidationError(
                f"bind[{key!r}]={value!r} is not a binding sbatch takes, e.g. 'closest', 'map_gpu:0,1', 'local'"
            )
        kind = "mem" if kind == "memory" else kind
        if kind in out:
            raise ValidationError(f"bind: {key!r} given twice; give each kind once")
        out[kind] = value
    return immutabledict(out)


def _check_gres_flags(flags: str | Sequence[str] | None) -> tuple[str, ...]:
    if flags is None or (isinstance(flags, (list, tuple)) and not flags):  # () once normalised
        return ()
    values = [flags] if isinstance(flags, str) else flags
    if not isinstance(values, (list, tuple)) or not values:
        raise ValidationError(
            f"gres_flags={flags!r} must be a flag or a list of flags: {', '.join(GRES_FLAGS)}"
        )
    for value in values:
        if value not in GRES_FLAGS:
            raise ValidationError(
                f"gres_flags: {value!r} is not a --gres-flags value; use one of {', '.join(GRES_FLAGS)}"
            )
    return tuple(values)
