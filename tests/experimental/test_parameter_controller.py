"""parameter_controller without a cluster: validation before any side effect, and the payload shipped to a
process where the function's module cannot be imported (it travels by value)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading

import pytest
from xmanager import xm

import xm_slurm
from xm_slurm.errors import ValidationError
from xm_slurm.experimental.parameter_controller import ParameterControllerMode, parameter_controller
from xm_slurm.experimental.payload import PAYLOAD_ENV, decode, encode

IMAGE = xm_slurm.RemoteImage(image="localhost:5000/xm/controller:latest")


def _executor() -> xm_slurm.Slurm:
    cluster = xm_slurm.SlurmClusterConfig(
        name="c",
        runtime=xm_slurm.ContainerRuntime.PODMAN,
        ssh=xm_slurm.SlurmSSHConfig(host="login.example.org", user="me", config_files=()),
    )
    return xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(hours=1)
    )


OFFSET = 40  # a module global the function uses: shipped with it


async def controller(experiment: object, *, x: int) -> None:
    print("controller got", x + OFFSET, "experiment", experiment)


def test_call_returns_an_auxiliary_unit_job_running_the_runner() -> None:
    decorated = parameter_controller(
        executable=IMAGE,
        executor=_executor(),
        controller_name="ctl",
        controller_args={"seed": 3},
        controller_env_vars={"MODE": "x"},
    )(controller)
    job = decorated(x=2)
    assert isinstance(job, xm.AuxiliaryUnitJob)
    assert isinstance(job.role, xm.AuxiliaryUnitRole)
    template = decorated.job_template
    assert template.name == "ctl"
    assert template.args.to_list() == ["--seed=3"]  # the runner's argv: sys.argv[1:] in the job
    assert template.env_vars == {"MODE": "x"}
    assert template.executable.entrypoint.to_list() == [
        "python3",
        "-m",
        "xm_slurm.experimental.controller_runner",
    ]
    assert decorated.__name__ == "controller"  # functools.wraps


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"executable": xm_slurm.RemoteImage(image="a/b:c"), "executor": "not-an-executor"}, "executor="),
        ({"executable": "a/b:c", "executor": None}, "executable="),
        (
            {"executable": xm_slurm.RemoteImage(image="a/b:c"), "executor": None, "python": "python 3"},
            "python=",
        ),
    ],
)
def test_bad_decorator_arguments_are_refused(kwargs: dict[str, object], needle: str) -> None:
    if kwargs.get("executor") is None:
        kwargs["executor"] = _executor()
    with pytest.raises(ValidationError, match=needle):
        parameter_controller(**kwargs)(controller)  # type: ignore[arg-type]


def test_a_mode_the_launch_process_cannot_serve_is_refused_before_any_add(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XM_SLURM_API_BACKEND", "sqlite")
    decorated = parameter_controller(
        executable=IMAGE, executor=_executor(), controller_mode=ParameterControllerMode.REST
    )(controller)
    with pytest.raises(ValidationError, match="controller_mode=REST needs XM_SLURM_API_BACKEND=rest"):
        decorated(x=1)
    with pytest.raises(ValidationError, match="controller_mode="):
        parameter_controller(executable=IMAGE, executor=_executor(), controller_mode="rest")(controller)  # type: ignore[arg-type]


def test_the_module_is_the_04x_module_and_calling_it_warns_once() -> None:
    import types

    import xm_slurm.experimental
    from xm_slurm.experimental import parameter_controller as module

    assert isinstance(xm_slurm.experimental.parameter_controller, types.ModuleType)
    assert module.parameter_controller is parameter_controller
    module_mod = sys.modules["xm_slurm.experimental.parameter_controller"]
    module_mod._warned = False  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="import parameter_controller"):
        first = module(executable=IMAGE, executor=_executor())(controller)  # type: ignore[operator]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = module(executable=IMAGE, executor=_executor())(controller)  # type: ignore[operator]
    assert isinstance(first(x=1), xm.AuxiliaryUnitJob) and isinstance(second(x=1), xm.AuxiliaryUnitJob)


def test_a_plain_function_is_refused() -> None:
    def not_async(experiment: object) -> None: ...

    with pytest.raises(ValidationError, match="async def"):
        parameter_controller(executable=IMAGE, executor=_executor())(not_async)  # type: ignore[arg-type]


def test_unpicklable_arguments_fail_when_called_not_when_launched() -> None:
    decorated = parameter_controller(executable=IMAGE, executor=_executor())(controller)
    with pytest.raises(ValidationError, match="cloudpickle"):
        decorated(x=threading.Lock())


def test_payload_round_trip_in_this_process() -> None:
    function, kwargs = decode(encode(controller, {"x": 1}))
    assert kwargs == {"x": 1} and function.__name__ == "controller"


def test_payload_runs_where_the_test_module_cannot_be_imported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    payload = encode(controller, {"x": 2})
    code = (
        "import asyncio, os, sys\n"
        "assert 'test_parameter_controller' not in sys.modules\n"
        "from xm_slurm.experimental.payload import decode\n"
        f"function, kwargs = decode(os.environ[{PAYLOAD_ENV!r}])\n"
        "asyncio.run(function('E', **kwargs))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, PAYLOAD_ENV: payload},
        cwd=tmp_path,  # not the tests folder: the module is not importable there
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "controller got 42 experiment E"


def test_runner_without_a_payload_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if k != PAYLOAD_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "xm_slurm.experimental.controller_runner"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert PAYLOAD_ENV in result.stderr
