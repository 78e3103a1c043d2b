"""Parse and print container image references (`registry/name:tag@sha256:...`).

Follows the Docker reference grammar closely enough to tell the registry host from the
repository path: the first path component is a registry only if it contains `.` or `:` or is
`localhost`. Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
import re

from xm_slurm.errors import ValidationError

DOCKER_HUB = "docker.io"
# Where Docker Hub's registry API really lives.
DOCKER_HUB_API_HOST = "registry-1.docker.io"

_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]+)?$")

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


@dataclasses.dataclass(frozen=True)
class ImageReference:
    """A parsed image reference. `registry` is None when the reference named none."""

    repository: str
    registry: str | None = None
    tag: str | None = None
    digest: str | None = None

    @property
    def domain(self) -> str:
        """The registry host as Docker resolves it (Docker Hub when none was named)."""
        return self.registry or DOCKER_HUB

    @property
    def api_host(self) -> str:
        """The host that answers the registry HTTP API v2 for this image."""
        return DOCKER_HUB_API_HOST if self.domain == DOCKER_HUB else self.domain

    @property
    def api_repository(self) -> str:
        """The repository path as the registry API knows it (`library/` for official Hub images)."""
        if self.domain == DOCKER_HUB and "/" not in self.repository:
            return f"library/{self.repository}"
        return self.repository

    @property
    def is_loopback(self) -> bool:
        return self.domain.rsplit(":", 1)[0] in LOOPBACK_HOSTS or self.domain in LOOPBACK_HOSTS

    @property
    def name(self) -> str:
        """`registry/repository` without tag or digest."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def reference(self) -> str:
        """What the registry API takes after `/manifests/`: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> ImageReference:
        """The same image pinned by `digest` (the tag is dropped: the digest says it all)."""
        if not _DIGEST.match(digest):
            raise ValidationError(
                f"{digest!r} is not an image digest; expected e.g. 'sha256:<64 hex digits>'"
            )
        return dataclasses.replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_image_ref(ref: str) -> ImageReference:
    """Parse `ref`; raises ValidationError naming it when it is not a valid image reference."""
    original = ref
    if not ref or ref != ref.strip() or any(c.isspace() for c in ref):
        raise ValidationError(
            f"invalid image reference {original!r}: expected e.g. 'registry.example.org/me/train:latest'"
        )
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST.match(digest):
            raise ValidationError(
                f"invalid digest in image reference {original!r}: expected '@sha256:<64 hex digits>'"
            )
    registry = None
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _HOST.match(first):
            raise ValidationError(f"invalid registry host {first!r} in image reference {original!r}")
        registry, ref = first, rest
    tag = None
    last_slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > last_slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
        if not _TAG.match(tag):
            raise ValidationError(f"invalid tag {tag!r} in image reference {original!r}")
    if not ref or not all(_COMPONENT.match(part) for part in ref.split("/")):
        raise ValidationError(
            f"invalid repository name {ref!r} in image reference {original!r}: "
            "use lowercase letters, digits and separators ('.', '_', '-'), e.g. 'me/train'"
        )
    return ImageReference(repository=ref, registry=registry, tag=tag, digest=digest)


def require_registry(ref: str, *, what: str = "image tag") -> ImageReference:
    """Parse a push target: it must name a registry host, since the cluster pulls from there."""
    parsed = parse_image_ref(ref)
    if parsed.registry is None:
        raise ValidationError(
            f"{what} {ref!r} names no registry; the cluster must pull the image from one, "
            f"e.g. 'registry.example.org/{parsed.repository}:{parsed.tag or 'latest'}'"
        )
    if parsed.digest is not None:
        raise ValidationError(
            f"{what} {ref!r} has a digest; a push target takes a tag, e.g. '{parsed.name}:latest'"
        )
    return parsed
