"""Experiment metadata: annotations, tags, artifacts (experiment and work unit), and the configs.

    source .local-cluster/env.sh && uv run python examples/metadata/launch.py

Every change is written through to the metadata store (SQLite by default, or the REST API); the script then
reloads the experiment with `xm_slurm.get_experiment(xid)`, as any other process (a notebook, the CLI) would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys

from xmanager import xm

import xm_slurm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import local_site  # the site-specific part: your cluster config and registry

GRAPH = """digraph experiment {
  prepare -> train -> evaluate;
}"""


async def main() -> None:
    cluster = local_site.cluster()
    executable = xm_slurm.RemoteImage(
        image=local_site.python_image(),
        entrypoint=["python3", "-c", "import sys; print('training', sys.argv[1:])"],
    )
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )
    async with xm_slurm.create_experiment("metadata example") as experiment:
        annotations = experiment.context.annotations
        annotations.description = "Shows what an experiment records besides its jobs"
        annotations.note = "baseline run; compare with next week's"
        annotations.tags.add("example")
        annotations.tags.add("baseline")
        experiment.context.artifacts["wandb"] = "https://wandb.ai/me/project/runs/abc123"
        # The launch configuration, stored as config artifacts named PYTHON and GRAPHVIZ.
        experiment.context.python_config = json.dumps({"lr": 0.01, "epochs": 3}, indent=2)
        experiment.context.graphviz_config = GRAPH

        wu = await experiment.add(xm.Job(executable=executable, executor=executor, args={"lr": 0.01}))
        wu.context.artifacts["checkpoint"] = "file:///checkpoints/wu1/final.pt"
        await wu.wait_until_complete()
        xid = experiment.experiment_id

    reloaded = xm_slurm.get_experiment(xid)
    try:
        context = reloaded.context
        print(f"experiment {xid}: {context.annotations.title!r}")
        print(f"  description: {context.annotations.description}")
        print(f"  note: {context.annotations.note}")
        print(f"  tags: {sorted(context.annotations.tags)}")
        print(f"  artifacts: {dict(context.artifacts)}")
        print(f"  python config: {json.loads(context.python_config or '{}')}")
        print(f"  graphviz config: {len(context.graphviz_config or '')} characters")
        for unit in reloaded.work_units.values():
            status = await unit.get_status()
            print(
                f"  work unit {unit.work_unit_id}: {status.status.name}, artifacts {dict(unit.context.artifacts)}"
            )
    finally:
        await reloaded.aclose()


if __name__ == "__main__":
    asyncio.run(main())
