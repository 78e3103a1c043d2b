"""A toy simulation whose dependency (numpy) comes from environment.yml."""

from __future__ import annotations

import argparse

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--samples", type=int, default=100_000)
args = parser.parse_args()
rng = np.random.default_rng(args.seed)
points = rng.random((args.samples, 2))
estimate = 4 * np.mean(np.sum(points**2, axis=1) <= 1)
print(f"seed {args.seed}: pi is about {estimate:.3f} (numpy {np.__version__})")
