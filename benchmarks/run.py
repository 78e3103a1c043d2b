"""The benchmark suite, one command: `uv run python -m benchmarks` (or `uv run python benchmarks/run.py`).

Against the local test cluster (`scripts/local-cluster up`; `.local-cluster/env.sh`), each case in its own
process (benchmarks/cases.py), then one table:

  (a) `experiment.add` of an N-trial sweep until every work unit is recorded, N = 100, 1,000, 5,000, beside a
      raw `sbatch --array` of the same size over the same SSH connection (split at MaxArraySize 1001 too);
      the sweeps wait on a held job, so nothing runs, and are cancelled;
  (b) Slurm commands per polling tick and per minute while 1,000 jobs are tracked by 1,000 waiting work
      units (counted at the transport), and for 1,000 concurrent `get_status()` calls;
  (c) `import xm_slurm` time and memory, alone and with the names a launch script touches;
  (d) peak memory (ru_maxrss) of the process that launched 5,000 trials.

`--complete 2500` also runs a 2,500-trial sweep of busybox `true` to the end at the real MaxArraySize (about
0.4 s per task on the 2-core test machine, so ~15 minutes: not part of the default run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CASES = str(REPO / "benchmarks" / "cases.py")

IMPORT = (
    "import json, resource, time; t = time.perf_counter(); import xm_slurm; t1 = time.perf_counter(); "
    "[getattr(xm_slurm, n) for n in ('create_experiment', 'Slurm', 'SlurmClusterConfig', 'JobRequirements', "
    "'RemoteImage', 'JobArgs')]; t2 = time.perf_counter(); "
    "print(json.dumps({'import_s': t1 - t, 'launch_names_s': t2 - t, "
    "'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
)


def child(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=7200, check=False
    )
    if result.returncode != 0:
        sys.exit(f"benchmark case {args[1:]} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def row(what: str, value: str, target: str = "") -> str:
    return f"| {what:<58} | {value:>22} | {target:<34} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,5000", help="sweep sizes for (a)")
    parser.add_argument("--tracked", type=int, default=1000, help="jobs tracked for (b)")
    parser.add_argument("--poll-seconds", type=float, default=60.0, help="how long (b) counts")
    parser.add_argument("--complete", type=int, default=0, help="also run an N-trial sweep to the end")
    options = parser.parse_args()

    lines = [row("what", "measured", "target"), f"|{'-' * 60}|{'-' * 24}|{'-' * 36}|"]
    imports = [child("-c", IMPORT) for _ in range(5)]
    imp = statistics.median(r["import_s"] for r in imports)
    names = statistics.median(r["launch_names_s"] for r in imports)
    lines.append(row("(c) import xm_slurm (median of 5, fresh process)", f"{imp:.3f} s", "< 0.4 s"))
    lines.append(row("(c) ... and touch create_experiment, Slurm, ...", f"{names:.3f} s", "< 0.4 s"))
    lines.append(row("(c) peak RSS of that process", f"{imports[0]['peak_mib']:.0f} MiB"))
    for n in (int(x) for x in options.sizes.split(",")):
        r = child(CASES, "launch", str(n))
        ratio = r["launch_s"] / r["raw_s"]
        target = (
            "within 2x raw sbatch" if n == 1000 else ("launches on MaxArraySize 1001" if n >= 1001 else "")
        )
        lines.append(
            row(
                f"(a) add {n}-trial sweep ({r['arrays']} arrays, {r['recorded']} recorded)",
                f"{r['launch_s']:.2f} s",
                target,
            )
        )
        lines.append(
            row(
                "(a) ... the first launch on this machine (reads limits)",
                f"{r['cold_s']:.2f} s (x{r['cold_s'] / r['raw_s']:.1f})",
            )
        )
        lines.append(
            row(
                f"(a) raw sbatch --array, {n} tasks ({r['raw_arrays']} arrays)",
                f"{r['raw_s']:.2f} s (x{ratio:.1f})",
            )
        )
        lines.append(row(f"(d) peak RSS of the {n}-trial launch process", f"{r['peak_mib']:.0f} MiB"))
    p = child(CASES, "poll", str(options.tracked), str(options.poll_seconds))
    lines.append(
        row(f"(b) {p['tracked']} get_status() at once: commands", str(p["status_all_commands"]), "1")
    )
    per_tick = p["commands"] / max(1, p["ticks"])
    lines.append(
        row(
            f"(b) {p['tracked']} waiting: commands per polling tick",
            f"{per_tick:.2f} ({p['ticks']} ticks)",
            "1 per cluster per tick",
        )
    )
    lines.append(row(f"(b) {p['tracked']} waiting: commands per minute", f"{p['per_minute']:.1f}"))
    if options.complete:
        c = child(CASES, "complete", str(options.complete))
        lines.append(
            row(
                f"{c['trials']}-trial sweep run to the end ({c['arrays']} arrays)",
                f"{c['total_s']:.0f} s",
                ",".join(c["states"]),
            )
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
