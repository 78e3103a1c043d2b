"""`xm-slurm preview LAUNCH_SCRIPT [ARGS...]`: the sbatch scripts a launch script would submit, submitting none.

The script runs as `python LAUNCH_SCRIPT ARGS...` in a subprocess that is handed a dry run
(`xm_slurm.experiment.dry_run.DryRun`, through its environment: sbatch is answered with fake ids and the
scripts are written to a folder) and a throwaway metadata store (`XM_SLURM_STATE_DIR` in a temporary
folder, SQLite backend). Its own output goes to stderr; the scripts go to stdout. `--check` then asks each cluster `sbatch --test-only` about every script
(Slurm validates it and estimates a start time; nothing is queued).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from xm_slurm.cli import exit_codes

EPILOG = """\
examples:
  xm-slurm preview launch.py --seed 3          # print the scripts launch.py would submit
  xm-slurm preview --check launch.py           # and let Slurm validate them (sbatch --test-only)
  xm-slurm preview --keep /tmp/scripts launch.py

Packaging still runs: images the launch script builds are built (and pushed) as usual.
"""

# `sbatch: Job 460 to start at 2026-12-01T21:55:28 using 1 processors on nodes n1 in partition debug`
_TEST_ONLY = re.compile(
    r"Job \d+ to start at (?P<start>\S+) using (?P<cpus>\d+) processors on nodes (?P<nodes>\S+)"
    r"(?: in partition (?P<partition>\S+))?"
)


def parse_test_only(stderr: str) -> dict[str, str] | None:
    """The expected start, CPUs, nodes and partition from `sbatch --test-only` output, or None."""
    m = _TEST_ONLY.search(stderr)
    return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}


def read_manifest(folder: Path) -> list[dict[str, Any]]:
    from xm_slurm.experiment.dry_run import MANIFEST

    path = folder / MANIFEST
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for entry in entries:
        entry["text"] = Path(entry["file"]).read_text(encoding="utf-8")
    return entries


def _print_scripts(entries: list[dict[str, Any]]) -> None:
    from xm_slurm.ssh_config import SlurmSSHConfig

    for i, entry in enumerate(entries, 1):
        where = SlurmSSHConfig.from_dict(entry["ssh"]).destination
        name = os.path.basename(entry["remote_path"])
        extra = f" {' '.join(entry['sbatch_args'])}" if entry["sbatch_args"] else ""
        print(
            f"# ===== script {i}/{len(entries)}: {name} for {where} (sbatch{extra}; fake job id {entry['job_id']})"
        )
        text = entry["text"]
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


async def _check(entries: list[dict[str, Any]]) -> int:
    from xm_slurm.ssh_config import SlurmSSHConfig
    from xm_slurm.transport import SSHTransport

    transports: dict[SlurmSSHConfig, SSHTransport] = {}
    refused = 0
    try:
        for i, entry in enumerate(entries, 1):
            ssh = SlurmSSHConfig.from_dict(entry["ssh"])
            transport = transports.setdefault(ssh, SSHTransport(ssh))
            text = entry["text"]
            # Dependencies name this preview's fake job ids: drop them for the check.
            argv = ["sbatch", "--test-only", "--dependency=", *entry["sbatch_args"]]
            result = await transport.run(argv, input=text, check=False)
            found = parse_test_only(result.stderr)
            name = os.path.basename(entry["remote_path"])
            if result.exit_status == 0 and found is not None:
                where = found["nodes"] + (
                    f" (partition {found['partition']})" if "partition" in found else ""
                )
                print(f"check {i}/{len(entries)} {name}: ok, expected start {found['start']} on {where}")
            elif result.exit_status == 0:
                print(f"check {i}/{len(entries)} {name}: ok ({result.stderr.strip() or 'no estimate'})")
            else:
                refused += 1
                message = " | ".join(x.strip() for x in result.stderr.splitlines() if x.strip())
                print(f"check {i}/{len(entries)} {name}: REFUSED by sbatch: {message or result.exit_status}")
    finally:
        for transport in transports.values():
            await transport.close()
    return refused


def _preview(args: argparse.Namespace) -> int:
    from xm_slurm.errors import ValidationError, XmSlurmError
    from xm_slurm.experiment.dry_run import DRY_RUN_ENV, DRY_RUN_REMOTE_ENV, MANIFEST, DryRun

    script = Path(args.script)
    if not script.is_file():
        raise ValidationError(f"launch script {args.script!r} is not a file")
    if args.keep is not None:
        root = Path(args.keep)
        if (root / "scripts" / MANIFEST).exists():
            raise ValidationError(
                f"--keep {args.keep!r} holds an earlier preview; give an empty or new folder"
            )
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="xm-slurm-preview-"))
    try:
        inherited = (DRY_RUN_ENV, DRY_RUN_REMOTE_ENV)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("XM_SLURM_REST_API_") and k not in inherited
        }
        # --check: the real state folder, so the checked scripts are the real ones.
        env.update(DryRun(root / "scripts", remote=args.check).to_env())
        env.update({"XM_SLURM_STATE_DIR": str(root / "store"), "XM_SLURM_API_BACKEND": "sqlite"})
        # The launch script's own output goes to stderr: stdout is for the scripts.
        process = subprocess.run(
            [sys.executable, str(script), *args.args], env=env, stdout=sys.stderr.fileno(), check=False
        )
        entries = read_manifest(root / "scripts")
        _print_scripts(entries)
        if process.returncode != 0:
            raise XmSlurmError(
                f"launch script {args.script} exited with status {process.returncode} "
                f"(after recording {len(entries)} script(s))"
            )
        print(f"xm-slurm preview: {len(entries)} sbatch script(s), nothing submitted", file=sys.stderr)
        if args.keep is not None:
            print(f"xm-slurm preview: scripts kept in {root / 'scripts'}", file=sys.stderr)
        if args.check and entries:
            refused = asyncio.run(_check(entries))
            if refused:
                raise XmSlurmError(f"sbatch --test-only refused {refused} of {len(entries)} script(s)")
        return exit_codes.OK
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "preview",
        help="print the sbatch scripts a launch script would submit, without submitting",
        description=(
            "Run a launch script (python LAUNCH_SCRIPT ARGS...) in dry-run mode: nothing is submitted and "
            "nothing is recorded in your metadata store; the sbatch scripts it would submit are printed. "
            "Options go before LAUNCH_SCRIPT; everything after it is passed to the script."
        ),
        epilog=EPILOG,
    )
    p.add_argument(
        "--check", action="store_true", help="let each cluster validate the scripts (sbatch --test-only)"
    )
    p.add_argument("--keep", default=None, metavar="DIR", help="keep the scripts in DIR/scripts")
    p.add_argument("script", metavar="LAUNCH_SCRIPT", help="the launch script (a Python file)")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the launch script")
    p.set_defaults(func=_preview)
