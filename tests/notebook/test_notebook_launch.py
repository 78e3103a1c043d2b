"""Launching from a Jupyter notebook (issue 18, point 9): a real ipykernel, driven by nbclient, runs a small
notebook whose cells await at top level (the kernel's event loop is already running) against the real
local cluster. The plain `with` form is refused there with a message naming `async with`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/experiment"))

from experiment_fixtures import cluster_literal  # noqa: E402
from local_cluster import LocalCluster  # noqa: E402

from xm_slurm import api  # noqa: E402
from xm_slurm.api import settings  # noqa: E402

pytestmark = pytest.mark.cluster

_SETUP = """
import datetime as dt
from xmanager import xm
import xm_slurm

cluster = {cluster}
job = xm.Job(
    executable=xm_slurm.RemoteImage(image={image!r}, entrypoint=["echo", {word!r}]),
    executor=xm_slurm.Slurm(requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=2)),
)
"""

# Top-level await: the kernel's loop runs this cell.
_ASYNC_WITH = """
async with xm_slurm.create_experiment("from a notebook") as experiment:
    wu = await experiment.add(job)
    await wu.wait_until_complete()
    lines = [line async for line in wu.logs()]
jobs = [str(j.job_id) for j in wu.slurm_jobs]
print("RESULT " + json.dumps({"xid": experiment.experiment_id, "jobs": jobs, "lines": lines}))
"""

_WITH = """
try:
    with xm_slurm.create_experiment("from a notebook, with") as experiment:
        experiment.add(job)
except xm_slurm.XmSlurmError as e:
    print("REFUSED " + str(e))
"""


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private SQLite store, handed to the kernel through its environment."""
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("XM_SLURM_API_BACKEND", raising=False)
    settings.clear_cache()
    yield tmp_path / "state"
    settings.clear_cache()


def _notebook(lc: LocalCluster, word: str) -> nbformat.NotebookNode:
    cells = [
        "import json",
        _SETUP.format(cluster=cluster_literal(lc), image=lc.image, word=word),
        _ASYNC_WITH,
        _WITH,
    ]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])


def _printed(nb: nbformat.NotebookNode, prefix: str) -> str:
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if line.startswith(prefix):
                    return line[len(prefix) :]
    raise AssertionError(
        f"no {prefix!r} line in the notebook's outputs: {[c.get('outputs') for c in nb.cells]}"
    )


def test_a_notebook_launches_with_top_level_await(local_cluster: LocalCluster, store: Path) -> None:
    word = f"notebook-{uuid.uuid4().hex[:8]}"
    nb = _notebook(local_cluster, word)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(store.parent)}}
    ).execute()

    result = json.loads(_printed(nb, "RESULT "))
    [job_id] = result["jobs"]
    assert any(word in line for line in result["lines"]), result
    state = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobName,State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert state and state[0].endswith("|COMPLETED"), state

    settings.clear_cache()  # the store the kernel was given (this process's environment too)
    stored = api.client().get_experiment(result["xid"])
    assert [[j.slurm_job_id for j in wu.jobs] for wu in stored.work_units] == [[job_id]]

    refused = _printed(nb, "REFUSED ")
    assert "async with xm_slurm.create_experiment(...)" in refused and "notebook" in refused, refused
