"""Per-task payloads: the in-container entrypoint script of one task, base64-encoded (rendering layer, pure).

Why base64: a task's args and env values are arbitrary bytes. The job script carries each task's entrypoint
only as base64 text in an environment variable (`XM_SLURM_PAYLOAD`), so no value is ever parsed by the
host shell, Slurm or the container runtime's env handling, and one odd value cannot break another task.
Inside the container a constant bootstrap decodes it and `eval`s it; there every value is a `shlex.quote`d
POSIX word, so it reaches the program byte for byte. The image needs `/bin/sh` and `base64` (coreutils or
busybox).
"""

from __future__ import annotations

import base64
import shlex

import jinja2
from xmanager import xm

from xm_slurm.errors import ValidationError

PAYLOAD_VAR = "XM_SLURM_PAYLOAD"

# An environment string is at most MAX_ARG_STRLEN (128 KiB) bytes including "NAME=" and a prefix such as
# APPTAINERENV_; keep a margin.
MAX_PAYLOAD_BYTES = 128 * 1024 - 128

#: The constant in-container command (`/bin/sh -c BOOTSTRAP`): decode this task's entrypoint and run it.
BOOTSTRAP = (
    f'xm_p=$(printf "%s" "${PAYLOAD_VAR}" | base64 -d) || '
    "{ echo 'xm_slurm: cannot decode the job payload: the image needs /bin/sh and base64' >&2; exit 127; }; "
    'eval "$xm_p"'
)


def quote_args(args: xm.SequentialArgs) -> list[str]:
    """Shell words for the container's /bin/sh; `xm.ShellSafeArg` stays unquoted (expanded there)."""
    return args.to_list()  # XManager's default escaper: shlex.quote, ShellSafeArg verbatim


def render_payload(
    template: jinja2.Template,
    *,
    experiment_id: int,
    work_unit_id: int,
    env: dict[str, str],
    workdir: str | None,
    command: list[str],
) -> str:
    """The base64 of one task's entrypoint script."""
    script = template.render(
        experiment_id=experiment_id,
        work_unit_id=work_unit_id,
        env=[(name, shlex.quote(value)) for name, value in env.items()],
        workdir=shlex.quote(workdir) if workdir else None,
        command=" ".join(command),
        payload_var=PAYLOAD_VAR,
    )
    encoded = base64.b64encode(script.encode("utf-8", "surrogateescape")).decode("ascii")
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            f"work unit {work_unit_id}: args and env vars encode to {len(encoded)} bytes, over the "
            f"{MAX_PAYLOAD_BYTES}-byte limit of one environment variable; pass large data as a file"
        )
    return encoded
