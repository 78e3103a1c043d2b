"""Command line entry point (`xm-slurm`, alias `xm`); see docs/cli.md.

Each subcommand lives in its own module under `xm_slurm.cli` and exposes
`register(subparsers) -> None`, which adds its parser(s) and sets `func` (a callable taking the parsed
`argparse.Namespace` and returning an exit code). Add the module's name to `_SUBCOMMAND_MODULES`.
Command modules import the library inside their functions, so that `import xm_slurm.cli` and `--help` stay fast.

Errors are printed as ONE line on stderr (`xm-slurm <command>: error: ...`) and mapped to the exit codes of
`xm_slurm.cli.exit_codes`; `--debug` adds the traceback and debug logging.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from xm_slurm.cli import exit_codes
from xm_slurm.cli.output import one_line

_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "listing",
    "logs",
    "control",
    "remove",
    "retry",
    "diff",
    "preview",
    "doctor",
    "server",
)

_EPILOG = """\
examples:
  xm-slurm list --tag baseline
  xm-slurm show 12
  xm-slurm logs 12 --wid 3 -f
  xm-slurm doctor me@login.example.org

exit codes: 0 ok, 1 failure, 2 usage or invalid value, 3 not found, 4 jobs failed or were cancelled (wait),
5 timed out (wait --timeout), 130 interrupted. See docs/cli.md.
"""


def _debug_flag(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: accepted before and after the subcommand without one overwriting the other.
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs"
    )


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps descriptions; keeps epilogs (examples, exit code tables) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(("examples:", "exit codes:")):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


class _Subparsers:
    """Wraps argparse's subparsers so every command gets `--debug` and keeps its epilog's layout."""

    def __init__(self, action: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._action = action

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", _Formatter)
        parser = self._action.add_parser(name, **kwargs)  # type: ignore[arg-type]
        _debug_flag(parser)
        return parser


class _Version(argparse.Action):
    """`--version`: the distribution's version, read only when asked (xm_slurm.version)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from xm_slurm.version import version

        print(f"xm-slurm {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xm-slurm",
        description="XManager on Slurm: experiments, jobs and logs.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    _debug_flag(parser)
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wrapped = _Subparsers(subparsers)
    for name in _SUBCOMMAND_MODULES:
        module = importlib.import_module(f"xm_slurm.cli.{name}")
        module.register(wrapped)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return exit_codes.USAGE
    debug = bool(getattr(args, "debug", False)) or os.environ.get("XM_SLURM_DEBUG") == "1"
    args.debug = debug
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"xm-slurm {args.command}: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`xm-slurm logs 1 | head`): not an error. Silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exit_codes.OK
    except Exception as e:
        if debug:
            import traceback

            traceback.print_exc()
        hint = "" if debug else " (run with --debug for the traceback)"
        code = exit_codes.for_error(e)
        detail = one_line(e)
        if code == exit_codes.FAILURE and not exit_codes.is_library_error(e):
            detail = f"{type(e).__name__}: {detail}{hint}"  # unexpected: name it, point at --debug
        print(f"xm-slurm {args.command}: error: {detail}", file=sys.stderr)
        return code
