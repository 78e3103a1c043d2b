"""Reading a build context's git state when it is packaged (the only module that runs git).

`experiment.package(...)` calls `remember(packageables, executables)`: for each built executable, the code
state of its build context (`provenance.CodeState`) is read once per context and kept, in this process, by
the executable's pinned image. The launch then records the state of the contexts of the images it runs
(`provenance_record`). Reading at package time, not at launch, records the code that went into the image
even when the files change in between.

git runs without touching the repository: no optional locks (`GIT_OPTIONAL_LOCKS=0`: `status` does not
refresh the index), no external diff or text conversion, no pager; a failing or missing git gives a state
with a note instead of an error (provenance never stops a launch).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from xmanager import xm

from xm_slurm.executables import Dockerfile, RemoteImage
from xm_slurm.experiment.provenance import (
    DIFF_CAP,
    MAX_FILES,
    Change,
    CodeState,
    cap,
    parse_status,
    split_changes,
)

log = logging.getLogger(__name__)

GIT_TIMEOUT_S = 30.0
_lock = threading.Lock()
_by_image: dict[str, tuple[str, CodeState | None]] = {}  # pinned image -> (build context, its state)


def git(root: str, *args: str, ok: tuple[int, ...] = (0,)) -> str | None:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    argv = ["git", "-c", "core.fsmonitor=false", "-c", "core.quotepath=off", "-C", root, *args]
    try:
        done = subprocess.run(argv, capture_output=True, env=env, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.debug("git %s in %s: %s", args[0], root, e)
        return None
    if done.returncode not in ok:
        return None
    return done.stdout.decode("utf-8", "replace")


def _untracked_diff(root: str, path: str) -> str:
    # `git diff --no-index` exits 1 when the files differ, which they do.
    out = git(
        root,
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-index",
        "--",
        "/dev/null",
        path,
        ok=(0, 1),
    )
    return out or ""


def read_code_state(context: str | Path) -> CodeState | None:
    """The git state of `context`, None when it is not inside a git work tree."""
    context = str(Path(context).resolve())
    top = git(context, "rev-parse", "--show-toplevel")
    if top is None or not top.strip():
        return None
    root = top.strip()
    commit = (git(root, "rev-parse", "--verify", "-q", "HEAD") or "").strip() or None
    branch = (git(root, "symbolic-ref", "--short", "-q", "HEAD") or "").strip() or None
    rel = os.path.relpath(context, root)
    spec = "." if rel == "." else rel
    status = git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", spec)
    if status is None:
        return CodeState(context, root, commit, branch, note="git status failed: changes unknown")
    changes = parse_status(status)
    note = ""
    if len(changes) > MAX_FILES:
        note = f"{len(changes)} changed files; the first {MAX_FILES} are listed"
        changes = changes[:MAX_FILES]
    kept, omitted = split_changes(changes)
    diff = _diff(root, commit, kept)
    diff, truncated = cap(diff, DIFF_CAP, "diff")
    return CodeState(context, root, commit, branch, tuple(changes), diff, truncated, tuple(omitted), note)


def _diff(root: str, commit: str | None, kept: Sequence[Change]) -> str:
    """The diff of the kept changes: tracked ones against `commit` (staged and not), untracked ones whole."""
    tracked = [c for c in kept if not c.untracked]
    parts: list[str] = []
    if tracked:
        paths = sorted({p for c in tracked for p in (c.path, c.source) if p})
        base = [commit] if commit else ["--cached"]  # no commit yet: what is staged
        args = [
            "--literal-pathspecs",
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            *base,
            "--",
            *paths,
        ]
        parts.append(git(root, *args) or "")
    size = sum(map(len, parts))
    for change in kept:
        if change.untracked and size <= DIFF_CAP:
            text = _untracked_diff(root, change.path)
            parts.append(text)
            size += len(text)
    return "".join(parts)


def remember(contexts: Sequence[tuple[str, str]]) -> None:
    """Keep, for each (pinned image, build context) of one packaging call, the context's code state now
    (read once per distinct context of the call)."""
    states: dict[str, CodeState | None] = {}
    for image, context in contexts:
        context = str(Path(context).resolve())
        if context not in states:
            states[context] = read_code_state(context)
        with _lock:
            _by_image[image] = (context, states[context])


def state_of(image: str) -> tuple[str, CodeState | None] | None:
    """(build context, its code state when packaged) of an image this process built; None otherwise."""
    with _lock:
        return _by_image.get(image)


def forget() -> None:
    """Drop what `remember` kept (tests)."""
    with _lock:
        _by_image.clear()


def _context_of(packageable: xm.Packageable) -> str | None:
    spec = packageable.executable_spec
    if isinstance(spec, Dockerfile):
        return str(spec.context)
    if isinstance(spec, xm.Dockerfile):
        return str(spec.path)
    return None  # an existing image: no code of ours behind it


def remember_packaged(packageables: Sequence[xm.Packageable], executables: Sequence[xm.Executable]) -> None:
    """`remember` the build context of each built image (packaging returns them in the same order)."""
    pairs = []
    for packageable, executable in zip(packageables, executables, strict=False):
        context = _context_of(packageable)
        if context is not None and isinstance(executable, RemoteImage):
            pairs.append((executable.image, context))
    try:
        remember(pairs)
    except Exception as e:  # provenance never stops a launch
        log.warning("could not read the git state of the build contexts: %s", e)


def package(packageables: Sequence[xm.Packageable]) -> Sequence[xm.Executable]:
    """`packaging.package`, keeping the code state behind each built image."""
    from xm_slurm.packaging import package as build

    executables = build(list(packageables))
    remember_packaged(packageables, executables)
    return executables


async def package_one(packageable: xm.Packageable) -> xm.Executable:
    """`packaging.package_async` of one packageable, keeping the code state behind its image."""
    from xm_slurm.packaging import package_async

    executables = await package_async([packageable])
    await asyncio.to_thread(remember_packaged, [packageable], executables)
    return executables[0]
