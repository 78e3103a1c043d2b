"""Launch scripts run as separate processes: idempotent identity, and get_experiment(xid) elsewhere."""

from __future__ import annotations

import json
import os

import counting_transport
import pytest
from experiment_fixtures import DUMP, cluster_literal, run_script
from local_cluster import LocalCluster

import xm_slurm
from xm_slurm import api

pytestmark = pytest.mark.cluster

PRELUDE = """
import asyncio, datetime as dt, json, sys
from xmanager import xm
import xm_slurm
cluster = {cluster}
executor = xm_slurm.Slurm(requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5))
image = xm_slurm.RemoteImage(image={image!r}, entrypoint=["python3", "-c", {dump!r}])
job = xm.Job(executable=image, executor=executor, args={{"seed": 1}})
"""

LAUNCH_WITH_IDENTITY = """
sys.path.insert(0, sys.argv[2])  # tests/fakes: sbatch is counted by the test's counting wrapper
from counting_transport import CountingTransport
from xm_slurm.transport import SSHTransport
transports = []

def counting(config):
    transports.append(CountingTransport(SSHTransport(config)))
    return transports[-1]

async def main():
    async with xm_slurm.get_experiment(int(sys.argv[1]), transport_factory=counting) as experiment:
        wu = await experiment.add(job, identity="train-seed-1")
        print(json.dumps({"wid": wu.work_unit_id, "sbatch": sum(t.counts["sbatch"] for t in transports),
                          "jobs": [str(j.job_id) for j in wu.slurm_jobs]}))
asyncio.run(main())
"""

RELOAD = """
async def main():
    experiment = xm_slurm.get_experiment(int(sys.argv[1]))
    out = {}
    for wid, wu in experiment.work_units.items():
        await wu.wait_until_complete()
        out[wid] = {"status": (await wu.get_status()).status.name, "jobs": [j.address for j in wu.launched_jobs],
                    "logs": [line async for line in wu.logs(num_lines=5)], "identity": wu.identity,
                    "artifacts": dict(wu.context.artifacts)}
    await experiment.aclose()
    print(json.dumps(out))
asyncio.run(main())
"""


def _prelude(lc: LocalCluster) -> str:
    return PRELUDE.format(cluster=cluster_literal(lc), image=lc.python_image, dump=DUMP)


async def test_same_identity_twice_submits_once(local_cluster: LocalCluster) -> None:
    # Both launches add to one stored experiment (a new experiment per run could not share an identity).
    xid = api.client().insert_experiment(api.ExperimentPatch(title="identity"))
    script = _prelude(local_cluster) + LAUNCH_WITH_IDENTITY
    fakes = os.path.dirname(counting_transport.__file__)
    first = run_script(script, str(xid), fakes)
    assert first.returncode == 0, first.stderr
    second = run_script(script, str(xid), fakes)
    assert second.returncode == 0, second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["sbatch"] == 1 and b["sbatch"] == 0
    assert a["wid"] == b["wid"] == 1 and a["jobs"] == b["jobs"]
    stored = api.client().get_experiment(xid)
    assert [(wu.wid, wu.identity, len(wu.jobs)) for wu in stored.work_units] == [(1, "train-seed-1", 1)]


async def test_get_experiment_in_another_process(local_cluster: LocalCluster) -> None:
    script = _prelude(local_cluster)
    async with xm_slurm.create_experiment("reload") as experiment:
        exec(script, namespace := {})  # the same job, built here
        job = namespace["job"]
        single = await experiment.add(job, identity="single")
        sweep = await experiment.add(job, args=[{"args": {"lr": lr}} for lr in (1, 2)])
        single.context.artifacts["ckpt"] = "file:///tmp/ckpt"
        xid = experiment.experiment_id
        jobs = {wu.work_unit_id: [str(j.job_id) for j in wu.slurm_jobs] for wu in [single, *sweep]}
    result = run_script(script + RELOAD, str(xid))
    assert result.returncode == 0, result.stderr
    reloaded = {int(k): v for k, v in json.loads(result.stdout).items()}
    assert {wid: v["jobs"] for wid, v in reloaded.items()} == jobs
    assert {v["status"] for v in reloaded.values()} == {"COMPLETED"}
    assert reloaded[1]["identity"] == "single" and reloaded[1]["artifacts"] == {"ckpt": "file:///tmp/ckpt"}
    for wid, lr in ((2, 1), (3, 2)):
        [line] = [x for x in reloaded[wid]["logs"] if x.startswith("XMDUMP ")]
        assert json.loads(line[len("XMDUMP ") :])["argv"] == ["--seed=1", f"--lr={lr}"]
