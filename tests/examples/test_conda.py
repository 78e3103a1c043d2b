"""The conda example: its generated Dockerfile (micromamba images and conda-forge are not reachable here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from examples_helpers import EXAMPLES, ExampleEnv

from xm_slurm.executables import Dockerfile


def _launch_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("conda_example_launch", EXAMPLES / "conda" / "launch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conda_example_generates_a_micromamba_dockerfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XM_TEST_REGISTRY", "localhost:5000")
    packageable = _launch_module().packageable("docker.io/mambaorg/micromamba:bookworm-slim")
    spec = packageable.executable_spec
    assert isinstance(spec, Dockerfile) and spec.context == EXAMPLES / "conda"
    text = Path(spec.dockerfile).read_text()
    assert text.startswith("FROM docker.io/mambaorg/micromamba:bookworm-slim")
    assert "micromamba install --yes --name base --file /tmp/xm-slurm/environment.yml" in text
    assert '"python", "-m", "simulate"' in text


@pytest.mark.cluster
@pytest.mark.skip(
    reason="needs a micromamba base image and conda-forge; the local cluster has neither (no Docker Hub, "
    "conda channels unreachable offline). Run `examples/conda/launch.py --base-image <micromamba image>` by hand."
)
def test_conda_example_runs(example_env: ExampleEnv) -> None:
    out = example_env.run("conda")
    assert out.count("pi is about") == 3
