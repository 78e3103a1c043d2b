"""One benchmark case per process (so its peak memory is its own): `python benchmarks/cases.py CASE ...`.

    launch N      experiment.add of an N-trial sweep (held behind a gate job) vs raw `sbatch --array`
    poll N SECS   commands issued while N jobs are tracked by N waiting work units, for SECS seconds
    complete N    an N-trial sweep of busybox `true` run to the end at the cluster's real MaxArraySize

Each prints one JSON line. Every job it submits is cancelled before it exits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "fakes"))  # CountingTransport: test instrumentation, not library

from xm_slurm.scheduler.limits import read_limits  # noqa: E402  (light: no XManager)


def cluster_env() -> dict[str, str]:
    values = dict(os.environ)
    env_file = REPO / ".local-cluster" / "env.sh"
    if "XM_TEST_SSH_HOST" not in values and env_file.is_file():
        for line in env_file.read_text().splitlines():
            words = shlex.split(line, comments=True)
            if len(words) == 2 and words[0] == "export":
                name, value = words[1].split("=", 1)
                values[name] = value
    return values


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Setup:
    def __init__(self) -> None:
        os.environ["XM_SLURM_STATE_DIR"] = tempfile.mkdtemp(prefix="xm-bench-")  # a throwaway store
        from counting_transport import CountingTransport
        from xmanager import xm

        import xm_slurm
        from xm_slurm.transport import SSHTransport

        env = cluster_env()
        self.ssh = xm_slurm.SlurmSSHConfig(
            host=env["XM_TEST_SSH_HOST"],
            port=int(env["XM_TEST_SSH_PORT"]),
            user=env["XM_TEST_SSH_USER"],
            client_keys=(env["XM_TEST_SSH_KEY"],),
            known_hosts=env["XM_TEST_SSH_KNOWN_HOSTS"],
            config_files=(),
        )
        cluster = xm_slurm.SlurmClusterConfig(
            name="local",
            ssh=self.ssh,
            runtime=xm_slurm.ContainerRuntime.PODMAN,
            partition=env["XM_TEST_SLURM_PARTITION"],
        )
        self.transports: list[CountingTransport] = []

        def factory(config: xm_slurm.SlurmSSHConfig) -> CountingTransport:
            self.transports.append(CountingTransport(SSHTransport(config)))
            return self.transports[-1]

        self.factory = factory
        executor = xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
        )
        image = xm_slurm.RemoteImage(image=env["XM_TEST_IMAGE"], entrypoint=["true"])
        self.job = xm.Job(executable=image, executor=executor)

    def count(self, program: str) -> int:
        return sum(t.counts[program] for t in self.transports)

    def total(self) -> int:
        return sum(sum(v for k, v in t.counts.items() if not k.startswith("<")) for t in self.transports)


async def gate(transport: Any) -> str:
    out = await transport.run("sbatch --parsable --hold --output=/dev/null --time=1 --wrap true")
    held = out.stdout.strip().split(";")[0]
    # Whatever happens next, cancelling the gate makes everything that waits on it go away too.
    import atexit
    import subprocess

    atexit.register(subprocess.run, ["scancel", held], check=False)
    return held


async def wait_for_room(transport: Any, tasks: int) -> float:
    """Wait until slurmctld holds few enough job records for `tasks` more; returns the seconds waited.

    Every array task counts against MaxJobCount, and finished or cancelled ones are kept for MinJobAge
    (300 s on the test cluster), so back-to-back 5,000-task runs must wait for the purge.
    """
    limits = await read_limits(transport)
    start = time.perf_counter()
    while time.perf_counter() - start < 900:
        held = await transport.run("squeue -h -r -t all -o %i | wc -l")
        if int(held.stdout.strip() or 0) + tasks + 200 <= limits.max_job_count:
            break
        await asyncio.sleep(5)
    return time.perf_counter() - start


async def _timed_add(s: Setup, held: str, n: int) -> tuple[float, int, int, list[Any]]:
    """One sweep launch in a new experiment: (seconds, sbatch calls, work units recorded, array base ids)."""
    import xm_slurm
    from xm_slurm.dependencies import afterok

    sweep = [xm_slurm.JobArgs(args={"trial": i}, env_vars={"TRIAL": str(i)}) for i in range(n)]
    async with xm_slurm.create_experiment("launch benchmark", transport_factory=s.factory) as experiment:
        transport = experiment.connections.transport(s.ssh)
        await transport.run("true")  # connect first: timings exclude the SSH handshake
        await experiment.connections.state_root(s.ssh)
        before = s.count("sbatch")
        start = time.perf_counter()
        units = await experiment.add(s.job, args=sweep, dependency=afterok(held))
        launch_s = time.perf_counter() - start
        recorded = len(xm_slurm.api.client().get_experiment(experiment.experiment_id).work_units)
    bases = list({j.job_id.base for u in units for j in u.slurm_jobs})
    return launch_s, s.count("sbatch") - before, recorded, bases


async def launch(n: int) -> dict[str, Any]:
    from xm_slurm.scheduler import cancel

    s = Setup()
    transport = s.factory(s.ssh)
    waited = await wait_for_room(transport, n + 1)
    held = await gate(transport)
    # The first launch on this machine asks the cluster's limits (scontrol); later ones within the hour reuse
    # them from the local state folder (scheduler.limits.cached_limits), so both are measured.
    cold_s, arrays, recorded, bases = await _timed_add(s, held, n)
    # Pending array tasks count against MaxJobCount (10,000 here): cancel each sweep before the next run.
    await cancel(transport, bases)
    waited += await wait_for_room(transport, n)
    launch_s, _, _, bases = await _timed_add(s, held, n)
    await cancel(transport, bases)
    waited += await wait_for_room(transport, n)

    start = time.perf_counter()
    raw = []
    for first in range(0, n, 1001):  # raw sbatch splits at MaxArraySize too
        last = min(n, first + 1001) - 1
        out = await transport.run(
            f"sbatch --parsable --array=0-{last - first} --dependency=afterok:{held} "
            "--output=/dev/null --time=1 --wrap true"
        )
        raw.append(out.stdout.strip().split(";")[0])
    raw_s = time.perf_counter() - start
    await cancel(transport, [held, *raw])
    await transport.close()
    return {
        "trials": n,
        "cold_s": cold_s,
        "launch_s": launch_s,
        "raw_s": raw_s,
        "arrays": arrays,
        "raw_arrays": len(raw),
        "recorded": recorded,
        "peak_mib": peak_mib(),
        "waited_for_room_s": waited,
    }


async def poll(n: int, seconds: float) -> dict[str, Any]:
    import xm_slurm
    from xm_slurm.dependencies import afterok
    from xm_slurm.scheduler import cancel

    s = Setup()
    async with xm_slurm.create_experiment("poll benchmark", transport_factory=s.factory) as experiment:
        transport = experiment.connections.transport(s.ssh)
        await wait_for_room(transport, n + 1)
        held = await gate(transport)
        units = await experiment.add(
            s.job, args=[xm_slurm.JobArgs(args={"trial": i}) for i in range(n)], dependency=afterok(held)
        )
        ids = [j.job_id for u in units for j in u.slurm_jobs]
        before = s.total()
        await asyncio.gather(*(u.get_status() for u in units))
        status_all = s.total() - before
        watcher = experiment.connections.watcher(s.ssh)
        before, sacct0, polls0, reused0 = s.total(), s.count("sacct"), watcher.polls, watcher.reused
        waits = [asyncio.ensure_future(watcher.wait([j])) for j in ids]
        await asyncio.sleep(seconds)
        commands, sacct = s.total() - before, s.count("sacct") - sacct0
        ticks = watcher.polls - polls0 + watcher.reused - reused0
        for w in waits:
            w.cancel()
        await cancel(transport, [held, *{j.base for j in ids}])
    return {
        "tracked": len(ids),
        "seconds": seconds,
        "status_all_commands": status_all,
        "ticks": ticks,
        "commands": commands,
        "sacct": sacct,
        "per_minute": commands * 60 / seconds,
    }


async def complete(n: int) -> dict[str, Any]:
    import xm_slurm
    from xm_slurm.scheduler import cancel

    s = Setup()
    async with xm_slurm.create_experiment("complete benchmark", transport_factory=s.factory) as experiment:
        await wait_for_room(experiment.connections.transport(s.ssh), n)
        start = time.perf_counter()
        units = await experiment.add(s.job, args=[xm_slurm.JobArgs(args={"trial": i}) for i in range(n)])
        launched = time.perf_counter() - start
        ids = [j.job_id for u in units for j in u.slurm_jobs]
        try:
            finals = await experiment.connections.watcher(s.ssh).wait(ids, timeout=3600)
        finally:
            await cancel(experiment.connections.transport(s.ssh), {j.base for j in ids})
        total = time.perf_counter() - start
    states = sorted({f.state.value for f in finals.values()})
    arrays = len({j.job_id for j in ids})
    return {
        "trials": n,
        "arrays": arrays,
        "launch_s": launched,
        "total_s": total,
        "states": states,
        "sacct": s.count("sacct"),
    }


def main() -> None:
    case, *args = sys.argv[1:]
    if case == "launch":
        result = asyncio.run(launch(int(args[0])))
    elif case == "poll":
        result = asyncio.run(poll(int(args[0]), float(args[1])))
    elif case == "complete":
        result = asyncio.run(complete(int(args[0])))
    else:
        sys.exit(f"unknown case {case!r}: launch, poll or complete")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
