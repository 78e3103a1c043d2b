"""The 0.4.x build keywords (ssh, cache_from, labels, extra_python_packages, platforms): checked, and turned
into what each build client takes. No build runs here (tests/packaging/test_build_keywords_cluster.py builds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from xmanager import xm

import xm_slurm.packageables as pk
from xm_slurm.errors import ValidationError
from xm_slurm.executables import Dockerfile
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging.client import BuildRequest, DockerBuildxClient, DockerClient, PodmanClient
from xm_slurm.packaging.platforms import check_buildable, registered_emulators
from xm_slurm.packaging.router import _plan

TAG = "localhost:5000/xm-test-keywords/app:v1"


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "requirements.txt").write_text("numpy==2.0\n")
    (root / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n')
    (root / "uv.lock").write_text("version = 1\n")
    return root


def _request(packageable: xm.Packageable) -> BuildRequest:
    plan = _plan(0, packageable)
    return plan.build.request  # type: ignore[union-attr]


def test_cache_from_defaults_to_the_push_target_and_a_str_is_one_ref(ctx: Path) -> None:
    default = _request(pk.docker_container(SlurmSpec(tag=TAG), context=ctx))
    assert (default.cache_from, default.cache_to) == ((TAG,), TAG)
    one = _request(pk.docker_container(SlurmSpec(tag=TAG), context=ctx, cache_from="localhost:5000/c/d:x"))
    assert (one.cache_from, one.cache_to) == (("localhost:5000/c/d:x",), None)  # not split into characters
    both = _request(
        pk.python_container(SlurmSpec(tag=TAG), xm.ModuleName("m"), context=ctx, cache_from=[TAG, "r.io/o"])
    )
    assert (both.cache_from, both.cache_to) == ((TAG, "r.io/o"), TAG)
    none = _request(pk.uv_container(SlurmSpec(tag=TAG), xm.ModuleName("m"), context=ctx, cache_from=[]))
    assert (none.cache_from, none.cache_to) == ((), None)
    with pytest.raises(ValidationError, match=r"cache_from='Not A Ref'"):
        pk.docker_container(SlurmSpec(tag=TAG), context=ctx, cache_from="Not A Ref")


def test_each_client_takes_the_cache_in_its_own_form(tmp_path: Path) -> None:
    request = BuildRequest(
        dockerfile=tmp_path / "Dockerfile",
        context=tmp_path,
        cache_from=(f"{TAG}", "r.io/other/cache:7", "r.io/other/cache:8"),
        cache_to=TAG,
    )
    podman = PodmanClient("podman", env={}).build_argv(request, [TAG])
    # podman takes repositories: its --cache-to pushed layers there by cache key.
    assert _flags(podman, "--cache-from") == ["localhost:5000/xm-test-keywords/app", "r.io/other/cache"]
    assert _flags(podman, "--cache-to") == ["localhost:5000/xm-test-keywords/app"]
    docker = DockerClient("docker", env={}).build_argv(request, [TAG])
    assert _flags(docker, "--cache-from") == list(request.cache_from)
    assert "BUILDKIT_INLINE_CACHE=1" in _flags(docker, "--build-arg")  # the pushed image carries its cache
    bake = DockerBuildxClient("docker", env={}).bake_definition(request, [TAG])["target"]["xm-slurm"]  # type: ignore[index]
    assert bake["cache-from"] == list(request.cache_from) and bake["cache-to"] == ["type=inline"]


def _flags(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_labels_and_ssh_reach_every_client(ctx: Path, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not read here")
    packageable = pk.python_container(
        SlurmSpec(tag=TAG),
        xm.ModuleName("m"),
        context=ctx,
        labels={"org.opencontainers.image.source": "https://example.org/p", "team": "a b"},
        ssh=[str(key), "github=/run/gh.sock"],
    )
    request = _request(packageable)
    assert request.ssh == (f"default={key}", "github=/run/gh.sock")
    for client in (PodmanClient("podman", env={}), DockerClient("docker", env={})):
        argv = client.build_argv(request, [TAG])
        assert _flags(argv, "--label") == [
            "org.opencontainers.image.source=https://example.org/p",
            "team=a b",
        ]
        assert _flags(argv, "--ssh") == [f"default={key}", "github=/run/gh.sock"]
    bake = DockerBuildxClient("docker", env={}).bake_definition(request, [TAG])["target"]["xm-slurm"]  # type: ignore[index]
    assert bake["ssh"] == [f"default={key}", "github=/run/gh.sock"] and bake["labels"]["team"] == "a b"
    # The generated Dockerfile mounts the agent where dependencies are installed (git+ssh requirements).
    text = Path(packageable.executable_spec.dockerfile).read_text()  # type: ignore[attr-defined]
    assert "RUN --mount=type=ssh python3 -m pip install --requirement" in text
    assert _request(pk.docker_container(SlurmSpec(tag=TAG), context=ctx, ssh=True)).ssh == ("default",)
    assert _request(pk.docker_container(SlurmSpec(tag=TAG), context=ctx, ssh=False)).ssh == ()


def test_bad_keyword_values_are_named(ctx: Path) -> None:
    spec = SlurmSpec(tag=TAG)
    with pytest.raises(ValidationError, match=r"label 'a=b'"):
        pk.docker_container(spec, context=ctx, labels={"a=b": "c"})
    with pytest.raises(ValidationError, match=r"ssh path '/a,b' holds ','"):
        pk.docker_container(spec, context=ctx, ssh=["/a,b"])
    with pytest.raises(ValidationError, match=r"names the default agent twice"):
        pk.docker_container(spec, context=ctx, ssh=["default", "/tmp/sock"])
    with pytest.raises(ValidationError, match=r"platforms item 'arm64' is not a platform.*'linux/arm64'"):
        pk.docker_container(spec, context=ctx, platforms=["arm64"])
    with pytest.raises(ValidationError, match=r"extra_python_packages='numpy' must be a list"):
        pk.python_container(spec, xm.ModuleName("m"), context=ctx, extra_python_packages="numpy")  # type: ignore[arg-type]


def test_extra_python_packages_are_installed(ctx: Path) -> None:
    def text(p: xm.Packageable) -> str:
        return Path(p.executable_spec.dockerfile).read_text()  # type: ignore[attr-defined]

    py = text(
        pk.python_container(
            SlurmSpec(tag=TAG), xm.ModuleName("m"), context=ctx, extra_python_packages=["rich>=13", "a b"]
        )
    )
    assert "RUN python3 -m pip install 'rich>=13' 'a b'" in py
    assert py.index("pip install --requirement") < py.index("pip install 'rich") < py.index("COPY . /workdir")
    uv = text(
        pk.uv_container(SlurmSpec(tag=TAG), xm.ModuleName("m"), context=ctx, extra_python_packages=["rich"])
    )
    # After the last `uv sync`, which would remove what the lock does not name.
    assert uv.index("RUN uv sync --frozen --no-dev\n") < uv.index("RUN uv pip install rich")


def test_platforms(ctx: Path, tmp_path: Path) -> None:
    spec = Dockerfile(context=ctx, platforms="linux/arm64")
    assert spec.platforms == ("linux/arm64",)  # one platform, not its characters
    request = _request(pk.docker_container(SlurmSpec(tag=TAG), context=ctx, platforms=["linux/arm64"]))
    assert PodmanClient("podman", env={}).build_argv(request, [TAG]).count("linux/arm64") == 1
    for client in (
        PodmanClient("podman", env={}),
        DockerClient("docker", env={}),
        DockerBuildxClient("docker", env={}),
    ):
        client.check_platforms(["linux/amd64"])
        with pytest.raises(
            ValidationError, match=r"builds one platform per image.*one packageable per platform"
        ):
            client.check_platforms(["linux/amd64", "linux/arm64"])
    assert PodmanClient("podman", env={"CONTAINER_HOST": "ssh://x"}).builds_here() is False
    # Native platforms pass; a foreign one needs an enabled binfmt_misc emulator.
    binfmt = tmp_path / "binfmt"
    binfmt.mkdir()
    (binfmt / "register").write_text("")
    check_buildable(["linux/amd64", "linux/386"], machine="x86_64", binfmt_dir=binfmt)
    with pytest.raises(
        ValidationError, match=r"'linux/arm64' cannot be built on this x86_64 machine.*qemu-user-static"
    ):
        check_buildable(["linux/arm64"], machine="x86_64", binfmt_dir=binfmt)
    (binfmt / "qemu-aarch64").write_text("disabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    with pytest.raises(ValidationError, match="linux/arm64"):
        check_buildable(["linux/arm64"], machine="x86_64", binfmt_dir=binfmt)
    (binfmt / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    assert registered_emulators(binfmt) == {"aarch64"}
    check_buildable(["linux/arm64"], machine="x86_64", binfmt_dir=binfmt)


def test_mamba_installs_system_packages_as_root(ctx: Path) -> None:
    (ctx / "environment.yml").write_text("name: base\n")
    packageable = pk.mamba_container(
        SlurmSpec(tag=TAG), xm.ModuleName("m"), context=ctx, extra_system_packages=["git"]
    )
    text = Path(packageable.executable_spec.dockerfile).read_text()  # type: ignore[attr-defined]
    # micromamba images build as $MAMBA_USER: root for the apt step only, then back.
    assert "USER root\nRUN apt-get update && apt-get install -y --no-install-recommends git" in text
    assert text.index("USER $MAMBA_USER") < text.index("micromamba install")
