"""The one factory of presets: a `Site` record plus the caller's options -> a validated `SlurmClusterConfig`.

Experiment-layer package, but pure: data and validation, no I/O.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from xm_slurm.config import SUBMISSION_HOST, Endpoint, MountSpec, SlurmClusterConfig, SSHConfig
from xm_slurm.contrib.clusters.sites import ALIASES, Site
from xm_slurm.errors import ValidationError
from xm_slurm.resources import ResourceType

__all__ = ["RetiredSiteWarning", "Validator", "build", "resource_types", "site_limits"]

Validator = Callable[[Any], None]
_GIB = 1024**3


class RetiredSiteWarning(UserWarning):
    """A preset of a site that has closed: kept so that old launch scripts import, but jobs cannot run there."""


def build(site: Site, /, user: str | None = None, **options: Any) -> SlurmClusterConfig:
    """The `SlurmClusterConfig` of `site` for `user`, with the keyword `options` the site accepts.

    user: None leaves the choice to OpenSSH config files (`User`), then to the local user name.
    account, partition, qos: passed to the config as given (None: no directive).
    proxy: None (the site's default), "submission-host" or "[user@]host"; on sites whose compute nodes have
      no internet the prolog loads the site's proxy module unless the proxy is "submission-host".
    host: replaces the site's endpoints with this one (e.g. an `~/.ssh/config` alias); the pinned key stays.
    port: overrides the endpoints' port; runtime: the site's runtime.
    mounts: host path -> container path, or a list of `MountSpec`, added to the site's; one at a container
      path the site also mounts replaces the site's there (`dataclasses.replace(config, mounts=...)`
      replaces them all).
    validate: your own hook, run after the site's checks.

    Raises ValidationError for an option the site does not take, naming it and the ones it does.
    Warns (RetiredSiteWarning) when the site is retired.
    """
    unknown = sorted(set(options) - site.options)
    if unknown:
        raise ValidationError(
            f"cluster preset {site.name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"it takes user, {', '.join(sorted(site.options))}"
        )
    if site.retired:
        warnings.warn(
            f"cluster preset {site.name!r} is retired: {site.retired} (kept for old launch scripts)",
            RetiredSiteWarning,
            stacklevel=3,
        )
    proxy = options.get("proxy")
    if proxy is None:
        proxy = site.default_proxy
    return SlurmClusterConfig(
        name=site.name,
        ssh=_ssh(site, user, options.get("host"), options.get("port", _SITES_PORT)),
        runtime=options.get("runtime", site.runtime),
        account=options.get("account"),
        partition=options.get("partition"),
        qos=options.get("qos"),
        proxy=proxy,
        prolog=_prolog(site, proxy),
        host_environment=site.host_environment,
        container_environment=site.container_environment,
        mounts=_mounts(site, options.get("mounts")),
        resources=_by_type(site.gres),
        recommended_resources=_recommended(site),
        validate=_chain(_site_validator(site), options.get("validate")),
    )


_SITES_PORT: Any = object()  # `port` not given: each endpoint keeps its own


def endpoints(site: Site, host: str | None = None, port: Any = _SITES_PORT) -> tuple[Endpoint, ...]:
    """The addresses tried in order: the site's, or `host` alone; a given `port` (None: the OpenSSH config
    files decide) replaces every endpoint's."""
    listed = site.endpoints if host is None else (Endpoint(host, None),)
    return tuple(Endpoint(e.hostname, e.port if port is _SITES_PORT else port) for e in listed)


def _ssh(site: Site, user: str | None, host: str | None, port: Any) -> SSHConfig:
    # Every endpoint, in order: the transport moves to the next when one cannot be reached.
    return SSHConfig(endpoints=endpoints(site, host, port), public_key=site.host_public_key, user=user)


def _prolog(site: Site, proxy: str | None) -> str | None:
    modules = list(site.modules)
    if site.proxy_module and proxy != SUBMISSION_HOST:
        modules.append(site.proxy_module)
    return f"module load {' '.join(modules)}" if modules else None


def resource_types(name: str) -> list[ResourceType]:
    """The `ResourceType` members a site table's accelerator name stands for (itself and its aliases), as far
    as `ResourceType` has them (a MIG profile without a member yet is left out)."""
    names = (name, *ALIASES.get(name, ()))
    return [ResourceType.__members__[n] for n in names if n in ResourceType.__members__]


def _by_type(table: Mapping[str, Any]) -> dict[ResourceType, Any]:
    return {member: value for name, value in table.items() for member in resource_types(name)}


def _recommended(site: Site) -> dict[ResourceType, dict[ResourceType, float]]:
    per_type = {
        member: {ResourceType.CPU: unit.cpus, ResourceType.MEMORY: unit.memory_gib * _GIB}
        for member, unit in _by_type(site.per_unit).items()
    }
    if site.full_gpu is not None:  # the generic GPU is one of the site's full GPUs
        per_type[ResourceType.GPU] = per_type[resource_types(site.full_gpu)[0]]
    return per_type


def _mounts(site: Site, extra: Mapping[str, str] | Sequence[MountSpec] | None) -> tuple[MountSpec, ...]:
    if extra is None:
        return site.mounts
    if isinstance(extra, Mapping):
        added = [MountSpec(src, dst) for src, dst in extra.items()]
    elif isinstance(extra, (list, tuple)) and all(isinstance(m, MountSpec) for m in extra):
        added = list(extra)
    else:
        raise ValidationError(
            f"cluster preset {site.name!r}: mounts={extra!r:.100} must be a mapping of host path -> "
            "container path or a list of MountSpec"
        )
    replaced = {_target(m) for m in added}
    return (*(m for m in site.mounts if _target(m) not in replaced), *added)


def _target(mount: MountSpec) -> str:
    return mount.target.rstrip("/")


def _site_validator(site: Site) -> Validator | None:
    if site.max_time is None and not site.gpus_per_task:
        return None
    return site_limits(
        site.name, max_time=site.max_time, gpus_per_task=_by_type(site.gpus_per_task), source=site.source
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
