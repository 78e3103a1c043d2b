"""Launch scripts written for xmanager-slurm 0.4.x, run unchanged but for the cluster config, on the real local
cluster with real podman builds pushed to the local registry.

Each script lives where a researcher keeps it, `proj/scripts/launch.py`, in a small project of its own
(`pyproject.toml` and `requirements.txt` at `proj/`), passes no `context=` (the project root is found from
the script), and is run as a subprocess from another folder. Each job's program writes its argv to a folder
mounted into the job; the test compares it byte for byte with the args the script gave. The 0.4.x default
base images live on registries this machine cannot reach, so the scripts pass `base_image=` from the local
registry (the site-specific part, like the cluster config from examples/local_site.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from local_cluster import LocalCluster, parse_env_file

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
sys.path.insert(0, str(TESTS / "packaging"))
from packaging_helpers import uv_binary, uv_lock  # noqa: E402

pytestmark = pytest.mark.cluster

# Spaces, both quotes, `$VAR` and `$(...)` (never expanded), a backslash, unicode, an empty word.
ARGS = [
    "plain",
    "two words",
    'it\'s "quoted"',
    "$HOME",
    "$(echo no)",
    "back\\slash",
    "ünïcødé ✓",
    "",
    "--lr=0.1",
]

# The program: its argv (after the script or module) as JSON, byte for byte, and what ran it.
PROGRAM = """\
import json, os, sys
out = os.environ["XM_COMPAT_OUT"]
with open(out + ".args.json", "w", encoding="utf-8") as f:
    f.write(json.dumps(sys.argv[1:], ensure_ascii=False))
with open(out + ".argv0", "w", encoding="utf-8") as f:
    f.write(sys.argv[0] + "\\n" + sys.prefix)
"""

# A 0.4.x launch script: absl's app.run, XManager's run_in_asyncio_loop, xm_slurm's packageables with
# 0.4.x keywords and no context=. Only the cluster and the registry come from the site module.
LAUNCH = """\
import datetime as dt
import sys

from absl import app
from xmanager import xm

import xm_slurm

sys.path.insert(0, {examples!r})
import local_site  # the site-specific part: the local cluster, its registry and base image

ARGS = {args!r}


@xm.run_in_asyncio_loop
async def main(argv):
    kind = argv[1]
    cluster = local_site.cluster(mounts={{{shared!r}: "/xm-compat"}})
    spec = xm_slurm.Slurm.Spec(tag={tag!r})
    env = {{"XM_COMPAT_OUT": "/xm-compat/" + kind}}
    async with xm_slurm.create_experiment("0.4.x launch script: " + kind) as experiment:
        if kind == "python-commands":
            packageable = xm_slurm.python_container(
                executor_spec=spec, entrypoint=xm.CommandList(["main.py"]),
                base_image=local_site.python_image(), env_vars=env,
            )
        elif kind == "python-module":
            packageable = xm_slurm.python_container(
                executor_spec=spec, entrypoint=xm.ModuleName("compat.record"),
                base_image=local_site.python_image(), env_vars=env,
            )
        elif kind.startswith("uv-"):
            [uv_image] = experiment.package([local_site.uv_image()])
            entrypoint = xm.CommandList(["main.py"]) if kind == "uv-commands" else xm.ModuleName("compat.record")
            packageable = xm_slurm.uv_container(
                executor_spec=spec, entrypoint=entrypoint,
                base_image=local_site.python_image(), uv_image=uv_image.image, env_vars=env,
            )
        else:
            packageable = xm_slurm.docker_container(
                executor_spec=spec,
                build_args={{"BASE_IMAGE": local_site.python_image()}},
                cache_from={tag!r},
                labels={{"org.opencontainers.image.title": "compat " + kind, "org.example.note": "a b"}},
                env_vars=env,
            )
        [executable] = experiment.package([packageable])
        print("image", executable.image)
        executor = xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
        )
        wu = await experiment.add(xm.Job(executable=executable, executor=executor, args=ARGS))
        await wu.wait_until_complete()
        print("experiment", experiment.experiment_id, "status", (await wu.get_status()).status.name)
        async for line in wu.logs(num_lines=20):
            print("log:", line)


if __name__ == "__main__":
    app.run(main)
"""

DOCKERFILE = """\
ARG BASE_IMAGE=docker.io/python:3.11-slim
FROM ${BASE_IMAGE}
WORKDIR /app
COPY main.py /app/main.py
ENTRYPOINT ["python3", "/app/main.py"]
"""


class Project:
    def __init__(self, root: Path, shared: Path, tag: str, env: dict[str, str]) -> None:
        self.root, self.shared, self.tag, self.env = root, shared, tag, env

    def launch(self, kind: str) -> str:
        """Run proj/scripts/launch.py from another folder; its output (fails on a non-zero exit)."""
        result = subprocess.run(
            [sys.executable, str(self.root / "scripts" / "launch.py"), kind],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.root.parent,
            timeout=500,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"the launch script exited with {result.returncode}:\n{output}"
        assert "status COMPLETED" in output, output
        assert "is deprecated" not in output, output  # a 0.4.x script needs no change
        return output


@pytest.fixture
def project(local_cluster: LocalCluster, tmp_path: Path) -> Iterator[Project]:
    unique = f"xm-compat-{uuid.uuid4().hex[:10]}"
    tmp_path.chmod(0o755)  # the jobs' containers mount a folder under it
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    root = tmp_path / "proj"
    (root / "scripts").mkdir(parents=True)
    (root / "compat").mkdir()
    (root / "main.py").write_text(PROGRAM)
    (root / "compat" / "__init__.py").write_text("")
    (root / "compat" / "record.py").write_text(PROGRAM)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "compat"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
    )
    (root / "requirements.txt").write_text("# nothing to install\n")
    (root / "Dockerfile").write_text(DOCKERFILE)
    tag = f"{local_cluster.registry}/{unique}/app:latest"
    (root / "scripts" / "launch.py").write_text(
        LAUNCH.format(examples=str(REPO / "examples"), args=ARGS, shared=str(shared), tag=tag)
    )
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    env = {**os.environ, **parse_env_file(REPO / ".local-cluster" / "env.sh")}
    env.update(
        {
            "XM_SLURM_STATE_DIR": str(tmp_path / "state"),
            "XM_DOCKER_CLIENT": "podman",
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "REGISTRY_AUTH_FILE": str(auth),
            "XM_EXAMPLES_SHARED_DIR": str(tmp_path / "examples-shared"),
        }
    )
    for name in (
        "XM_SLURM_API_BACKEND",
        "XM_SLURM_EXPERIMENT_ID",
        "XM_SLURM_WORK_UNIT_ID",
        "CONTAINERS_CONF",
    ):
        env.pop(name, None)
    yield Project(root, shared, tag, env)
    listed = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    ours = [ref for ref in listed.stdout.split() if f"/{unique}/" in ref]
    if ours:
        subprocess.run(["podman", "rmi", "--force", *ours], capture_output=True, check=False)


def _argv(project: Project, kind: str) -> tuple[bytes, list[str]]:
    args = (project.shared / f"{kind}.args.json").read_bytes()
    argv0, prefix = (project.shared / f"{kind}.argv0").read_text(encoding="utf-8").splitlines()
    return args, [argv0, prefix]


EXPECTED = json.dumps(ARGS, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("kind", "argv0"),
    [
        (
            "python-commands",
            "main.py",
        ),  # CommandList(["main.py"]): python main.py ARGS, in the image's WORKDIR
        ("python-module", "/workdir/compat/record.py"),  # ModuleName: python -m compat.record ARGS
    ],
)
def test_python_container(project: Project, kind: str, argv0: str) -> None:
    project.launch(kind)
    args, (ran, _) = _argv(project, kind)
    assert args == EXPECTED
    assert ran == argv0


@pytest.mark.parametrize(
    ("kind", "argv0"),
    [("uv-commands", "main.py"), ("uv-module", "/workdir/compat/record.py")],
)
def test_uv_container(project: Project, kind: str, argv0: str) -> None:
    if uv_binary() is None:
        pytest.skip("no uv executable on this machine to lock the project and build the local uv image from")
    uv_lock(uv_binary(), project.root)  # type: ignore[arg-type]
    project.launch(kind)
    args, (ran, prefix) = _argv(project, kind)
    assert args == EXPECTED
    assert (ran, prefix) == (argv0, "/opt/venv")  # the environment uv made from uv.lock


def test_docker_container_at_the_project_root(project: Project, local_cluster: LocalCluster) -> None:
    out = project.launch("docker")
    args, (ran, _) = _argv(project, "docker")
    assert args == EXPECTED and ran == "/app/main.py"
    # labels= landed on the pushed image (its config, as the registry serves it).
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{project.tag}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    labels = json.loads(inspected.stdout)["config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "compat docker" and labels["org.example.note"] == "a b"
    # cache_from=<the tag> (one str, one ref): the build read and wrote its layer cache in that repository.
    repository = project.tag.split("/", 1)[1].rsplit(":", 1)[0]
    tags = httpx.get(f"http://{local_cluster.registry}/v2/{repository}/tags/list", timeout=30).json()["tags"]
    assert "latest" in tags and len(tags) > 1, tags
    assert f"image {project.tag.rsplit(':', 1)[0]}@sha256:" in out


@pytest.mark.skip(
    reason="mamba_container needs a micromamba base image and conda-forge; the local cluster has neither "
    "(as for the conda example). Its entrypoint rule is covered by tests/packaging/test_entrypoints.py"
)
def test_mamba_container() -> None:
    raise AssertionError("skipped")
