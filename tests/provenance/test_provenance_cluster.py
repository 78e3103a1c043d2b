"""Provenance of a real launch on the local cluster: a packaged project in a real git repository (one
committed and one uncommitted change, a .env file), built with podman and pushed to the local registry,
launched by a launch script run as a user would (its own process). The experiment's artifacts hold the
commit, dirty=true and the diff, but neither the secret env value (even where the launch script spells
it out) nor the .env file; `xm-slurm show` summarises them; after a new commit, `xm-slurm diff` names the
changed file."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import git, make_repo
from experiment_fixtures import cluster_literal
from local_cluster import LocalCluster

from xm_slurm import api
from xm_slurm.cli import main as cli

pytestmark = pytest.mark.cluster

SECRET = "sk-live-cluster-5f0e1d2c3b4a"
DOTENV_VALUE = "dotenv-cluster-77aa88bb"

LAUNCH = """\
import asyncio, datetime as dt, sys
from xmanager import xm
import xm_slurm

CLUSTER = {cluster}


async def main() -> None:
    async with xm_slurm.create_experiment("provenance e2e") as experiment:
        [image] = experiment.package(
            [xm_slurm.docker_container(xm_slurm.Slurm.Spec(tag={tag!r}), context={context!r})]
        )
        executor = xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=CLUSTER), time=dt.timedelta(minutes=5)
        )
        job = xm.Job(executable=image, executor=executor, env_vars={{"API_KEY": xm_slurm.Secret("{secret}")}})
        wu = await experiment.add(job, args={{"args": ["--lr", sys.argv[1]]}})
        await wu.wait_until_complete()
        print("XID", experiment.experiment_id, (await wu.get_status()).status.name)


asyncio.run(main())
"""


@pytest.fixture
def build_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Podman builds with no stray registry login; the image name is this test's own (removed after)."""
    monkeypatch.setenv("XM_DOCKER_CLIENT", "podman")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    name = f"xm-prov-{uuid.uuid4().hex[:10]}"
    yield name
    listed = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    ours = [ref for ref in listed.stdout.split() if f"/{name}/" in ref]
    if ours:
        subprocess.run(["podman", "rmi", "--force", *ours], capture_output=True, check=False)


def launch(script: Path, lr: str) -> int:
    done = subprocess.run(
        [sys.executable, str(script), lr], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("XID ")]
    _, xid, status = line.split()
    assert status == "COMPLETED", done.stderr[-3000:]
    return int(xid)


def stored_texts(xid: int) -> str:
    record = api.client().get_experiment(xid)
    texts = [a.uri for a in record.artifacts] + [c.uri for c in record.config_artifacts]
    for wu in record.work_units:
        texts += [wu.args or "", *(a.uri for a in wu.artifacts)]
    return "\n".join(texts)


def test_a_dirty_project_is_recorded_and_diffed_against_the_next_commit(
    local_cluster: LocalCluster, build_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(
        tmp_path / "project",
        {
            "Dockerfile": f"FROM {local_cluster.python_image}\nCOPY main.py /app/main.py\nWORKDIR /app\n"
            'ENTRYPOINT ["python3", "main.py"]\n',
            "main.py": "import sys\nprint('version one', sys.argv[1:])\n",
            "README.md": "a project\n",
        },
    )
    first_commit = git(repo, "rev-parse", "HEAD")
    (repo / "main.py").write_text("import sys\nprint('version two (uncommitted)', sys.argv[1:])\n")
    (repo / ".env").write_text(f"WANDB_API_KEY={DOTENV_VALUE}\n")
    tag = f"{local_cluster.registry}/{build_env}/app:latest"
    script = tmp_path / "launch.py"
    script.write_text(
        LAUNCH.format(cluster=cluster_literal(local_cluster), tag=tag, context=str(repo), secret=SECRET)
    )

    first = launch(script, "0.1")
    artifacts = {a.name: a.uri for a in api.client().get_experiment(first).artifacts}
    [code_name] = [n for n in artifacts if n.startswith("xm_slurm.code.")]
    code = json.loads(artifacts[code_name])
    assert (code["commit"], code["branch"], code["dirty"]) == (first_commit, "main", True)
    assert "+print('version two (uncommitted)', sys.argv[1:])" in code["diff"]
    assert code["omitted"] == [".env"] and code["changed_files"] == [".env", "main.py"]
    [image] = json.loads(artifacts["xm_slurm.images"])["images"]
    assert image["image"].startswith(f"{local_cluster.registry}/{build_env}/app@sha256:")
    launch_record = json.loads(artifacts["xm_slurm.launch"])
    assert launch_record["script_path"] == str(script) and "xm_slurm.Secret(" in launch_record["script"]
    assert launch_record["argv"] == [str(script), "0.1"]
    everything = stored_texts(first)
    assert "<secret>" in launch_record["script"]  # the literal secret in the launch script, replaced
    assert SECRET not in everything and DOTENV_VALUE not in everything

    assert cli(["show", str(first)]) == 0
    shown = capsys.readouterr().out
    assert f"{code_name}: {repo} @ {first_commit[:12]} (main, dirty, 2 changed file(s)" in shown
    assert '"diff"' not in shown and SECRET not in shown

    git(repo, "add", "main.py")
    git(repo, "commit", "-q", "-m", "second")
    second_commit = git(repo, "rev-parse", "HEAD")
    second = launch(script, "0.2")
    second_code = json.loads(
        next(a.uri for a in api.client().get_experiment(second).artifacts if a.name == code_name)
    )
    assert second_code["commit"] == second_commit and second_code["changed_files"] == [".env"]

    assert cli(["diff", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert f"commit {first_commit[:12]} -> {second_commit[:12]}" in out
    assert "changed files: .env, main.py" in out or "changed files: main.py" in out
    assert 'args wid 1: {"args": ["--lr", "0.1"]} -> {"args": ["--lr", "0.2"]}' in out
    # The working tree did not change between the builds (the change was only committed): the same
    # files went into both images, so the same digest, and no image line.
    assert "image app:" not in out
    assert cli(["diff", str(first), str(second), "--json"]) == 0
    changes = json.loads(capsys.readouterr().out)
    [code_change] = changes["code"]
    assert "main.py" in code_change["changed_files"] and code_change["commit"] == [
        first_commit,
        second_commit,
    ]
