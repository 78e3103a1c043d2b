"""Every example of examples/ run as its header says, against the local cluster, checked by its outcome."""

from __future__ import annotations

import json
import re

import pytest
from examples_helpers import ExampleEnv, experiment_id

pytestmark = pytest.mark.cluster


def _jobs(stored_unit) -> list[str]:  # type: ignore[no-untyped-def]
    return [job.slurm_job_id for job in stored_unit.jobs]


def test_job_array_sweep(example_env: ExampleEnv) -> None:
    out = example_env.run("job-array-sweep")
    xid = experiment_id(out)
    [array] = re.findall(r"in job array\(s\) \[(\d+)\]", out)
    stored = example_env.stored(xid)
    assert [wu.wid for wu in stored.work_units] == [1, 2, 3, 4, 5, 6]
    # ONE array: work unit i is task i-1 of it.
    assert [_jobs(wu) for wu in stored.work_units] == [[f"{array}_{i}"] for i in range(6)]
    assert out.count(": COMPLETED") == 6
    assert "trial of work unit 6: args ['--epochs=3', '--lr=0.001', '--seed=1'] run=lr0.001-s1" in out


def test_job_dependencies(example_env: ExampleEnv) -> None:
    out = example_env.run("job-dependencies")
    xid = experiment_id(out)
    order = re.search(r"order the jobs ran in: (.*)", out)
    assert order, out
    steps = [s.split()[0] for s in order.group(1).split(" | ")]
    assert steps == ["prepare", "train", "train", "evaluate", "evaluate", "report"]
    stored = example_env.stored(xid)
    assert len(stored.work_units) == 6
    trains, evals = _jobs(stored.work_units[1]) + _jobs(stored.work_units[2]), _jobs(stored.work_units[3])
    assert trains[0].endswith("_0") and trains[1].endswith("_1") and evals[0].endswith("_0")


def test_job_group(example_env: ExampleEnv) -> None:
    out = example_env.run("job-group")
    xid = experiment_id(out)
    assert "server: got 'hello from the worker'" in out
    assert "worker: got 'hello from the server'" in out
    [wu] = example_env.stored(xid).work_units
    jobs = _jobs(wu)
    assert len(jobs) == 2 and jobs[0].endswith("+0") and jobs[1].endswith("+1"), jobs  # one hetjob


def test_metadata(example_env: ExampleEnv) -> None:
    out = example_env.run("metadata")
    xid = experiment_id(out)
    stored = example_env.stored(xid)
    assert stored.title == "metadata example"
    assert stored.description == "Shows what an experiment records besides its jobs"
    assert stored.note == "baseline run; compare with next week's"
    assert set(stored.tags) == {"example", "baseline"}
    user_artifacts = {a.name: a.uri for a in stored.artifacts if not a.name.startswith("xm_slurm.")}
    assert user_artifacts == {"wandb": "https://wandb.ai/me/project/runs/abc123"}
    assert "xm_slurm.launch" in {a.name for a in stored.artifacts}  # provenance is recorded beside them
    configs = {a.name: a.uri for a in stored.config_artifacts}
    assert json.loads(configs["PYTHON"]) == {"lr": 0.01, "epochs": 3}
    assert "prepare -> train -> evaluate" in configs["GRAPHVIZ"]
    [wu] = stored.work_units
    assert {a.name: a.uri for a in wu.artifacts} == {"checkpoint": "file:///checkpoints/wu1/final.pt"}
    assert "work unit 1: COMPLETED" in out


def test_custom_dockerfile(example_env: ExampleEnv) -> None:
    out = example_env.run("custom-dockerfile")
    assert re.search(r"built and pinned \S+/xm-examples/custom-dockerfile@sha256:[0-9a-f]{64}", out), out
    assert re.search(r"custom image \(built at [0-9T:Z-]+\); args \['--steps=10'\]; MODE=train", out), out
    assert re.search(r"work unit 1: COMPLETED", out)
    assert len(example_env.stored(experiment_id(out)).work_units) == 1


def test_pip(example_env: ExampleEnv) -> None:
    out = example_env.run("pip")
    assert "evaluated ckpt-100 on valid" in out and "evaluated ckpt-100 on test" in out
    assert out.count(": COMPLETED") == 2
    assert len(example_env.stored(experiment_id(out)).work_units) == 2


def test_uv(example_env: ExampleEnv) -> None:
    out = example_env.run("uv")
    assert "sweeper done lr=0.1 seed=1" in out and "sweeper done lr=0.01 seed=1" in out
    assert "python     /opt/venv" in out  # ran in the environment uv made from uv.lock
    assert out.count(": COMPLETED") == 2


def test_parameter_controller(example_env: ExampleEnv) -> None:
    out = example_env.run("parameter-controller")
    xid = experiment_id(out)
    assert "controller: xm_slurm controller runner: search finished" in out
    stored = example_env.stored(xid)
    # The auxiliary unit (the controller) and the 2 work units it added from inside its job.
    assert [wu.wid for wu in stored.work_units] == [1, 2, 3]
    assert stored.work_units[0].role.name == "AUX_UNIT"  # the role is data, not in args
    assert all(len(wu.jobs) == 1 for wu in stored.work_units)
    assert "work unit 2" in out and out.count(" COMPLETED") >= 2
    assert {a.name for a in stored.artifacts if not a.name.startswith("xm_slurm.")} == {"best"}
