"""The table `xm-slurm show` prints: one row per job, its unit's facts on the unit's first row.

Optional columns appear only when they hold something (identity, args, several clusters) or say more than
the job's state (a unit's status, when some unit has several jobs), so that the table fits 80 columns
without breaking a word (`output.fit_widths`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from xm_slurm.cli.output import Column, print_table

#: The args column on a terminal: compact, cut with an ellipsis (whole when piped and in --json).
ARGS_WIDTH = 24

_COLUMNS = {
    "unit": Column("unit", no_wrap=True),
    "identity": Column("identity", no_wrap=True, max_width=16),
    "args": Column("args", no_wrap=True, max_width=ARGS_WIDTH),
    "status": Column("status", states=True),
    "job": Column("job"),
    "slurm id": Column("slurm id", no_wrap=True),
    "cluster": Column("cluster", no_wrap=True, max_width=16),
    "state": Column("state", states=True),
    "detail": Column("detail"),
}
_OPTIONAL = ("identity", "args", "status", "cluster")


def compact_args(args: Any) -> str:
    """Work unit args on one line: `lr=0.001 seed=1` for a mapping, else compact JSON."""
    if args is None or args == {} or args == []:
        return ""
    if isinstance(args, str):
        return args
    if isinstance(args, dict):
        return " ".join(f"{k}={v if isinstance(v, str) else _json(v)}" for k, v in args.items())
    return _json(args)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _rows(units: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for u in units:
        lead = {
            "unit": f"{'aux' if u['role'] == 'auxiliary' else 'wid'} {u['wid']}",
            "identity": u["identity"],
            "args": compact_args(u["args"]),
            "status": u["status"],
        }
        if not u["jobs"]:
            rows.append(lead)
        for i, j in enumerate(u["jobs"]):
            rows.append(
                {
                    **(lead if i == 0 else {}),
                    "job": j["name"],
                    "slurm id": j["slurm_job_id"],
                    "cluster": j["cluster"],
                    "state": j["state"],
                    "detail": j["detail"],
                }
            )
    return rows


def print_show_table(units: Sequence[dict[str, Any]], *, several_clusters: bool) -> None:
    """`units`: the work units as `show --json` prints them."""
    rows = _rows(units)
    shown = dict.fromkeys(_COLUMNS, True)
    shown["identity"] = any(r.get("identity") for r in rows)
    shown["args"] = any(r.get("args") for r in rows)
    shown["status"] = any(len(u["jobs"]) != 1 for u in units)
    shown["cluster"] = several_clusters
    names = [n for n in _COLUMNS if shown[n] or n not in _OPTIONAL]
    print_table([_COLUMNS[n] for n in names], [[r.get(n) for n in names] for r in rows])
