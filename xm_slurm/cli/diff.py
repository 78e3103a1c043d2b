"""`xm-slurm diff XID1 XID2`: what changed between two experiments (code, args, images, launch).

Reads the two records from the metadata store only (no cluster); see docs/provenance.md.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from xm_slurm.cli import exit_codes
from xm_slurm.cli.output import print_json
from xm_slurm.cli.selection import experiment_id

DIFF_EPILOG = """\
examples:
  xm-slurm diff 12 13                 # code (commit, dirty, changed files), args, images, versions
  xm-slurm diff 12 13 --json
"""


def _short(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


def _print(changes: dict[str, Any]) -> None:
    first, second = changes["xids"]
    if not any(changes[k] for k in ("code", "args", "images", "launch")):
        print(f"experiments {first} and {second}: no difference recorded")
        return
    print(f"experiment {first} -> {second}")
    for c in changes["code"]:
        if "only_in" in c:
            print(f"  code {c['context']}: only in the {c['only_in']} experiment")
            continue
        (ca, cb), (da, db) = c["commit"], c["dirty"]
        parts = []
        if ca != cb:
            parts.append(f"commit {(ca or 'none')[:12]} -> {(cb or 'none')[:12]}")
        if da != db:
            parts.append(f"dirty {'yes' if da else 'no'} -> {'yes' if db else 'no'}")
        print(f"  code {c['context']}: {'; '.join(parts) or 'uncommitted changes differ'}")
        if c["changed_files"]:
            print(f"    changed files: {', '.join(c['changed_files'])}")
        if c["note"]:
            print(f"    ({c['note']})")
    for a in changes["args"]:
        print(f"  args wid {a['wid']}: {_short(a['first'])} -> {_short(a['second'])}")
    for i in changes["images"]:
        print(f"  image {i['name']}: {_short(i['first'])} -> {_short(i['second'])}")
    for key, value in changes["launch"].items():
        if key == "script":
            print("  launch script: text changed")
        else:
            print(f"  launch {key}: {_short(value[0])} -> {_short(value[1])}")


def _diff(args: argparse.Namespace) -> int:
    from xm_slurm.api import client
    from xm_slurm.experiment.provenance_diff import compare

    api = client()
    try:
        changes = compare(api.get_experiment(args.xid1), api.get_experiment(args.xid2))
    finally:
        api.close()
    if args.json:
        print_json(changes)
    else:
        _print(changes)
    return exit_codes.OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "diff",
        help="what changed between two experiments (code, args, images)",
        description=(
            "Compare two experiments from their records in the metadata store: for each build context the "
            "commit, whether it was dirty and the files changed (between the commits, when the repository "
            "is on this machine, and uncommitted); each work unit's args; the pushed image of each "
            "executable; the launch command line and versions."
        ),
        epilog=DIFF_EPILOG,
    )
    p.add_argument("xid1", type=experiment_id, metavar="XID1", help="the first experiment")
    p.add_argument("xid2", type=experiment_id, metavar="XID2", help="the second experiment")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_diff)
