"""Tables on a terminal (a real pseudo-terminal, Python's pty module): user text printed literally (no rich
markup), no word broken at 80 columns, ended jobs' usage from ONE sacct; `cancel` asks on a terminal and not
with --yes; `latest` / -1 name the newest experiment. Against the local cluster and a temp SQLite store."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import launch, sh_job, squeue_ids, xm_cli
from local_cluster import LocalCluster
from pty_helpers import plain, run_in_pty

import xm_slurm
from xm_slurm.api import SlurmJob, WorkUnitPatch, client

pytestmark = pytest.mark.cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiment"))
from experiment_fixtures import cluster  # noqa: E402

__all__ = ["cluster"]

MARKED = "linefit [retry of 2978_3]"
ARGS = {"tag": "[red]hot[/red]", "lr": 0.001}
# Over two seconds: an ended job with an elapsed time and a CPU efficiency to show.
BUSY = "sleep 2; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"


def test_show_on_a_terminal_prints_brackets_literally_never_breaks_words_and_shows_usage(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    jobs = [
        sh_job(local_cluster, cluster, "echo one"),
        sh_job(local_cluster, cluster, f"echo bad; {BUSY}; exit 3"),
    ]
    xid, ids = asyncio.run(launch(jobs, "tables [bold]title[/bold]"))
    assert xm_cli("wait", str(xid)).returncode == 4  # wid 2 failed
    api = client()
    record = api.get_experiment(xid)
    ssh_json = record.work_units[0].jobs[0].slurm_ssh_config
    # A unit whose job name, identity and args hold square brackets, as a 0.4.x retry named its jobs.
    api.insert_work_unit(xid, WorkUnitPatch(wid=3, identity="[b]seed-0[/b]", args=json.dumps(ARGS)))
    api.insert_job(xid, 3, SlurmJob(name=MARKED, slurm_job_id=ids[0], slurm_ssh_config=ssh_json))

    code, wide = run_in_pty(["show", str(xid)], columns=200)
    screen = plain(wide)
    assert code == 0, screen
    assert MARKED in screen, screen  # rich markup would have eaten "[retry of 2978_3]"
    assert "[b]seed-0[/b]" in screen and "[red]hot[/red]" in screen
    assert "tables [bold]title[/bold]" in screen
    assert "\x1b[" in wide  # states are coloured on a terminal
    # Ended jobs: elapsed time, CPU efficiency (and peak memory where Slurm sampled it).
    [failed_row] = [line for line in screen.splitlines() if "FAILED" in line]
    assert "exit code 3" in failed_row and "elapsed 0:00:" in failed_row and "CPU " in failed_row

    code, narrow = run_in_pty(["show", str(xid)], columns=80)
    screen = plain(narrow)
    assert code == 0, screen
    print("[figure] show on an 80-column terminal:\n" + screen)  # for the closing note (pytest -s)
    table = [line for line in screen.splitlines() if "│" in line or "┃" in line]
    assert len(table) >= 4 and max(len(line) for line in table) <= 80, screen
    assert "DETAIL" in screen.upper() and "STATE" in screen.upper()  # no column cropped away
    words = set(screen.split())
    for word in ("linefit", "[retry", "2978_3]", "COMPLETED", "FAILED", "NonZeroExitCode;", ids[1]):
        assert word in words, f"{word!r} broken or missing at 80 columns:\n{screen}"

    # list: units per state, from one status round per cluster.
    [row] = [r for r in json.loads(xm_cli("list", "--json").stdout) if r["xid"] == xid]
    assert row["states"] == {"completed": 2, "failed": 1}
    listed = xm_cli("list").stdout
    assert "STATES" in listed.splitlines()[0] and "2 completed, 1 failed" in listed
    assert "states" not in json.loads(xm_cli("list", "--json", "--no-states").stdout)[0]

    # Piped: plain aligned text, args whole.
    piped = xm_cli("show", str(xid))
    assert MARKED in piped.stdout and "tag=[red]hot[/red] lr=0.001" in piped.stdout
    # --json: args whole, usage per ended job.
    shown = json.loads(xm_cli("show", str(xid), "--json").stdout)
    assert shown["work_units"][2]["args"] == ARGS
    usage = shown["work_units"][1]["jobs"][0]["usage"]
    assert usage["elapsed_seconds"] is not None and usage["cpus"] == 1
    assert usage["cpu_efficiency"] is None or 0 <= usage["cpu_efficiency"] <= 1


def test_show_asks_sacct_once_for_the_usage_of_every_ended_job(
    local_cluster: LocalCluster,
    cluster: xm_slurm.SlurmClusterConfig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from counting_transport import CountingTransport

    from xm_slurm.cli import main
    from xm_slurm.experiment import connections as connections_module

    jobs = [sh_job(local_cluster, cluster, f"echo {i}") for i in range(3)]
    xid, _ = asyncio.run(launch(jobs, "usage"))
    assert xm_cli("wait", str(xid)).returncode == 0
    made: list[CountingTransport] = []
    real = connections_module.ssh_transport_factory

    def counting(config: xm_slurm.SlurmSSHConfig) -> CountingTransport:
        made.append(CountingTransport(real(config)))
        return made[-1]

    monkeypatch.setattr(connections_module, "ssh_transport_factory", counting)
    assert main(["show", str(xid), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert all(u["jobs"][0]["usage"]["elapsed_seconds"] is not None for u in shown["work_units"])
    usage_queries = [c for t in made for c in t.commands if "TotalCPU" in c]
    assert len(usage_queries) == 1, usage_queries


def test_cancel_asks_on_a_terminal_and_not_with_yes(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    jobs = [sh_job(local_cluster, cluster, "sleep 300") for _ in range(2)]
    xid, ids = asyncio.run(launch(jobs, "cancel asks"))
    assert set(ids) <= squeue_ids()

    code, screen = run_in_pty(["cancel", "latest"], columns=100, answer="n")
    assert f"Cancel 2 jobs of experiment {xid}" in screen and "[y/N]" in screen, screen
    assert code == 1 and "nothing cancelled" in screen
    assert set(ids) <= squeue_ids()  # refused: still queued or running

    code, screen = run_in_pty(["cancel", "-1", "--yes"], columns=100)
    assert code == 0, screen
    assert "[y/N]" not in screen and "cancelled 2 job(s)" in screen
    deadline = time.monotonic() + 60
    while set(ids) & squeue_ids() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not set(ids) & squeue_ids()
