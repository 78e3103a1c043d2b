"""A pipeline of dependent jobs: prepare -> a 2-trial train sweep -> per-trial eval sweep -> report.

    source .local-cluster/env.sh && uv run python examples/job-dependencies/launch.py

* `train` starts after `prepare` completed (`--dependency=afterok:<prepare>`);
* `evaluate` trial i starts after `train` trial i completed: one dependency per trial, which becomes
  `--dependency=aftercorr:<train array>`;
* `report` waits for every evaluation to finish, whatever their outcome (`after_finished()`, combined with &).
Every job appends a line to one shared file, so the order they ran in is visible afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import operator
import os
import sys
from pathlib import Path

from xmanager import xm

import xm_slurm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import local_site  # the site-specific part: your cluster config and registry

STEP = """
import os, sys, time
line = f"{sys.argv[1]} {' '.join(sys.argv[2:])}".strip()
time.sleep(0.5)
with open(f"/shared/{os.environ['XM_SLURM_EXPERIMENT_ID']}.log", "a") as f:
    f.write(line + "\\n")
print("ran", line)
"""


async def main() -> None:
    shared = local_site.shared_folder("job-dependencies")
    cluster = local_site.cluster(mounts={shared: "/shared"})
    executable = xm_slurm.RemoteImage(image=local_site.python_image(), entrypoint=["python3", "-c", STEP])
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )

    def job(name: str) -> xm.Job:
        return xm.Job(executable=executable, executor=executor, name=name, args=[name])

    async with xm_slurm.create_experiment("job dependencies") as experiment:
        prepare = await experiment.add(job("prepare"))
        train = await experiment.add(
            job("train"),
            args=[{"args": [f"lr={lr}"]} for lr in (0.1, 0.01)],
            dependency=prepare.after_completed(),
        )
        evaluate = await experiment.add(
            job("evaluate"),
            args=[{"args": [f"of-work-unit={wu.work_unit_id}"]} for wu in train],
            dependency=[wu.after_completed() for wu in train],  # trial i after train trial i: aftercorr
        )
        report = await experiment.add(
            job("report"),
            dependency=functools.reduce(operator.and_, (wu.after_finished() for wu in evaluate)),
        )
        print(f"experiment {experiment.experiment_id}")
        for wu in [prepare, *train, *evaluate, report]:
            await wu.wait_until_complete()
            print(f"work unit {wu.work_unit_id} ({wu.launched_jobs[0].address}): COMPLETED")
        order = await asyncio.to_thread(Path(shared, f"{experiment.experiment_id}.log").read_text)
        print("order the jobs ran in:", " | ".join(order.splitlines()))


if __name__ == "__main__":
    asyncio.run(main())
