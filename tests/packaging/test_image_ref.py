from __future__ import annotations

import pytest

from xm_slurm.errors import ValidationError
from xm_slurm.packaging.image_ref import parse_image_ref, require_registry

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag", "digest"),
    [
        ("busybox", None, "busybox", None, None),
        ("python:3.11-slim", None, "python", "3.11-slim", None),
        ("docker.io/python:3.11-slim", "docker.io", "python", "3.11-slim", None),
        ("localhost:5000/xm-test/busybox:latest", "localhost:5000", "xm-test/busybox", "latest", None),
        ("localhost/img", "localhost", "img", None, None),
        (
            "ghcr.io/astral-sh/uv:python3.11-bookworm-slim",
            "ghcr.io",
            "astral-sh/uv",
            "python3.11-bookworm-slim",
            None,
        ),
        (f"registry.example.org:443/me/train@{DIGEST}", "registry.example.org:443", "me/train", None, DIGEST),
        (f"me/train:v1@{DIGEST}", None, "me/train", "v1", DIGEST),
    ],
)
def test_parse(ref: str, registry: str | None, repository: str, tag: str | None, digest: str | None) -> None:
    parsed = parse_image_ref(ref)
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert str(parsed) == ref


def test_docker_hub_api_names() -> None:
    ref = parse_image_ref("python:3.11")
    assert (ref.api_host, ref.api_repository, ref.reference) == (
        "registry-1.docker.io",
        "library/python",
        "3.11",
    )
    assert parse_image_ref("me/x").api_repository == "me/x"
    assert parse_image_ref("localhost:5000/x").is_loopback
    assert not parse_image_ref("registry.example.org/x").is_loopback


def test_with_digest_drops_tag() -> None:
    pinned = parse_image_ref("localhost:5000/a/b:latest").with_digest(DIGEST)
    assert str(pinned) == f"localhost:5000/a/b@{DIGEST}"
    with pytest.raises(ValidationError, match="not an image digest"):
        parse_image_ref("a").with_digest("md5:xyz")


@pytest.mark.parametrize(
    "bad", ["", " x", "UPPER/case", "a b", "x@sha256:short", "host.io/", "x:bad tag", "x:-bad"]
)
def test_bad_refs_are_named(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_image_ref(bad)
    assert (
        repr(bad) in str(info.value) or repr(bad.strip()) in str(info.value) or "invalid" in str(info.value)
    )


def test_require_registry() -> None:
    assert require_registry("localhost:5000/me/x:latest").registry == "localhost:5000"
    with pytest.raises(
        ValidationError, match=r"'me/x:latest' names no registry.*registry\.example\.org/me/x:latest"
    ):
        require_registry("me/x:latest")
    with pytest.raises(ValidationError, match="has a digest"):
        require_registry(f"localhost:5000/me/x@{DIGEST}")
