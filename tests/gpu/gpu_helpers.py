"""What a GPU job's container sees, written by the job itself, and the local cluster's GPU facts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from xm_slurm.resources import ResourceType

#: scripts/local-cluster: 4 simulated GPUs per node (/dev/xmgpu0-3); node2 also 2 MIG-like slices.
GPUS_PER_NODE = 4
MIG_DEVICES = {"xmgpu4", "xmgpu5"}
#: The local cluster's gres type of those slices, as a site's SlurmClusterConfig(resources=...) maps it.
MIG_MAP = {ResourceType.H100_80GIB_1G_10GIB: "1g.10gb"}

# Each task writes what its container sees to /out/<work unit>-<task>.json, then waits (up to a minute)
# until `XM_TEST_BARRIER` dumps are there: jobs that must overlap in time hold their GPUs until all have
# looked, so Slurm cannot hand a released GPU to the next one.
SEE_PROGRAM = r"""
import glob, json, os, sys, time
task = os.environ.get('SLURM_PROCID', '0')
seen = {
    'devices': sorted(os.path.basename(d) for d in glob.glob('/dev/xmgpu*')),
    'env': {k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', 'GPU_DEVICE_ORDINAL', 'SLURM_STEP_GPUS',
                                           'SLURM_JOB_GPUS', 'SLURM_STEP_NODELIST', 'SLURM_NODEID', 'SLURM_JOB_ID')},
}
name = '/out/%s-%s.json' % (os.environ['XM_SLURM_WORK_UNIT_ID'], task)
open(name + '.part', 'w').write(json.dumps(seen))
os.rename(name + '.part', name)
print('container sees', json.dumps(seen), flush=True)
want = int(os.environ.get('XM_TEST_BARRIER', '0'))
deadline = time.time() + 60
while len(glob.glob('/out/*.json')) < want and time.time() < deadline:
    time.sleep(0.2)
"""


@dataclass(frozen=True)
class Seen:
    """One task's view: the GPU device files in its container and its GPU variables."""

    devices: list[str]
    env: dict[str, str | None]

    @property
    def host_ids(self) -> list[str]:
        """Slurm's (physical) indices of this task's GPUs."""
        return (self.env["SLURM_STEP_GPUS"] or self.env["SLURM_JOB_GPUS"] or "").split(",")


def read_seen(out: Path) -> dict[str, Seen]:
    """`<work unit>-<task>` -> what that task saw."""
    return {
        p.name.removesuffix(".json"): Seen(**json.loads(p.read_text(encoding="utf-8")))
        for p in sorted(out.glob("*.json"))
    }
