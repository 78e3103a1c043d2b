"""Optional extras built on the public model: ready-made cluster presets (`xm_slurm.contrib.clusters`)."""
