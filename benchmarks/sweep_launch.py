"""Time to launch a sweep: `experiment.add(job, args=[...N trials...])` until every work unit is recorded,
next to a raw `sbatch --array=0-(N-1) --wrap true` over the same SSH connection.

    uv run python benchmarks/sweep_launch.py --trials 1000

Talks to the local test cluster (`.local-cluster/env.sh`, or the XM_TEST_* variables), uses a throwaway
SQLite store, checks that the sweep was ONE sbatch, and cancels every job it submitted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    from cases import cluster_env  # the suite's reader of .local-cluster/env.sh

    return cluster_env()


async def main(trials: int) -> None:
    env = _env()
    os.environ["XM_SLURM_STATE_DIR"] = tempfile.mkdtemp(prefix="xm-bench-")  # a throwaway store
    from counting_transport import CountingTransport  # on sys.path since `cases` was imported
    from xmanager import xm

    import xm_slurm
    from xm_slurm import api
    from xm_slurm.scheduler import cancel
    from xm_slurm.transport import SSHTransport

    ssh = xm_slurm.SlurmSSHConfig(
        host=env["XM_TEST_SSH_HOST"],
        port=int(env["XM_TEST_SSH_PORT"]),
        user=env["XM_TEST_SSH_USER"],
        client_keys=(env["XM_TEST_SSH_KEY"],),
        known_hosts=env["XM_TEST_SSH_KNOWN_HOSTS"],
        config_files=(),
    )
    cluster = xm_slurm.SlurmClusterConfig(
        name="local",
        ssh=ssh,
        runtime=xm_slurm.ContainerRuntime.PODMAN,
        partition=env["XM_TEST_SLURM_PARTITION"],
    )
    transports: list[CountingTransport] = []

    def factory(config: xm_slurm.SlurmSSHConfig) -> CountingTransport:
        transports.append(CountingTransport(SSHTransport(config)))
        return transports[-1]

    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=1)
    )
    image = xm_slurm.RemoteImage(image=env["XM_TEST_IMAGE"], entrypoint=["true"])
    job = xm.Job(executable=image, executor=executor)
    sweep = [xm_slurm.JobArgs(args={"trial": i}, env_vars={"TRIAL": str(i)}) for i in range(trials)]

    async with xm_slurm.create_experiment("sweep launch benchmark", transport_factory=factory) as experiment:
        transport = experiment.connections.transport(ssh)
        await transport.run("true")  # connect first: both timings below exclude the SSH handshake
        await experiment.connections.state_root(ssh)
        store = api.client()
        calls = {"replace_jobs": 0}
        for name in calls:  # count the store calls of the launch (each is one transaction)
            original = getattr(store, f"a{name}")

            async def counted(*a: object, _o: object = original, _n: str = name) -> None:
                calls[_n] += 1
                await _o(*a)  # type: ignore[operator]

            setattr(store, f"a{name}", counted)

        start = time.perf_counter()
        units = await experiment.add(job, args=sweep)
        launch = time.perf_counter() - start
        recorded = len(store.get_experiment(experiment.experiment_id).work_units)

        start = time.perf_counter()
        raw = await transport.run(f"sbatch --parsable --array=0-{trials - 1} --output=/dev/null --wrap true")
        raw_time = time.perf_counter() - start

        ids = {j.job_id.base for u in units for j in u.slurm_jobs}
        await cancel(transport, [*ids, raw.stdout.strip().split(";")[0]])
        sbatch = sum(t.counts["sbatch"] for t in transports)

    width = 46
    print(f"{'what':<{width}} {'seconds':>8}")
    print(f"{f'experiment.add of a {trials}-trial sweep':<{width}} {launch:>8.3f}")
    print(f"{f'raw sbatch --array=0-{trials - 1} --wrap true':<{width}} {raw_time:>8.3f}")
    print(f"work units recorded: {recorded}; sbatch calls: {sbatch} (1 sweep + 1 raw); store calls: {calls}")
    # One transaction records the units and their pending rows before sbatch, one swaps in the real ids.
    if sbatch != 2 or recorded != trials or calls != {"replace_jobs": 2}:
        sys.exit("the sweep was not ONE sbatch and two store transactions")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--trials", type=int, default=1000, help="sweep size (the default MaxArraySize is 1001)"
    )
    asyncio.run(main(parser.parse_args().trials))
