"""Packaging (layer 5): build and push container images, pin them by digest, find registry credentials.

The experiment layer calls `package(packageables)` (synchronous, as XManager's packager expects;
it also works inside a running event loop) or `await package_async(packageables)`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Loaded on first use (PEP 562): a launch that packages nothing never imports httpx or rich.
_EXPORTS = {
    "BuiltImage": "builder",
    "ImageBuild": "builder",
    "ImageBuilder": "builder",
    "BuildRequest": "client",
    "DockerClient": "client",
    "ImageBuildClient": "client",
    "PodmanClient": "client",
    "select_client": "client",
    "RegistryCredentials": "credentials",
    "find_credentials": "credentials",
    "ImageReference": "image_ref",
    "parse_image_ref": "image_ref",
    "resolve_digest": "registry",
    "package": "router",
    "package_async": "router",
}

if TYPE_CHECKING:
    from xm_slurm.packaging.builder import BuiltImage, ImageBuild, ImageBuilder
    from xm_slurm.packaging.client import (
        BuildRequest,
        DockerClient,
        ImageBuildClient,
        PodmanClient,
        select_client,
    )
    from xm_slurm.packaging.credentials import RegistryCredentials, find_credentials
    from xm_slurm.packaging.image_ref import ImageReference, parse_image_ref
    from xm_slurm.packaging.registry import resolve_digest
    from xm_slurm.packaging.router import package, package_async


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # also how `from xm_slurm.packaging import <submodule>` finds a submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BuildRequest",
    "BuiltImage",
    "DockerClient",
    "ImageBuild",
    "ImageBuildClient",
    "ImageBuilder",
    "ImageReference",
    "PodmanClient",
    "RegistryCredentials",
    "find_credentials",
    "package",
    "package_async",
    "parse_image_ref",
    "resolve_digest",
    "select_client",
]
