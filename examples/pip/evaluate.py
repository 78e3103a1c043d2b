"""A tiny evaluation program; its dependency (tabulate) comes from requirements.txt."""

from __future__ import annotations

import argparse
import os

from tabulate import tabulate

parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint", default="none")
parser.add_argument("--split", default="valid")
args = parser.parse_args()
rows = [[os.environ.get("XM_SLURM_WORK_UNIT_ID"), args.checkpoint, args.split, 0.93]]
print(tabulate(rows, headers=["work unit", "checkpoint", "split", "accuracy"]))
print(f"evaluated {args.checkpoint} on {args.split}")
