"""The XManager integration (layer 7): experiments, work units and their metadata context.

The names launch scripts import from here (`from xm_slurm.experiment import SlurmExperiment`, as with
xmanager-slurm 0.4.x) are loaded on first use; see docs/experiments.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_NAMES = {
    "SlurmExperiment": "xm_slurm.experiment.experiment",
    "create_experiment": "xm_slurm.experiment.access",
    "get_experiment": "xm_slurm.experiment.access",
    "get_current_experiment": "xm_slurm.experiment.access",
    "get_current_work_unit": "xm_slurm.experiment.access",
    "SlurmExperimentUnit": "xm_slurm.experiment.units",
    "SlurmWorkUnit": "xm_slurm.experiment.units",
    "SlurmAuxiliaryUnit": "xm_slurm.experiment.units",
    "JobArgs": "xm_slurm.types",
}

__all__ = [
    "JobArgs",
    "SlurmAuxiliaryUnit",
    "SlurmExperiment",
    "SlurmExperimentUnit",
    "SlurmWorkUnit",
    "create_experiment",
    "get_current_experiment",
    "get_current_work_unit",
    "get_experiment",
]

if TYPE_CHECKING:
    from xm_slurm.experiment.access import (
        create_experiment,
        get_current_experiment,
        get_current_work_unit,
        get_experiment,
    )
    from xm_slurm.experiment.experiment import SlurmExperiment
    from xm_slurm.experiment.units import SlurmAuxiliaryUnit, SlurmExperimentUnit, SlurmWorkUnit
    from xm_slurm.types import JobArgs


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'xm_slurm.experiment' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
