"""A parameter controller defined in this test module runs on the local cluster, adds 2 work units from inside
its job, and everything is recorded: with the SQLite store, and with the REST store (token via a 0600 file)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import LocalCluster, parse_env_file
from xmanager import xm

import xm_slurm
from xm_slurm import api
from xm_slurm.api import settings
from xm_slurm.experimental.parameter_controller import parameter_controller
from xm_slurm.paths import experiment_dir

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))
import local_site  # noqa: E402  (the examples' local-cluster helpers: mounts that put xm_slurm in the job)

sys.path.insert(0, str(REPO / "tests" / "api"))
from metadata_fixtures import start_server, stop_server  # noqa: E402  (the REST server of the api tests)

PROGRAM = (
    "import os, sys; print('trained', sys.argv[1:], 'in work unit', os.environ['XM_SLURM_WORK_UNIT_ID'])"
)


async def two_rounds(experiment: xm_slurm.SlurmExperiment, *, train: xm.Job, marker: str) -> None:
    """Runs in the controller's job."""
    for lr in (0.1, 0.01):
        wu = await experiment.add(train, args={"args": {"lr": lr, "marker": marker}})
        await wu.wait_until_complete()
    experiment.context.artifacts["controller"] = marker


@pytest.fixture
def cluster_env(
    local_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    del local_cluster
    for name, value in parse_env_file(REPO / ".local-cluster" / "env.sh").items():
        monkeypatch.setenv(name, value)
    for name in ("XM_SLURM_API_BACKEND", "XM_SLURM_EXPERIMENT_ID", "XM_SLURM_WORK_UNIT_ID"):
        monkeypatch.delenv(name, raising=False)
    state = tmp_path / "state"
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(state))
    settings.clear_cache()
    yield state
    settings.clear_cache()


def _jobs(extra_mounts: dict[str, str] | None = None) -> tuple[xm.Job, xm_slurm.Slurm]:
    cluster = local_site.cluster()
    train = xm.Job(
        executable=xm_slurm.RemoteImage(
            image=local_site.python_image(), entrypoint=["python3", "-c", PROGRAM]
        ),
        executor=xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
        ),
        name="train",
    )
    controller_cluster = local_site.controller_cluster(cluster)
    if extra_mounts:
        controller_cluster = dataclasses.replace(
            controller_cluster, mounts={**controller_cluster.mounts, **extra_mounts}
        )
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=controller_cluster),
        time=dt.timedelta(minutes=10),
    )
    return train, executor


async def _run_controller(train: xm.Job, executor: xm_slurm.Slurm, marker: str) -> int:
    controller = parameter_controller(
        executable=xm_slurm.RemoteImage(image=local_site.python_image()), executor=executor
    )(two_rounds)
    async with xm_slurm.create_experiment("controller test") as experiment:
        aux = await experiment.add(controller(train=train, marker=marker))
        assert list(experiment.auxiliary_units) == [aux.unit_id]
        try:
            await aux.wait_until_complete()
        except xm.ExperimentUnitError:
            log = [line async for line in aux.logs(num_lines=60)]
            pytest.fail("controller failed:\n" + "\n".join(log))
        return experiment.experiment_id


async def _check_recorded(xid: int, marker: str) -> None:
    stored = api.client().get_experiment(xid)
    assert [wu.wid for wu in stored.work_units] == [1, 2, 3]
    assert stored.work_units[0].role.name == "AUX_UNIT"  # the role is data, not in args
    assert all(len(wu.jobs) == 1 for wu in stored.work_units)
    # The controller's own artifact; the `xm_slurm.*` ones are the launches' provenance.
    assert {a.name: a.uri for a in stored.artifacts if not a.name.startswith("xm_slurm.")} == {
        "controller": marker
    }
    reloaded = xm_slurm.get_experiment(xid)
    try:
        assert sorted(reloaded.work_units) == [2, 3]
        for wu in reloaded.work_units.values():
            assert (await wu.get_status()).status.name == "COMPLETED"
        lines = []
        for wu in reloaded.work_units.values():
            lines += [line async for line in wu.logs(num_lines=5)]
        assert f"trained ['--lr=0.1', '--marker={marker}'] in work unit 2" in lines
        assert f"trained ['--lr=0.01', '--marker={marker}'] in work unit 3" in lines
    finally:
        await reloaded.aclose()


def _remote_state_folder() -> str:
    """The cluster's state folder (root's default, as sshd sees it): the token file goes there, so the
    controller's container must see it."""
    folder = os.path.expanduser("~/.local/state/xm-slurm")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def _check_token_file(folder: Path, token: str) -> None:
    token_file = folder / "controller-1.token"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    # The token is in that file only: not in any job script or log of the experiment.
    leaks = [
        p.name
        for p in folder.rglob("*")
        if p.is_file() and p != token_file and token in p.read_text(errors="replace")
    ]
    assert leaks == []


async def test_controller_with_the_sqlite_store(cluster_env: Path) -> None:
    train, executor = _jobs()
    xid = await _run_controller(train, executor, "sqlite")
    await _check_recorded(xid, "sqlite")


async def test_controller_with_the_rest_store_reads_the_token_from_a_private_file(
    cluster_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(tmp_path / "server")
    try:
        monkeypatch.setenv("XM_SLURM_API_BACKEND", "rest")
        monkeypatch.setenv("XM_SLURM_REST_API_BASE_URL", server.base_url)
        monkeypatch.setenv("XM_SLURM_REST_API_TOKEN", server.token)
        settings.clear_cache()
        remote_state = _remote_state_folder()
        train, executor = _jobs({remote_state: remote_state})
        xid = await _run_controller(train, executor, "rest")
        await _check_recorded(xid, "rest")
        store_id = settings.client().get_store_info().folder_key(xid)
        _check_token_file(Path(experiment_dir(remote_state, xid, store_id)), server.token)
    finally:
        stop_server(server)
