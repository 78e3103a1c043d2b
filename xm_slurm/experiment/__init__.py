"""The XManager integration (SPEC layer 7): experiments, work units and their metadata context.

Public names are re-exported lazily from `xm_slurm`; see docs/experiments.md.
"""
