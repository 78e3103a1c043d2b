"""What ended jobs used, from accounting: elapsed time, CPU efficiency and peak memory.

ONE `sacct -P -n --format=JobID,Elapsed,TotalCPU,AllocCPUS,MaxRSS -j <base ids>` per cluster for every job
asked about (chunked only by command length, as the status query). Without `-X`: the peak memory (MaxRSS) is
recorded on the job's steps (`123.batch`, `123_4.0`), not on the job's own row, so a job's peak is the
largest of its steps'; its elapsed time, CPUs and total CPU time are read from its own row.
CPU efficiency = TotalCPU / (Elapsed x AllocCPUS). Best effort: a cluster without accounting gives nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.states import _commands
from xm_slurm.transport import Transport

USAGE_FORMAT = "JobID,Elapsed,TotalCPU,AllocCPUS,MaxRSS"
_DURATION = re.compile(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([KMGTP]?)", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


@dataclasses.dataclass(frozen=True)
class JobUsage:
    """One job's use of its allocation; a field is None where accounting has no value."""

    elapsed_seconds: float | None
    cpu_seconds: float | None
    cpus: int | None
    max_rss_bytes: int | None

    @property
    def cpu_efficiency(self) -> float | None:
        """TotalCPU / (Elapsed x AllocCPUS), in [0, 1] (None when a factor is missing or zero)."""
        if not self.elapsed_seconds or not self.cpus or self.cpu_seconds is None:
            return None
        return min(self.cpu_seconds / (self.elapsed_seconds * self.cpus), 1.0)

    def to_json(self) -> dict[str, float | int | None]:
        eff = self.cpu_efficiency
        return {
            "elapsed_seconds": self.elapsed_seconds,
            "cpu_seconds": self.cpu_seconds,
            "cpus": self.cpus,
            "cpu_efficiency": None if eff is None else round(eff, 4),
            "max_rss_bytes": self.max_rss_bytes,
        }

    def summary(self) -> str:
        """`elapsed 0:01:05, CPU 93%, peak mem 1.2 GiB` (the parts accounting has)."""
        parts = []
        if self.elapsed_seconds is not None:
            parts.append(f"elapsed {format_duration(self.elapsed_seconds)}")
        if (eff := self.cpu_efficiency) is not None:
            parts.append(f"CPU {eff:.0%}")
        if self.max_rss_bytes is not None:
            parts.append(f"peak mem {format_bytes(self.max_rss_bytes)}")
        return ", ".join(parts)


def parse_duration(text: str) -> float | None:
    """Seconds of a sacct duration: `[D-][HH:]MM:SS[.mmm]` (Elapsed always has hours; TotalCPU may not)."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        return None
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def parse_size(text: str) -> int | None:
    """Bytes of a sacct size (`1234K`, `12.5M`, `0`); None for an empty field."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_duration(seconds: float) -> str:
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def format_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_usage(stdout: str) -> dict[str, JobUsage]:
    """`{job id as str(SlurmJobId): usage}` from `sacct -P -n --format=USAGE_FORMAT` output (steps folded
    into their job)."""
    own: dict[str, list[str]] = {}
    peaks: dict[str, int] = {}
    for line in stdout.splitlines():
        fields = line.split("|")
        if len(fields) < 5 or not fields[0].strip():
            continue
        job, _, step = fields[0].strip().partition(".")
        rss = parse_size(fields[4])
        if rss is not None:
            peaks[job] = max(peaks.get(job, 0), rss)
        if not step:
            own[job] = fields
    out = {}
    for job, fields in own.items():
        try:
            key = str(SlurmJobId.parse(job))
        except ValueError:
            continue  # a pending array range (`123_[1-3]`): it used nothing yet
        cpus = fields[3].strip()
        out[key] = JobUsage(
            elapsed_seconds=parse_duration(fields[1]),
            cpu_seconds=parse_duration(fields[2]),
            cpus=int(cpus) if cpus.isdigit() else None,
            max_rss_bytes=peaks.get(job),
        )
    return out


async def job_usage(transport: Transport, job_ids: Iterable[SlurmJobId]) -> dict[str, JobUsage]:
    """The usage of these jobs, ONE sacct for all of them (more only past the command length limit)."""
    out: dict[str, JobUsage] = {}
    for argv in _commands(["sacct", "-P", "-n", f"--format={USAGE_FORMAT}"], job_ids):
        result = await transport.run(argv, check=False, idempotent=True)
        if result.exit_status == 0:
            out.update(parse_usage(result.stdout))
    return out
