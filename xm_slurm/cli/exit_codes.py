"""The exit codes of `xm-slurm` (documented in docs/cli.md), and which error gives which."""

from __future__ import annotations

OK = 0
FAILURE = 1  # the command failed (cluster unreachable, Slurm refused, store error, ...)
USAGE = 2  # bad command line or invalid value (argparse also exits 2)
NOT_FOUND = 3  # no such experiment, work unit or identity
JOBS_FAILED = 4  # `wait`: a work unit failed or was cancelled
TIMEOUT = 5  # `wait --timeout`: jobs still running when the time ran out
INTERRUPTED = 130  # Ctrl-C


def is_library_error(error: BaseException) -> bool:
    from xm_slurm.errors import XmSlurmError

    return isinstance(error, XmSlurmError)


def for_error(error: BaseException) -> int:
    from xm_slurm.errors import NotFoundError, ValidationError

    if isinstance(error, NotFoundError):
        return NOT_FOUND
    if isinstance(error, ValidationError):
        return USAGE
    return FAILURE
