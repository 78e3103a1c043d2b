"""What a launch script sees when something fails: our message and the script's own lines, not our frames.

* `for_script(error)`: at the boundary where one of our errors leaves the library (an add awaited, the
  experiment's exit, `experiment.package`), the frames of the asyncio task it came from are dropped; its
  cause stays chained (`__cause__`) for code that handles it, and the excepthook below does not print it.
* `install_excepthook()`: an uncaught `XmSlurmError` is printed with the script's frames only (no frames of
  xm_slurm, asyncio or concurrent.futures, e.g. those of `asyncio.run`), then its message and notes: a
  few lines instead of forty. Other errors, and every error with `XM_SLURM_TRACEBACK=full`, are printed as
  Python prints them. Installed only over Python's own hook (not over IPython's or the script's).
* `note_body_error`: when the body of `async with create_experiment(...)` raises, its error gets a note
  naming the work units submitted before it (left to run) and how many adds were cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from xm_slurm.errors import XmSlurmError

log = logging.getLogger(__name__)

#: Folders whose frames a script's reader cannot act on: xm_slurm's, asyncio's, concurrent.futures'.
_INTERNAL = tuple(
    os.path.realpath(folder) + os.sep
    for folder in (
        Path(__file__).parents[1],
        Path(asyncio.__file__).parent,
        Path(concurrent.futures.__file__).parent,
    )
)


class _Unit(Protocol):
    @property
    def unit_id(self) -> int: ...

    @property
    def slurm_jobs(self) -> Sequence[Any]: ...


def for_script(error: BaseException, cause: BaseException | None = None) -> BaseException:
    """`error` ready to raise to a launch script: `cause` (what led to it) is chained for code that handles
    it; ours lose the frames of the task they came from (the excepthook prints neither those frames nor the
    chain, unless XM_SLURM_TRACEBACK=full)."""
    if cause is not None and cause is not error:
        error.__cause__ = cause
    if not isinstance(error, XmSlurmError) or os.environ.get("XM_SLURM_TRACEBACK") == "full":
        return error
    log.debug("what led to: %s", error, exc_info=cause or error)
    return error.with_traceback(None)


def note_body_error(
    error: BaseException, xid: int | None, units: Iterable[_Unit], before: set[int], cancelled: int
) -> None:
    """Tell the script's reader what the body's `error` left on the cluster (a note, shown under it): the
    `units` with jobs that were not among those there before (`before`: their ids), the adds cancelled."""
    submitted = [u for u in units if u.slurm_jobs and u.unit_id not in before]
    if submitted:
        named = ", ".join(
            f"{u.unit_id} (Slurm job{'s' if len(u.slurm_jobs) > 1 else ''} "
            f"{', '.join(str(j.job_id) for j in u.slurm_jobs)})"
            for u in submitted
        )
        kept = (
            f"submitted before this error and left to run: work unit{'s' if len(submitted) > 1 else ''} "
            f"{named}; `xm-slurm cancel {xid}` stops them"
        )
    else:
        kept = "nothing was submitted before this error"
    stopped = ""
    if cancelled:
        were = "add still in progress was" if cancelled == 1 else "adds still in progress were"
        stopped = f"{cancelled} {were} cancelled and submitted nothing more"
    text = f"xm_slurm experiment {xid}: {kept}" + (f"; {stopped}" if stopped else "")
    if hasattr(error, "add_note"):  # Python >= 3.11: printed under the error
        error.add_note(text)
    else:
        log.warning("%s (%s: %s)", text, type(error).__name__, error)


def _script_frames(tb: TracebackType | None) -> traceback.StackSummary:
    frames = [f for f in traceback.extract_tb(tb) if not os.path.realpath(f.filename).startswith(_INTERNAL)]
    return traceback.StackSummary.from_list(frames)


def short_lines(error: BaseException) -> list[str]:
    """The lines `install_excepthook` prints for one of our errors."""
    lines = [
        "Traceback (the launch script's lines; XM_SLURM_TRACEBACK=full shows xm_slurm's and asyncio's):\n"
    ]
    lines += _script_frames(error.__traceback__).format()
    lines += traceback.format_exception_only(type(error), error)
    return lines


def _hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    if isinstance(error, XmSlurmError) and os.environ.get("XM_SLURM_TRACEBACK") != "full":
        sys.stderr.write("".join(short_lines(error.with_traceback(tb))))
        return
    sys.__excepthook__(kind, error, tb)


def install_excepthook() -> None:
    """Print uncaught xm_slurm errors short (see the module docstring); only over Python's own hook."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _hook


def refuse_sync_entry_in_a_loop() -> None:
    """A plain `with` runs the experiment's loop in a thread and blocks this one on it: where a loop already
    runs here (a Jupyter notebook, an async function) that would stall it, so say what works instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise XmSlurmError(
        "`with xm_slurm.create_experiment(...)` cannot be used where an event loop is already running (a "
        "Jupyter notebook, an async function): use `async with xm_slurm.create_experiment(...) as "
        "experiment:` and `await experiment.add(...)` (a notebook cell may await at top level)"
    )


__all__ = [
    "for_script",
    "install_excepthook",
    "note_body_error",
    "refuse_sync_entry_in_a_loop",
    "short_lines",
]
