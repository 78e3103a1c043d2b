"""`xm_slurm.api.abc`: the module 0.4.x code imports the abstract metadata client from.

    from xm_slurm.api.abc import XManagerAPI

`XManagerAPI` is the base class both backends implement (`xm_slurm.api.base`, also `xm_slurm.api.XManagerAPI`):
`isinstance(xm_slurm.api.client(), XManagerAPI)` holds for the SQLite and the REST client alike.
"""

from __future__ import annotations

from xm_slurm.api.base import XManagerAPI

__all__ = ["XManagerAPI"]
