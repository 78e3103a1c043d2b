"""Image references (`registry/name:tag@sha256:...`): one grammar for the whole package (model layer).

Follows the Docker reference grammar closely enough to tell the registry host from the repository path: the
first path component is a registry only if it contains `.` or `:` or is `localhost`. `ImageURI` and
`ImageDescriptor` are the 0.4.x names over the same parser. Pure functions, no I/O.
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


def validate_image_ref(image: object, *, field: str = "image") -> str:
    """`image` itself when it is an image reference (`parse_image_ref`'s grammar), else a ValidationError."""
    if not isinstance(image, str):
        raise ValidationError(f"{field}={image!r} is not an image reference; use 'registry/path:tag'")
    try:
        parse_image_ref(image)
    except ValidationError as e:
        raise ValidationError(
            f"{field}={image!r} is not an image reference ({e}); use 'registry/path:tag' or "
            "'registry/path@sha256:<64 hex>'"
        ) from None
    return image


class ImageURI:
    """A parsed image reference, as 0.4.x scripts spell it: `ImageURI("registry.example.org/me/train:v1")`.

    Holds an `ImageReference` (`.ref`); `str()` gives the reference back. Equal to another `ImageURI` or to
    a str with the same text. A bad reference is a ValidationError naming it.
    """

    __slots__ = ("ref",)
    ref: ImageReference

    def __init__(self, uri: str | ImageURI | ImageReference) -> None:
        if isinstance(uri, ImageURI):
            ref = uri.ref
        elif isinstance(uri, ImageReference):
            ref = uri
        elif isinstance(uri, str):
            ref = parse_image_ref(uri)
        else:
            raise ValidationError(
                f"ImageURI({uri!r}): expected an image reference str, e.g. 'registry.example.org/me/train:v1'"
            )
        object.__setattr__(self, "ref", ref)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ImageURI is immutable; use with_tag() or with_digest()")

    @property
    def registry(self) -> str | None:
        return self.ref.registry

    @property
    def domain(self) -> str:
        """The registry host as Docker resolves it (`docker.io` when none was named)."""
        return self.ref.domain

    @property
    def repository(self) -> str:
        return self.ref.repository

    path = repository

    @property
    def tag(self) -> str | None:
        return self.ref.tag

    @property
    def digest(self) -> str | None:
        return self.ref.digest

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return self.ref.name

    def with_tag(self, tag: str) -> ImageURI:
        return ImageURI(f"{self.name}:{tag}")

    def with_digest(self, digest: str) -> ImageURI:
        return ImageURI(self.ref.with_digest(digest))

    def __str__(self) -> str:
        return str(self.ref)

    def __repr__(self) -> str:
        return f"ImageURI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ImageURI):
            return self.ref == other.ref
        if isinstance(other, str):
            return str(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))


class ImageDescriptor:
    """A class attribute that holds an `ImageURI` (or None): assigning a str parses it, so a bad reference
    is a ValidationError naming the attribute at assignment. Usable as a dataclass field's default."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.public = name
        self.private = f"_image_uri_{name}"

    def __get__(self, obj: object, objtype: type | None = None) -> ImageURI | None:
        if obj is None:
            return self  # type: ignore[return-value]  # the descriptor itself, as dataclasses expect
        uri: ImageURI | None = getattr(obj, self.private, None)
        return uri

    def __set__(self, obj: object, value: str | ImageURI | None) -> None:
        uri = None
        if value is not None and value is not self:  # a dataclass passes the descriptor as its default
            try:
                uri = ImageURI(value)
            except ValidationError as e:
                raise ValidationError(f"{self.public}={value!r}: {e}") from None
        object.__setattr__(obj, self.private, uri)
