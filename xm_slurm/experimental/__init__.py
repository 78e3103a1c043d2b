"""Experimental features: their interface may change in a minor release.

`parameter_controller`: run an async Python function on the cluster as an auxiliary unit that adds work units.
"""

from __future__ import annotations

from xm_slurm.experimental.parameter_controller import ParameterController, parameter_controller

__all__ = ["ParameterController", "parameter_controller"]
