"""Per-task payloads: the in-container entrypoint script of one task, base64-encoded (rendering layer, pure).

Why base64: a task's args and env values are arbitrary bytes. The job script carries each task's entrypoint
only as base64 text in an environment variable (`XM_SLURM_PAYLOAD`), so no value is ever parsed by the
host shell, Slurm or the container runtime's env handling, and one odd value cannot break another task.
Inside the container a constant bootstrap decodes it and `eval`s it; there every value is a `shlex.quote`d
POSIX word, so it reaches the program byte for byte. The image needs `/bin/sh` and `base64` (coreutils or
busybox).

A job array's payloads travel as one task table (`task_table`): a line `<work unit id> <payload>` per task,
gzip-compressed and base64-encoded, so the script stays small (the payloads of a sweep differ in a few
values: 1,000 tasks take ~20 KB instead of ~350 KB). The task decodes the table on the node with `base64 -d`
and `gzip -dc` (present on any Linux node) and picks its own line; the payload itself is unchanged.
"""

from __future__ import annotations

import base64
import gzip
import shlex
from collections.abc import Sequence

from xmanager import xm

from xm_slurm.errors import ValidationError

PAYLOAD_VAR = "XM_SLURM_PAYLOAD"

# An environment string is at most MAX_ARG_STRLEN (128 KiB) bytes including "NAME=" and a prefix such as
# APPTAINERENV_; keep a margin.
MAX_PAYLOAD_BYTES = 128 * 1024 - 128

#: Rendezvous variables for distributed training, from the task's Slurm variables (POSIX sh, in the
#: container, before the task's own env vars, which may override them). MASTER_ADDR and MASTER_PORT come
#: from the job script (one per job or group component). LOCAL_WORLD_SIZE is this node's entry of
#: SLURM_STEP_TASKS_PER_NODE, which Slurm writes compressed: "2(x3),1" = 2, 2, 2 then 1 task per node.
RENDEZVOUS = (
    'export RANK="${SLURM_PROCID:-0}" LOCAL_RANK="${SLURM_LOCALID:-0}" NODE_RANK="${SLURM_NODEID:-0}" '
    'WORLD_SIZE="${SLURM_STEP_NUM_TASKS:-${SLURM_NTASKS:-1}}" LOCAL_WORLD_SIZE=1; '
    'xm_n="${SLURM_NODEID:-0}"; xm_ifs="$IFS"; IFS=,; '
    "for xm_e in ${SLURM_STEP_TASKS_PER_NODE:-${SLURM_TASKS_PER_NODE:-1}}; do "
    'xm_r=1; case "$xm_e" in *"(x"*) xm_r="${xm_e#*(x}"; xm_r="${xm_r%)}";; esac; '
    'if [ "$xm_n" -lt "$xm_r" ]; then LOCAL_WORLD_SIZE="${xm_e%%(*}"; break; fi; '
    "xm_n=$((xm_n - xm_r)); done; "
    'IFS="$xm_ifs"; unset xm_n xm_ifs xm_e xm_r; '
)

#: The constant in-container command (`/bin/sh -c BOOTSTRAP`): set the rendezvous variables, decode this
#: task's entrypoint and run it.
BOOTSTRAP = RENDEZVOUS + (
    f'xm_p=$(printf "%s" "${PAYLOAD_VAR}" | base64 -d) || '
    "{ echo 'xm_slurm: cannot decode the job payload: the image needs /bin/sh and base64' >&2; exit 127; }; "
    'eval "$xm_p"'
)


def quote_args(args: xm.SequentialArgs) -> list[str]:
    """Shell words for the container's /bin/sh; `xm.ShellSafeArg` stays unquoted (expanded there)."""
    return args.to_list()  # XManager's default escaper: shlex.quote, ShellSafeArg verbatim


def entrypoint_script(
    *,
    experiment_id: int,
    work_unit_id: int,
    env: dict[str, str],
    workdir: str | None,
    command: Sequence[str],
    run: Sequence[str] = (),
) -> str:
    """One task's POSIX sh entrypoint (built as a string: a template per task costs ~10x more at 1,000 tasks).
    `run`: the run identity's exports (`run_identity.run_lines`), before the task's own env vars."""
    lines = [
        f"# xm_slurm container entrypoint: experiment {experiment_id}, work unit {work_unit_id} (POSIX sh).",
        f"unset {PAYLOAD_VAR}",
        f"export XM_SLURM_EXPERIMENT_ID={experiment_id}",
        f"export XM_SLURM_WORK_UNIT_ID={work_unit_id}",
        *run,
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    # XM_SLURM_DEBUG=1: trace from here on (after the exports: their values stay out of the log).
    lines.append('if [ "${XM_SLURM_DEBUG:-}" = 1 ]; then set -x; fi')
    if workdir:
        lines.append(f"cd {shlex.quote(workdir)} || exit 126")
    lines.append(f"exec {' '.join(command)}")
    return "\n".join(lines) + "\n"


def render_payload(script: str, *, work_unit_id: int) -> str:
    """The base64 of one task's entrypoint script (from `entrypoint_script`), within one variable's limit."""
    encoded = base64.b64encode(script.encode("utf-8", "surrogateescape")).decode("ascii")
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            f"work unit {work_unit_id}: args and env vars encode to {len(encoded)} bytes, over the "
            f"{MAX_PAYLOAD_BYTES}-byte limit of one environment variable; pass large data as a file"
        )
    return encoded


def task_table(tasks: Sequence[tuple[int, str]]) -> str:
    """`(work unit id, payload)` per array task (task i at index i) -> base64 of the gzip of one line each,
    in lines of 76 characters (`base64 -d` skips the newlines)."""
    lines = "".join(f"{wid} {payload}\n" for wid, payload in tasks)
    # mtime=0: the same tasks give the same script, byte for byte.
    packed = gzip.compress(lines.encode("ascii"), compresslevel=6, mtime=0)
    return base64.encodebytes(packed).decode("ascii").rstrip("\n")


def read_task_table(table: str) -> list[tuple[int, str]]:
    """The inverse of `task_table` (for tests and tools)."""
    lines = gzip.decompress(base64.b64decode(table)).decode("ascii").splitlines()
    return [(int(wid), payload) for wid, payload in (line.split(" ", 1) for line in lines)]
