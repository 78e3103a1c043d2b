"""Image references for the packaging layer: the grammar lives in the model (`xm_slurm.executables.image_ref`),
one parser for the whole package; this module keeps the names packaging code imports."""

from __future__ import annotations

from xm_slurm.executables.image_ref import (
    DOCKER_HUB,
    DOCKER_HUB_API_HOST,
    LOOPBACK_HOSTS,
    ImageReference,
    parse_image_ref,
    require_registry,
)

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_API_HOST",
    "LOOPBACK_HOSTS",
    "ImageReference",
    "parse_image_ref",
    "require_registry",
]
