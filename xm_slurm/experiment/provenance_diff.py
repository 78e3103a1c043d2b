"""What changed between two experiments (`xm-slurm diff XID1 XID2`): code, args, images, launch.

From the stored records only (their provenance artifacts and work units), plus, when the build context's
repository is on this machine, `git diff --name-only` between the two recorded commits to name the files
committed in between. Code is matched by build context (its path, else its folder name).
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from typing import Any

from xm_slurm.api import Experiment
from xm_slurm.experiment import provenance as p
from xm_slurm.experiment.provenance_git import git


def _code(record: Experiment) -> dict[str, dict[str, Any]]:
    out = {}
    for name, value in p.provenance_of({a.name: a.uri for a in record.artifacts}).items():
        if name.startswith(p.CODE) and isinstance(value, dict) and value.get("context"):
            out[str(value["context"])] = value  # a later record of a context (.2) replaces an earlier one
    return out


def _committed_files(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str] | None:
    """Files changed between the two commits, relative to the git root (None: git cannot tell here)."""
    for side in (b, a):
        root, context = side.get("git_root"), side.get("context")
        if not root or not os.path.isdir(str(root)):
            continue
        rel = os.path.relpath(str(context), str(root)) if context else "."
        out = git(str(root), "diff", "--name-only", "--no-renames", a["commit"], b["commit"], "--", rel)
        if out is not None:
            return sorted(line for line in out.splitlines() if line)
    return None


def _sections(diff: str) -> dict[str, str]:
    """A recorded diff split by file (the `b/` path of each `diff --git` header)."""
    out: dict[str, str] = {}
    current = None
    for line in diff.splitlines(keepends=True):
        if line.startswith("diff --git "):
            current = line.rstrip("\n").rsplit(" b/", 1)[-1]
        if current is not None:
            out[current] = out.get(current, "") + line
    return out


def compare_code(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """How one build context's code differs (None: not at all)."""
    if a is None or b is None:
        return {"only_in": "second" if a is None else "first", "commit": (a or b or {}).get("commit")}
    same_commit = a.get("commit") == b.get("commit")
    if same_commit and a.get("diff") == b.get("diff") and a.get("dirty") == b.get("dirty"):
        return None
    files: set[str] = set()
    note = ""
    if not same_commit and a.get("commit") and b.get("commit"):
        committed = _committed_files(a, b)
        if committed is None:
            note = "the commits differ; the repository is not here to list the files changed between them"
        else:
            files.update(committed)
    dirty_a, dirty_b = set(a.get("changed_files") or []), set(b.get("changed_files") or [])
    if same_commit:  # only the uncommitted changes differ: the files whose change is not the same
        sa, sb = _sections(a.get("diff") or ""), _sections(b.get("diff") or "")
        files.update(f for f in dirty_a | dirty_b if f not in dirty_a & dirty_b or sa.get(f) != sb.get(f))
    else:
        files.update(dirty_a | dirty_b)
    return {
        "commit": [a.get("commit"), b.get("commit")],
        "branch": [a.get("branch"), b.get("branch")],
        "dirty": [bool(a.get("dirty")), bool(b.get("dirty"))],
        "changed_files": sorted(files),
        "note": note,
    }


def _match(first: dict[str, Any], second: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(label, context in first, context in second): by path, then by folder name."""
    pairs: list[tuple[str, str | None, str | None]] = []
    left = dict(first)
    for path in second:
        if path in left:
            left.pop(path)
            pairs.append((path, path, path))
    by_name = {posixpath.basename(k): k for k in left}
    for path in second:
        if path not in first:
            other = by_name.pop(posixpath.basename(path), None)
            if other is not None:
                left.pop(other)
            pairs.append((path, other, path))
    pairs += [(path, path, None) for path in left]
    return pairs


def _images(record: Experiment) -> dict[str, str]:
    for a in record.artifacts:
        if a.name == p.IMAGES:
            value = p.parse(a.uri)
            if isinstance(value, dict):
                return {str(i.get("name")): str(i.get("image")) for i in value.get("images", [])}
    return {}


def _launch(record: Experiment) -> dict[str, Any]:
    for a in record.artifacts:
        if a.name == p.LAUNCH:
            value = p.parse(a.uri)
            return value if isinstance(value, dict) else {}
    return {}


def _args(record: Experiment) -> dict[int, Any]:
    out = {}
    for wu in record.work_units:
        try:
            out[wu.wid] = json.loads(wu.args) if wu.args else None
        except ValueError:
            out[wu.wid] = wu.args
    return out


def compare(first: Experiment, second: Experiment) -> dict[str, Any]:
    """Everything that differs between two stored experiments (empty lists: nothing)."""
    code_a, code_b = _code(first), _code(second)
    code = []
    for label, ka, kb in _match(code_a, code_b):
        change = compare_code(code_a.get(ka) if ka else None, code_b.get(kb) if kb else None)
        if change is not None:
            code.append({"context": label, **change})
    args_a, args_b = _args(first), _args(second)
    args = [
        {"wid": wid, "first": args_a.get(wid), "second": args_b.get(wid)}
        for wid in sorted(set(args_a) | set(args_b))
        if args_a.get(wid) != args_b.get(wid)
    ]
    images_a, images_b = _images(first), _images(second)
    images = [
        {"name": name, "first": images_a.get(name), "second": images_b.get(name)}
        for name in sorted(set(images_a) | set(images_b))
        if images_a.get(name) != images_b.get(name)
    ]
    launch_a, launch_b = _launch(first), _launch(second)
    launch: dict[str, Any] = {
        key: [launch_a.get(key), launch_b.get(key)]
        for key in ("argv", "versions", "script_path")
        if launch_a.get(key) != launch_b.get(key)
    }
    if launch_a.get("script") != launch_b.get("script"):
        launch["script"] = "changed"
    return {"xids": [first.xid, second.xid], "code": code, "args": args, "images": images, "launch": launch}


__all__ = ["compare", "compare_code"]
