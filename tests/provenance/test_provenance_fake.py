"""Provenance recorded through a real store on both backends (a SQLite file, the real REST server), with a
real git repository, on the fake Slurm (tests/fakes): what the artifacts hold, that no secret reaches any
of them, and the run identity a launch and a retry give their scripts."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_repo
from fake_slurm import FakeSlurm
from mlflow_stub import mlflow_stub
from xmanager import xm

import xm_slurm
from xm_slurm import api
from xm_slurm.cli import main as cli
from xm_slurm.executables import ImageCredentials
from xm_slurm.experiment import provenance_git
from xm_slurm.rendering.payload import read_task_table

SECRET = "sk-live-0123456789abcdef"  # an env value marked xm_slurm.Secret
REGISTRY_PASSWORD = "registry-pass-9876543210"
DOTENV = "DOTENV_ONLY_TOKEN=dotenv-9c1f2e"
IMAGE = "registry.invalid/team/train@sha256:" + "ab" * 32


import store_backends  # noqa: E402

# Fixtures: every test that takes `backend` runs on the SQLite file and on the real REST server.
backend = store_backends.backend
server = store_backends.server


def dirty_project(root: Path) -> tuple[Path, str]:
    """A project with one committed and one uncommitted change, an untracked .env and a file that holds
    the secret values literally; returns it and its commit."""
    repo = make_repo(root, {"main.py": "print('committed')\n", "config.py": "LR = 0.1\n"})
    (repo / "main.py").write_text("print('uncommitted change')\n")
    (repo / "config.py").write_text(f"LR = 0.2\nKEY = '{SECRET}'\nPASSWORD = '{REGISTRY_PASSWORD}'\n")
    (repo / ".env").write_text(DOTENV + "\n")
    return repo, git(repo, "rev-parse", "HEAD")


def job(fake: FakeSlurm, image_ref: str = IMAGE, **env: Any) -> xm.Job:
    image = xm_slurm.RemoteImage(
        image=image_ref,
        entrypoint=["python3", "main.py"],
        credentials=ImageCredentials("robot", REGISTRY_PASSWORD),
    )
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=fake.cluster()), time=dt.timedelta(minutes=5)
    )
    return xm.Job(executable=image, executor=executor, env_vars=env)


def every_stored_text(xid: int) -> str:
    """Every artifact of the experiment and its units, and its units' args, as the store gives them."""
    record = api.client().get_experiment(xid)
    texts = [a.uri for a in record.artifacts]
    for wu in record.work_units:
        texts += [wu.args or "", *(a.uri for a in wu.artifacts)]
    return "\n".join(texts)


def payload_of(fake: FakeSlurm, job_id: int) -> tuple[str, str]:
    """(the job's script, its first task's entrypoint decoded)."""
    script = fake._files[fake.jobs[job_id].script].data
    encoded = re.search(r"^xm_payload_0='([^']*)'", script, re.MULTILINE)
    assert encoded is not None
    return script, base64.b64decode(encoded.group(1)).decode()


async def test_artifacts_hold_the_code_state_and_no_secret_reaches_any_of_them(
    backend: str, tmp_path: Path
) -> None:
    repo, commit = dirty_project(tmp_path / "proj")
    provenance_git.remember([(IMAGE, str(repo))])  # what experiment.package does after a build
    fake = FakeSlurm()
    async with xm_slurm.create_experiment("provenance", transport_factory=FakeSlurm.factory(fake)) as e:
        xid = e.experiment_id
        first = await e.add(job(fake, API_KEY=xm_slurm.Secret(SECRET)), args={"args": {"seed": 1}})
        sweep = await e.add(
            job(fake),
            args=[{"env_vars": {"TRIAL_KEY": xm_slurm.Secret(SECRET)}, "args": {"i": i}} for i in range(3)],
        )
    record = api.client().get_experiment(xid)
    artifacts = {a.name: a.uri for a in record.artifacts}
    [code_name] = [n for n in artifacts if n.startswith("xm_slurm.code.")]  # once, not per trial
    code = json.loads(artifacts[code_name])
    assert code["commit"] == commit and code["branch"] == "main" and code["dirty"] is True
    assert "+print('uncommitted change')" in code["diff"] and "+LR = 0.2" in code["diff"]
    assert code["omitted"] == [".env"] and ".env" in code["omitted_note"]
    assert code["changed_files"] == [".env", "config.py", "main.py"]
    assert code["context"] == str(repo.resolve()) and code["diff_cap"] == 50_000
    images = json.loads(artifacts["xm_slurm.images"])["images"]
    assert images == [{"name": "train", "image": IMAGE, "context": str(repo.resolve())}]
    launch = json.loads(artifacts["xm_slurm.launch"])
    assert launch["versions"]["xm_slurm"] == xm_slurm.__version__ and launch["versions"]["xmanager"]
    assert launch["argv"] and launch["script"]  # pytest's own entry script here
    assert re.fullmatch(r"[0-9a-f]{8}", artifacts["xm_slurm.run_namespace"])
    stored = every_stored_text(xid)
    assert "<secret>" in stored  # the secret values were there, and were replaced
    for secret in (SECRET, REGISTRY_PASSWORD, "dotenv-9c1f2e", "DOTENV_ONLY_TOKEN"):
        assert secret not in stored, secret
    if backend == "rest":
        assert os.environ["XM_SLURM_REST_API_TOKEN"] not in stored
    by_wid = {wu.wid: json.loads(wu.args or "{}") for wu in record.work_units}
    assert by_wid[sweep[1].work_unit_id] == {"env_vars": {"TRIAL_KEY": "<secret>"}, "args": {"i": 1}}
    # The jobs themselves still get the value.
    _, entrypoint = payload_of(fake, first.slurm_jobs[0].job_id.job_id)
    assert SECRET in entrypoint
    assert len({j.job_id.job_id for wu in sweep for j in wu.slurm_jobs}) == 1


async def test_each_unit_gets_its_run_id_and_a_retry_a_new_one_unless_it_resumes(
    backend: str, tmp_path: Path
) -> None:
    fake = FakeSlurm()
    async with xm_slurm.create_experiment("run ids", transport_factory=FakeSlurm.factory(fake)) as e:
        xid = e.experiment_id
        e.tracking = xm_slurm.RunTracking(wandb=True)
        a, b = await e.add(job(fake), args=[{"args": {"i": 0}}, {"args": {"i": 1}}])
        namespace = api.client().get_experiment(xid)
        ns = next(x.uri for x in namespace.artifacts if x.name == "xm_slurm.run_namespace")
        script = fake._files[fake.jobs[a.slurm_jobs[0].job_id.job_id].script].data
        assert "export XM_SLURM_RUN_GENERATION" not in script  # as launched: generation 0
        # The array's task table holds each task's own entrypoint.
        table = re.search(r"^xm_tasks='\n(.*?)\n'", script, re.MULTILINE | re.DOTALL)
        assert table is not None
        tasks = {wid: base64.b64decode(p).decode() for wid, p in read_task_table(table.group(1))}
        for unit in (a, b):
            wid = unit.work_unit_id
            assert f'XM_SLURM_RUN_ID="xm-{ns}-{xid}-{wid}${{XM_SLURM_RUN_GENERATION:+' in tasks[wid]
            assert 'WANDB_RUN_ID="$XM_SLURM_RUN_ID" WANDB_RESUME=allow' in tasks[wid]
        array = a.slurm_jobs[0].job_id.job_id
        fake.finish(f"{array}_0", "FAILED", exit_code=3)
        fake.finish(f"{array}_1", "FAILED", exit_code=3)
        assert await e.retry_failed([a]) == [a]
        fresh = fake._files[fake.jobs[a.slurm_jobs[0].job_id.job_id].script].data
        assert "\nexport XM_SLURM_RUN_GENERATION=1\n" in fresh
        assert await e.retry_failed([b], resume=True) == [b]
        resumed = fake._files[fake.jobs[b.slurm_jobs[0].job_id.job_id].script].data
        assert "export XM_SLURM_RUN_GENERATION" not in resumed
        fake.finish(str(a.slurm_jobs[0].job_id), "FAILED", exit_code=3)
        assert await e.retry_failed([a]) == [a]  # a fresh retry of a fresh retry: the next generation
        again = fake._files[fake.jobs[a.slurm_jobs[0].job_id.job_id].script].data
        assert "\nexport XM_SLURM_RUN_GENERATION=2\n" in again and again.count("RUN_GENERATION=") == 1


def entrypoints(fake: FakeSlurm, job_id: int) -> dict[int, str]:
    """Each task's entrypoint by work unit id (a job array's table, or a single job's payload)."""
    script = fake._files[fake.jobs[job_id].script].data
    table = re.search(r"^xm_tasks='\n(.*?)\n'", script, re.MULTILINE | re.DOTALL)
    if table is None:
        _, entry = payload_of(fake, job_id)
        wid = re.search(r"^export XM_SLURM_WORK_UNIT_ID=(\d+)$", entry, re.MULTILINE)
        assert wid is not None
        return {int(wid.group(1)): entry}
    return {wid: base64.b64decode(p).decode() for wid, p in read_task_table(table.group(1))}


async def test_mlflow_runs_that_exist_are_continued_and_others_start_new(backend: str) -> None:
    fake = FakeSlurm()
    async with xm_slurm.create_experiment("mlflow", transport_factory=FakeSlurm.factory(fake)) as e:
        xid = e.experiment_id
        await e.add(job(fake), args=[{"args": {"i": i}} for i in range(2)])  # wids 1, 2; no tracking
        record = api.client().get_experiment(xid)
        ns = next(a.uri for a in record.artifacts if a.name == "xm_slurm.run_namespace")
        run3 = "0123abcd" * 4
        runs = {
            f"xm-{ns}-{xid}-3": run3,  # wid 3's run exists
            f"xm-{ns}-{xid}-30": "30" * 16,  # named like this experiment's, for a unit not launched
            f"xm-{ns}-{xid + 1}-4": "44" * 16,  # another experiment's
        }
        with mlflow_stub(runs, {"team": "7"}) as (uri, stub):
            e.tracking = xm_slurm.RunTracking(mlflow_tracking_uri=uri, mlflow_experiment="team")
            units = await e.add(job(fake), args=[{"args": {"i": i}} for i in range(2)])
        assert [u.work_unit_id for u in units] == [3, 4]
        [(get_path, _), (search_path, body)] = stub.requests
        assert get_path == "/api/2.0/mlflow/experiments/get-by-name?experiment_name=team"
        assert search_path == "/api/2.0/mlflow/runs/search"
        assert body["experiment_ids"] == ["7"]
        assert body["filter"] == f"attributes.run_name LIKE 'xm-{ns}-{xid}-%'"
        tasks = entrypoints(fake, units[0].slurm_jobs[0].job_id.job_id)
        assert (
            f"export MLFLOW_TRACKING_URI={uri}" in tasks[3]
            and f"export MLFLOW_TRACKING_URI={uri}" in tasks[4]
        )
        assert f"export MLFLOW_RUN_ID={run3}" in tasks[3]
        assert "MLFLOW_RUN_ID" not in tasks[4]  # no run of its own: the program starts one
        with mlflow_stub({f"xm-{ns}-{xid}-5": run3}, {}) as (uri, stub):
            e.tracking = xm_slurm.RunTracking(mlflow_tracking_uri=uri)  # the default experiment
            [fifth] = await e.add(job(fake), args=[{"args": {"i": 5}}])
        assert [r[1]["experiment_ids"] for r in stub.requests] == [["0"]]
        assert f"MLFLOW_RUN_ID={run3}" in entrypoints(fake, fifth.slurm_jobs[0].job_id.job_id)[5]
        e.tracking = xm_slurm.RunTracking(mlflow_tracking_uri="http://127.0.0.1:9")  # nothing listens
        [sixth] = await e.add(job(fake), args=[{"args": {"i": 6}}])  # a warning, not an error
        task = entrypoints(fake, sixth.slurm_jobs[0].job_id.job_id)[6]
        assert "MLFLOW_RUN_ID" not in task and "MLFLOW_TRACKING_URI=http://127.0.0.1:9" in task


async def test_cli_diff_names_the_changed_files_args_and_images(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "proj", {"main.py": "v = 1\n", "util.py": "u = 1\n"})
    first_commit = git(repo, "rev-parse", "HEAD")
    (repo / "main.py").write_text("v = 2\n")
    fake = FakeSlurm()
    xids = []
    for lr, image in (("0.1", IMAGE), ("0.2", IMAGE.replace("ab" * 32, "cd" * 32))):
        provenance_git.remember([(image, str(repo))])
        async with xm_slurm.create_experiment("cli diff", transport_factory=FakeSlurm.factory(fake)) as e:
            await e.add(job(fake, image), args={"args": ["--lr", lr]})
            xids.append(e.experiment_id)
        if lr == "0.1":
            git(repo, "commit", "-qam", "second")  # the uncommitted change, committed
    assert cli(["diff", str(xids[0]), str(xids[1])]) == 0
    out = capsys.readouterr().out
    assert f"commit {first_commit[:12]} -> {git(repo, 'rev-parse', 'HEAD')[:12]}; dirty yes -> no" in out
    assert "    changed files: main.py\n" in out
    assert 'args wid 1: {"args": ["--lr", "0.1"]} -> {"args": ["--lr", "0.2"]}' in out
    assert f"image train: {IMAGE} -> {IMAGE.replace('ab' * 32, 'cd' * 32)}" in out
    assert cli(["diff", str(xids[0]), str(xids[0])]) == 0
    assert capsys.readouterr().out == f"experiments {xids[0]} and {xids[0]}: no difference recorded\n"
    assert cli(["diff", str(xids[0]), str(xids[1]), "--json"]) == 0
    changes = json.loads(capsys.readouterr().out)
    assert changes["code"][0]["changed_files"] == ["main.py"]
    assert cli(["diff", str(xids[0]), "999"]) == 3  # no such experiment: exit code 3, one line on stderr
    assert "999" in capsys.readouterr().err
