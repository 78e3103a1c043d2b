"""`xm-slurm retry` and `xm-slurm show` report a retry's lineage from the stored `retry_of` field, on the local
cluster: a job keeps its name, the retry names the job it replaced, and a retry of a retry leaves only the
newest attempt in `show`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from cli_helpers import launch, sh_job, xm_cli
from local_cluster import LocalCluster

import xm_slurm
from xm_slurm.cli import exit_codes

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiment"))
from experiment_fixtures import cluster  # noqa: E402

__all__ = ["cluster"]


def _retry(xid: int) -> dict[str, list[str]]:
    """One `xm-slurm retry XID --json` after the experiment's jobs ended; {"jobs": [...], "retry_of": [...]}."""
    assert xm_cli("wait", str(xid)).returncode == exit_codes.JOBS_FAILED
    result = xm_cli("retry", str(xid), "--json")
    assert result.returncode == exit_codes.OK, result.stderr
    [row] = json.loads(result.stdout)["retried"]
    assert row["wid"] == 2
    return {"jobs": row["jobs"], "retry_of": row["retry_of"]}


def test_retry_and_show_read_the_stored_lineage(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    jobs = [
        sh_job(local_cluster, cluster, "true", name="fine"),
        sh_job(local_cluster, cluster, "exit 3", name="flaky [retry of 5]"),  # a name, not a lineage
    ]
    xid, [_, first] = asyncio.run(launch(jobs, "cli retry lineage"))

    once = _retry(xid)
    assert once["retry_of"] == [first] and once["jobs"] != [first]
    twice = _retry(xid)  # a retry of the retry
    assert twice["retry_of"] == once["jobs"]

    shown = json.loads(xm_cli("show", str(xid), "--json").stdout)
    fine, flaky = shown["work_units"]
    assert [(j["name"], j["retry_of"]) for j in fine["jobs"]] == [("fine", None)]
    # Only the newest attempt is current; its name is the user's, its lineage the stored field.
    assert [(j["name"], j["slurm_job_id"], j["retry_of"]) for j in flaky["jobs"]] == [
        ("flaky [retry of 5]", twice["jobs"][0], once["jobs"][0])
    ]
    stored = xm_slurm.api.client().get_experiment(xid).work_units[1].jobs
    assert [(j.name, j.slurm_job_id, j.retry_of) for j in stored] == [
        ("flaky [retry of 5]", first, None),
        ("flaky [retry of 5]", once["jobs"][0], first),
        ("flaky [retry of 5]", twice["jobs"][0], once["jobs"][0]),
    ]
    plain = xm_cli("show", str(xid)).stdout
    assert f"retry of {once['jobs'][0]}" in plain
