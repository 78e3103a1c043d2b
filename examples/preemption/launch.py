"""A preemptible program: it checkpoints when Slurm's timeout signal arrives, exits with the requeue code,
and resumes where it stopped when Slurm runs it again.

    source .local-cluster/env.sh && uv run python examples/preemption/launch.py

`Slurm(timeout_signal=SIGUSR2, timeout_signal_grace_period=...)` asks Slurm to signal the program that long
before the time limit (`--signal=USR2@<seconds>`); exiting with `requeue_on_exit_code` (42) makes the job
script requeue the job (up to `requeue_max_attempts` times). To see it without waiting for a time limit,
send the signal yourself while the job runs (the launch script prints the job id):

    scancel --signal=USR2 <job id>
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys

from xmanager import xm

import xm_slurm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import local_site  # the site-specific part: your cluster config and registry

TRAIN = """
import json, os, signal, sys, time
from pathlib import Path

TOTAL_STEPS = int(sys.argv[1])
run = f"/checkpoints/{os.environ['XM_SLURM_EXPERIMENT_ID']}-{os.environ['XM_SLURM_WORK_UNIT_ID']}"
checkpoint, progress = Path(run + ".ckpt.json"), Path(run + ".progress")
state = json.loads(checkpoint.read_text()) if checkpoint.exists() else {"step": 0}
restart = os.environ.get("SLURM_RESTART_COUNT", "0")
print(f"run {restart}: starting at step {state['step']}", flush=True)

preempted = False
def on_timeout(signum, frame):
    global preempted
    preempted = True  # finish the current step, then checkpoint
signal.signal(signal.SIGUSR2, on_timeout)

while state["step"] < TOTAL_STEPS:
    time.sleep(0.5)  # one training step
    state["step"] += 1
    progress.write_text(str(state["step"]))
    if preempted:
        tmp = checkpoint.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(checkpoint)  # atomic: a half-written checkpoint is never read
        print(f"run {restart}: timeout signal: checkpointed step {state['step']}, asking for a requeue", flush=True)
        sys.exit(42)
print(f"run {restart}: finished all {TOTAL_STEPS} steps", flush=True)
"""


async def main() -> None:
    checkpoints = local_site.shared_folder("preemption")
    cluster = local_site.cluster(mounts={checkpoints: "/checkpoints"})
    executable = xm_slurm.RemoteImage(image=local_site.python_image(), entrypoint=["python3", "-c", TRAIN])
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster),
        time=dt.timedelta(minutes=10),
        timeout_signal=signal.SIGUSR2,
        timeout_signal_grace_period=dt.timedelta(minutes=2),
        requeue=True,
        requeue_on_exit_code=42,
        requeue_max_attempts=3,
    )
    async with xm_slurm.create_experiment("preemption") as experiment:
        wu = await experiment.add(xm.Job(executable=executable, executor=executor, args=["30"]))
        print(f"experiment {experiment.experiment_id}: job {wu.launched_jobs[0].address}", flush=True)
        await wu.wait_until_complete()
        print(f"work unit {wu.work_unit_id}: {(await wu.get_status()).status.name}")
        async for line in wu.logs(num_lines=20):
            print(f"    {line}")


if __name__ == "__main__":
    asyncio.run(main())
