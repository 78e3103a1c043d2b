"""Command line entry point (`xm-slurm`, alias `xm`).

Each subcommand lives in its own module under `xm_slurm.cli` and exposes
`register(subparsers) -> None`, which adds its parser and sets `func` (a callable taking the parsed
`argparse.Namespace` and returning an exit code). Add the module's name to `_SUBCOMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

_SUBCOMMAND_MODULES: tuple[str, ...] = ("server",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xm-slurm", description="XManager on Slurm: experiments, jobs and logs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        module = importlib.import_module(f"xm_slurm.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return int(func(args) or 0)
