"""A two-process distributed job: an `xm.JobGroup` is ONE heterogeneous Slurm job whose members start together.

    source .local-cluster/env.sh && uv run python examples/job-group/launch.py

The `server` member listens on a port; the `worker` member finds the server's node through the node list
Slurm exports to every member (`SLURM_JOB_NODELIST_HET_GROUP_0`), connects, and exchanges a message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys

from xmanager import xm

import xm_slurm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import local_site  # the site-specific part: your cluster config and registry

PEER = """
import os, socket, sys, time
role = sys.argv[1]
# Member 0's nodes, as Slurm exports them to every member of the heterogeneous job. On several nodes,
# expand a range such as node[1-4] with `scontrol show hostnames` (here: one node, a plain name).
server_node = os.environ["SLURM_JOB_NODELIST_HET_GROUP_0"].split(",")[0]
try:
    server_host = socket.gethostbyname(server_node)
except OSError:
    # Node names that DNS does not know (test clusters): the steps were launched by `srun` in the batch
    # script, which runs on member 0's first node, so its address is the server's.
    server_host = os.environ["SLURM_LAUNCH_NODE_IPADDR"]
port = 20000 + int(os.environ.get("SLURM_HET_JOB_ID") or os.environ["SLURM_JOB_ID"]) % 20000
print(f"{role}: server is {server_node} ({server_host}) port {port}", flush=True)
if role == "server":
    with socket.create_server(("", port)) as server:
        server.settimeout(120)
        conn, _ = server.accept()
        with conn:
            message = conn.recv(1024).decode()
            print(f"server: got {message!r}", flush=True)
            conn.sendall(b"hello from the server")
else:
    deadline = time.monotonic() + 120
    while True:  # the server may not listen yet
        try:
            conn = socket.create_connection((server_host, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with conn:
        conn.sendall(b"hello from the worker")
        print(f"worker: got {conn.recv(1024).decode()!r}", flush=True)
"""


async def main() -> None:
    cluster = local_site.cluster()
    executable = xm_slurm.RemoteImage(image=local_site.python_image(), entrypoint=["python3", "-c", PEER])
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )
    group = xm.JobGroup(
        server=xm.Job(executable=executable, executor=executor, args=["server"]),
        worker=xm.Job(executable=executable, executor=executor, args=["worker"]),
    )
    async with xm_slurm.create_experiment("job group") as experiment:
        wu = await experiment.add(group)
        print(
            f"experiment {experiment.experiment_id}: work unit {wu.work_unit_id}, jobs {[j.address for j in wu.launched_jobs]}"
        )
        await wu.wait_until_complete()
        print(f"work unit {wu.work_unit_id}: {(await wu.get_status()).status.name}")
        async for line in wu.logs(num_lines=20):
            print(f"    {line}")


if __name__ == "__main__":
    asyncio.run(main())
