"""Where a build context is: the `context=` of a packageable, or the project root found from the launch script.

The launch script is `sys.argv[0]` when it ends in `.py`, else the `__main__` module's file, else there is
none and the current folder stands in (a notebook, `python -c`). The project root is the nearest folder, from
the launch script's own upwards, that holds one of `PROJECT_MARKERS` (as xmanager-slurm 0.4.x finds it).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from xm_slurm.errors import ValidationError

PROJECT_MARKERS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements.txt",
    "requirements.in",
    "uv.lock",
    ".venv",
)

_warned_path = False


def launch_script() -> Path | None:
    """The launch script's absolute path, or None when there is none (see the module docstring)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith(".py"):
        return Path(os.path.abspath(argv0))
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if isinstance(main_file, str) and main_file:
        return Path(os.path.abspath(main_file))
    return None


def launch_folder() -> Path:
    """The launch script's folder (symlinks resolved, as XManager does), else the current folder."""
    script = launch_script()
    return Path(os.path.realpath(script)).parent if script is not None else Path.cwd()


def resolve_from_launcher(path: str | os.PathLike[str], *, field: str = "path") -> Path:
    """`path` made absolute: `~` expanded, a relative path taken from the launch script's folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValidationError(f"{field}={path!r} must be a path (str or pathlib.Path)")
    text = os.path.expanduser(os.fspath(path))
    return Path(text) if os.path.isabs(text) else Path(os.path.normpath(launch_folder() / text))


def project_root(start: Path | None = None) -> Path:
    """The nearest folder from `start` (default: the launch script's folder) upwards holding a project file."""
    start = start if start is not None else launch_folder()
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    raise ValidationError(
        f"no project root found: neither {str(start)!r} nor a folder above it holds any of "
        f"{', '.join(PROJECT_MARKERS)}; pass context=pathlib.Path('/path/to/project') (the folder to build)"
    )


def _warn_path(what: str) -> None:
    global _warned_path
    if not _warned_path:
        _warned_path = True
        warnings.warn(
            f"{what}(path=...) is deprecated; pass context=... (the same folder; "
            "omitted, it is the project root)",
            DeprecationWarning,
            stacklevel=4,
        )


def build_context(
    context: str | os.PathLike[str] | None,
    *,
    path: str | os.PathLike[str] | None = None,
    what: str,
) -> Path:
    """The build context folder: `context` (or its old name `path`), else the project root."""
    if path is not None:
        if context is not None:
            raise ValidationError(
                f"{what}: pass the build context once, as context= (path= is its deprecated name)"
            )
        _warn_path(what)
        context = path
    if context is None:
        return project_root()
    folder = resolve_from_launcher(context, field="context")
    if not folder.is_dir():
        raise ValidationError(
            f"{what}: build context {str(folder)!r} is not a directory (context={os.fspath(context)!r}; a "
            f"relative one is taken from the launch script's folder {str(launch_folder())!r}); pass the "
            "folder holding your project"
        )
    return folder
