"""Runs a parameter controller inside its Slurm job: `python -m xm_slurm.experimental.controller_runner`.

Reads the payload that `parameter_controller` put in the environment, points the metadata client at the
store (reading the REST token from its file), rebuilds the experiment with `get_current_experiment()` and
awaits `function(experiment, **kwargs)`. The experiment is entered, so what the function adds is launched
and recorded before the job ends. Exit codes: 0 done, 1 the function raised, 2 not set up as a controller.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xm_slurm.experimental.payload import PAYLOAD_ENV, TOKEN_FILE_ENV, decode


def _load_token() -> None:
    path = os.environ.pop(TOKEN_FILE_ENV, "")
    if path:
        # In this process's environment only, where the metadata client looks for it.
        os.environ["XM_SLURM_REST_API_TOKEN"] = Path(path).read_text().strip()


async def _run(function: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    from xm_slurm.experiment.access import get_current_experiment

    experiment = get_current_experiment()
    if experiment is None:
        raise RuntimeError("the controller runs inside an xm_slurm job (XM_SLURM_EXPERIMENT_ID is not set)")
    async with experiment:
        await function(experiment, **kwargs)


def main() -> int:
    payload = os.environ.pop(PAYLOAD_ENV, "")
    if not payload:
        print(
            f"xm_slurm controller runner: {PAYLOAD_ENV} is not set; run it through parameter_controller",
            file=sys.stderr,
        )
        return 2
    try:
        _load_token()
        function, kwargs = decode(payload)
    except Exception as e:
        print(
            f"xm_slurm controller runner: cannot load the controller: {type(e).__name__}: {e}",
            file=sys.stderr,
        )
        return 2
    name = getattr(function, "__qualname__", repr(function))
    print(f"xm_slurm controller runner: running {name}", flush=True)
    try:
        asyncio.run(_run(function, kwargs))
    except Exception:
        traceback.print_exc()
        return 1
    print(f"xm_slurm controller runner: {name} finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
