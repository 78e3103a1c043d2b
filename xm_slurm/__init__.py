"""xm_slurm: a Slurm backend for XManager."""

__version__ = "0.1.0"
