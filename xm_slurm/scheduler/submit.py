"""Submitting and cancelling jobs, and the per-experiment state directory on the cluster."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from xm_slurm.errors import SchedulerError, SubmissionError, ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.transport.base import Transport

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# scancel complaints that mean "nothing left to cancel": cancelling is idempotent.
_ALREADY_DONE = ("already completing or completed", "invalid job id specified")


async def state_root(transport: Transport) -> str:
    """The cluster's xm_slurm state folder: `$XM_SLURM_STATE_DIR`, else `$XDG_STATE_HOME/xm-slurm`, else
    `~/.local/state/xm-slurm` (evaluated in the login user's environment on the cluster)."""
    result = await transport.run(
        'printf %s "${XM_SLURM_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/xm-slurm}"', idempotent=True
    )
    return result.stdout


def experiment_dir(root: str, experiment_id: int) -> str:
    """`<root>/<xid as 8 digits>`."""
    if isinstance(experiment_id, bool) or not isinstance(experiment_id, int) or experiment_id < 0:
        raise ValidationError(f"experiment id {experiment_id!r} must be a non-negative integer")
    return f"{root.rstrip('/')}/{experiment_id:08d}"


async def submit(
    transport: Transport,
    script_text: str,
    *,
    directory: str,
    name: str,
    sbatch_args: Sequence[str] = (),
) -> SlurmJobId:
    """Write `script_text` to `<directory>/<name>` (directory 0700, script 0700) and `sbatch --parsable` it.

    Raises `ValidationError` before touching the cluster for bad input, `SubmissionError` (with sbatch's
    stderr) when Slurm refuses the job. Never retried after a lost connection: the job may exist already.
    """
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise ValidationError(f"script name {name!r} must match [A-Za-z0-9][A-Za-z0-9._-]* (a file name)")
    if not isinstance(directory, str) or not directory.strip() or "\n" in directory:
        raise ValidationError(f"script directory {directory!r} must be a non-empty path")
    if not isinstance(script_text, str) or not script_text.startswith("#!"):
        raise ValidationError(
            f"sbatch script {name!r} must start with an interpreter line such as '#!/bin/bash' "
            f"(it starts with {script_text[:20]!r})"
        )
    for arg in sbatch_args:
        if not isinstance(arg, str) or not arg.startswith("-"):
            raise ValidationError(f"sbatch argument {arg!r} must be an option starting with '-'")
    path = f"{directory.rstrip('/')}/{name}"
    await transport.mkdir(directory, mode=0o700)
    await transport.write_text(path, script_text, mode=0o700)
    result = await transport.run(["sbatch", "--parsable", *sbatch_args, path], check=False)
    if result.exit_status != 0:
        raise SubmissionError(
            f"sbatch refused {path} (exit status {result.exit_status}): "
            f"{result.stderr.strip() or result.stdout.strip() or '(no message)'}"
        )
    try:
        return SlurmJobId.from_sbatch_parsable(result.stdout)
    except ValidationError as e:
        raise SubmissionError(f"sbatch accepted {path} but printed no job id: {result.stdout!r}") from e


async def cancel(
    transport: Transport, job_ids: Iterable[SlurmJobId | str], *, signal: str | None = None
) -> None:
    """Cancel many jobs (or array tasks / signal them) with ONE `scancel`. Already finished jobs are fine."""
    ids = [SlurmJobId.parse(j) for j in job_ids]
    if not ids:
        return
    if signal is not None and not re.fullmatch(r"[A-Z0-9]+", signal):
        raise ValidationError(f"signal {signal!r} must be a name like TERM or USR2, or a number")
    clusters = {j.cluster for j in ids}
    if len(clusters) > 1:
        raise ValidationError(f"cannot cancel jobs of several clusters at once: {sorted(map(str, clusters))}")
    argv = ["scancel"]
    if signal is not None:
        argv += ["--signal", signal]
    if cluster := clusters.pop():
        argv += ["-M", cluster]
    argv += [str(j.without_step()) for j in ids]
    result = await transport.run(argv, check=False, idempotent=True)
    if result.exit_status != 0:
        complaints = [line for line in result.stderr.splitlines() if line.strip()]
        if not all(any(done in line.lower() for done in _ALREADY_DONE) for line in complaints):
            raise SchedulerError(
                f"scancel failed (exit status {result.exit_status}): {result.stderr.strip()}"
            )
