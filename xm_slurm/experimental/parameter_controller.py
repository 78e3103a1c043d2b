"""`parameter_controller`: an async function that runs ON THE CLUSTER as an auxiliary unit and adds work units.

    from xm_slurm.experimental.parameter_controller import parameter_controller

    @parameter_controller(executable=image, executor=executor)
    async def controller(experiment: xm_slurm.SlurmExperiment, *, rounds: int) -> None:
        for i in range(rounds):
            wu = await experiment.add(train_job, args={"args": {"round": i}})
            await wu.wait_until_complete()

    async with xm_slurm.create_experiment("search") as experiment:
        await experiment.add(controller(rounds=2))       # one auxiliary unit, one Slurm job

As in 0.4.x, `xm_slurm.experimental.parameter_controller` is this module; calling the module itself (the
pre-0.6 spelling `from xm_slurm.experimental import parameter_controller; parameter_controller(...)`) still
works and warns once.

How it works: `controller(**kwargs)` cloudpickles `(function, kwargs)` (the function's own module by value)
into the job's environment; the job runs `python -m xm_slurm.experimental.controller_runner` in `executable`
(an image with xm_slurm installed, e.g. your project's image when it depends on xmanager-slurm), which
rebuilds the experiment from the metadata store (`get_current_experiment()`) and awaits the function.

What the job needs, and what is passed on:
* the metadata store (`controller_mode`, `ParameterControllerMode`). The launch process's backend is
  forwarded (AUTO; SQLITE or REST insist on one and refuse the other before anything is submitted): `rest` as
  the base URL plus a token FILE
  (0600, in the experiment's state folder on the cluster; the script only names its path), `sqlite` as the
  folder of the database, which the job must see at the same path (launching from the login node, or a
  shared file system);
* the cluster: the controller's adds go through the SSH config each job records, so the key and
  known_hosts files it names must be readable in the container (e.g. a mount of ~/.ssh);
* for the token file, the cluster's state folder must be visible in the container (Apptainer mounts $HOME by
  default; with Podman add it to `SlurmClusterConfig.mounts`).
"""

from __future__ import annotations

import enum
import functools
import inspect
import os
import sys
import types
import warnings
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import attr
from xmanager import xm

from xm_slurm.errors import ValidationError
from xm_slurm.executables import RemoteImage, validate_env_vars
from xm_slurm.executors import Slurm
from xm_slurm.experimental.payload import PAYLOAD_ENV, RUNNER_MODULE, TOKEN_FILE_ENV, encode

ControllerFunction = Callable[..., Coroutine[Any, Any, Any]]

# Settings of the REST backend forwarded as they are (the token never is: it goes to a file).
_REST_SETTINGS = ("XM_SLURM_REST_API_BASE_URL", "XM_SLURM_REST_API_CA_BUNDLE")


class ParameterControllerMode(enum.Enum):
    """How the controller's job reaches the metadata store (it rebuilds the experiment from it)."""

    AUTO = "auto"  # the launch process's backend, whichever it is
    SQLITE = "sqlite"  # the SQLite file, at the same path in the job (login node or shared file system)
    REST = "rest"  # the REST server, with the token in a private file on the cluster


def _backend(mode: ParameterControllerMode) -> str:
    """The backend the controller will use; a mode that does not match this process's backend is refused."""
    backend = os.environ.get("XM_SLURM_API_BACKEND", "").strip().lower() or "sqlite"
    if mode is not ParameterControllerMode.AUTO and backend != mode.value:
        raise ValidationError(
            f"controller_mode={mode.name} needs XM_SLURM_API_BACKEND={mode.value}, but this process uses {backend!r}; "
            "set the backend or use ParameterControllerMode.AUTO"
        )
    if backend not in ("sqlite", "rest"):
        raise ValidationError(
            f"XM_SLURM_API_BACKEND={backend!r}: a parameter controller supports the sqlite and rest backends"
        )
    return backend


class _ControllerJob(xm.AuxiliaryUnitJob):
    """The auxiliary unit `experiment.add` runs: writes the token file (REST), then adds the controller job."""

    def __init__(self, controller: ParameterController, payload: str) -> None:
        super().__init__(controller.job_template, termination_delay_secs=0)
        self._controller = controller
        self._payload = payload

    async def __call__(self, aux_unit: xm.ExperimentUnit, **kwargs: Any) -> None:
        if kwargs:
            raise ValidationError(
                f"pass the controller's arguments to the controller itself, controller({', '.join(kwargs)}=...), "
                "not as args= of experiment.add"
            )
        env = {PAYLOAD_ENV: self._payload, **await self._store_settings(aux_unit)}
        template = self._controller.job_template
        await aux_unit.add(attr.evolve(template, env_vars={**template.env_vars, **env}))

    async def _store_settings(self, aux_unit: Any) -> dict[str, str]:
        backend = _backend(self._controller.mode)
        if backend == "sqlite":
            from xm_slurm.api.storage.engine import default_sqlite_path

            folder = default_sqlite_path().expanduser().resolve().parent
            return {"XM_SLURM_API_BACKEND": "sqlite", "XM_SLURM_STATE_DIR": str(folder)}
        token = os.environ.get("XM_SLURM_REST_API_TOKEN", "").strip()
        if not token:
            raise ValidationError("XM_SLURM_API_BACKEND=rest but XM_SLURM_REST_API_TOKEN is not set")
        settings = {"XM_SLURM_API_BACKEND": "rest"}
        settings.update({name: os.environ[name] for name in _REST_SETTINGS if os.environ.get(name)})
        # The token goes to a private file on the cluster; the job script only holds its path.
        cluster = self._controller.executor.requirements.cluster
        assert cluster is not None  # Slurm() refuses requirements without a cluster
        ssh = cluster.ssh
        connections = aux_unit.experiment.connections
        remote_folder = await connections.experiment_dir(ssh, aux_unit.experiment_id)
        transport = connections.transport(ssh)
        await transport.mkdir(remote_folder, mode=0o700)
        path = f"{remote_folder}/controller-{aux_unit.unit_id}.token"
        await transport.write_text(path, token + "\n", mode=0o600)
        settings[TOKEN_FILE_ENV] = path
        return settings


class ParameterController:
    """A decorated controller function; call it with the function's keyword arguments to get the job to add."""

    def __init__(
        self,
        function: ControllerFunction,
        *,
        executable: RemoteImage,
        executor: Slurm,
        mode: ParameterControllerMode,
        name: str,
        args: Any,
        env_vars: Mapping[str, str],
        python: str,
    ) -> None:
        if not inspect.iscoroutinefunction(function):
            raise ValidationError(
                f"parameter_controller needs an `async def` function; {getattr(function, '__qualname__', function)!r} is not one"
            )
        if not isinstance(executable, RemoteImage):
            raise ValidationError(
                f"executable={executable!r} must be a packaged image (xm_slurm.RemoteImage, or what "
                "experiment.package([...]) returns) with xm_slurm installed"
            )
        if not isinstance(executor, Slurm):
            raise ValidationError(f"executor={executor!r} must be an xm_slurm.Slurm executor")
        if not isinstance(mode, ParameterControllerMode):
            raise ValidationError(
                f"controller_mode={mode!r} must be a ParameterControllerMode ({', '.join(m.name for m in ParameterControllerMode)})"
            )
        if not isinstance(python, str) or not python or any(c.isspace() for c in python):
            raise ValidationError(f"python={python!r} must be the image's Python command, e.g. 'python3'")
        image = attr.evolve(executable, entrypoint=[python, "-m", RUNNER_MODULE], args=[])
        self.function = function
        self.executor = executor
        self.mode = mode
        self.job_template = xm.Job(
            executable=image,
            executor=executor,
            name=name,
            args=args if args is not None else {},  # the runner's command line: sys.argv[1:] in the job
            env_vars=dict(validate_env_vars(env_vars, field="parameter_controller controller_env_vars")),
        )
        functools.update_wrapper(self, function)

    def __call__(self, **kwargs: Any) -> xm.AuxiliaryUnitJob:
        """The auxiliary unit job running `function(experiment, **kwargs)` on the cluster."""
        _backend(self.mode)  # a mode the launch process cannot serve fails here, before any add
        # Encoded now, so that an unpicklable argument fails before anything is submitted.
        return _ControllerJob(self, encode(self.function, kwargs))

    def __repr__(self) -> str:
        return f"ParameterController({getattr(self.function, '__qualname__', self.function)!r})"


def parameter_controller(
    *,
    executable: RemoteImage,
    executor: Slurm,
    controller_mode: ParameterControllerMode = ParameterControllerMode.AUTO,
    controller_name: str = "parameter_controller",
    controller_args: Mapping[str, Any] | list[Any] | xm.SequentialArgs | None = None,
    controller_env_vars: Mapping[str, str] | None = None,
    python: str = "python3",
) -> Callable[[ControllerFunction], ParameterController]:
    """Decorate `async def f(experiment, **kwargs)` to run it on the cluster as an auxiliary unit.

    executable: an image with xm_slurm (and what `f` imports) installed; its entrypoint is replaced by the
      controller runner. executor: where the controller itself runs (it mostly waits: 1 CPU is plenty).
    controller_mode: how the job reaches the metadata store (`ParameterControllerMode`).
    controller_name: the Slurm job's name. controller_args: the controller job's command-line arguments (as
      a job's `args`: `{"flag": v}` gives `--flag=v`), which `f` reads as `sys.argv[1:]` (e.g. absl flags).
    controller_env_vars: extra environment of the job. python: the image's Python command.
    """

    def decorate(function: ControllerFunction) -> ParameterController:
        return ParameterController(
            function,
            executable=executable,
            executor=executor,
            mode=controller_mode,
            name=controller_name,
            args=controller_args,
            env_vars=controller_env_vars or {},
            python=python,
        )

    return decorate


_warned = False


class _CallableModule(types.ModuleType):
    """This module, callable as the decorator it holds: the spelling before 0.6, warned once."""

    def __call__(self, **kwargs: Any) -> Callable[[ControllerFunction], ParameterController]:
        global _warned
        if not _warned:
            _warned = True
            warnings.warn(
                "calling the module xm_slurm.experimental.parameter_controller is deprecated; use "
                "`from xm_slurm.experimental.parameter_controller import parameter_controller`",
                DeprecationWarning,
                stacklevel=2,
            )
        return parameter_controller(**kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["ParameterController", "ParameterControllerMode", "parameter_controller"]
