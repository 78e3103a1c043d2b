"""Experimental features: their interface may change in a minor release.

`parameter_controller` (a module, as in 0.4.x): run an async Python function on the cluster as an auxiliary
unit that adds work units:

    from xm_slurm.experimental.parameter_controller import ParameterControllerMode, parameter_controller
"""

from __future__ import annotations

from xm_slurm.experimental import parameter_controller as parameter_controller  # the module

__all__ = ["parameter_controller"]
