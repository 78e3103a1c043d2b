"""The 0.4.x interface of ../shared/compat-04x.md, name by name and keyword by keyword.

For each call a 0.4.x launch script makes, `inspect.signature(...).bind(<that call>)` succeeds AND the call does
what it did in 0.4.x (dependency strings, status aggregation, `JobRequirements.replace`, `Slurm.Spec("repo:tag")`,
the `logs` keywords on the real local cluster, a parameter controller added to an experiment and run...).
Where we keep a different behaviour on purpose the test says so and docs/migrating-from-0.4.md explains it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import importlib
import importlib.metadata
import inspect
import json
import os
import subprocess
import sys
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm import api
from xm_slurm.api import settings
from xm_slurm.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "experiment"))
from experiment_fixtures import gate, make_cluster, python_job, release  # noqa: E402

sys.path.insert(0, str(REPO / "examples"))
import local_site  # noqa: E402  (mounts that put this checkout's xm_slurm in a controller's job)


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private SQLite store per test; no job context."""
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "state"))
    for name in ("XM_SLURM_API_BACKEND", "XM_SLURM_EXPERIMENT_ID", "XM_SLURM_WORK_UNIT_ID"):
        monkeypatch.delenv(name, raising=False)
    settings.clear_cache()
    yield tmp_path / "state"
    settings.clear_cache()


def bind(function: Callable[..., Any], *args: Any, **kwargs: Any) -> inspect.BoundArguments:
    """The 0.4.x call binds to our signature (a TypeError here is a script that breaks)."""
    return inspect.signature(function).bind(*args, **kwargs)


def offline_cluster(**kw: Any) -> xm_slurm.SlurmClusterConfig:
    return xm_slurm.SlurmClusterConfig(
        name="c",
        runtime=xm_slurm.ContainerRuntime.PODMAN,
        ssh=xm_slurm.SlurmSSHConfig(host="login.example.org", user="me"),
        **kw,
    )


# --- item 11: modules and names -------------------------------------------------------------------------

NAMES: list[tuple[str, str]] = [
    *[
        ("xm_slurm.experiment", name)
        for name in (
            "SlurmExperiment",
            "SlurmExperimentUnit",
            "SlurmWorkUnit",
            "SlurmAuxiliaryUnit",
            "create_experiment",
            "get_experiment",
            "get_current_experiment",
            "get_current_work_unit",
            "JobArgs",
        )
    ],
    ("xm_slurm.job_blocks", "JobArgs"),
    ("xm_slurm.api.abc", "XManagerAPI"),
    ("xm_slurm", "ResourceQuantity"),
    ("xm_slurm.resources", "FeatureType"),
    ("xm_slurm.resources", "AcceleratorType"),
    ("xm_slurm.executables", "RemoteRepositoryCredentials"),
    ("xm_slurm.executables", "ImageURI"),
    ("xm_slurm.executables", "ImageDescriptor"),
    *[
        ("xm_slurm.dependencies", name)
        for name in (
            "SlurmJobDependency",
            "SlurmJobDependencyAND",
            "SlurmJobDependencyOR",
            "SlurmJobArrayDependencyAfterOK",
            "SlurmDependencyException",
            "NoChainingException",
            "SlurmJobDependencyAfter",
            "SlurmJobDependencyAfterAny",
            "SlurmJobDependencyAfterOK",
            "SlurmJobDependencyAfterNotOK",
        )
    ],
    *[
        ("xm_slurm.status", f"Slurm{kind}JobStates")
        for kind in ("Pending", "Running", "Active", "Completed", "Failed", "Cancelled")
    ],
    ("xm_slurm.contrib.clusters", "cc"),
    ("xm_slurm.contrib.clusters.drac", "all"),
    ("xm_slurm.experimental.parameter_controller", "parameter_controller"),
    ("xm_slurm.experimental.parameter_controller", "ParameterControllerMode"),
    *[
        ("xm_slurm.config", name)
        for name in ("SlurmClusterConfig", "SlurmSSHConfig", "PublicKey", "ContainerRuntime")
    ],
]


@pytest.mark.parametrize(("module", "name"), NAMES, ids=[f"{m}.{n}" for m, n in NAMES])
def test_name_is_importable_from_its_04x_module(module: str, name: str) -> None:
    # `from module import name`, as a 0.4.x script writes it
    assert getattr(importlib.import_module(module), name) is not None


def test_job_blocks_and_abc_are_the_same_objects_as_ours() -> None:
    from xm_slurm.api.abc import XManagerAPI
    from xm_slurm.job_blocks import JobArgs

    assert JobArgs is xm_slurm.JobArgs
    assert JobArgs(args={"lr": 1}, env_vars={"A": "1"}) == {"args": {"lr": 1}, "env_vars": {"A": "1"}}
    assert isinstance(api.client(), XManagerAPI)  # what our SQLite client implements


def test_resource_quantity_feature_type_accelerator_type() -> None:
    from xm_slurm.resources import AcceleratorType, FeatureType, ResourceType

    assert set(typing.get_args(xm_slurm.ResourceQuantity)) == {int, float, str}
    assert issubclass(FeatureType, enum.Enum) and len(FeatureType) >= 1
    assert {ResourceType.GPU, ResourceType.A100, ResourceType.H100, ResourceType.V100} <= AcceleratorType
    assert not {ResourceType.CPU, ResourceType.MEMORY, ResourceType.EPHEMERAL_STORAGE} & AcceleratorType


def test_parameter_controller_is_a_module_after_importing_the_package() -> None:
    import types

    import xm_slurm.experimental

    module = xm_slurm.experimental.parameter_controller
    assert isinstance(module, types.ModuleType)
    assert module.parameter_controller.__module__ == "xm_slurm.experimental.parameter_controller"
    assert issubclass(module.ParameterControllerMode, enum.Enum)


# --- items 4-9: the experiment surface (owned by the experiment-layer issue; bound here too) -------------


async def test_experiment_surface_of_04x() -> None:
    from xm_slurm.experiment import SlurmExperimentUnit

    assert xm_slurm.get_current_experiment() is None  # outside a job
    assert xm_slurm.get_current_work_unit() is None
    bind(SlurmExperimentUnit.stop, None, mark_as_failed=False, mark_as_completed=False, message=None)
    assert not inspect.iscoroutinefunction(SlurmExperimentUnit.stop)
    bind(xm_slurm.SlurmExperiment.add, None, None, args=[{}], identity="job")
    async with xm_slurm.create_experiment("surface") as experiment:
        assert experiment.experiment_title == "surface"
        assert experiment.work_units() == {}  # a method returning {work_unit_id: unit}
    xid = api.client().insert_experiment(api.ExperimentPatch(title="stored"))
    async with xm_slurm.get_experiment(xid) as reopened:  # an async context manager, as in 0.4.x
        assert reopened.experiment_title == "stored" and reopened.work_units() == {}


# --- signatures: cluster config, executor spec, requirements -------------------------------------------


def test_cluster_config_cwd_is_rendered_as_the_job_scripts_folder() -> None:
    from xm_slurm.rendering import JobComponent, JobScriptRequest, Trial, render_job_script

    bind(xm_slurm.SlurmClusterConfig, name="c", ssh=None, runtime=None, cwd="/scratch/me/runs")
    cluster = offline_cluster(cwd="$SCRATCH/my runs")
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )
    image = xm_slurm.RemoteImage(image="localhost:5000/x/y:z", entrypoint=["true"])
    script = render_job_script(
        JobScriptRequest(
            cluster=cluster,
            jobs=[JobComponent(executable=image, executor=executor)],
            trials=[Trial(work_unit_id=1)],
            experiment_id=1,
            job_name="cwd",
            state_dir="/tmp/state",
            array=False,
        )
    )
    assert 'cd -- "$SCRATCH/my runs" ||' in script  # the job's bash expands the variable, the space is kept
    assert script.index("cd -- ") < script.index("srun")
    with pytest.raises(ValidationError, match="cwd="):
        offline_cluster(cwd="relative/path")
    with pytest.raises(ValidationError, match="cwd"):
        offline_cluster(cwd="/a\nb")


@pytest.mark.cluster
async def test_cluster_config_cwd_on_the_local_cluster(local_cluster: LocalCluster, tmp_path: Path) -> None:
    folder = tmp_path / "runs here"
    folder.mkdir()
    folder.chmod(0o777)
    base = make_cluster(local_cluster)
    cluster = dataclasses.replace(
        base,
        host_environment={"XM_TEST_RUNS": str(tmp_path)},
        cwd="$XM_TEST_RUNS/runs here",
        prolog="pwd > cwd-seen",  # a relative path: lands in the job's working folder
    )
    async with xm_slurm.create_experiment("cwd") as experiment:
        wu = await experiment.add(python_job(local_cluster, cluster))
        await wu.wait_until_complete()
    assert (folder / "cwd-seen").read_text().strip() == str(folder)


def test_slurm_spec_positional_tag() -> None:
    bind(xm_slurm.Slurm.Spec, "registry.example.org/me/train:latest")
    spec = xm_slurm.Slurm.Spec("registry.example.org/me/train:latest")
    assert isinstance(spec, xm_slurm.SlurmSpec) and spec.tag == "registry.example.org/me/train:latest"
    assert xm_slurm.Slurm.Spec().tag is None
    assert xm_slurm.Slurm.Spec(tag="a/b:c") == xm_slurm.SlurmSpec(tag="a/b:c")


def test_job_requirements_04x_keywords_replace_and_directives() -> None:
    cluster = offline_cluster(resources={xm_slurm.ResourceType.A100: "a100"})
    other = dataclasses.replace(cluster, name="other", resources={xm_slurm.ResourceType.V100: "v100"})
    call = {"resources": {"cpu": 4}, "replicas": 1, "location": None, "cluster": cluster, "RAM": 8 * xm.GiB}
    bind(xm_slurm.JobRequirements, **call)
    req = xm_slurm.JobRequirements(**call, A100=1)
    directives = req.to_directives()
    assert {"--ntasks=1", "--cpus-per-task=4", "--mem=8192M"} <= set(directives)
    assert any("a100" in d for d in directives)

    bind(xm_slurm.JobRequirements.replace, req, other, V100=2)
    moved = req.replace(other, V100=2)  # 0.4.x: cluster positional, resources by keyword
    assert moved.cluster is other and req.cluster is cluster  # a copy
    assert moved.task_requirements[xm_slurm.ResourceType.CPU] == 4  # kept
    assert moved.task_requirements[xm_slurm.ResourceType.MEMORY] == 8 * xm.GiB  # kept
    assert xm_slurm.ResourceType.A100 not in moved.task_requirements  # one accelerator kind
    assert any("v100" in d for d in moved.to_directives())
    assert req.replace(CPU=2).task_requirements[xm_slurm.ResourceType.CPU] == 2
    assert req.replace(CPU=2).cluster is cluster
    with pytest.raises(ValidationError, match="V100"):
        req.replace(V100=1)  # the A100 cluster has no V100: checked again


def test_container_runtime_from_string() -> None:
    bind(xm_slurm.ContainerRuntime.from_string, "podman")
    assert xm_slurm.ContainerRuntime.from_string("podman") is xm_slurm.ContainerRuntime.PODMAN
    assert xm_slurm.ContainerRuntime.from_string("Apptainer") is xm_slurm.ContainerRuntime.APPTAINER
    assert xm_slurm.ContainerRuntime.from_string("SINGULARITY") is xm_slurm.ContainerRuntime.SINGULARITY
    with pytest.raises(ValidationError, match="'enroot'"):
        xm_slurm.ContainerRuntime.from_string("enroot")


# --- signatures: dependencies ---------------------------------------------------------------------------


def _launched(job_id: str) -> Any:
    from xm_slurm.experiment.handles import SlurmLaunchedJob
    from xm_slurm.job_ids import SlurmJobId

    ssh = xm_slurm.SlurmSSHConfig(host="login.example.org")
    return SlurmLaunchedJob(name="j", job_id=SlurmJobId.parse(job_id), ssh=ssh, experiment_id=1)


def test_dependencies_take_sequences_of_handles_and_render_directives() -> None:
    from xm_slurm import dependencies as d

    handles = [_launched("12"), _launched("13_4")]
    bind(d.SlurmJobDependencyAfter, handles, time=dt.timedelta(minutes=5))
    for cls in (d.SlurmJobDependencyAfterAny, d.SlurmJobDependencyAfterOK, d.SlurmJobDependencyAfterNotOK):
        bind(cls, handles)
    assert d.SlurmJobDependencyAfter(handles).to_directive() == "--dependency=after:12:13_4"
    launched = [h.to_launched_job() for h in handles]  # XManager's LaunchedJob: unit.launched_jobs
    assert d.SlurmJobDependencyAfterOK(launched).to_directive() == "--dependency=afterok:12:13_4"
    after = d.SlurmJobDependencyAfter(handles, time=dt.timedelta(seconds=90))
    assert after.to_directive() == "--dependency=after:12+2:13_4+2"  # minutes, rounded up
    assert d.SlurmJobDependencyAfterAny(handles).to_directive() == "--dependency=afterany:12:13_4"
    assert d.SlurmJobDependencyAfterOK(["7"]).to_directive() == "--dependency=afterok:7"
    assert d.SlurmJobDependencyAfterNotOK([8]).to_directive() == "--dependency=afternotok:8"
    assert d.SlurmJobArrayDependencyAfterOK(["9"]).to_directive() == "--dependency=aftercorr:9"

    ok, notok = d.SlurmJobDependencyAfterOK(["1"]), d.SlurmJobDependencyAfterNotOK(["2"])
    bind(d.SlurmJobDependencyAND, ok, notok)
    both = d.SlurmJobDependencyAND(ok, notok)
    assert both == ok & notok and both.to_directive() == "--dependency=afterok:1,afternotok:2"
    either = d.SlurmJobDependencyOR(ok, notok)
    assert either == (ok | notok) and either.to_directive() == "--dependency=afterok:1?afternotok:2"
    assert list(both.traverse()) == [both, ok, notok]
    assert list(ok.traverse()) == [ok]
    assert isinstance(both, d.SlurmJobDependency) and d.SlurmDependency is d.SlurmJobDependency


def test_dependency_errors_are_the_04x_exceptions() -> None:
    from xm_slurm import dependencies as d

    ok, notok = d.SlurmJobDependencyAfterOK(["1"]), d.SlurmJobDependencyAfterNotOK(["2"])
    with pytest.raises(d.NoChainingException, match=r"cannot mix '&' and '\|'"):
        (ok & notok) | ok
    assert issubclass(d.NoChainingException, d.SlurmDependencyException)
    assert issubclass(d.SlurmDependencyException, ValidationError)
    with pytest.raises(d.SlurmDependencyException, match="'12x'"):
        d.SlurmJobDependencyAfterOK(["12x"])
    with pytest.raises(d.SlurmDependencyException, match="sequence of job handles"):
        d.SlurmJobDependencyAfterOK("12")  # type: ignore[arg-type]  # a string is not a list of handles
    with pytest.raises(d.SlurmDependencyException, match="at least one"):
        d.SlurmJobDependencyAfterOK([])


# --- signatures: job states and unit status -------------------------------------------------------------


def test_job_state_sets_partition_every_state() -> None:
    from xm_slurm import status as s

    sets = {
        kind: getattr(s, f"Slurm{kind}JobStates")
        for kind in ("Pending", "Running", "Completed", "Failed", "Cancelled")
    }
    assert all(isinstance(v, (set, frozenset)) for v in sets.values())
    assert set().union(*sets.values()) == set(s.SlurmJobState)
    assert sum(len(v) for v in sets.values()) == len(s.SlurmJobState)  # disjoint
    assert s.SlurmActiveJobStates == sets["Pending"] | sets["Running"]
    assert s.SlurmJobState.PENDING in sets["Pending"] and s.SlurmJobState.RUNNING in sets["Running"]
    assert s.SlurmJobState.TIMEOUT in sets["Failed"] and s.SlurmJobState.OUT_OF_MEMORY in sets["Failed"]
    assert s.SlurmJobState.CANCELLED in sets["Cancelled"] and s.SlurmJobState.COMPLETED in sets["Completed"]


def test_job_state_from_str_from_slurm_str_message() -> None:
    from xm_slurm.status import SlurmJobState

    bind(SlurmJobState.from_str, "RUNNING")
    assert SlurmJobState.from_str("RUNNING") is SlurmJobState.RUNNING
    assert SlurmJobState.from_slurm_str("CANCELLED by 0") is SlurmJobState.CANCELLED
    assert SlurmJobState.from_slurm_str("OOM") is SlurmJobState.OUT_OF_MEMORY
    with pytest.raises(ValidationError, match="'NOPE'"):
        SlurmJobState.from_str("NOPE")
    assert all(isinstance(state.message, str) and state.message for state in SlurmJobState)
    assert "time limit" in SlurmJobState.TIMEOUT.message


def test_work_unit_status_enum_is_an_int_enum() -> None:
    from xm_slurm.status import SlurmJobState
    from xm_slurm.status import SlurmWorkUnitStatusEnum as E

    assert issubclass(E, enum.IntEnum)
    assert E.PENDING < E.RUNNING < E.COMPLETED < E.FAILED < E.CANCELLED
    assert all(s >= E.COMPLETED for s in (E.COMPLETED, E.FAILED, E.CANCELLED))  # terminal
    assert E(int(E.FAILED)) is E.FAILED and int(E.FAILED) == E.FAILED
    assert E.from_job_state(SlurmJobState.TIMEOUT) is E.FAILED
    assert E.from_job_state(SlurmJobState.REQUEUED) is E.PENDING
    assert str(E.RUNNING) == E.RUNNING.label == "running"


# 0.4.7's rule: any active -> active, (RUNNING, COMPLETED) -> COMPLETED... see the module docstring of
# xm_slurm.status for ours. Rows marked "ours" differ from 0.4.7 on purpose (docs/migrating-from-0.4.md).
AGGREGATION = [
    (["RUNNING"], "RUNNING"),
    (["PENDING", "COMPLETED"], "PENDING"),
    (["RUNNING", "PENDING"], "RUNNING"),
    (["RUNNING", "FAILED"], "RUNNING"),  # a job still runs: active
    (["COMPLETED", "COMPLETED"], "COMPLETED"),
    (["COMPLETED", "FAILED"], "FAILED"),
    (["COMPLETED", "CANCELLED"], "CANCELLED"),
    (["TIMEOUT", "COMPLETED"], "FAILED"),
    (["FAILED", "CANCELLED"], "FAILED"),  # ours: 0.4.7 says CANCELLED
    (["REVOKED"], "CANCELLED"),  # ours: 0.4.7 says FAILED
    (["RESIZING"], "RUNNING"),  # ours: 0.4.7 says PENDING
    (["REQUEUED", "COMPLETED"], "PENDING"),
]


@pytest.mark.parametrize(("states", "expected"), AGGREGATION)
def test_work_unit_status_aggregate(states: list[str], expected: str) -> None:
    from xm_slurm.status import SlurmJobState, SlurmWorkUnitStatus, SlurmWorkUnitStatusEnum

    parsed = [SlurmJobState.from_str(s) for s in states]
    bind(SlurmWorkUnitStatus.aggregate, parsed)
    status = SlurmWorkUnitStatus.aggregate(parsed)
    assert isinstance(status, xm.ExperimentUnitStatus)
    assert status.status is SlurmWorkUnitStatusEnum[expected]
    assert status.is_active == (expected in ("PENDING", "RUNNING"))
    assert status.is_completed == (expected == "COMPLETED")
    assert status.is_failed == (expected == "FAILED")


def test_work_unit_status_wraps_one_state() -> None:
    from xm_slurm.status import SlurmJobState, SlurmWorkUnitStatus, SlurmWorkUnitStatusEnum

    bind(SlurmWorkUnitStatus, SlurmJobState.FAILED)
    failed = SlurmWorkUnitStatus(SlurmJobState.OUT_OF_MEMORY)
    assert failed.status is SlurmWorkUnitStatusEnum.FAILED and failed.is_failed and not failed.is_active
    assert failed.message == SlurmJobState.OUT_OF_MEMORY.message
    assert SlurmWorkUnitStatus(SlurmJobState.PENDING).is_active


# --- signatures: unit.logs on the real cluster ----------------------------------------------------------

LINES = "import sys; [print('line', i) for i in range(8)]; sys.stdout.flush()"


@pytest.mark.cluster
async def test_logs_keywords_do_what_they_say(local_cluster: LocalCluster) -> None:
    cluster = make_cluster(local_cluster)
    held = gate()
    async with xm_slurm.create_experiment("logs") as experiment:
        from xm_slurm.dependencies import afterok

        wu = await experiment.add(python_job(local_cluster, cluster, code=LINES), dependency=afterok(held))
        bind(wu.logs, num_lines=10, block_size=1024, wait=True, follow=False, raw=False)
        # Pending: wait=False answers at once with nothing; wait=True waits for the job's first line.
        assert [line async for line in wu.logs(num_lines=3, wait=False)] == []
        waiting = asyncio.ensure_future(_collect(wu.logs(num_lines=3, wait=True)))
        await asyncio.sleep(1)  # the job is held: nothing can arrive yet
        assert not waiting.done()
        release(held)
        first = await asyncio.wait_for(waiting, 120)
        assert first and all(line.startswith("line ") for line in first) and len(first) <= 3
        await wu.wait_until_complete()
        assert await _collect(wu.logs(num_lines=3)) == ["line 5", "line 6", "line 7"]
        pieces = await _collect(wu.logs(num_lines=3, raw=True, block_size=4))
        assert all(0 < len(p) <= 4 for p in pieces)
        assert "".join(pieces) == "line 5\nline 6\nline 7\n"
        followed = await asyncio.wait_for(_collect(wu.logs(num_lines=2, follow=True)), 60)
        assert followed == ["line 6", "line 7"]  # the job has ended: the follow ends too
        with pytest.raises(ValidationError, match="block_size=0"):
            await _collect(wu.logs(block_size=0))


async def _collect(lines: Any) -> list[str]:
    return [line async for line in lines]


# --- signatures: parameter_controller -------------------------------------------------------------------


async def record_argv(experiment: xm_slurm.SlurmExperiment, *, marker: str) -> None:
    """Runs in the controller's job: records its command line and environment as experiment artifacts."""
    experiment.context.artifacts["argv"] = json.dumps(sys.argv[1:])
    experiment.context.artifacts["env"] = os.environ.get("XM_TEST_CONTROLLER", "")
    experiment.context.artifacts["marker"] = marker


def test_parameter_controller_signature() -> None:
    from xm_slurm.experimental.parameter_controller import ParameterControllerMode, parameter_controller

    bind(
        parameter_controller,
        executable=None,
        executor=None,
        controller_mode=ParameterControllerMode.AUTO,
        controller_name="parameter_controller",
        controller_args=None,
        controller_env_vars={},
    )
    assert (
        inspect.signature(parameter_controller).parameters["controller_name"].default
        == "parameter_controller"
    )


@pytest.mark.cluster
async def test_parameter_controller_job_is_taken_by_experiment_add(local_cluster: LocalCluster) -> None:
    from xm_slurm.experimental.parameter_controller import ParameterControllerMode, parameter_controller

    cluster = local_site.controller_cluster(make_cluster(local_cluster))
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=10)
    )
    controller = parameter_controller(
        executable=xm_slurm.RemoteImage(image=local_cluster.python_image),
        executor=executor,
        controller_mode=ParameterControllerMode.AUTO,
        controller_name="ctl-04x",
        controller_args={"seed": 7},
        controller_env_vars={"XM_TEST_CONTROLLER": "yes"},
    )(record_argv)
    async with xm_slurm.create_experiment("controller 04x") as experiment:
        aux = await experiment.add(controller(marker="m1"), identity="controller")
        assert [j.name for j in aux.slurm_jobs] == ["ctl-04x"]
        try:
            await aux.wait_until_complete()
        except xm.ExperimentUnitError:
            log = [line async for line in aux.logs(num_lines=60)]
            pytest.fail("controller failed:\n" + "\n".join(log))
        xid = experiment.experiment_id
    artifacts = {a.name: a.uri for a in api.client().get_experiment(xid).artifacts}
    mine = {name: artifacts.get(name) for name in ("argv", "env", "marker")}
    assert mine == {"argv": json.dumps(["--seed=7"]), "env": "yes", "marker": "m1"}


# --- the version ----------------------------------------------------------------------------------------


def test_version_is_the_successor_of_the_published_one_and_agrees_everywhere() -> None:
    metadata = importlib.metadata.version("xmanager-slurm")
    assert xm_slurm.__version__ == metadata
    major, minor = (int(p) for p in metadata.split(".")[:2])
    assert (major, minor) > (0, 5)  # a pin such as xmanager-slurm>=0.4 resolves to us, after 0.5.0
    cli = subprocess.run(
        [sys.executable, "-m", "xm_slurm.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert cli.stdout.strip() == f"xm-slurm {metadata}"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'\nversion = "{metadata}"\n' in pyproject


# --- names other work owns (0.4.x shapes; see the report of issue 15 for who lands them) ----------------


def test_slurm_ssh_config_positional_order_and_public_key_unpacking() -> None:
    from xm_slurm.config import PublicKey, SlurmSSHConfig

    key = PublicKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAINVUtH0GXq2Vet57zZA1Jq53Oy7qvArV9Y5zW5tAvbg2")
    bind(SlurmSSHConfig, "login.example.org", key, "me", 2222)
    config = SlurmSSHConfig("login.example.org", key, "me", 2222)
    assert (config.host, config.host_public_key, config.user, config.port) == (
        "login.example.org",
        key,
        "me",
        2222,
    )
    alg, body = key
    assert (alg, body) == ("ssh-ed25519", key.key)


def test_remote_repository_credentials_positional() -> None:
    from xm_slurm.executables import RemoteRepositoryCredentials

    bind(RemoteRepositoryCredentials, "me", "s3cret")
    credentials = RemoteRepositoryCredentials("me", "s3cret")
    assert (credentials.username, credentials.password) == ("me", "s3cret")
    assert "s3cret" not in repr(credentials)


def test_preset_keywords_of_047() -> None:
    from xm_slurm.contrib.clusters import cc, drac, mila

    mila_fn = getattr(mila, "mila", mila)
    bind(mila_fn, user="me", partition="long", mounts={"/network/projects/x": "/x"})
    config = mila_fn(user="me", partition="long", mounts={"/network/projects/x": "/x"})
    assert config.partition == "long" and config.ssh.user == "me"
    targets = {m.target for m in config.mount_specs}
    assert {"/x", "/scratch"} <= targets  # 0.4.7's Mila preset mounts the user's scratch at /scratch
    assert config.container_environment.get("SCRATCH") == "/scratch"

    bind(drac.narval, user="me", account="def-me", proxy=None, mounts={"/project/x": "/x"})
    narval = drac.narval(user="me", account="def-me", mounts={"/project/x": "/x"})
    assert narval.account == "def-me" and "/x" in {m.target for m in narval.mount_specs}
    assert "apptainer" in (narval.prolog or "")  # 0.4.7's DRAC presets load apptainer
    assert cc.narval(user="me", account="def-me").ssh == narval.ssh  # cc is drac under its old name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # retired sites warn
        names = [c.name for c in drac.all(user="me", account="def-me")]
    assert names == ["narval", "beluga", "cedar", "graham"]
