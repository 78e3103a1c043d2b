"""Where xm_slurm keeps its files (`xm_slurm.paths`): one rule for this machine's state folder, shared by the
store, the cluster-limits cache and the build logs; the cluster's rule evaluated by a real shell; the log
names in their three spellings (sbatch pattern, shell word at run time, a job's file) agreeing."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from xm_slurm import api, paths
from xm_slurm.api import ExperimentPatch, settings
from xm_slurm.api.storage.engine import default_sqlite_path
from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.packaging.builder import default_log_dir
from xm_slurm.scheduler.limits import cached_limits
from xm_slurm.transport import LocalTransport


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of our own, with XDG_STATE_HOME set elsewhere (it must not be used on this machine)."""
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("XM_SLURM_STATE_DIR", raising=False)
    monkeypatch.delenv("XM_SLURM_API_BACKEND", raising=False)
    settings.clear_cache()
    yield tmp_path / "home"
    settings.clear_cache()


def test_local_state_dir_is_the_variable_else_local_state_never_xdg(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = home / ".local" / "state" / "xm-slurm"
    assert paths.local_state_dir() == default
    monkeypatch.setenv("XM_SLURM_STATE_DIR", "")  # empty counts as unset, as in the cluster's shell rule
    assert paths.local_state_dir() == default
    monkeypatch.setenv("XM_SLURM_STATE_DIR", "~/elsewhere")
    assert paths.local_state_dir() == home / "elsewhere"


def test_store_and_build_logs_use_the_one_local_folder_with_xdg_state_home_set(home: Path) -> None:
    folder = home / ".local" / "state" / "xm-slurm"
    client = api.client()
    xid = client.insert_experiment(ExperimentPatch(title="where is the store"))
    assert client.get_experiment(xid).title == "where is the store"
    assert default_sqlite_path() == folder / "db.sqlite3"
    assert stat.S_IMODE((folder / "db.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert default_log_dir() == folder / "build-logs"
    assert not (home.parent / "xdg-state").exists()


@pytest.mark.cluster
async def test_limits_cache_uses_the_one_local_folder_with_xdg_state_home_set(home: Path) -> None:
    limits = await cached_limits(LocalTransport())  # this machine is the local cluster's login node
    assert limits.source == "scontrol"
    [cached] = (home / ".local" / "state" / "xm-slurm" / "cluster-limits").glob("*.json")
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert not (home.parent / "xdg-state").exists()


def _shell(command: str, **env: str) -> str:
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, check=True).stdout


def test_remote_state_dir_rule_evaluated_by_a_shell(tmp_path: Path) -> None:
    home = str(tmp_path)
    command = paths.REMOTE_STATE_DIR_COMMAND
    assert _shell(command, HOME=home) == f"{home}/.local/state/xm-slurm"
    assert _shell(command, HOME=home, XDG_STATE_HOME="/xdg") == "/xdg/xm-slurm"
    assert _shell(command, HOME=home, XDG_STATE_HOME="/xdg", XM_SLURM_STATE_DIR="/mine") == "/mine"
    assert _shell(command, HOME=home, XM_SLURM_STATE_DIR="") == f"{home}/.local/state/xm-slurm"


def test_experiment_dir_and_its_bad_ids() -> None:
    assert paths.experiment_dir("/state/xm-slurm/", 42) == "/state/xm-slurm/00000042"
    for bad in (-1, True, "42"):
        with pytest.raises(ValidationError, match=f"experiment id {bad!r} must be a non-negative integer"):
            paths.experiment_dir("/state", bad)  # type: ignore[arg-type]


def test_a_later_group_component_logs_apart() -> None:
    jid = SlurmJobId.parse("123+2")
    assert paths.log_name(jid) == "slurm-123+2.out"
    assert _shell(f"printf %s {paths.component_log_name(2)}", SLURM_JOB_ID="123", PATH=os.defpath) == (
        "slurm-123+2.out"
    )


@pytest.mark.parametrize(
    ("job_id", "array", "slurm_env", "name"),
    [
        ("123", False, {"SLURM_JOB_ID": "123"}, "slurm-123.out"),
        # A job group's first component writes the leader's log (its batch script has the leader's id).
        ("123+0", False, {"SLURM_JOB_ID": "123"}, "slurm-123.out"),
        ("123_4", True, {"SLURM_ARRAY_JOB_ID": "123", "SLURM_ARRAY_TASK_ID": "4"}, "slurm-123_4.out"),
    ],
)
def test_log_names_agree_in_their_three_spellings(
    job_id: str, array: bool, slurm_env: dict[str, str], name: str
) -> None:
    jid = SlurmJobId.parse(job_id)
    assert paths.log_name(jid) == name
    # sbatch's --output pattern, with Slurm's substitutions for this job
    pattern = paths.log_pattern(array=array)
    assert pattern.replace("%j", "123").replace("%A", "123").replace("%a", "4") == name
    # the batch script's shell word, evaluated with Slurm's variables
    assert _shell(f"printf %s {paths.runtime_log_name(array=array)}", **slurm_env, PATH=os.defpath) == name
    assert paths.log_path("/state/", 7, jid) == f"/state/00000007/{name}"
