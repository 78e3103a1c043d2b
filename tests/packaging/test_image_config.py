"""The ENTRYPOINT/CMD/WORKDIR rules that turn an image config into what a job runs (pure)."""

from __future__ import annotations

import pytest

from xm_slurm.errors import PackagingError
from xm_slurm.packaging.image_config import ImageConfig, parse_config, parse_inspect_output, run_fields


def test_entrypoint_wins_over_cmd_and_cmd_is_the_fallback() -> None:
    both = parse_config(
        {"Entrypoint": ["python", "-m", "train"], "Cmd": ["--help"], "WorkingDir": "/app"}, where="x"
    )
    assert run_fields(both, image="x", workdir=None) == (["python", "-m", "train"], "/app")
    cmd_only = parse_config({"Cmd": ["/bin/sh"]}, where="x")
    assert run_fields(cmd_only, image="x", workdir=None) == (["/bin/sh"], "/")
    # The packageable's own workdir wins over the image's.
    assert run_fields(both, image="x", workdir="/elsewhere")[1] == "/elsewhere"


def test_an_image_that_runs_nothing_is_a_clear_error() -> None:
    with pytest.raises(
        PackagingError, match=r"image r\.io/a@sha256:1 has neither ENTRYPOINT nor CMD.*ENTRYPOINT \["
    ):
        run_fields(parse_config({"WorkingDir": "/w"}, where="x"), image="r.io/a@sha256:1", workdir=None)
    with pytest.raises(PackagingError, match="neither ENTRYPOINT nor CMD"):
        run_fields(parse_config(None, where="x"), image="r.io/a", workdir=None)


def test_bad_configs_are_named() -> None:
    with pytest.raises(PackagingError, match="Entrypoint is 'python', not a list"):
        parse_config({"Entrypoint": "python"}, where="image r.io/a")
    with pytest.raises(PackagingError, match="printed no JSON"):
        parse_inspect_output("Error: no such image", where="image r.io/a")
    assert parse_inspect_output('{"Cmd":["/bin/bash"],"Env":["A=1"]}\n', where="x") == ImageConfig(
        cmd=("/bin/bash",)
    )
