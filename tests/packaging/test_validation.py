"""Bad input is refused with a ValidationError naming it, before any build command runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging_helpers import RecordingRunner
from xmanager import xm

import xm_slurm.packageables as pk
from xm_slurm.errors import ValidationError
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging import ImageBuilder, package_async

TAG = "localhost:5000/xm-test-validation/x:latest"


class OtherSpec(xm.ExecutorSpec):
    """An executor spec of some other backend."""


def _ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    return ctx


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda ctx: pk.docker_container(SlurmSpec(), context=ctx), r"Slurm\.Spec has no tag"),
        (
            lambda ctx: pk.docker_container(SlurmSpec(tag="me/x:latest"), context=ctx),
            r"'me/x:latest' names no registry",
        ),
        (lambda ctx: pk.docker_container(OtherSpec(), context=ctx), r"not a Slurm spec.*Slurm\.Spec\(tag="),
        (
            lambda ctx: pk.docker_container(SlurmSpec(tag=TAG), context=ctx.parent / "no-such-dir"),
            r"build context '.*no-such-dir' is not a directory",
        ),
        (
            lambda ctx: pk.docker_container(
                SlurmSpec(tag=TAG), context=ctx, dockerfile=ctx / "Missing.Dockerfile"
            ),
            r"Dockerfile '.*Missing\.Dockerfile' does not exist",
        ),
        (
            lambda ctx: pk.docker_container(SlurmSpec(tag=TAG), context="relative-and-missing"),
            r"relative-and-missing' is not a directory",
        ),
        (
            lambda ctx: xm.Packageable(
                executable_spec=xm.Binary(path="/bin/true"), executor_spec=SlurmSpec(tag=TAG)
            ),
            r"cannot package Binary",
        ),
    ],
)
async def test_bad_packageable_fails_before_any_build(
    make_bad, message: str, builder: ImageBuilder, recorder: RecordingRunner, tmp_path: Path
) -> None:
    good = pk.docker_container(SlurmSpec(tag=TAG), context=_ctx(tmp_path))
    with pytest.raises(ValidationError, match=message):
        await package_async([good, make_bad(_ctx(tmp_path))], builder=builder)
    assert recorder.calls == []  # the good one was not built either


async def test_bogus_docker_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated_env) -> None:
    monkeypatch.setenv("XM_DOCKER_CLIENT", "bogus")
    with pytest.raises(ValidationError, match=r"XM_DOCKER_CLIENT='bogus'.*'docker' or 'podman'"):
        await package_async([pk.docker_container(SlurmSpec(tag=TAG), context=_ctx(tmp_path))])
    # Nothing to build, no client needed: a RemoteImage goes through untouched.
    remote = RemoteImage(image="localhost:5000/a/b:c")
    [same] = await package_async([xm.Packageable(executable_spec=remote, executor_spec=SlurmSpec())])  # type: ignore[arg-type]
    assert same is remote


def test_python_helpers_validate_their_inputs(tmp_path: Path, isolated_env) -> None:
    spec = SlurmSpec(tag=TAG)
    project = tmp_path / "proj"
    project.mkdir()
    with pytest.raises(
        ValidationError, match=r"uv project file pyproject\.toml '.*pyproject\.toml' does not exist"
    ):
        pk.uv_container(spec, xm.ModuleName("m"), context=project)
    (project / "pyproject.toml").write_text("[project]\nname='m'\nversion='0'\n")
    with pytest.raises(ValidationError, match=r"uv\.lock"):
        pk.uv_container(spec, xm.ModuleName("m"), context=project)
    with pytest.raises(ValidationError, match=r"requirements file '.*reqs-missing\.txt' does not exist"):
        pk.python_container(spec, xm.ModuleName("m"), context=project, requirements="reqs-missing.txt")
    outside = tmp_path / "outside.txt"
    outside.write_text("numpy\n")
    with pytest.raises(ValidationError, match="outside the project"):
        pk.python_container(spec, xm.ModuleName("m"), context=project, requirements=outside)
    with pytest.raises(ValidationError, match="is not a directory"):
        pk.python_container(spec, xm.ModuleName("m"), context=tmp_path / "nope")
    with pytest.raises(ValidationError, match="not a module name"):
        pk.python_container(spec, xm.ModuleName("two words"), context=project)
    with pytest.raises(ValidationError, match=r"CommandList\(\[\]\) is empty.*CommandList\(\['main\.py'\]\)"):
        pk.python_container(spec, xm.CommandList([]), context=project)
    with pytest.raises(ValidationError, match="invalid"):
        pk.python_container(spec, xm.ModuleName("m"), context=project, base_image="Not An Image")
    with pytest.raises(ValidationError, match="environment file"):
        pk.mamba_container(spec, xm.ModuleName("m"), context=project)


def test_generated_dockerfiles(tmp_path: Path, isolated_env) -> None:
    spec = SlurmSpec(tag=TAG)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "requirements.txt").write_text("numpy==2.0\n")
    (project / "environment.yml").write_text("name: base\ndependencies: [python=3.11]\n")

    def text(p: xm.Packageable) -> str:
        return Path(p.executable_spec.dockerfile).read_text()  # type: ignore[attr-defined]

    py = text(
        pk.python_container(spec, xm.ModuleName("train"), context=project, extra_system_packages=["git"])
    )
    assert py.startswith("FROM docker.io/python:3.11-slim\n")
    assert "COPY requirements.txt /tmp/xm-slurm/requirements.txt" in py
    assert "apt-get install -y --no-install-recommends git" in py
    assert py.index("pip install") < py.index("COPY . /workdir")  # deps layer cached apart from code
    assert 'ENTRYPOINT ["python3", "-m", "train"]' in py
    # A command list is the interpreter's arguments (as in 0.4.x): python3 main.py --fast ARGS.
    cmd = text(pk.python_container(spec, xm.CommandList(["main.py", "--fast"]), context=project))
    assert 'ENTRYPOINT ["python3", "main.py", "--fast"]' in cmd
    conda = text(pk.conda_container(spec, xm.ModuleName("train"), context=project))
    assert "micromamba install --yes --name base --file /tmp/xm-slurm/environment.yml" in conda
    assert 'ENTRYPOINT ["/usr/local/bin/_entrypoint.sh", "python", "-m", "train"]' in conda
    conda_cmd = text(pk.conda_container(spec, xm.CommandList(["main.py"]), context=project))
    assert 'ENTRYPOINT ["/usr/local/bin/_entrypoint.sh", "python", "main.py"]' in conda_cmd
    assert pk.conda_container is pk.mamba_container


async def test_missing_registry_auth_file(
    builder: ImageBuilder, recorder: RecordingRunner, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-auth.json")
    builder.client.env["REGISTRY_AUTH_FILE"] = missing
    with pytest.raises(ValidationError, match=r"REGISTRY_AUTH_FILE='.*no-such-auth\.json' does not exist"):
        await package_async(
            [pk.docker_container(SlurmSpec(tag=TAG), context=_ctx(tmp_path))], builder=builder
        )
    assert recorder.calls == []
