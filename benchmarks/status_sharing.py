"""Status commands of a launch script and `xm-slurm wait` watching the same jobs side by side: what a second
process watching a cluster costs, which is the most that sharing status answers between processes could save.

    uv run python benchmarks/status_sharing.py [--trials 8] [--seconds 60] [--clis 1] [--repeat 3]

Against the local test cluster (`.local-cluster/env.sh`); each scenario's processes share one throwaway
store and local state folder:

  alone          the launch script: `experiment.add` of a sweep of `sleep SECONDS`, then it waits for its
                 work units (`wait_until_complete`) while showing their status every 5 s (`get_status`);
  side by side   the same launch script, and `--clis` processes running the real `xm-slurm wait XID`
                 (`xm_slurm.cli.main`), started as soon as the sweep is submitted.

Commands are counted in each process from asyncssh's own log of every command it sends ("Command: ..."),
so nothing the library runs is replaced. Wall times: the launch script's from the submitted sweep to every
unit complete; the CLI's, its whole run. Prints one JSON line per scenario run, then a table of medians.
Every job it submits is cancelled at the end.

It decided against a status file shared by the processes of one machine (flock'd, per cluster account):
its version of commit eea1a69 (run on the library of commit 72e4a76, which had the file) also ran each side
by side scenario with the file off, and measured with the defaults 18 status commands alone, 19 side by side
with the file, 27 without it (--clis 3: 19 and 47), in the same wall times. Eight squeues in a 75-second
run, and no time, did not pay for the file; it was removed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STATUS_PROGRAMS = ("squeue", "sacct")


class CommandLog(logging.Handler):
    """Counts the commands asyncssh sends (it logs each exec request at INFO), by program name."""

    _COMMAND = re.compile(r"Command: (\S+)")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if (m := self._COMMAND.search(record.getMessage())) is not None:
            self.counts[m.group(1)] += 1

    @classmethod
    def install(cls) -> CommandLog:
        handler = cls()
        logger = logging.getLogger("asyncssh")
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False  # counted, not printed
        return handler


def _env() -> dict[str, str]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from cases import cluster_env  # the suite's reader of .local-cluster/env.sh

    return cluster_env()


def _report(role: str, counter: CommandLog, wall: float, **extra: Any) -> None:
    counts = {p: counter.counts[p] for p in STATUS_PROGRAMS}
    usage = os.times()
    print(json.dumps({"role": role, **counts, "wall_s": wall, "cpu_s": usage.user + usage.system, **extra}))


async def launch(trials: int, seconds: int) -> None:
    """The launch script: add a sweep, print its xid, wait for every unit while showing their status."""
    import datetime as dt

    from xmanager import xm

    import xm_slurm
    from xm_slurm.scheduler import cancel

    counter = CommandLog.install()
    env = _env()
    ssh = xm_slurm.SlurmSSHConfig(
        host=env["XM_TEST_SSH_HOST"], port=int(env["XM_TEST_SSH_PORT"]), user=env["XM_TEST_SSH_USER"]
    )
    cluster = xm_slurm.SlurmClusterConfig(
        name="local",
        ssh=ssh,
        runtime=xm_slurm.ContainerRuntime.PODMAN,
        partition=env["XM_TEST_SLURM_PARTITION"],
    )
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )
    image = xm_slurm.RemoteImage(image=env["XM_TEST_IMAGE"], entrypoint=["sleep"])
    job = xm.Job(executable=image, executor=executor, args=[str(seconds)])
    async with xm_slurm.create_experiment("status sharing benchmark") as experiment:
        units = await experiment.add(
            job, args=[xm_slurm.JobArgs(env_vars={"T": str(i)}) for i in range(trials)]
        )
        ids = [str(j.job_id) for u in units for j in u.slurm_jobs]
        print(json.dumps({"xid": experiment.experiment_id, "jobs": ids}), flush=True)
        start = time.perf_counter()
        try:
            done = asyncio.ensure_future(asyncio.gather(*(u.wait_until_complete() for u in units)))
            shown = 0
            while not done.done():
                await asyncio.gather(*(u.get_status() for u in units))
                shown += 1
                await asyncio.wait([done], timeout=5)
            await done
        except BaseException:
            await cancel(
                experiment.connections.transport(ssh), [j.job_id for u in units for j in u.slurm_jobs]
            )
            raise
        wall = time.perf_counter() - start
    _report("launch", counter, wall, status_shown=shown)


def cli_wait(xid: str) -> None:
    """The real `xm-slurm wait XID`, in this process so that its commands are counted."""
    from xm_slurm.cli import main

    counter = CommandLog.install()
    start = time.perf_counter()
    code = main(["wait", xid])
    _report("cli", counter, time.perf_counter() - start, exit_code=code)


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        sys.exit(f"benchmark process {process.args} failed:\n{err[-4000:]}")
    return json.loads(out.strip().splitlines()[-1])


def scenario(clis: int, trials: int, seconds: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """One launch script and `clis` CLI waiters (started when the sweep is submitted); each one's report."""
    folder = tempfile.mkdtemp(prefix="xm-bench-status-")
    ssh_config = Path(folder, "ssh_config")
    ssh_config.write_text(
        f"Host {env['XM_TEST_SSH_HOST']}*\n    IdentityFile {env['XM_TEST_SSH_KEY']}\n"
        f"    UserKnownHostsFile {env['XM_TEST_SSH_KNOWN_HOSTS']}\n"
    )
    child_env = {
        **env,
        "XM_SLURM_STATE_DIR": str(Path(folder, "state")),  # one store (and local state) for the scenario
        "XM_SLURM_SSH_CONFIG": str(ssh_config),
        "XM_SLURM_API_BACKEND": "sqlite",
    }
    launcher = _start(["launch", str(trials), str(seconds)], child_env)
    assert launcher.stdout is not None
    first = launcher.stdout.readline()
    if not first:
        _finish(launcher, 60)
    submitted = json.loads(first)
    try:
        waiters = [_start(["cli", str(submitted["xid"])], child_env) for _ in range(clis)]
        reports = [_finish(launcher, 900), *(_finish(w, 900) for w in waiters)]
    finally:
        subprocess.run(["scancel", *submitted["jobs"]], check=False, capture_output=True)
    return reports


def _summary(name: str, runs: list[list[dict[str, Any]]]) -> str:
    status = [sum(r["squeue"] + r["sacct"] for r in run) for run in runs]
    sacct = [sum(r["sacct"] for r in run) for run in runs]
    launch_wall = [run[0]["wall_s"] for run in runs]
    cli_wall = [r["wall_s"] for run in runs for r in run[1:]]
    cpu = [sum(r["cpu_s"] for r in run) for run in runs]
    waits = f"{statistics.median(cli_wall):.1f} s" if cli_wall else "-"
    commands = f"{statistics.median(status):.0f} ({min(status)}-{max(status)})"
    return (
        f"| {name:<14} | {commands:>15} | {statistics.median(sacct):>5.0f} | "
        f"{statistics.median(launch_wall):>10.1f} s | {waits:>9} | {statistics.median(cpu):>7.1f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=8, help="work units of the sweep")
    parser.add_argument("--seconds", type=int, default=60, help="how long each job sleeps")
    parser.add_argument("--clis", type=int, default=1, help="`xm-slurm wait` processes beside the launch")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each scenario (medians reported)")
    options = parser.parse_args()
    env = _env()
    scenarios: dict[str, list[list[dict[str, Any]]]] = {"alone": [], "side by side": []}
    for _ in range(options.repeat):  # interleaved, so that the cluster's load drifts evenly over both
        scenarios["alone"].append(scenario(0, options.trials, options.seconds, env))
        scenarios["side by side"].append(scenario(options.clis, options.trials, options.seconds, env))
    for name, runs in scenarios.items():
        for run in runs:
            print(json.dumps({"scenario": name, "processes": run}))
    print(
        f"| {'scenario':<14} | status commands | sacct | launch waits | CLI waits | CPU (all) |\n"
        f"|{'-' * 16}|{'-' * 17}|{'-' * 7}|{'-' * 14}|{'-' * 11}|{'-' * 11}|"
    )
    for name, runs in scenarios.items():
        print(_summary(name, runs))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "launch":
        asyncio.run(launch(int(sys.argv[2]), int(sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "cli":
        cli_wait(sys.argv[2])
    else:
        main()
