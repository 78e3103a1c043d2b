"""A cluster's scheduling limits that shape how a sweep is submitted (`MaxArraySize`, `MaxJobCount`), and its
partitions with the generic resources (gres) and node features of their nodes, and the most of each gres
one node holds, which the launch pre-flight checks requests against (`xm_slurm.scheduler.preflight`).

Read by ONE command: `scontrol show config` (a few KiB of `Key = Value` lines), then `sinfo -a` (a line per
partition and node configuration: `name[*]|gres|features`, `*` marking the default partition). Array task
indices must be < MaxArraySize, so a larger sweep is split into several arrays of at most that many tasks.
When the limits cannot be read (no `scontrol`, a restricted login node), Slurm's defaults are assumed and
the partitions are unknown (nothing is checked against them).

Limits change only when an administrator reconfigures the cluster, yet asking costs an SSH command (often
the slowest step of a launch). So `cached_limits` keeps what was read in the local state folder
(`cluster-limits/<account hash>.json`, 0600) for `LIMITS_MAX_AGE` seconds, shared by the user's processes;
only limits actually read from the cluster are kept. A cache file written before partitions were read
(no `partitions` key) counts as missing; one written before gres counts were kept (a partition without
`gres_most`) loads with the counts unknown, so nothing is refused for a count; older readers ignore the
keys they do not know.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path
from typing import Any

from xm_slurm.errors import ValidationError
from xm_slurm.paths import local_state_dir
from xm_slurm.scheduler.local_state import (
    ensure_private_dir,
    key_file_stem,
    read_json,
    transport_key,
    write_private_json,
)
from xm_slurm.transport.base import ShellLine, Transport

log = logging.getLogger(__name__)

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default (tasks 0..1000)
DEFAULT_MAX_JOB_COUNT = 10000
#: How long limits read from a cluster are reused (seconds) by every process of the user on this machine.
LIMITS_MAX_AGE = 3600.0

_LINE = re.compile(r"^\s*(MaxArraySize|MaxJobCount)\s*=\s*(\d+)\s*$", re.MULTILINE)
_PARTITIONS_MARK = "#xm-slurm-partitions"
_END_MARK = "#xm-slurm-end"
#: One SSH command: `scontrol show config`, then the partitions between two marks. The partition section
#: counts only when sinfo succeeded (the end mark), and the exit status is scontrol's.
READ_COMMAND = ShellLine(
    f"scontrol show config ; xm_rc=$? ; echo '{_PARTITIONS_MARK}' ; "
    f"sinfo -a -h -o '%P|%G|%f' && echo '{_END_MARK}' ; exit $xm_rc",
    kind="limits",
    argv=["scontrol", "show", "config"],
)
_PARENTHESISED = re.compile(r"\([^)]*\)")
_COUNT = re.compile(r"(\d+)([KMGTP]?)")
#: A gres count's suffix multiplies it by a power of 1024 (gres.conf `Count=`).
_SUFFIX = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


@dataclasses.dataclass(frozen=True)
class Partition:
    """A partition and what its nodes offer: gres as `name` and `name:type` (`gpu`, `gpu:a100`), the
    nodes' available features, and `gres_most`: (gres, the most of it one node holds), sorted, for the
    gres whose count is known (a name counts all its types: `gpu:sim:4,gpu:1g.10gb:2` is 6 `gpu`)."""

    name: str
    gres: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()
    gres_most: tuple[tuple[str, int], ...] = ()

    def most(self, gres: str) -> int | None:
        """The most of `gres` one node of the partition holds: 0 if none has it, None if unknown."""
        if gres not in self.gres:
            return 0
        return dict(self.gres_most).get(gres)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "gres": sorted(self.gres),
            "features": sorted(self.features),
            "gres_most": dict(self.gres_most),
        }

    @classmethod
    def from_json(cls, data: Any) -> Partition:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError(f"not a partition record: {data!r:.100}")
        words = [data.get("gres", []), data.get("features", [])]
        if not all(isinstance(w, list) and all(isinstance(x, str) for x in w) for w in words):
            raise ValueError(f"not a partition record: {data!r:.100}")
        most = data.get("gres_most", {})  # absent in a cache written before counts: all unknown
        if not isinstance(most, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= 0 for k, v in most.items()
        ):
            raise ValueError(f"not a partition record: {data!r:.100}")
        return cls(data["name"], frozenset(words[0]), frozenset(words[1]), tuple(sorted(most.items())))


@dataclasses.dataclass(frozen=True)
class ClusterLimits:
    """`max_array_size`: array indices must be below it (so an array holds at most that many tasks).
    `max_job_count`: the most job records slurmctld keeps (a pending array is one record; a task that
    starts becomes one). `partitions`: None when they could not be read; `default_partition` is the one
    Slurm uses when a job names none."""

    max_array_size: int = DEFAULT_MAX_ARRAY_SIZE
    max_job_count: int = DEFAULT_MAX_JOB_COUNT
    source: str = "default"  # "scontrol" when read from the cluster, "cache" when read from the cache
    partitions: tuple[Partition, ...] | None = None
    default_partition: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_array_size", "max_job_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name}={value!r} must be an integer >= 1")

    def partition(self, name: str) -> Partition | None:
        """The partition called `name`, or None (unknown, or the partitions were not read)."""
        return next((p for p in self.partitions or () if p.name == name), None)

    def capped(self, max_array_size: int | None) -> ClusterLimits:
        """These limits with the array size lowered to `max_array_size` (a user or test setting)."""
        if max_array_size is None or max_array_size >= self.max_array_size:
            return self
        return dataclasses.replace(self, max_array_size=max_array_size)


def parse_gres(text: str) -> frozenset[str]:
    """`gpu:a100:4(S:0-1),shard:8` -> {gpu, gpu:a100, shard}; `(null)` -> {}."""
    return frozenset(parse_gres_counts(text))


def parse_gres_counts(text: str) -> dict[str, int | None]:
    """One node's gres (sinfo `%G`) with their counts: `gpu:sim:4(S:0),gpu:1g.10gb:2` ->
    {gpu: 6, gpu:sim: 4, gpu:1g.10gb: 2} (a name counts all its types); `gpu:4` -> {gpu: 4};
    `(null)` -> {}; None where sinfo gave no count (unknown, as is a name one of whose types is)."""
    out: dict[str, int | None] = {}
    for item in _PARENTHESISED.sub("", text).split(","):
        parts = [p for p in item.strip().split(":") if p]
        count = _count(parts[-1]) if parts else None
        if count is not None:
            parts.pop()
        if not parts:
            continue
        keys = [parts[0]] + ([f"{parts[0]}:{parts[1]}"] if len(parts) > 1 else [])
        for key in keys:
            before = out.get(key, 0)
            out[key] = None if before is None or count is None else before + count
    return out


def _count(word: str) -> int | None:
    match = _COUNT.fullmatch(word)
    return None if match is None else int(match.group(1)) * _SUFFIX[match.group(2)]


def parse_partitions(text: str) -> tuple[tuple[Partition, ...], str | None]:
    """`sinfo -a -h -o '%P|%G|%f'` lines -> the partitions (a partition's node configurations merged) and
    the default partition (marked `*`)."""
    gres: dict[str, set[str]] = {}
    most: dict[str, dict[str, int | None]] = {}  # a line is one node configuration: its counts are a node's
    features: dict[str, set[str]] = {}
    default = None
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 3 or not fields[0]:
            continue
        name = fields[0]
        if name.endswith("*"):
            name = default = name[:-1]
        counts = parse_gres_counts(fields[1])
        gres.setdefault(name, set()).update(counts)
        _keep_most(most.setdefault(name, {}), counts)
        words = {w.strip() for w in _PARENTHESISED.sub("", fields[2]).split(",")}
        features.setdefault(name, set()).update(w for w in words if w)
    partitions = tuple(
        Partition(n, frozenset(gres[n]), frozenset(features[n]), _known(most[n])) for n in sorted(gres)
    )
    return partitions, default


def _keep_most(most: dict[str, int | None], counts: dict[str, int | None]) -> None:
    """Fold one node configuration's counts into a partition's largest (unknown stays unknown)."""
    for key, count in counts.items():
        before = most.get(key, 0)
        most[key] = None if before is None or count is None else max(before, count)


def _known(most: dict[str, int | None]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, c) for k, c in most.items() if c is not None))


def parse_limits(text: str) -> ClusterLimits:
    """Limits (and partitions) from `READ_COMMAND`'s output; a missing key keeps Slurm's default, a missing
    or unfinished partition section leaves the partitions unknown."""
    config, mark, rest = text.partition(_PARTITIONS_MARK)
    found = {key: int(value) for key, value in _LINE.findall(config)}
    partitions: tuple[Partition, ...] | None = None
    default = None
    body, end, _ = rest.partition(_END_MARK)
    if mark and end:
        partitions, default = parse_partitions(body)
        partitions = partitions or None  # a cluster without any partition: nothing to check against
    return ClusterLimits(
        max_array_size=max(1, found.get("MaxArraySize", DEFAULT_MAX_ARRAY_SIZE)),
        max_job_count=max(1, found.get("MaxJobCount", DEFAULT_MAX_JOB_COUNT)),
        source="scontrol" if found else "default",
        partitions=partitions if found else None,
        default_partition=default if found else None,
    )


async def read_limits(transport: Transport) -> ClusterLimits:
    """Ask the cluster once (`READ_COMMAND`); Slurm's defaults if it cannot tell."""
    result = await transport.run(READ_COMMAND, check=False, idempotent=True)
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
            return _from_cache(data)
        except (KeyError, TypeError, ValueError, ValidationError):
            log.info("ignoring the unreadable (or older) cluster limits cache %s", path)
    limits = await read_limits(transport)
    if limits.source == "scontrol":
        ensure_private_dir(path.parent)
        write_private_json(path, {"key": key, "time": time.time(), **_to_cache(limits)})
    return limits


def _to_cache(limits: ClusterLimits) -> dict[str, Any]:
    partitions = None if limits.partitions is None else [p.to_json() for p in limits.partitions]
    return {
        "max_array_size": limits.max_array_size,
        "max_job_count": limits.max_job_count,
        "partitions": partitions,
        "default_partition": limits.default_partition,
    }


def _from_cache(data: dict[str, Any]) -> ClusterLimits:
    """The limits a cache file holds; KeyError for a file written before partitions were read."""
    partitions = data["partitions"]
    default = data.get("default_partition")
    if default is not None and not isinstance(default, str):
        raise ValueError(f"default_partition={default!r:.100}")
    return ClusterLimits(
        max_array_size=int(data["max_array_size"]),
        max_job_count=int(data["max_job_count"]),
        source="cache",
        partitions=None if partitions is None else tuple(Partition.from_json(p) for p in partitions),
        default_partition=default,
    )
