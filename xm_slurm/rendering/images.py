"""Where a job finds an image's registry login and its converted (SIF) copy on the cluster (pure).

Registry login: the experiment layer uploads one private (0600) docker-style auth file per registry
and user (`xm_slurm.packaging.cluster_auth.upload_registry_auth`) to
`<experiment dir>/registry-auth/<key>.json`; a job script names only that path (podman
`--authfile`; for Apptainer/Singularity the script reads it into `*_DOCKER_USERNAME/PASSWORD`
variables of the conversion process), so no secret is in a script, a command line or a log.

Image cache (Apptainer/Singularity): an image pinned by digest is converted once into
`<state dir>/images/<algorithm>-<hex>.sif` (override: `$XM_SLURM_IMAGE_CACHE` on the cluster, e.g.
in the cluster's `host_environment`), shared by all of the user's jobs.
"""

from __future__ import annotations

import hashlib
import re

from xm_slurm.executables import RemoteImage

AUTH_DIR = "registry-auth"
IMAGE_CACHE_DIR = "images"
DOCKER_HUB = "docker.io"

_DIGEST = re.compile(r"@(sha256):([0-9a-f]{64})$")


def registry_of(image: str) -> str:
    """The registry host of an image reference (Docker Hub when it names none)."""
    first, sep, _ = image.split("@", 1)[0].partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def auth_file_name(registry: str, username: str) -> str:
    """A file name per registry and user; it holds no secret and reveals nothing about one."""
    key = hashlib.sha256(f"{registry}\0{username}".encode()).hexdigest()[:20]
    return f"{key}.json"


def auth_file_path(experiment_dir: str, image: RemoteImage) -> str | None:
    """Where a job looks for the registry login of `image` (None when it needs none)."""
    if image.credentials is None:
        return None
    name = auth_file_name(registry_of(image.image), image.credentials.username)
    return f"{experiment_dir.rstrip('/')}/{AUTH_DIR}/{name}"


def cache_key(image: str) -> str | None:
    """`sha256-<hex>` for an image pinned by digest; None for a tag (which may move: never cached)."""
    match = _DIGEST.search(image)
    return f"{match.group(1)}-{match.group(2)}" if match else None


def default_image_cache(state_dir: str) -> str:
    return f"{state_dir.rstrip('/')}/{IMAGE_CACHE_DIR}"
