"""A cluster's scheduling limits that shape how a sweep is submitted: `MaxArraySize` and `MaxJobCount`.

Read from `scontrol show config` (a few KiB of `Key = Value` lines). Array task indices must be
< MaxArraySize, so a larger sweep is split into several arrays of at most that many tasks. When the limits
cannot be read (no `scontrol`, a restricted login node), Slurm's defaults are assumed.

Limits change only when an administrator reconfigures the cluster, yet asking costs an SSH command (often
the slowest step of a launch). So `cached_limits` keeps what was read in the local state folder
(`cluster-limits/<account hash>.json`, 0600) for `LIMITS_MAX_AGE` seconds, shared by the user's processes;
only limits actually read from the cluster are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path

from xm_slurm.errors import ValidationError
from xm_slurm.scheduler.local_state import (
    ensure_private_dir,
    key_file_stem,
    local_state_dir,
    read_json,
    transport_key,
    write_private_json,
)
from xm_slurm.transport.base import Transport

log = logging.getLogger(__name__)

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default (tasks 0..1000)
DEFAULT_MAX_JOB_COUNT = 10000
#: How long limits read from a cluster are reused (seconds) by every process of the user on this machine.
LIMITS_MAX_AGE = 3600.0

_LINE = re.compile(r"^\s*(MaxArraySize|MaxJobCount)\s*=\s*(\d+)\s*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class ClusterLimits:
    """`max_array_size`: array indices must be below it (so an array holds at most that many tasks).
    `max_job_count`: the most job records slurmctld keeps (a pending array is one record)."""

    max_array_size: int = DEFAULT_MAX_ARRAY_SIZE
    max_job_count: int = DEFAULT_MAX_JOB_COUNT
    source: str = "default"  # "scontrol" when read from the cluster

    def __post_init__(self) -> None:
        for name in ("max_array_size", "max_job_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name}={value!r} must be an integer >= 1")

    def capped(self, max_array_size: int | None) -> ClusterLimits:
        """These limits with the array size lowered to `max_array_size` (a user or test setting)."""
        if max_array_size is None or max_array_size >= self.max_array_size:
            return self
        return dataclasses.replace(self, max_array_size=max_array_size)


def parse_limits(text: str) -> ClusterLimits:
    """Limits from `scontrol show config` output; a missing key keeps Slurm's default."""
    found = {key: int(value) for key, value in _LINE.findall(text)}
    return ClusterLimits(
        max_array_size=max(1, found.get("MaxArraySize", DEFAULT_MAX_ARRAY_SIZE)),
        max_job_count=max(1, found.get("MaxJobCount", DEFAULT_MAX_JOB_COUNT)),
        source="scontrol" if found else "default",
    )


async def read_limits(transport: Transport) -> ClusterLimits:
    """Ask the cluster once (`scontrol show config`); Slurm's defaults if it cannot tell."""
    result = await transport.run(["scontrol", "show", "config"], check=False, idempotent=True)
    if result.exit_status != 0:
        log.warning(
            "could not read the cluster's limits (%s); assuming MaxArraySize=%d",
            result.stderr.strip() or f"exit status {result.exit_status}",
            DEFAULT_MAX_ARRAY_SIZE,
        )
        return ClusterLimits()
    return parse_limits(result.stdout)


def _cache_path(key: str, directory: Path | None) -> Path:
    return (directory or local_state_dir() / "cluster-limits") / f"{key_file_stem(key)}.json"


async def cached_limits(
    transport: Transport, *, max_age: float = LIMITS_MAX_AGE, directory: Path | None = None
) -> ClusterLimits:
    """The cluster's limits as read less than `max_age` seconds ago on this machine, else `read_limits`."""
    key = transport_key(transport)
    if key is None:
        return await read_limits(transport)
    path = _cache_path(key, directory)
    data = read_json(path)
    if data is not None and data.get("key") == key and time.time() - float(data.get("time", 0)) <= max_age:
        try:
            return ClusterLimits(
                max_array_size=int(data["max_array_size"]),
                max_job_count=int(data["max_job_count"]),
                source="cache",
            )
        except (KeyError, TypeError, ValueError, ValidationError):
            log.info("ignoring the unreadable cluster limits cache %s", path)
    limits = await read_limits(transport)
    if limits.source == "scontrol":
        ensure_private_dir(path.parent)
        write_private_json(
            path,
            {
                "key": key,
                "time": time.time(),
                "max_array_size": limits.max_array_size,
                "max_job_count": limits.max_job_count,
            },
        )
    return limits
