"""`xm-slurm rm XID`: an experiment's store rows and its folder on each cluster; `xm-slurm rm --orphans`:
this store's folders on the clusters that no experiment of the store names any more.

Both ask on a terminal; without one they remove nothing unless `--yes` is given (removal cannot be undone).
An experiment with a job still pending or running is refused (cancel it first). The folders are removed
before the rows: if a cluster cannot be reached, the experiment stays listed and `rm` can be run again.
"""

from __future__ import annotations

import argparse
import asyncio
import posixpath
import re
import sys
from typing import TYPE_CHECKING, Any

from xm_slurm.cli import exit_codes
from xm_slurm.cli.output import confirm, is_terminal
from xm_slurm.cli.selection import experiment_id, opened

if TYPE_CHECKING:
    from xm_slurm.api import XManagerAPI
    from xm_slurm.experiment.connections import ClusterConnections
    from xm_slurm.ssh_config import SlurmSSHConfig
    from xm_slurm.transport import Transport

EPILOG = """\
examples:
  xm-slurm rm 12                      # asks, then removes experiment 12's rows and cluster folder
  xm-slurm rm 12 --keep-logs --yes    # keep the slurm-*.out logs on the cluster, no question
  xm-slurm rm --orphans               # this store's cluster folders no experiment names, removed on yes

Without a terminal nothing is removed unless --yes is given.
"""

#: What `--keep-logs` keeps in an experiment's folder: the jobs' logs (`paths.log_name`).
LOG_GLOB = "slurm-*.out"
_FOLDER = re.compile(r"/.+/\d{8}")


def _checked(folder: str) -> str:
    """A folder `paths.experiment_dir` made: absolute and ending in the 8-digit xid (never `/` or `~`)."""
    if not _FOLDER.fullmatch(folder) or "/../" in f"{folder}/":
        raise ValueError(f"refusing to remove {folder!r}: not an experiment folder")
    return folder


async def remove_folder(transport: Transport, folder: str, *, keep_logs: bool) -> None:
    """rm -rf the folder; with `keep_logs`, everything in it but the logs."""
    folder = _checked(folder)
    if keep_logs:
        argv = ["find", folder, "-mindepth", "1", "-maxdepth", "1", "!", "-name", LOG_GLOB]
        argv += ["-exec", "rm", "-rf", "--", "{}", "+"]
    else:
        argv = ["rm", "-rf", "--", folder]
    result = await transport.run(argv, check=False, idempotent=True)
    if result.exit_status != 0 and await transport.exists(folder):
        raise RuntimeError(f"could not remove {folder}: {result.stderr.strip() or result.exit_status}")


async def remove_logs(transport: Transport, folder: str, names: list[str]) -> None:
    """An old-layout folder (`<root>/<xid>`) may be another store's experiment of the same id too: only
    this experiment's logs go, and the folder itself only if that leaves it empty."""
    folder = _checked(folder)
    paths = [posixpath.join(folder, n) for n in sorted(set(names))]
    if paths:
        await transport.run(["rm", "-f", "--", *paths], check=False, idempotent=True)
    await transport.run(["rmdir", "--", folder], check=False, idempotent=True)  # fails while not empty


def _log_names(record: Any) -> list[str]:
    """Every log an experiment's jobs wrote (retried ones included), by `paths.log_name`."""
    from xm_slurm.experiment.handles import is_pending
    from xm_slurm.job_ids import SlurmJobId
    from xm_slurm.paths import log_name

    return [
        log_name(SlurmJobId.parse(j.slurm_job_id))
        for wu in record.work_units
        for j in wu.jobs
        if not is_pending(j)
    ]


async def _active_jobs(experiment: Any, by_cluster: dict[SlurmSSHConfig, list[Any]]) -> list[str]:
    answers = await asyncio.gather(
        *(experiment.connections.statuses(s, ids) for s, ids in by_cluster.items())
    )
    return sorted(str(j) for found in answers for j, st in found.items() if st.state.is_active)


async def _rm_async(args: argparse.Namespace) -> int:
    from xm_slurm.api import client

    async with opened(args.xid) as (experiment, record):
        by_cluster: dict[SlurmSSHConfig, list[Any]] = {}
        for unit in [*experiment.work_units.values(), *experiment.auxiliary_units.values()]:
            for job in unit.slurm_jobs:
                by_cluster.setdefault(job.ssh, []).append(job.job_id)
        active = await _active_jobs(experiment, by_cluster)
        if active:
            raise RuntimeError(
                f"experiment {args.xid} has {len(active)} job(s) pending or running ({' '.join(active[:5])}"
                f"{' ...' if len(active) > 5 else ''}): cancel them first (xm-slurm cancel {args.xid})"
            )
        connections = experiment.connections
        folders = {ssh: await connections.experiment_dir(ssh, args.xid) for ssh in by_cluster}
        shared = await connections.store_id_for(args.xid) is None  # the old layout: named by the xid alone
        if shared:
            what = (
                "nothing in its folder (logs kept)"
                if args.keep_logs
                else "its logs in its shared old-layout folder"
            )
        else:
            what = "its folder's scripts (logs kept)" if args.keep_logs else "its folder"
        where = ", ".join(f"{f} on {s.destination}" for s, f in folders.items()) or "no cluster folder"
        question = (
            f"Remove experiment {args.xid} ({record.title or 'untitled'}, {len(record.work_units)} units) "
            f"from the store, and {what}: {where}?"
        )
        if not confirm(question, assume_yes=args.yes, unattended=False):
            return _refused("rm", f"experiment {args.xid}")
        for ssh, folder in folders.items():
            if shared:
                if not args.keep_logs:
                    await remove_logs(connections.transport(ssh), folder, _log_names(record))
                    print(f"removed the experiment's logs in {folder} on {ssh.destination}")
                continue
            await remove_folder(connections.transport(ssh), folder, keep_logs=args.keep_logs)
            print(f"removed {folder} on {ssh.destination}" + (" (logs kept)" if args.keep_logs else ""))
        await client().adelete_experiment(args.xid)
    print(f"removed experiment {args.xid} from the store")
    return exit_codes.OK


def _refused(command: str, what: str) -> int:
    if is_terminal(sys.stdin) and is_terminal(sys.stdout):  # asked, and the answer was no
        print(f"xm-slurm {command}: {what}: nothing removed", file=sys.stderr)
        return exit_codes.FAILURE
    print(f"xm-slurm {command}: error: {what}: no terminal to ask; pass --yes to remove", file=sys.stderr)
    return exit_codes.USAGE


# --- orphans --------------------------------------------------------------------------------------------


async def _store_experiments(api: XManagerAPI) -> tuple[set[int], set[SlurmSSHConfig]]:
    """Every experiment id of the store, and the clusters their jobs ran on."""
    from xm_slurm.api.models import MAX_LIST_LIMIT
    from xm_slurm.ssh_config import SlurmSSHConfig

    xids: set[int] = set()
    offset = 0
    while True:
        page = await api.alist_experiments(limit=MAX_LIST_LIMIT, offset=offset, include_empty=True)
        xids.update(s.xid for s in page)
        if len(page) < MAX_LIST_LIMIT:
            break
        offset += MAX_LIST_LIMIT
    clusters: set[SlurmSSHConfig] = set()
    seen: set[str] = set()
    for xid in sorted(xids):
        for wu in (await api.aget_experiment(xid)).work_units:
            for job in wu.jobs:
                if job.slurm_ssh_config not in seen:
                    seen.add(job.slurm_ssh_config)
                    clusters.add(SlurmSSHConfig.from_json(job.slurm_ssh_config))
    return xids, clusters


async def find_orphans(
    connections: ClusterConnections, ssh: SlurmSSHConfig, store_id: str, known: set[int]
) -> list[str]:
    """This store's experiment folders on one cluster whose xid the store no longer holds."""
    from xm_slurm.paths import EXPERIMENT_DIR_NAME, store_dir

    parent = store_dir(await connections.state_root(ssh), store_id)
    result = await connections.transport(ssh).run(["ls", "-1", "--", parent], check=False, idempotent=True)
    names = result.stdout.split() if result.exit_status == 0 else []  # no folder yet: no orphans
    return [
        posixpath.join(parent, n)
        for n in sorted(names)
        if EXPERIMENT_DIR_NAME.fullmatch(n) and int(n) not in known
    ]


async def _orphans_async(args: argparse.Namespace) -> int:
    from xm_slurm.api import client
    from xm_slurm.experiment.connections import ClusterConnections

    api = client()
    store_id = (await api.aget_store_info()).store_id
    known, clusters = await _store_experiments(api)
    connections = ClusterConnections()
    try:
        found: list[tuple[SlurmSSHConfig, str]] = []
        for ssh in sorted(clusters, key=lambda s: s.destination):
            found += [(ssh, f) for f in await find_orphans(connections, ssh, store_id, known)]
        if not found:
            print(f"no orphaned folders of store {store_id} on {len(clusters)} cluster(s)")
            return exit_codes.OK
        for ssh, folder in found:
            print(f"orphan: {folder} on {ssh.destination}")
        if not confirm(f"Remove these {len(found)} folder(s)?", assume_yes=args.yes, unattended=False):
            return _refused("rm", f"{len(found)} orphaned folder(s)")
        for ssh, folder in found:
            await remove_folder(connections.transport(ssh), folder, keep_logs=False)
        print(f"removed {len(found)} orphaned folder(s)")
    finally:
        await connections.aclose()
    return exit_codes.OK


def _rm(args: argparse.Namespace) -> int:
    from xm_slurm.errors import ValidationError

    if args.orphans == (args.xid is not None):
        raise ValidationError("give an XID or --orphans (one of the two)")
    return asyncio.run(_orphans_async(args) if args.orphans else _rm_async(args))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "rm",
        help="remove an experiment (store rows and cluster folder), or orphaned cluster folders",
        description=(
            "Remove an experiment: its rows in the metadata store and its folder (scripts and logs) on each "
            "cluster its jobs ran on. Refused while a job is pending or running. With --orphans: list this "
            "store's experiment folders on its clusters that no experiment of the store names, and remove "
            "them. Asks on a terminal; without one, nothing is removed unless --yes is given."
        ),
        epilog=EPILOG,
    )
    p.add_argument(
        "xid",
        nargs="?",
        type=experiment_id,
        default=None,
        metavar="XID",
        help="the experiment, 'latest' or -N",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the jobs' slurm-*.out logs on the cluster")
    p.add_argument("--orphans", action="store_true", help="find (and remove) folders no experiment names")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.set_defaults(func=_rm)
