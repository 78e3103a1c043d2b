"""Command line entry point (`xm-slurm`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print("xm-slurm: no commands yet", file=sys.stderr)
    return 2
