"""The packaging surface of xmanager-slurm 0.4.x (compat-04x.md items 1-3 and the executables names): each 0.4.x
call binds to our signature AND does what the old one did, checked on what it produces (no build here)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import pathlib
import sys
from pathlib import Path

import pytest
from xmanager import xm

import xm_slurm
from xm_slurm.errors import ValidationError
from xm_slurm.executables import (
    Dockerfile,
    ImageDescriptor,
    ImageURI,
    RemoteImage,
    RemoteRepositoryCredentials,
)

TAG = "localhost:5000/xm-compat/app:latest"
DIGEST = "sha256:" + "c" * 64


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 0.4.x project launched from proj/scripts/launch.py."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "proj"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "launch.py").write_text("")
    (root / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n')
    (root / "uv.lock").write_text("version = 1\n")
    (root / "requirements.txt").write_text("numpy==2.0\n")
    (root / "environment.yml").write_text("name: base\n")
    (root / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setattr(sys, "argv", [str(root / "scripts" / "launch.py")])
    return root


def _call(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Bind first (the 0.4.x call is accepted as such), then call."""
    inspect.signature(fn).bind(*args, **kwargs)
    return fn(*args, **kwargs)


def _spec(packageable: xm.Packageable) -> Dockerfile:
    assert isinstance(packageable.executable_spec, Dockerfile)
    return packageable.executable_spec


def _entrypoint(spec: Dockerfile) -> list[str]:
    [line] = [ln for ln in Path(spec.dockerfile).read_text().splitlines() if ln.startswith("ENTRYPOINT ")]
    return list(json.loads(line.removeprefix("ENTRYPOINT ")))


def test_python_container_04x_call(proj: Path) -> None:
    spec = _spec(
        _call(
            xm_slurm.python_container,
            executor_spec=xm_slurm.Slurm.Spec(tag=TAG),
            entrypoint=xm.CommandList(["main.py", "--fast"]),
            base_image="localhost:5000/xm-test/debian-python:bookworm",
            extra_system_packages=["git"],
            extra_python_packages=["rich"],
            cache_from="localhost:5000/xm-compat/app:cache",
            labels={"team": "ml"},
            ssh=True,
            args=["--seed", "1"],
            env_vars={"A": "1"},
        )
    )
    assert spec.context == proj  # the project root, not scripts/
    assert _entrypoint(spec) == ["python3", "main.py", "--fast"]
    text = Path(spec.dockerfile).read_text()
    assert (
        "COPY requirements.txt" in text
        and "pip install rich" in text
        and "install -y --no-install-recommends git" in text
    )
    assert (spec.cache_from, dict(spec.labels), spec.ssh) == (
        ("localhost:5000/xm-compat/app:cache",),
        {"team": "ml"},
        ("default",),
    )
    module = _spec(
        _call(
            xm_slurm.python_container,
            xm_slurm.Slurm.Spec(tag=TAG),
            xm.ModuleName("pkg.train"),
            context=pathlib.Path(proj),
            requirements=pathlib.Path("requirements.txt"),
        )
    )
    assert _entrypoint(module) == ["python3", "-m", "pkg.train"]


def test_uv_and_mamba_containers_04x_calls(proj: Path) -> None:
    uv = _spec(
        _call(
            xm_slurm.uv_container,
            executor_spec=xm_slurm.Slurm.Spec(tag=TAG),
            entrypoint=xm.CommandList(["main.py"]),
            extra_python_packages=["rich"],
            cache_from=["localhost:5000/a/b:1", "localhost:5000/a/c:2"],
            labels={"x": "y"},
            ssh=[str(proj / "scripts" / "launch.py")],
        )
    )
    assert (uv.context, _entrypoint(uv)) == (proj, ["python", "main.py"])
    assert uv.cache_from == ("localhost:5000/a/b:1", "localhost:5000/a/c:2")
    assert uv.ssh == (f"default={proj / 'scripts' / 'launch.py'}",)
    for fn in (xm_slurm.mamba_container, xm_slurm.conda_container):
        conda = _spec(
            _call(
                fn,
                executor_spec=xm_slurm.Slurm.Spec(tag=TAG),
                entrypoint=xm.CommandList(["main.py"]),
                environment=pathlib.Path("environment.yml"),
                labels={"x": "y"},
            )
        )
        assert (conda.context, _entrypoint(conda)) == (
            proj,
            ["/usr/local/bin/_entrypoint.sh", "python", "main.py"],
        )


def test_docker_container_and_dockerfile_04x_calls(proj: Path) -> None:
    spec = _spec(
        _call(
            xm_slurm.docker_container,
            executor_spec=xm_slurm.Slurm.Spec(tag=TAG),
            build_args={"BASE": "x"},
            cache_from=TAG,
            labels={"team": "ml"},
            ssh=True,
            platforms=["linux/amd64"],
            args={"seed": 1},
            env_vars={"A": "1"},
        )
    )
    assert (spec.context, spec.dockerfile) == (proj, proj / "Dockerfile")
    assert (spec.cache_from, spec.platforms) == ((TAG,), ("linux/amd64",))
    positional = _spec(
        _call(xm_slurm.docker_container, xm_slurm.Slurm.Spec(tag=TAG), proj / "Dockerfile", proj)
    )
    assert positional.context == proj and positional.cache_from is None  # None: the push target
    direct = _call(Dockerfile, dockerfile=proj / "Dockerfile", context=proj, platforms=["linux/arm64"])
    assert direct.platforms == ("linux/arm64",)


def test_bad_input_is_named_before_any_build(proj: Path) -> None:
    spec = xm_slurm.Slurm.Spec(tag=TAG)
    with pytest.raises(TypeError, match="not_a_keyword"):
        xm_slurm.python_container(spec, xm.ModuleName("m"), not_a_keyword=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match=r"build context '.*/missing' is not a directory"):
        xm_slurm.uv_container(spec, xm.ModuleName("m"), context=proj / "missing")
    with pytest.raises(ValidationError, match=r"neither xm\.ModuleName"):
        xm_slurm.python_container(spec, xm.Container(image_path="x"), context=proj)  # type: ignore[arg-type]


def test_image_uri() -> None:
    uri = _call(ImageURI, f"registry.example.org:5000/me/train:v1@{DIGEST}")
    assert (uri.registry, uri.domain, uri.repository, uri.path, uri.tag, uri.digest) == (
        "registry.example.org:5000",
        "registry.example.org:5000",
        "me/train",
        "me/train",
        "v1",
        DIGEST,
    )
    assert str(uri) == f"registry.example.org:5000/me/train:v1@{DIGEST}" and uri == str(uri)
    assert ImageURI("python:3.11").domain == "docker.io" and ImageURI("python:3.11").name == "python"
    assert str(ImageURI("localhost:5000/a/b").with_tag("x")) == "localhost:5000/a/b:x"
    assert str(ImageURI("localhost:5000/a/b:x").with_digest(DIGEST)) == f"localhost:5000/a/b@{DIGEST}"
    assert len({ImageURI("a/b:1"), ImageURI("a/b:1")}) == 1
    with pytest.raises(ValidationError, match=r"invalid repository name 'Me/Train'"):
        ImageURI("Me/Train:v1")
    with pytest.raises(AttributeError):
        uri.tag = "v2"  # type: ignore[misc]


def test_image_descriptor() -> None:
    @dataclasses.dataclass
    class Spec:
        tag: ImageURI | None = ImageDescriptor()  # type: ignore[assignment]  # noqa: RUF009

    assert Spec().tag is None
    spec = Spec("localhost:5000/me/train:v1")  # type: ignore[arg-type]
    assert isinstance(spec.tag, ImageURI) and spec.tag.tag == "v1"
    spec.tag = ImageURI("localhost:5000/me/train:v2")
    assert spec.tag == "localhost:5000/me/train:v2"
    with pytest.raises(ValidationError, match=r"tag='not an image'"):
        Spec("not an image")  # type: ignore[arg-type]


def test_remote_repository_credentials_go_with_a_remote_image() -> None:
    creds = _call(RemoteRepositoryCredentials, "me", "s3cret")
    image = RemoteImage(image=f"localhost:5000/me/train@{DIGEST}", credentials=creds)
    assert image.credentials == RemoteRepositoryCredentials(username="me", password="s3cret")
    assert "s3cret" not in repr(image) and "s3cret" not in repr(creds)
