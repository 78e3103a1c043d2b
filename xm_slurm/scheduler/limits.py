"""A cluster's scheduling limits that shape how a sweep is submitted: `MaxArraySize` and `MaxJobCount`.

Read once per cluster connection from `scontrol show config` (a few KiB of `Key = Value` lines). Array task
indices must be < MaxArraySize, so a larger sweep is split into several arrays of at most that many tasks.
When the limits cannot be read (no `scontrol`, a restricted login node), Slurm's defaults are assumed.
"""

from __future__ import annotations

import dataclasses
import logging
import re

from xm_slurm.errors import ValidationError
from xm_slurm.transport.base import Transport

log = logging.getLogger(__name__)

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default (tasks 0..1000)
DEFAULT_MAX_JOB_COUNT = 10000

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
