"""Where the time of one sweep launch goes: a timeline of its SSH commands, file uploads and store writes.

    uv run python benchmarks/launch_phases.py --trials 1000 [--profile]

Against the local test cluster (`.local-cluster/env.sh`), with a throwaway store. The sweep waits behind a held
job (nothing runs) and everything is cancelled at the end. Each line: what, start -> end (seconds since
`experiment.add` was called). `--profile` adds the top of a cProfile of the launch (which slows it ~2x).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import Setup, gate, wait_for_room  # benchmarks/cases.py


def _timed(events: list[tuple[str, float, float]], clock: list[float], what: str, call: Any) -> Any:
    async def wrapper(*args: Any, **kw: Any) -> Any:
        start = time.perf_counter() - clock[0]
        try:
            return await call(*args, **kw)
        finally:
            label = f"{what} {str(args[0])[:50]}" if what == "run" and args else what
            events.append((label, start, time.perf_counter() - clock[0]))

    return wrapper


async def main(trials: int, profile: bool) -> None:
    import xm_slurm
    from xm_slurm.dependencies import afterok
    from xm_slurm.experiment import launching
    from xm_slurm.scheduler import cancel

    s = Setup()
    sweep = [xm_slurm.JobArgs(args={"trial": i}, env_vars={"TRIAL": str(i)}) for i in range(trials)]
    events: list[tuple[str, float, float]] = []
    clock = [time.perf_counter()]
    async with xm_slurm.create_experiment("phases benchmark", transport_factory=s.factory) as experiment:
        transport = experiment.connections.transport(s.ssh)
        await wait_for_room(transport, trials + 1)  # connects first: the timeline excludes the handshake
        held = await gate(transport)
        await experiment.connections.state_root(s.ssh)
        for method in ("run", "mkdir", "write_text"):
            setattr(transport, method, _timed(events, clock, method, getattr(transport, method)))
        store = xm_slurm.api.client()
        store.areplace_jobs = _timed(events, clock, "store write", store.areplace_jobs)  # type: ignore[method-assign]
        render = launching.Launcher._render
        launching.Launcher._render = _timed(events, clock, "plan done; render", render)  # type: ignore[method-assign]
        profiler = cProfile.Profile() if profile else None
        clock[0] = time.perf_counter()
        if profiler:
            profiler.enable()
        units = await experiment.add(s.job, args=sweep, dependency=afterok(held))
        if profiler:
            profiler.disable()
        total = time.perf_counter() - clock[0]
        launching.Launcher._render = render  # type: ignore[method-assign]
        await cancel(transport, [held, *{j.job_id.base for u in units for j in u.slurm_jobs}])
    for what, start, end in sorted(events, key=lambda e: e[1]):
        if not what.startswith("run ['scancel'"):
            print(f"{start:6.3f} -> {end:6.3f} ({end - start:5.3f})  {what}")
    print(f"experiment.add of {trials} trials: {total:.3f} s")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="also print the top of a cProfile")
    options = parser.parse_args()
    asyncio.run(main(options.trials, options.profile))
