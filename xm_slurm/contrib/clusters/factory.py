"""The one factory of presets: a `Site` record plus the caller's options -> a validated `SlurmClusterConfig`.

Model layer only: pure data and validation, no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.contrib.clusters.sites import Site
from xm_slurm.errors import ValidationError
from xm_slurm.resources import ResourceType
from xm_slurm.ssh_config import SlurmSSHConfig

__all__ = ["Validator", "build", "site_limits"]

Validator = Callable[[Any], None]


def build(site: Site, /, user: str | None = None, **options: Any) -> SlurmClusterConfig:
    """The `SlurmClusterConfig` of `site` for `user`, with the keyword `options` the site accepts.

    user: None leaves the choice to OpenSSH config files (`User`), then to the local user name.
    account, partition, qos, proxy: passed to the config as given.
    host: overrides the site's login node (e.g. an `~/.ssh/config` alias or an automation node).
    port: overrides the site's port (None: the OpenSSH config files decide); runtime: the site's runtime.
    mounts: host path -> container path, added to the site's; one at a container path the site also
    mounts replaces the site's there (`dataclasses.replace(config, mounts=...)` replaces them all).
    validate: your own hook, run after the site's checks.

    Raises ValidationError for an option the site does not take, naming it and the ones it does.
    """
    unknown = sorted(set(options) - site.options)
    if unknown:
        raise ValidationError(
            f"cluster preset {site.name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"it takes user, {', '.join(sorted(site.options))}"
        )
    host = options.get("host")
    return SlurmClusterConfig(
        name=site.name,
        ssh=SlurmSSHConfig(
            host=site.login if host is None else host,
            port=options.get("port", site.port),
            user=user,
            host_public_key=site.host_public_key,
        ),
        runtime=options.get("runtime", site.runtime),
        account=options.get("account"),
        partition=options.get("partition"),
        qos=options.get("qos"),
        proxy=options.get("proxy"),
        prolog=site.prolog,
        host_environment=site.host_environment,
        container_environment=site.container_environment,
        mounts=_mounts(site, options.get("mounts")),
        resources=site.resources,
        features=site.features,
        validate=_chain(_site_validator(site), options.get("validate")),
    )


def _mounts(site: Site, extra: Mapping[str, str] | None) -> dict[str, str]:
    if extra is None:
        return dict(site.mounts)
    if not isinstance(extra, Mapping):
        raise ValidationError(
            f"cluster preset {site.name!r}: mounts={extra!r} must be a mapping of host path -> container path"
        )
    replaced = set(extra.values())
    kept = {src: dst for src, dst in site.mounts.items() if dst not in replaced}
    return {**kept, **extra}


def _site_validator(site: Site) -> Validator | None:
    if site.max_time is None and not site.gpus_per_task:
        return None
    return site_limits(
        site.name, max_time=site.max_time, gpus_per_task=site.gpus_per_task, source=site.source
    )


def _chain(site: Validator | None, extra: Validator | None) -> Validator | None:
    """Run the site's checks, then the caller's own `validate` hook."""
    if site is None or extra is None:
        return site or extra

    def validate(job: Any) -> None:
        site(job)
        extra(job)

    validate.__name__ = getattr(site, "__name__", "validate")
    return validate


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
