"""The dry-run transport behind `xm-slurm preview` (xm_slurm.experiment.dry_run), over the real scheduler code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xm_slurm.errors import RemoteCommandError
from xm_slurm.experiment import dry_run
from xm_slurm.experiment.connections import (
    ClusterConnections,
    launch_transport_factory,
    local_transport_factory,
)
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import get_job_states, state_root, submit, tail
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.status import SlurmJobState
from xm_slurm.transport import LocalTransport, ShellLine, SSHTransport

SSH = SlurmSSHConfig(host="login.example.org", user="me", port=2222)
SCRIPT = "#!/bin/bash\n#SBATCH --job-name=x\n#SBATCH --array=0-3%2\nexit 0\n"


def _read(path: str | Path) -> str:
    return Path(path).read_text()


def _exists(path: str) -> bool:
    return Path(path).exists()


def test_no_env_means_no_dry_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dry_run.DRY_RUN_ENV, raising=False)
    assert isinstance(ClusterConnections().transport(SSH), SSHTransport)


async def test_submissions_are_recorded_not_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "scripts"
    monkeypatch.setenv(dry_run.DRY_RUN_ENV, str(folder))
    monkeypatch.delenv(dry_run.DRY_RUN_REMOTE_ENV, raising=False)
    connections = ClusterConnections(launch_transport_factory(lambda config: LocalTransport()))
    transport = connections.transport(SSH)
    assert isinstance(transport, dry_run.DryRunTransport)
    try:
        root = await state_root(transport)
        assert root == dry_run.PLACEHOLDER_STATE_DIR
        array = await submit(
            transport, SCRIPT, directory=f"{root}/00000001", name="a.sh", sbatch_args=["--hold"]
        )
        single = await submit(transport, "#!/bin/bash\ntrue\n", directory=f"{root}/00000001", name="b.sh")
        assert (array, single) == (
            SlurmJobId(dry_run.FAKE_JOB_ID_BASE + 1),
            SlurmJobId(dry_run.FAKE_JOB_ID_BASE + 2),
        )
        assert not _exists(root)  # nothing written where the cluster's folder would be

        entries = [json.loads(line) for line in _read(folder / dry_run.MANIFEST).splitlines()]
        assert [e["job_id"] for e in entries] == [str(array), str(single)]
        assert entries[0]["sbatch_args"] == ["--hold"]  # without --parsable and the submission --comment
        assert entries[0]["ssh"] == SSH.to_dict()
        assert _read(entries[0]["file"]) == SCRIPT

        states = await get_job_states(transport, [array.task(0), array.task(3), single])
        assert {s.state for s in states.values()} == {SlurmJobState.COMPLETED}
        assert await tail(transport, f"{root}/00000001/slurm-{single}.out", 10) == []
        with pytest.raises(RemoteCommandError, match="dry run"):
            await transport.run(["rm", "-rf", "/"])
        with pytest.raises(RemoteCommandError, match="limits not asked"):
            await transport.run(["scontrol", "show", "config"])
    finally:
        await connections.aclose()


async def test_remote_mode_asks_the_real_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(dry_run.DRY_RUN_ENV, str(tmp_path / "scripts"))
    monkeypatch.setenv(dry_run.DRY_RUN_REMOTE_ENV, "1")
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "remote-state"))  # what the "cluster" answers
    connections = ClusterConnections(launch_transport_factory(lambda config: LocalTransport()))
    try:
        assert await state_root(connections.transport(SSH)) == str(tmp_path / "remote-state")
    finally:
        await connections.aclose()


async def test_commands_are_known_by_what_they_say_not_by_their_text(tmp_path: Path) -> None:
    factory = dry_run.DryRun(tmp_path / "scripts").wrap(lambda config: LocalTransport())
    transport = factory(SSH)
    state_query = 'printf %s "${XM_SLURM_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/xm-slurm}"'
    # The state folder query as the scheduler sends it (a ShellLine of kind state_root) is answered...
    assert (
        await transport.run(ShellLine(state_query, kind="state_root"))
    ).stdout == dry_run.PLACEHOLDER_STATE_DIR
    # ...the same text that does not say what it is never runs, nor does a tail that is not a log read.
    for untagged in (state_query, "test -e x || exit 0; tail -n 1 -- x"):
        with pytest.raises(RemoteCommandError, match="was not run"):
            await transport.run(untagged)
    with pytest.raises(RemoteCommandError, match="was not run"):
        await transport.start("tail -F x")
    # sacct answers with the fields it is asked for (here the retry's script look-up: no script known).
    await transport.mkdir("/d")
    job = await submit(transport, SCRIPT, directory="/d", name="a.sh")
    sacct = ["sacct", "-X", "-P", "-n", "--format=JobID,WorkDir,SubmitLine", "-j", str(job)]
    assert (await transport.run(sacct)).stdout.splitlines() == [f"{job}_{i}||" for i in range(4)]


def test_the_dry_run_is_chosen_in_one_place_and_wraps_any_factory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = dry_run.DryRun(tmp_path / "scripts", remote=True)
    assert dry_run.DryRun.from_env(chosen.to_env()) == chosen
    assert dry_run.DryRun.from_env({}) is None
    monkeypatch.delenv(dry_run.DRY_RUN_ENV, raising=False)
    assert launch_transport_factory(local_transport_factory) is local_transport_factory
    for name, value in chosen.to_env().items():
        monkeypatch.setenv(name, value)
    # A launch script's own factory is wrapped too: a preview never submits, whatever the script passes.
    wrapped = launch_transport_factory(local_transport_factory)
    assert isinstance(wrapped(SSH), dry_run.DryRunTransport)
    assert launch_transport_factory(wrapped) is wrapped
