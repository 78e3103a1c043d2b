"""`xm_slurm.job_blocks`: the module 0.4.x launch scripts import `JobArgs` from.

    from xm_slurm.job_blocks import JobArgs

The type lives in `xm_slurm.types` (also `xm_slurm.JobArgs`); this module keeps the 0.4.x import path.
"""

from __future__ import annotations

from xm_slurm.types import JobArgs

__all__ = ["JobArgs"]
