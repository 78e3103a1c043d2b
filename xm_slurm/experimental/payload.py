"""The controller payload: a cloudpickled `(function, kwargs)`, base64 in one environment variable.

Shared by the decorator (which encodes it in the launch process) and the runner (which decodes it in the job).
The function's own module is pickled by value, so a controller defined in a launch script, a test module or a
notebook needs nothing but xm_slurm (and what the function itself imports) in the job's image.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable, Mapping
from typing import Any

import cloudpickle

from xm_slurm.errors import ValidationError

#: The job's environment variable holding the payload.
PAYLOAD_ENV = "XM_SLURM_CONTROLLER_PAYLOAD"
#: Path (in the job) of a 0600 file holding the REST API token; the token itself is never in the script.
TOKEN_FILE_ENV = "XM_SLURM_REST_API_TOKEN_FILE"
#: The runner module, run as `python -m`.
RUNNER_MODULE = "xm_slurm.experimental.controller_runner"


def encode(function: Callable[..., Any], kwargs: Mapping[str, Any]) -> str:
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    by_value = (
        module is not None
        and module.__name__ != "__main__"  # pickled by value anyway
        and not module.__name__.startswith(("xm_slurm.", "xmanager."))
    )
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        data = cloudpickle.dumps((function, dict(kwargs)))
    except Exception as e:
        raise ValidationError(
            f"cannot ship parameter controller {getattr(function, '__qualname__', function)!r} or its "
            f"arguments with cloudpickle: {e}; keep what it captures picklable (no open connections, locks)"
        ) from e
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)
    return base64.b64encode(data).decode("ascii")


def decode(text: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    function, kwargs = cloudpickle.loads(base64.b64decode(text.encode("ascii")))
    return function, kwargs
