"""Running some tasks of an earlier submission again: its script, found through accounting, resubmitted.

Every xm_slurm job script stays in the experiment's folder on the cluster, and an array script holds every
trial (task i runs trial i). So retrying failed trials needs no job definition, only the script: sacct's
`SubmitLine` names it, and `sbatch --array=<failed task ids> <script>` runs exactly those trials again, each
under its original task index (always < MaxArraySize, as it was before). This works from any process,
including one that only read the experiment back from the metadata store.

The dependency is the caller's to give (`dependency=`, on the command line, which wins over the script's
own): a job cancelled because its dependency failed never ran, so its dependency was never met, and the
experiment layer re-points it at the retried jobs (`experiment.retry_dependencies`). The original throttle
(`%N` of the script's `--array`) is kept.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import Callable, Iterable, Sequence

from xm_slurm.errors import StatusUnavailableError, ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.states import MAX_COMMAND_CHARS
from xm_slurm.scheduler.submit import submit
from xm_slurm.transport.base import Transport

_THROTTLE = re.compile(r"^#SBATCH --array=\S*?(%\d+)\s*$", re.MULTILINE)
_RETRY_SUFFIX = re.compile(r"(-r[0-9a-f]+)+$")
ACCOUNTING_WAIT = 60.0  # slurmdbd may lag the controller by seconds (minutes when loaded)


def compact_ranges(indices: Iterable[int]) -> str:
    """`[0, 1, 2, 5, 7, 8]` -> `"0-2,5,7-8"` (an sbatch `--array` list)."""
    ordered = sorted(set(indices))
    if not ordered or ordered[0] < 0:
        raise ValidationError(f"array task ids {ordered!r} must be a non-empty list of integers >= 0")
    parts: list[str] = []
    start = prev = ordered[0]
    for i in [*ordered[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def _script_from(submit_line: str, workdir: str) -> str | None:
    try:
        words = shlex.split(submit_line)
    except ValueError:
        return None
    if not words or words[0].rsplit("/", 1)[-1] != "sbatch" or len(words) < 2 or words[-1].startswith("-"):
        return None
    if any(w.startswith("--wrap") for w in words) or (
        len(words) > 2 and len(words[-2]) == 2 and words[-2][0] == "-"
    ):
        return None  # not a script submission, or the last word is the value of a short option
    script = words[-1]  # xm_slurm always submits `sbatch [options] <script path>`
    if not script.startswith("/") and workdir:
        script = f"{workdir.rstrip('/')}/{script}"
    return script


async def submitted_scripts(
    transport: Transport, job_ids: Iterable[SlurmJobId], *, accounting_wait: float = ACCOUNTING_WAIT
) -> dict[int, str]:
    """The script each job (by base id) was submitted with, from ONE `sacct` (chunked by length).

    A job's end is seen in squeue before slurmdbd has its record, so jobs sacct does not show yet are asked
    again (only those, with a growing pause) for up to `accounting_wait` seconds.
    """
    bases = sorted({j.job_id for j in job_ids})
    found: dict[int, str] = {}
    deadline, pause = time.monotonic() + accounting_wait, 0.5
    while True:
        found.update(await _scripts_once(transport, [b for b in bases if b not in found]))
        if all(b in found for b in bases) or time.monotonic() + pause > deadline:
            return found
        await asyncio.sleep(pause)  # nothing to await: slurmdbd tells no one when it has caught up
        pause = min(pause * 2, 5.0)


async def _scripts_once(transport: Transport, bases: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    chunk: list[str] = []
    chunks = [chunk]
    for base in map(str, bases):
        if sum(len(b) + 1 for b in chunk) + len(base) > MAX_COMMAND_CHARS:
            chunk = []
            chunks.append(chunk)
        chunk.append(base)
    for ids in chunks:
        if not ids:
            continue
        argv = ["sacct", "-X", "-P", "-n", "--format=JobID,WorkDir,SubmitLine", "-j", ",".join(ids)]
        result = await transport.run(argv, check=False, idempotent=True)
        if result.exit_status != 0:
            raise StatusUnavailableError(
                f"cannot find the scripts of jobs {','.join(ids)} to resubmit them: `sacct` exited with "
                f"{result.exit_status}: {result.stderr.strip()} (retrying needs Slurm accounting)"
            )
        for line in result.stdout.splitlines():
            fields = line.split("|", 2)
            if len(fields) < 3:
                continue
            script = _script_from(fields[2], fields[1])
            if script is not None:
                found.setdefault(SlurmJobId.parse(fields[0]).job_id, script)
    return found


async def resubmit(
    transport: Transport,
    script: str,
    *,
    array_tasks: Sequence[int] | None = None,
    token: str | None = None,
    edit: Callable[[str], str] | None = None,
    dependency: str = "",
) -> SlurmJobId:
    """Submit `script` again (only `array_tasks` of it, for an array script) with `--dependency=<dependency>`
    (default: none, whatever the script says).

    The script is copied next to itself under a new name and submitted with `submit` (exactly once, like
    any submission, with `token` if given); its `SubmitLine` then names the copy, so a retry can be retried.
    `edit` changes the copy's text (a retry's fresh run identity, `rendering.run_identity`).
    """
    if not isinstance(script, str) or not script.startswith("/") or "\n" in script:
        raise ValidationError(f"script path {script!r} must be an absolute path on the cluster")
    text = await transport.read_text(script)
    if edit is not None:
        text = edit(text)
    args = [f"--dependency={dependency}"]
    if array_tasks is not None:
        throttle = _THROTTLE.search(text)
        args.append(f"--array={compact_ranges(array_tasks)}{throttle.group(1) if throttle else ''}")
    directory, _, name = script.rpartition("/")
    stem = _RETRY_SUFFIX.sub("", name.removesuffix(".sh"))
    return await submit(
        transport,
        text,
        directory=directory or "/",
        name=f"{stem}-r{time.time_ns():x}.sh",
        sbatch_args=args,
        token=token,
    )
