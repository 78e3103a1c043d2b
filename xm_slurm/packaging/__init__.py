"""Packaging (layer 5): build and push container images, pin them by digest, find registry credentials.

The experiment layer calls `package(packageables)` (synchronous, as XManager's packager expects;
it also works inside a running event loop) or `await package_async(packageables)`.
"""

from __future__ import annotations

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
