"""`Secret`: an environment value the user marks secret (model layer, pure).

    job = xm.Job(..., env_vars={"WANDB_API_KEY": xm_slurm.Secret(os.environ["WANDB_API_KEY"])})

A `Secret` is a `str` (so every check and the job itself see the value unchanged), but the metadata store
never holds it: a work unit's stored args show `<secret>` in its place, and every provenance artifact has
each secret value of the launch replaced by `<secret>`. `repr` never shows it either. The value still
travels to the job inside its private (0700) script, as any environment value does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: What the store shows instead of a secret value.
REDACTED = "<secret>"


class Secret(str):
    """A secret environment value: a `str` whose value stays out of the metadata store and of `repr`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


def is_secret(value: object) -> bool:
    return isinstance(value, Secret)


def redact_secrets(value: Any) -> Any:
    """`value` (nested dicts, lists, tuples) with every `Secret` replaced by `REDACTED`."""
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: redact_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v) for v in value]
    return value


__all__ = ["REDACTED", "Secret", "is_secret", "redact_secrets"]
