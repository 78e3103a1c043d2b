"""Small public types of the experiment API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict


class JobArgs(TypedDict, total=False):
    """One trial of a sweep: `experiment.add(job, args=[JobArgs(args={...}, env_vars={...}), ...])`.

    `args` are merged into the job's args (a dict of flags, a list, or `xm.SequentialArgs`); `env_vars`
    are added to the job's environment. For a job generator, the keys are its keyword arguments instead.
    """

    args: Any
    env_vars: Mapping[str, Any]
