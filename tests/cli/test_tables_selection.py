"""`latest` and negative indexes wherever an XID is taken: resolved in the store as `list` orders it (newest
first, experiments without work units left out); bad values are usage errors naming what would be right."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import xm_cli

from xm_slurm import api
from xm_slurm.api import settings
from xm_slurm.cli import exit_codes


def _seed() -> list[int]:
    settings.clear_cache()
    client = api.client()
    ids = [client.insert_experiment(api.ExperimentPatch(title=f"e{i}")) for i in range(3)]
    for xid in ids:
        client.insert_work_units(xid, [api.WorkUnitPatch(wid=1, args="{}")])
    client.insert_experiment(api.ExperimentPatch(title="empty, newest"))  # no unit: not counted
    return ids


def _shown(*args: str) -> int:
    result = xm_cli("show", *args, "--json")
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["xid"])


def test_latest_and_negative_indexes_resolve_as_list_orders(store: Path) -> None:
    ids = _seed()
    assert _shown("latest") == _shown("-1") == ids[2]
    assert _shown("-2") == ids[1] and _shown("-3") == ids[0]
    assert _shown(str(ids[0])) == ids[0]
    too_far = xm_cli("show", "-4")
    assert too_far.returncode == exit_codes.USAGE
    assert "no experiment -4: the store holds only 3 with work units" in too_far.stderr
    for bad in ("0", "abc", "1.5"):
        result = xm_cli("show", bad)
        assert result.returncode == exit_codes.USAGE and "'latest' or a negative index" in result.stderr
    assert "Traceback" not in too_far.stderr


def test_latest_in_an_empty_store(store: Path) -> None:
    result = xm_cli("logs", "latest")
    assert result.returncode == exit_codes.USAGE
    assert "no experiment 'latest': the store holds none with work units" in result.stderr
