"""Submitting and cancelling jobs, and asking the cluster where its state folder is (`state_root`).

Exactly-once submission. Every `submit` carries a fresh token in `--comment` (and in the job's environment as
`XM_SLURM_SUBMISSION`), generated before `sbatch` runs. `sbatch`'s answer is written to files next to the
script before it is printed, so a dropped SSH connection cannot kill or lose it (no SIGPIPE: the output goes
to a file; a session without a pty gets no SIGHUP). When the connection drops while `sbatch` runs, `submit`
reconnects, waits (bounded) for that recorded answer, then asks the cluster for the token, in `squeue --states=all`
(every job slurmctld still holds, finished ones included for `MinJobAge`) and in `sacct` (its `Comment`, kept
only with `AccountingStoreFlags=job_comment`, and its `SubmitLine`, which holds `--comment=<token>` anyway).
It adopts the job it finds, and submits again only when neither says the job exists; when neither can answer
it raises instead of risking a duplicate. An unreachable controller (sbatch's `connect failure`: nothing was
sent) is retried a bounded number of times, then reported as one `SubmissionError`.

Jobs run with `SLURM_UMASK=0077`, so their logs (and files they create) are private to the user, like the
state folder (0700) and the scripts (0700).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shlex
from collections.abc import Iterable, Sequence

from xm_slurm.errors import (
    ConnectionLostError,
    SchedulerError,
    SubmissionError,
    TransportError,
    ValidationError,
)
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.paths import REMOTE_STATE_DIR_COMMAND
from xm_slurm.paths import experiment_dir as experiment_dir  # its old home: still importable from here
from xm_slurm.transport.base import ShellLine, Transport

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TOKEN = re.compile(r"xms-[0-9a-f]{24}")
# scancel complaints that mean "nothing left to cancel": cancelling is idempotent.
_ALREADY_DONE = ("already completing or completed", "invalid job id specified")
# sbatch could not even open a connection to slurmctld: nothing was submitted, a retry is safe.
_NOT_SENT = ("connect failure", "unable to contact slurm controller")
# sbatch's request may have reached slurmctld before the answer was lost: look the token up before a retry.
_MAYBE_SENT = ("socket timed out", "zero bytes were transmitted", "resource temporarily unavailable")
COMMENT_PREFIX = "xm_slurm_submission="
JOB_UMASK = "0077"


def new_submission_token() -> str:
    """A fresh submission token (96 random bits): `xms-` and 24 hex digits."""
    return f"xms-{secrets.token_hex(12)}"


async def state_root(transport: Transport) -> str:
    """The cluster's xm_slurm state folder (`paths.REMOTE_STATE_DIR`, evaluated in the login user's
    environment on the cluster)."""
    result = await transport.run(ShellLine(REMOTE_STATE_DIR_COMMAND, kind="state_root"), idempotent=True)
    return result.stdout


def _validate_script(script_text: str, directory: str, name: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise ValidationError(f"script name {name!r} must match [A-Za-z0-9][A-Za-z0-9._-]* (a file name)")
    if not isinstance(directory, str) or not directory.strip() or "\n" in directory:
        raise ValidationError(f"script directory {directory!r} must be a non-empty path")
    if not isinstance(script_text, str) or not script_text.startswith("#!"):
        raise ValidationError(
            f"sbatch script {name!r} must start with an interpreter line such as '#!/bin/bash' "
            f"(it starts with {script_text[:20]!r})"
        )


def _validate_sbatch(sbatch_args: Sequence[str], token: str, max_attempts: int) -> None:
    if isinstance(sbatch_args, str):
        raise ValidationError(f"sbatch_args={sbatch_args!r} must be a list of options, not one string")
    for arg in sbatch_args:
        if not isinstance(arg, str) or not arg.startswith("-"):
            raise ValidationError(f"sbatch argument {arg!r} must be an option starting with '-'")
        if arg.startswith("--comment"):
            raise ValidationError(
                f"sbatch argument {arg!r}: --comment is reserved for xm_slurm's submission token"
            )
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise ValidationError(f"submission token {token!r} must come from new_submission_token()")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValidationError(f"max_attempts={max_attempts!r} must be an integer >= 1")


def _answer_files(path: str, attempt: int) -> dict[str, str]:
    """Where the sbatch wrapper records sbatch's answer: `<path>.<attempt>.sbatch-{out,err,rc}`."""
    return {kind: f"{path}.{attempt}.sbatch-{kind}" for kind in ("out", "err", "rc")}


def _sbatch_line(path: str, sbatch_args: Sequence[str], token: str, attempt: int) -> ShellLine:
    """`sbatch` with its answer recorded in `<path>.<attempt>.sbatch-{out,err,rc}` before it is printed."""
    q = shlex.quote
    files = _answer_files(path, attempt)
    out, err, rc = (q(files[kind]) for kind in ("out", "err", "rc"))
    argv = ["sbatch", "--parsable", *sbatch_args, f"--comment={COMMENT_PREFIX}{token}", path]
    line = (
        # umask first: the answer files are created private (0600), never readable by others for a moment.
        f"umask 077; SLURM_UMASK={JOB_UMASK} XM_SLURM_SUBMISSION={token} {' '.join(map(q, argv))} "
        f"</dev/null >{out} 2>{err}; xm_rc=$?; "
        f"echo $xm_rc >{rc}.tmp && mv -f {rc}.tmp {rc}; "
        f'cat {out}; cat {err} >&2; exit "$xm_rc"'
    )
    return ShellLine(line, kind="sbatch", argv=argv, files=files)


async def _recorded_answer(
    transport: Transport, path: str, attempt: int, wait: float
) -> tuple[int, str, str] | None:
    """(exit status, stdout, stderr) of an sbatch whose answer the connection lost; None if it never ended."""
    q = shlex.quote
    files = _answer_files(path, attempt)
    line = (
        f"timeout {max(1, round(wait))} sh -c 'while [ ! -e \"$1\" ]; do sleep 0.1; done' sh {q(files['rc'])}"
        f" && cat {q(files['rc'])} {q(files['out'])} && printf '\\036' && cat {q(files['err'])}"
    )
    # Answered as: the rc file, the out file, a 0x1e byte, the err file; or a non-zero exit (no rc file).
    result = await transport.run(
        ShellLine(line, kind="sbatch_answer", files=files), check=False, idempotent=True
    )
    if result.exit_status != 0 or "\x1e" not in result.stdout:
        return None
    head, stderr = result.stdout.split("\x1e", 1)
    status, _, stdout = head.partition("\n")
    return (int(status), stdout, stderr) if status.strip().isdigit() else None


def _owner(job: str) -> SlurmJobId | None:
    """The job an id belongs to (`123_4`, `123_[0-9]`, `123+1` -> `123`), or None if it is no job id."""
    try:
        return SlurmJobId.parse(job.strip()).base
    except ValidationError:
        return None


async def find_submission(transport: Transport, token: str) -> SlurmJobId | None:
    """The job submitted with `token`, or None if neither squeue nor sacct knows it.

    Raises `SchedulerError` if neither could answer (then the caller cannot tell, and must not resubmit).
    """
    if not _TOKEN.fullmatch(token):
        raise ValidationError(f"submission token {token!r} must come from new_submission_token()")
    answered = False
    # The user's every job, with its comment (`%k`); `$(id -un)` needs the shell.
    lookup = ShellLine(
        'squeue -h --states=all --user="$(id -un)" -o "%i|%k"',
        kind="submission_lookup",
        argv=["squeue", "-h", "--states=all", "-o", "%i|%k"],
    )
    squeue = await transport.run(lookup, check=False, idempotent=True)
    if squeue.exit_status == 0:
        answered = True
        for row in squeue.stdout.splitlines():
            job, _, comment = row.partition("|")
            if comment.strip() == COMMENT_PREFIX + token and (found := _owner(job)) is not None:
                return found
    sacct = await transport.run(
        ["sacct", "-n", "-X", "-P", "--starttime=now-7days", "--format=JobID,Comment,SubmitLine"],
        check=False,
        idempotent=True,
    )
    if sacct.exit_status == 0:
        answered = True
        for row in sacct.stdout.splitlines():
            job, _, rest = row.partition("|")
            if token in rest and (found := _owner(job)) is not None:
                return found
    if not answered:
        raise SchedulerError(
            f"neither squeue nor sacct answered, so xm_slurm cannot tell whether submission {token} reached "
            f"Slurm: squeue: {squeue.stderr.strip() or squeue.exit_status}; "
            f"sacct: {sacct.stderr.strip() or sacct.exit_status}"
        )
    return None


async def submit(
    transport: Transport,
    script_text: str,
    *,
    directory: str,
    name: str,
    sbatch_args: Sequence[str] = (),
    token: str | None = None,
    max_attempts: int = 3,
    retry_delay: float = 1.0,
    answer_wait: float = 30.0,
) -> SlurmJobId:
    """Write `script_text` to `<directory>/<name>` (directory 0700, script 0700) and `sbatch --parsable` it,
    exactly once (see the module docstring): a lost connection or an unreachable controller is retried up to
    `max_attempts` times, adopting the job if the first attempt did reach Slurm.

    `token` (from `new_submission_token()`) lets a caller record the submission before it happens and find
    the job later with `find_submission`. Raises `ValidationError` before touching the cluster for bad input,
    `SubmissionError` (with sbatch's stderr) when Slurm refuses the job or cannot be reached.
    """
    token = new_submission_token() if token is None else token
    _validate_script(script_text, directory, name)
    _validate_sbatch(sbatch_args, token, max_attempts)  # all input checked before the upload
    path = await upload_script(transport, script_text, directory=directory, name=name)
    return await sbatch_script(
        transport,
        path,
        sbatch_args=sbatch_args,
        token=token,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        answer_wait=answer_wait,
    )


async def upload_script(transport: Transport, script_text: str, *, directory: str, name: str) -> str:
    """The first half of `submit`: write the script (directory 0700, script 0700); returns its path.

    Raises a `TransportError` (the real cause chained) saying that nothing was submitted when the upload
    fails, the local transport's `OSError`s included.

    Separate so that a caller can overlap the upload with its own bookkeeping (e.g. recording the
    submission as pending) and call `sbatch_script` only once both are done.
    """
    _validate_script(script_text, directory, name)
    path = f"{directory.rstrip('/')}/{name}"
    try:
        # The transport already repeated what was safe to repeat (the SSH one retries a write cut by a lost
        # connection): what arrives here is final.
        await transport.mkdir(directory, mode=0o700)
        await transport.write_text(path, script_text, mode=0o700)
    except (TransportError, OSError) as e:
        raise _upload_error(path, e) from e
    return path


def _upload_error(path: str, error: TransportError | OSError) -> TransportError:
    """The upload's error, of the same TransportError kind, saying that nothing was submitted."""
    message = (
        f"could not upload the sbatch script {path}, so nothing was submitted: {error}. It is safe to "
        "launch again once the cause is fixed"
    )
    kind = type(error) if isinstance(error, TransportError) else TransportError
    try:
        return kind(message)
    except TypeError:  # a subclass that wants more arguments
        return TransportError(message)


async def sbatch_script(
    transport: Transport,
    path: str,
    *,
    sbatch_args: Sequence[str] = (),
    token: str,
    max_attempts: int = 3,
    retry_delay: float = 1.0,
    answer_wait: float = 30.0,
) -> SlurmJobId:
    """The second half of `submit`: `sbatch` the script `upload_script` wrote, exactly once, with `token`."""
    if not isinstance(path, str) or "\n" in path or not _SAFE_NAME.fullmatch(path.rpartition("/")[2]):
        raise ValidationError(f"script path {path!r} must be the path upload_script returned")
    _validate_sbatch(sbatch_args, token, max_attempts)
    last = ""
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            await asyncio.sleep(retry_delay * 2 ** (attempt - 2))
        try:
            result = await transport.run(_sbatch_line(path, sbatch_args, token, attempt), check=False)
            status, stdout, stderr = result.exit_status, result.stdout, result.stderr
        except ConnectionLostError as e:
            log.warning(
                "connection lost while sbatch %s ran (%s); checking whether it was submitted", path, e
            )
            answer = await _recorded_answer(transport, path, attempt, answer_wait)
            if answer is None:  # sbatch never finished (or never started): ask Slurm
                last = f"connection lost: {e}"
                if (found := await _lookup(transport, token, path)) is not None:
                    return found
                continue
            status, stdout, stderr = answer
        if status == 0:
            try:
                return SlurmJobId.from_sbatch_parsable(stdout)
            except ValidationError as e:
                raise SubmissionError(f"sbatch accepted {path} but printed no job id: {stdout!r}") from e
        message = stderr.strip() or stdout.strip() or "(no message)"
        last = f"exit status {status}: {message}"
        lowered = message.lower()
        if any(s in lowered for s in _NOT_SENT):
            log.warning(
                "sbatch %s: Slurm controller unreachable (attempt %d of %d)", path, attempt, max_attempts
            )
            continue
        if status > 128 or any(s in lowered for s in _MAYBE_SENT):  # killed, or the answer was lost
            if (found := await _lookup(transport, token, path)) is not None:
                return found
            continue
        raise SubmissionError(f"sbatch refused {path} ({last})")
    raise SubmissionError(
        f"could not submit {path} after {max_attempts} attempts (last: {last}); is the Slurm controller up? "
        "(`scontrol ping` on the cluster)"
    )


async def _lookup(transport: Transport, token: str, path: str) -> SlurmJobId | None:
    try:
        found = await find_submission(transport, token)
    except (SchedulerError, TransportError) as e:
        raise SubmissionError(
            f"the answer of sbatch {path} was lost and Slurm cannot tell whether it was submitted ({e}); "
            f"look for the comment {COMMENT_PREFIX}{token} in `squeue -o %i,%k` before submitting again"
        ) from None
    if found is not None:
        log.warning("sbatch %s had submitted job %s before its answer was lost: adopting it", path, found)
    return found


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
