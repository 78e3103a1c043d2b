"""Pretends to train: prints a small table of its settings (tabulate comes from uv.lock)."""

from __future__ import annotations

import argparse
import os
import sys

from tabulate import tabulate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = [
        ["work unit", os.environ.get("XM_SLURM_WORK_UNIT_ID", "-")],
        ["lr", args.lr],
        ["seed", args.seed],
        ["python", sys.prefix],
    ]
    print(tabulate(rows, headers=["setting", "value"]))
    print(f"sweeper done lr={args.lr} seed={args.seed}")


if __name__ == "__main__":
    main()
