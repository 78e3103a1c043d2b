"""Helpers of the multi-node tests (a module name unique across the test folders)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from render_helpers import cluster_config, shared_dir, write_script

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import Slurm
from xm_slurm.rendering import JobComponent, JobScriptRequest, Trial
from xm_slurm.resources import JobRequirements

# Rank 0 listens on MASTER_ADDR:MASTER_PORT; every other rank connects (retrying while rank 0 starts),
# sends its rank and reads back the sum of all ranks (a plain TCP all-reduce).
EXCHANGE = r"""
import os, socket, time
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
if rank == 0:
    server = socket.create_server(("", port))
    peers = [server.accept()[0] for _ in range(world - 1)]
    total = rank + sum(int(p.makefile().readline()) for p in peers)
    for p in peers:
        p.sendall(b"%d\n" % total)
else:
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    conn.sendall(b"%d\n" % rank)
    total = int(conn.makefile().readline())
print(
    f"XCHG rank={rank} world={world} node_rank={os.environ['NODE_RANK']} local_rank={os.environ['LOCAL_RANK']} "
    f"local_world={os.environ['LOCAL_WORLD_SIZE']} master={addr}:{port} node={os.environ['SLURMD_NODENAME']} "
    f"sum={total}",
    flush=True,
)
"""


def one_job(
    cluster: SlurmClusterConfig,
    image: str,
    entrypoint: Sequence[str],
    state_dir: str,
    *,
    requirements: dict[str, Any] | None = None,
    time: dt.timedelta = dt.timedelta(minutes=5),
    components: int = 1,
    env_vars: dict[str, str] | None = None,
    **executor_kw: Any,
) -> JobScriptRequest:
    executor = Slurm(
        requirements=JobRequirements(**{"CPU": 1, **(requirements or {})}, cluster=cluster),
        time=time,
        **executor_kw,
    )
    job = JobComponent(
        executable=RemoteImage(image=image, entrypoint=list(entrypoint)),
        executor=executor,
        env_vars=env_vars or {},
    )
    return JobScriptRequest(
        cluster=cluster,
        jobs=[job] * components,
        trials=[Trial(work_unit_id=1)],
        experiment_id=42,
        job_name="xm-multinode-test",
        state_dir=state_dir,
    )


def debug(req: JobScriptRequest) -> JobScriptRequest:
    return dataclasses.replace(req, debug=True)


def log_of(req: JobScriptRequest, job_id: str, suffix: str = "") -> str:
    return Path(req.experiment_dir, f"slurm-{job_id}{suffix}.out").read_text(errors="replace")


__all__ = ["EXCHANGE", "cluster_config", "debug", "log_of", "one_job", "shared_dir", "write_script"]
