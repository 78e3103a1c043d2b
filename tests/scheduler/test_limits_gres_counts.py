"""The cluster limits keep, per partition, the most of each gres one node holds (what the pre-flight checks a
job's per-node GPU need against), and a cache written before counts were kept still loads, counts unknown."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from counting_transport import CountingTransport

from xm_slurm.scheduler.limits import (
    ClusterLimits,
    Partition,
    cached_limits,
    parse_gres,
    parse_gres_counts,
    parse_limits,
)
from xm_slurm.scheduler.local_state import key_file_stem, transport_key
from xm_slurm.scheduler.preflight import GresNeed, partition_problems
from xm_slurm.transport import LocalTransport

#: What the local cluster's `sinfo -a -h -o '%P|%G|%f'` prints (node1: 4 GPUs; node2: 4 + 2 MIG slices).
LOCAL_SINFO = "debug*|gpu:4|(null)\ndebug*|gpu:sim:4,gpu:1g.10gb:2|(null)\n"
CONFIG = "MaxArraySize            = 1001\nMaxJobCount             = 10000\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu:sim:4(S:0),gpu:1g.10gb:2", {"gpu": 6, "gpu:sim": 4, "gpu:1g.10gb": 2}),
        ("(null)", {}),
        ("gpu:4", {"gpu": 4}),
        ("gpu:a100:4(S:0-1),shard:a100:16", {"gpu": 4, "gpu:a100": 4, "shard": 16, "shard:a100": 16}),
        ("gpu:tesla_v100-sxm2-16gb:4(S:0,1)", {"gpu": 4, "gpu:tesla_v100-sxm2-16gb": 4}),
        ("mps:2K", {"mps": 2048}),  # gres.conf's suffixes multiply by 1024
        ("gpu", {"gpu": None}),  # no count printed: unknown, never 0
        ("gpu:a100:2,gpu:v100", {"gpu": None, "gpu:a100": 2, "gpu:v100": None}),
    ],
)
def test_gres_counts_of_one_node(text: str, expected: dict[str, int | None]) -> None:
    assert parse_gres_counts(text) == expected
    assert parse_gres(text) == frozenset(expected)  # the names, as before


def test_a_partition_keeps_the_most_one_node_holds() -> None:
    limits = parse_limits(f"{CONFIG}#xm-slurm-partitions\n{LOCAL_SINFO}#xm-slurm-end\n")
    debug = limits.partition("debug")
    assert debug is not None
    # The largest node, not the sum over nodes (4 + 6) and not node1's 4.
    assert (debug.most("gpu"), debug.most("gpu:sim"), debug.most("gpu:1g.10gb")) == (6, 4, 2)
    assert debug.most("shard") == 0  # no node has it
    # A node configuration whose count sinfo did not print makes the partition's count unknown.
    unknown = parse_limits(f"{CONFIG}#xm-slurm-partitions\n{LOCAL_SINFO}debug|gpu|(null)\n#xm-slurm-end\n")
    assert unknown.partition("debug").most("gpu") is None  # type: ignore[union-attr]
    assert unknown.partition("debug").most("gpu:sim") == 4  # type: ignore[union-attr]


def test_counts_survive_the_cache_form() -> None:
    debug = Partition("debug", frozenset({"gpu", "gpu:sim"}), frozenset(), (("gpu", 6), ("gpu:sim", 4)))
    data = json.loads(json.dumps(debug.to_json()))
    assert data["gres_most"] == {"gpu": 6, "gpu:sim": 4}
    assert Partition.from_json(data) == debug
    for bad in ({"gpu": "6"}, {"gpu": True}, {"gpu": -1}, ["gpu", 6]):
        with pytest.raises(ValueError, match="not a partition record"):
            Partition.from_json({**data, "gres_most": bad})


def _write_cache(directory: Path, transport: CountingTransport, partitions: list[dict[str, object]]) -> None:
    key = transport_key(transport)
    assert key is not None
    record = {
        "key": key,
        "time": time.time(),
        "max_array_size": 1001,
        "max_job_count": 10000,
        "partitions": partitions,
        "default_partition": "debug",
    }
    (directory / f"{key_file_stem(key)}.json").write_text(json.dumps(record))


async def test_a_cache_written_before_counts_loads_with_counts_unknown_and_refuses_nothing(
    tmp_path: Path,
) -> None:
    transport = CountingTransport(LocalTransport())
    # What an earlier version wrote: gres names only.
    _write_cache(tmp_path, transport, [{"name": "debug", "gres": ["gpu", "gpu:sim"], "features": []}])
    limits = await cached_limits(transport, directory=tmp_path)
    assert (limits.source, transport.commands) == ("cache", [])  # loaded, not read again
    debug = limits.partition("debug")
    assert debug is not None and debug.gres == {"gpu", "gpu:sim"}
    assert debug.most("gpu") is None
    assert partition_problems(limits, "c", None, ("gpu", None, None), GresNeed(99, 1, "GPU=99")) == []
    # The same request against counts the cluster told is refused.
    told = ClusterLimits(partitions=(Partition("debug", debug.gres, frozenset(), (("gpu", 6),)),))
    assert partition_problems(told, "c", "debug", ("gpu", None, None), GresNeed(99, 1, "GPU=99"))
