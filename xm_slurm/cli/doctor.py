"""`xm-slurm doctor CLUSTER`: probe a cluster and report what the library will do there.

CLUSTER is `[user@]host[:port]`, a Host alias of your OpenSSH config, or a preset of
`xm_slurm.contrib.clusters` (`[user@]narval`). An OpenSSH alias wins over a preset of the same name.
All probes share one SSH connection and run concurrently; each one's failure is reported, not fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import sys
from typing import TYPE_CHECKING, Any

from xm_slurm.cli import exit_codes
from xm_slurm.cli.output import is_terminal, print_json, print_table

if TYPE_CHECKING:
    from xm_slurm.ssh_config import SlurmSSHConfig
    from xm_slurm.transport import Transport

EPILOG = """\
examples:
  xm-slurm doctor me@login.example.org
  xm-slurm doctor mycluster            # a Host alias from ~/.ssh/config
  xm-slurm doctor me@narval --json     # a preset from xm_slurm.contrib.clusters

exit codes: 0 Slurm answered (warnings may be printed), 1 the cluster could not be reached or has no Slurm,
2 bad CLUSTER or option.
"""

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default
RUNTIMES = ("apptainer", "singularity", "podman")
_RUNTIME_PROBE = (
    "for r in " + " ".join(RUNTIMES) + "; do "
    'p=$(command -v "$r" 2>/dev/null) || continue; '
    'v=$("$r" --version 2>/dev/null | head -n 1); printf "%s|%s|%s\\n" "$r" "$p" "$v"; done; exit 0'
)


#: sbatch options of the 0.5.0 job surface that Slurm 22.05 lacks (`Slurm(bind={"tres": ...})`, the newer
#: `gres_flags`). Each is offered to the site's own sbatch with `--test-only` (which submits nothing): sbatch
#: parses its options before anything else, so one it cannot parse is refused with these words.
OPTION_PROBES = (
    "--tres-bind=gres/gpu:closest",
    "--gres-flags=multiple-tasks-per-sharing",
    "--gres-flags=one-task-per-sharing",
    "--gres-flags=allow-task-sharing",
)
_OPTION_REFUSED = re.compile(r"unrecognized option|invalid option|Invalid --", re.IGNORECASE)


def option_supported(stderr: str) -> bool:
    """Whether `sbatch --test-only OPTION` parsed OPTION (any later complaint, e.g. a missing account, is
    not about the option)."""
    return _OPTION_REFUSED.search(stderr) is None


def ssh_config_hosts(files: list[str]) -> set[str]:
    """The literal (pattern-free) names of `Host` lines in OpenSSH config files."""
    hosts: set[str] = set()
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
        except OSError:
            continue
        for line in lines:
            words = line.strip().replace("=", " ", 1).split()
            if len(words) > 1 and words[0].lower() == "host":
                hosts.update(w for w in words[1:] if not any(c in w for c in "*?!"))
    return hosts


def resolve_target(
    target: str,
    *,
    port: int | None = None,
    identity_files: list[str] | None = None,
    known_hosts: str | None = None,
) -> tuple[SlurmSSHConfig, str]:
    """The SSH config for CLUSTER and how it was understood ("host", "ssh config alias" or "preset X")."""
    from xm_slurm.contrib.clusters import PRESETS, by_name
    from xm_slurm.errors import ValidationError
    from xm_slurm.ssh_config import SlurmSSHConfig

    user, _, rest = target.rpartition("@")
    host, colon, port_text = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    if colon:
        if not port_text.isdigit():
            raise ValidationError(f"CLUSTER {target!r}: port {port_text!r} must be a number (user@host:port)")
        port = port if port is not None else int(port_text)
    if not host:
        raise ValidationError(
            f"CLUSTER {target!r} names no host; give [user@]host[:port], an ssh alias or a preset"
        )
    overrides: dict[str, Any] = {}
    if port is not None:
        overrides["port"] = port
    if identity_files:
        overrides["client_keys"] = tuple(identity_files)
    if known_hosts is not None:
        overrides["known_hosts"] = known_hosts
    probe = SlurmSSHConfig(host="probe")
    preset = host.strip().lower().replace("_", "-")
    if not colon and host not in ssh_config_hosts(probe.openssh_config_files()) and preset in PRESETS:
        cluster = by_name(host, user or None)
        return dataclasses.replace(cluster.ssh, **overrides), f"preset {PRESETS[preset].name}"
    how = "ssh config alias" if host in ssh_config_hosts(probe.openssh_config_files()) else "host"
    return SlurmSSHConfig(host=host, user=user or None, **overrides), how


def parse_config(stdout: str) -> dict[str, str]:
    """`scontrol show config` as {key: value}."""
    out = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def _int(value: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", value or "")
    return int(m.group(1)) if m else None


def _first_line(text: str) -> str:
    return next((x.strip() for x in text.splitlines() if x.strip()), "")


async def probe(transport: Transport) -> dict[str, Any]:
    """Run every probe over one transport; the report's fields are documented in docs/cli.md."""
    from xm_slurm.scheduler import state_root

    async def run(argv: list[str] | str) -> Any:
        return await transport.run(argv, check=False, idempotent=True)

    await run("true")  # connect first, so a connection error is reported once and as itself
    version, sacct, config, runtimes, partitions, root, *options = await asyncio.gather(
        run(["sbatch", "--version"]),
        run(["sacct", "-n", "-X", "-P", "--format=JobID", "-S", "now"]),
        run(["scontrol", "show", "config"]),
        run(_RUNTIME_PROBE),
        run(["sinfo", "-h", "-o", "%P"]),
        state_root(transport),
        *(
            run(["sbatch", "--test-only", "--time=1", "--output=/dev/null", option, "--wrap=true"])
            for option in OPTION_PROBES
        ),
    )
    report: dict[str, Any] = {"slurm_found": version.exit_status == 0}
    settings = parse_config(config.stdout) if config.exit_status == 0 else {}
    report["slurm_version"] = settings.get("SLURM_VERSION") or (
        version.stdout.split()[-1] if version.exit_status == 0 and version.stdout.split() else None
    )
    sacct_error = (
        None if sacct.exit_status == 0 else (_first_line(sacct.stderr) or f"exit {sacct.exit_status}")
    )
    report["sacct"] = {"works": sacct.exit_status == 0, "error": sacct_error}
    report["max_array_size"] = _int(settings.get("MaxArraySize"))
    report["max_job_count"] = _int(settings.get("MaxJobCount"))
    report["accounting_storage"] = settings.get("AccountingStorageType")
    report["min_job_age"] = settings.get("MinJobAge")
    report["partitions"] = [p for p in partitions.stdout.split() if p] if partitions.exit_status == 0 else []
    found = {}
    for line in runtimes.stdout.splitlines():
        name, _, rest = line.partition("|")
        path, _, ver = rest.partition("|")
        if name in RUNTIMES:
            found[name] = {"path": path, "version": ver.strip() or None}
    report["runtimes"] = {name: found.get(name) for name in RUNTIMES}
    report["sbatch_options"] = {
        option: option_supported(result.stderr) if report["slurm_found"] else None
        for option, result in zip(OPTION_PROBES, options, strict=True)
    }
    folder: dict[str, Any] = {"path": root, "exists": False, "mode": None, "private": None}
    try:
        st = await transport.stat(root)
    except FileNotFoundError:
        pass
    else:
        folder.update(exists=True, mode=f"{st.permissions:04o}", private=st.permissions & 0o077 == 0)
    report["state_folder"] = folder
    max_array = report["max_array_size"]
    report["decisions"] = {
        "status_source": "sacct" if report["sacct"]["works"] else "squeue",
        # Task ids run 0..MaxArraySize-1, so one array holds at most MaxArraySize tasks; a larger sweep is
        # split into arrays of that size. Unreadable: Slurm's default (1001) is assumed.
        "array_chunk_size": max_array if max_array is not None else DEFAULT_MAX_ARRAY_SIZE,
    }
    return report


def warnings(report: dict[str, Any]) -> list[str]:
    out = []
    if not report["slurm_found"]:
        out.append("sbatch was not found on the login node: is this a Slurm cluster (or a module to load)?")
    if not report["sacct"]["works"]:
        out.append(
            f"sacct does not work ({report['sacct']['error']}): job states come from squeue, which forgets "
            "a job MinJobAge after it ends"
        )
    if not any(report["runtimes"].values()):
        out.append("no container runtime (apptainer, singularity, podman) on the login node's PATH")
    refused = [option for option, ok in report.get("sbatch_options", {}).items() if ok is False]
    if refused:
        out.append(
            f"this site's sbatch does not know {', '.join(refused)} (newer Slurm): a job whose executor sets "
            "them (bind={'tres': ...}, gres_flags=...) would be refused at submission"
        )
    folder = report["state_folder"]
    if not folder["exists"]:
        out.append(
            f"state folder {folder['path']} does not exist yet (created, private, by the first launch)"
        )
    elif not folder["private"]:
        out.append(
            f"state folder {folder['path']} has mode {folder['mode']}: others can read scripts and logs"
        )
    return out


def _print_report(report: dict[str, Any]) -> None:
    def runtime(name: str) -> str:
        r = report["runtimes"][name]
        return "-" if r is None else f"{r['path']} ({r['version'] or 'version unknown'})"

    folder = report["state_folder"]
    rows = [
        ("cluster", f"{report['cluster']} ({report['understood_as']})"),
        ("slurm version", report["slurm_version"]),
        ("sacct", "works" if report["sacct"]["works"] else f"fails: {report['sacct']['error']}"),
        ("MaxArraySize", report["max_array_size"]),
        ("MaxJobCount", report["max_job_count"]),
        ("partitions", ", ".join(report["partitions"])),
        *((name, runtime(name)) for name in RUNTIMES),
        (
            "state folder",
            f"{folder['path']} ({'mode ' + folder['mode'] if folder['exists'] else 'does not exist yet'})",
        ),
        *(
            (
                f"sbatch {option.split('=')[0]}",
                option.split("=", 1)[1] + (" supported" if ok else " not supported"),
            )
            for option, ok in report["sbatch_options"].items()
            if ok is not None
        ),
        ("job states via", report["decisions"]["status_source"]),
        ("array chunk size", report["decisions"]["array_chunk_size"]),
    ]
    print_table(
        ["check", "result"], rows, title=None if not is_terminal() else f"xm-slurm doctor {report['cluster']}"
    )
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)


async def _doctor_async(args: argparse.Namespace) -> int:
    from xm_slurm.transport import SSHTransport

    ssh, how = resolve_target(
        args.cluster, port=args.port, identity_files=args.identity_file, known_hosts=args.known_hosts
    )
    async with SSHTransport(ssh, connect_timeout=args.connect_timeout) as transport:
        report = await probe(transport)
    report = {"cluster": ssh.destination, "understood_as": how, **report}
    report["warnings"] = warnings(report)
    if args.json:
        print_json(report)
    else:
        _print_report(report)
    return exit_codes.OK if report["slurm_found"] else exit_codes.FAILURE


def _doctor(args: argparse.Namespace) -> int:
    return asyncio.run(_doctor_async(args))


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="probe a cluster: Slurm version, sacct, limits, runtimes, state folder",
        description=(
            "Connect to a cluster's login node and report: the Slurm version, whether sacct works, "
            "MaxArraySize and MaxJobCount, the container runtimes found, the xm_slurm state folder, "
            "whether its sbatch knows the newer options --tres-bind and --gres-flags=*-sharing, and "
            "what the library decides from them (job states via sacct or squeue, job array chunk size)."
        ),
        epilog=EPILOG,
    )
    p.add_argument(
        "cluster", metavar="CLUSTER", help="[user@]host[:port], an ~/.ssh/config alias, or a preset name"
    )
    p.add_argument("--port", type=_port, default=None, help="SSH port (overrides CLUSTER's and ssh config's)")
    p.add_argument(
        "--identity-file",
        action="append",
        default=[],
        metavar="PATH",
        help="private key to log in with (repeatable; default: ssh config / agent)",
    )
    p.add_argument(
        "--known-hosts", default=None, metavar="PATH", help="known_hosts file to verify the host key with"
    )
    p.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_doctor)
