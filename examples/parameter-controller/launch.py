"""A parameter controller: a Python function that runs ON THE CLUSTER as an auxiliary unit and adds work
units itself, each round choosing the next learning rate from the last round's result.

    source .local-cluster/env.sh && uv run python examples/parameter-controller/launch.py

The launch script only adds the controller and can then exit (here it waits, to show the result); the
controller rebuilds the experiment from the metadata store inside its job and adds the training runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys

from xmanager import xm

import xm_slurm
from xm_slurm.experimental.parameter_controller import parameter_controller

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import local_site  # the site-specific part: your cluster config and registry

TRAIN = "import sys; lr = float(sys.argv[1].split('=')[1]); print(f'final loss {abs(lr - 0.03) * 10:.4f} for lr={lr}')"


async def search(experiment: xm_slurm.SlurmExperiment, *, train: xm.Job, rounds: int, lr: float) -> None:
    """Runs in the controller's job: train, read the loss from the log, adjust the learning rate, repeat."""
    best: tuple[float, float] | None = None
    for round_ in range(rounds):
        wu = await experiment.add(train, args={"args": {"lr": lr}})
        await wu.wait_until_complete()
        losses = [
            float(line.split()[2]) async for line in wu.logs(num_lines=5) if line.startswith("final loss")
        ]
        loss = losses[-1]
        print(f"round {round_}: work unit {wu.work_unit_id} lr={lr} loss={loss}", flush=True)
        if best is None or loss < best[0]:
            best = (loss, lr)
        lr = lr / 3  # the next round's choice depends on this round's outcome in a real search
    assert best is not None
    experiment.context.artifacts["best"] = f"lr={best[1]} loss={best[0]}"


async def main() -> None:
    cluster = local_site.cluster()
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=10)
    )
    train = xm.Job(
        executable=xm_slurm.RemoteImage(image=local_site.python_image(), entrypoint=["python3", "-c", TRAIN]),
        executor=executor,
        name="train",
    )
    # The controller's image needs xm_slurm: at a real site, your project's image (it depends on
    # xmanager-slurm), e.g. experiment.package([xm_slurm.uv_container(...)]).
    controller = parameter_controller(
        executable=xm_slurm.RemoteImage(image=local_site.python_image()),
        executor=xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=local_site.controller_cluster(cluster)),
            time=dt.timedelta(minutes=30),
        ),
    )(search)

    async with xm_slurm.create_experiment("parameter controller") as experiment:
        aux = await experiment.add(controller(train=train, rounds=2, lr=0.1))
        xid = experiment.experiment_id
        print(
            f"experiment {xid}: controller is auxiliary unit {aux.unit_id}, job {aux.launched_jobs[0].address}"
        )
        await aux.wait_until_complete()
        async for line in aux.logs(num_lines=20):
            print(f"    controller: {line}")

    # What the controller added, as any process sees it from the store.
    reloaded = xm_slurm.get_experiment(xid)
    try:
        for wu in reloaded.work_units.values():
            status = await wu.get_status()
            print(f"work unit {wu.work_unit_id} {wu.launched_jobs[0].address}: {status.status.name}")
        print(f"best: {reloaded.context.artifacts.get('best')}")
    finally:
        await reloaded.aclose()


if __name__ == "__main__":
    asyncio.run(main())
