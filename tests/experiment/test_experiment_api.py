"""The public surface and validation before any side effect (no cluster needed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import typing

import pytest
from experiment_fixtures import Counting
from xmanager import xm, xm_local

import xm_slurm
from xm_slurm import api
from xm_slurm.dependencies import afterok
from xm_slurm.errors import NotFoundError, ValidationError, XmSlurmError


def _cluster(name: str = "nowhere") -> xm_slurm.SlurmClusterConfig:
    # Never contacted: every test here fails validation before any command runs.
    return xm_slurm.SlurmClusterConfig(
        name=name,
        ssh=xm_slurm.SlurmSSHConfig(host="127.0.0.1", port=9),
        runtime=xm_slurm.ContainerRuntime.PODMAN,
    )


def _job(cluster: xm_slurm.SlurmClusterConfig | None = None, **kw: typing.Any) -> xm.Job:
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster or _cluster()),
        time=dt.timedelta(minutes=1),
    )
    image = xm_slurm.RemoteImage(image="localhost:5000/x/busybox:latest", entrypoint=["true"])
    return xm.Job(executable=image, executor=executor, **kw)


def test_import_is_light_and_every_name_resolves() -> None:
    code = "import sys, xm_slurm; print(sorted(m for m in ('xmanager', 'asyncssh', 'sqlalchemy', 'jinja2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for name in xm_slurm.__all__:
        assert getattr(xm_slurm, name) is not None, name
    with pytest.raises(AttributeError):
        _ = xm_slurm.no_such_name  # type: ignore[attr-defined]


def test_public_types() -> None:
    assert issubclass(xm_slurm.SlurmExperiment, xm.Experiment)
    assert issubclass(xm_slurm.SlurmWorkUnit, xm.WorkUnit)
    assert issubclass(xm_slurm.SlurmAuxiliaryUnit, xm.AuxiliaryUnit)
    assert typing.get_type_hints(xm_slurm.JobArgs).keys() == {"args", "env_vars"}
    assert xm_slurm.JobArgs(args={"lr": 1}, env_vars={"A": "b"}) == {
        "args": {"lr": 1},
        "env_vars": {"A": "b"},
    }
    assert xm_slurm.Slurm.Spec is xm_slurm.SlurmSpec
    # The abstract hooks of xm.Experiment are implemented (the class is instantiable); identities are looked
    # up by `add` itself, so XManager's reload path is never taken.
    experiment = xm_slurm.create_experiment("t")
    assert experiment._should_reload_experiment_unit(xm.WorkUnitRole()) is False


async def test_xmanager_unit_hooks_reserve_ids_in_call_order_and_find_by_identity() -> None:
    async with xm_slurm.create_experiment("hooks") as experiment:
        a, b = await asyncio.gather(
            experiment._create_experiment_unit({"x": 1}, xm.WorkUnitRole(), ""),
            experiment._create_experiment_unit(None, xm.AuxiliaryUnitRole(termination_delay_secs=0), "aux"),
        )
        assert (a.work_unit_id, type(b).__name__, b.auxiliary_unit_id) == (1, "SlurmAuxiliaryUnit", 2)
        # Not recorded (nothing was submitted): not found by identity, here or in the store.
        assert await experiment._get_experiment_unit(experiment.experiment_id, "aux", b.role) is None


async def test_experiment_without_work_units_is_removed_from_the_store() -> None:
    async with xm_slurm.create_experiment("empty") as experiment:
        xid = experiment.experiment_id
        assert api.client().get_experiment(xid).title == "empty"
    with pytest.raises(NotFoundError):
        api.client().get_experiment(xid)


async def test_add_outside_the_context_is_refused() -> None:
    experiment = xm_slurm.create_experiment("not entered")
    with pytest.raises(XmSlurmError, match="enter the experiment"):
        experiment.add(_job())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: "not a job", "cannot add"),
        (
            lambda: xm.Job(executable=_job().executable, executor=xm_local.Local()),
            "not an xm_slurm.Slurm executor",
        ),
        (
            lambda: xm.Job(executable=xm.Container(image_path="x:1"), executor=_job().executor),
            "not packaged for Slurm",
        ),
        (lambda: xm.JobGroup(a=_job(), b=_job(_cluster("other"))), "must target one cluster"),
        (lambda: xm.JobGroup(a=_job(), b=xm.JobGroup(c=_job())), "nested job groups"),
        (lambda: _job(env_vars={"A": "x\0y"}), "NUL byte"),
    ],
)
async def test_bad_jobs_fail_before_any_side_effect(make: typing.Any, message: str) -> None:
    counting = Counting()
    async with xm_slurm.create_experiment("bad", transport_factory=counting) as experiment:
        xid = experiment.experiment_id
        with pytest.raises(ValidationError, match=message):
            experiment.add(make())
    assert counting.transports == []  # no command, not even a connection
    with pytest.raises(NotFoundError):
        api.client().get_experiment(xid)


async def test_bad_sweeps_and_dependencies_fail_before_any_side_effect() -> None:
    counting = Counting()
    job = _job()
    async with xm_slurm.create_experiment("bad", transport_factory=counting) as experiment:
        with pytest.raises(ValidationError, match="2 entries for 3 trials"):
            experiment.add(job, args=[{}, {}, {}], dependency=[afterok("1"), afterok("2")])
        with pytest.raises(ValidationError, match="only for a sweep"):
            experiment.add(job, dependency=[afterok("1")])
        with pytest.raises(ValidationError, match="trial #1 is 3"):
            experiment.add(job, args=[{}, 3])
        with pytest.raises(ValidationError, match=r"trial #2.*not supported"):
            experiment.add(job, args=[{}, {}, {"argz": {}}])
        with pytest.raises(ValidationError, match="dependency #0"):
            experiment.add(job, dependency="afterok:1")  # type: ignore[arg-type]
        unit = xm_slurm.SlurmWorkUnit(experiment, 99, xm.WorkUnitRole(), {})
        with pytest.raises(ValidationError, match="no launched job yet"):
            unit.after_completed()
    assert counting.transports == []


def test_synchronous_with_block() -> None:
    with xm_slurm.create_experiment("sync") as experiment:
        xid = experiment.experiment_id
        assert api.client().get_experiment(xid).title == "sync"
        with pytest.raises(ValidationError, match="cannot add"):
            experiment.add(42)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        api.client().get_experiment(xid)
