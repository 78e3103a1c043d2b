"""The package version, in a module of its own so that any layer (e.g. the server's OpenAPI page) can read it
without importing the root package, which re-exports every layer.

One source of truth: the `version` of pyproject.toml, read from the installed distribution's metadata on first
use (PEP 562: `import xm_slurm` does not pay for the metadata scan). `xm-slurm --version` prints the same.
"""

from __future__ import annotations

import functools

DISTRIBUTION = "xmanager-slurm"


@functools.cache
def version() -> str:
    """The installed distribution's version; `0+unknown` when running from a tree that is not installed."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
