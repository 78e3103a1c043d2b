"""Shared pieces of the site presets: building the SSH settings and site limits checked by `validate` hooks.

Model layer only: everything here is pure data and validation, no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig
from xm_slurm.errors import ValidationError
from xm_slurm.resources import ResourceType
from xm_slurm.ssh_config import SlurmSSHConfig

Validator = Callable[[Any], None]


def ssh(default_host: str, *, user: str | None, host: str | None, port: int | None = None) -> SlurmSSHConfig:
    """SSH settings for a preset; `host` overrides the site's login node (e.g. an `~/.ssh/config` alias).

    `user=None` leaves the choice to OpenSSH config files (`User`), then to the local user name.
    """
    return SlurmSSHConfig(host=default_host if host is None else host, port=port, user=user)


def preset(
    *,
    name: str,
    ssh_config: SlurmSSHConfig,
    runtime: ContainerRuntime,
    account: str | None,
    partition: str | None,
    qos: str | None,
    prolog: str | None = None,
    host_environment: Mapping[str, str] | None = None,
    mounts: Mapping[str, str] | None = None,
    resources: Mapping[ResourceType, str] | None = None,
    features: Mapping[ResourceType, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Build (and so validate) one preset's `SlurmClusterConfig`."""
    return SlurmClusterConfig(
        name=name,
        ssh=ssh_config,
        runtime=runtime,
        account=account,
        partition=partition,
        qos=qos,
        prolog=prolog,
        host_environment=dict(host_environment or {}),
        mounts=dict(mounts or {}),
        resources=dict(resources or {}),
        features=dict(features or {}),
        validate=validate,
    )


def _slurm_executor(job: Any) -> Any:
    """The Slurm executor of an `xm.Job` (or the executor itself); None when there is none to check."""
    executor = getattr(job, "executor", job)
    if hasattr(executor, "time") and hasattr(executor, "requirements"):
        return executor
    return None


def site_limits(
    cluster: str,
    *,
    max_time: dt.timedelta | None = None,
    gpus_per_task: Mapping[ResourceType, int] | None = None,
    source: str,
) -> Validator:
    """A `validate` hook refusing jobs the site's scheduler would reject or kill.

    max_time: the longest `--time` the site accepts.
    gpus_per_task: accelerator -> the exact count each task must ask for (sites that allocate whole GPU nodes).
    """
    exact = dict(gpus_per_task or {})

    def validate(job: Any) -> None:
        executor = _slurm_executor(job)
        if executor is None:
            return
        if max_time is not None and executor.time > max_time:
            raise ValidationError(
                f"time={executor.time} exceeds {cluster}'s maximum job duration of {max_time} "
                f"(source: {source}); ask for at most {max_time} and checkpoint/requeue for longer runs"
            )
        requirements = executor.requirements
        accelerator = getattr(requirements, "accelerator", None)
        if accelerator in exact:
            count = requirements.accelerator_count
            if count != exact[accelerator]:
                raise ValidationError(
                    f"{accelerator}={count} per task: {cluster} allocates whole nodes, so each task must ask "
                    f"for {accelerator}={exact[accelerator]} (source: {source}); use replicas= for more nodes"
                )

    validate.__name__ = f"validate_{cluster.replace('-', '_')}"
    validate.__qualname__ = validate.__name__
    return validate
