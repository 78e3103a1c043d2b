"""The 0.4.x build keywords on real podman builds pushed to the local registry: the SSH agent reaches the
build, labels land on the pushed image, the push target serves as the layer cache of a later build on a
machine that has none, and `platforms` builds what this machine can and refuses the rest before building."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging_helpers import RecordingRunner, podman_run

import xm_slurm.packageables as pk
from xm_slurm.errors import ValidationError
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging import ImageBuilder, package_async
from xm_slurm.packaging.client import PodmanClient
from xm_slurm.packaging.platforms import registered_emulators
from xm_slurm.packaging.progress import ProgressReporter

pytestmark = pytest.mark.cluster

# Asks the agent at $SSH_AUTH_SOCK for its identities (SSH2_AGENTC_REQUEST_IDENTITIES) and prints the count.
AGENT_QUERY = (
    "import os, socket, struct; s = socket.socket(socket.AF_UNIX); s.connect(os.environ['SSH_AUTH_SOCK']); "
    "s.sendall(struct.pack('>IB', 1, 11)); n = struct.unpack('>I', s.recv(4))[0]; d = s.recv(n); "
    "print('agent type', d[0], 'identities', struct.unpack('>I', d[1:5])[0])"
)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    """A real ssh-agent holding one fresh key; yields its socket."""
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL)
    try:
        key = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        for _ in range(100):
            if os.path.exists(sock):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        subprocess.run(["ssh-add", "-q", str(key)], env={**os.environ, "SSH_AUTH_SOCK": sock}, check=True)
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


def _agent_context(tmp_path: Path, base: str) -> Path:
    ctx = tmp_path / "agentctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\nRUN --mount=type=ssh python3 -c {json.dumps(AGENT_QUERY)} > /agent.txt\n"
        'ENTRYPOINT ["cat", "/agent.txt"]\n'
    )
    return ctx


async def test_ssh_agent_reaches_the_build(
    local_cluster, builder: ImageBuilder, recorder: RecordingRunner, agent: str, unique, tmp_path
) -> None:
    ctx = _agent_context(tmp_path, local_cluster.python_image)
    tag = f"{local_cluster.registry}/{unique}/agent:latest"
    [image] = await package_async(
        [pk.docker_container(SlurmSpec(tag=tag), context=ctx, ssh=[agent])], builder=builder
    )
    assert isinstance(image, RemoteImage)
    assert podman_run(image.image) == "agent type 12 identities 1\n"  # the build asked our agent
    [build] = [argv for argv in recorder.calls if argv[1] == "build"]
    assert f"default={agent}" in build
    # ssh=True: the agent named by SSH_AUTH_SOCK in the build client's environment.
    builder.client.env["SSH_AUTH_SOCK"] = agent
    (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text() + "LABEL again=1\n")
    [again] = await package_async(
        [pk.docker_container(SlurmSpec(tag=tag), context=ctx, ssh=True)], builder=builder
    )
    assert podman_run(again.image) == "agent type 12 identities 1\n"  # type: ignore[attr-defined]


async def test_ssh_without_an_agent_is_refused_before_building(
    builder: ImageBuilder, recorder: RecordingRunner, tmp_path
) -> None:
    ctx = _agent_context(tmp_path, "localhost:5000/x/y:z")
    builder.client.env.pop("SSH_AUTH_SOCK", None)
    spec = SlurmSpec(tag="localhost:5000/xm-test-ssh/x:latest")
    with pytest.raises(
        ValidationError, match=r"ssh=True forwards the SSH agent named by SSH_AUTH_SOCK, which is not set"
    ):
        await package_async([pk.docker_container(spec, context=ctx, ssh=True)], builder=builder)
    with pytest.raises(ValidationError, match=r"ssh: '.*no-such\.sock' does not exist"):
        await package_async(
            [pk.docker_container(spec, context=ctx, ssh=[str(tmp_path / "no-such.sock")])], builder=builder
        )
    assert recorder.calls == []


def _labels(ref: str) -> dict[str, str]:
    """The labels of a pushed image, as the registry serves its config (read by skopeo)."""
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{ref}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(json.loads(out.stdout)["config"].get("Labels") or {})


def _tags(registry: str, repository: str) -> list[str]:
    return list(httpx.get(f"http://{registry}/v2/{repository}/tags/list", timeout=30).json()["tags"])


def _storage_conf(tmp_path: Path) -> Path:
    """A podman storage of its own: a machine that has never built or pulled anything."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp_path / "graph"}"\nrunroot = "{tmp_path / "run"}"\n'
    )
    return conf


async def test_labels_and_the_push_target_as_layer_cache(
    local_cluster, builder: ImageBuilder, recorder: RecordingRunner, isolated_env, unique, tmp_path
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "main.py").write_text("import sys; print(sys.argv[1:])\n")
    (project / "requirements.txt").write_text("# none\n")
    tag = f"{local_cluster.registry}/{unique}/app:v1"

    def packageable() -> object:
        return pk.python_container(
            SlurmSpec(tag=tag),
            pk.xm.CommandList(["main.py"]),
            context=project,
            base_image=local_cluster.python_image,
            extra_instructions=[f"RUN echo {unique} > /built-by"],
            labels={"org.example.team": "a b", "run": unique},
        )

    [image] = await package_async([packageable()], builder=builder)  # type: ignore[list-item]
    assert isinstance(image, RemoteImage)
    assert {"org.example.team": "a b", "run": unique}.items() <= _labels(tag).items()
    # The build wrote its layer cache to the push target's repository (tags named by cache key).
    cache_tags = [t for t in _tags(local_cluster.registry, f"{unique}/app") if t != "v1"]
    assert cache_tags, "no cache was pushed"

    # A machine without any local layer: the RUN step comes from the registry's cache, not from running it.
    fresh_env = {**isolated_env, "CONTAINERS_STORAGE_CONF": str(_storage_conf(tmp_path / "fresh"))}
    lines: list[str] = []
    fresh = ImageBuilder(
        PodmanClient(shutil.which("podman"), runner=_keeping(lines), env=fresh_env),
        log_dir=tmp_path / "logs2",
        reporter=ProgressReporter(io.StringIO(), live=False),
    )
    try:
        [again] = await package_async([packageable()], builder=fresh)  # type: ignore[list-item]
    finally:
        shutil.rmtree(tmp_path / "fresh", ignore_errors=True)
    pulled = [line for line in lines if "Cache pulled from remote" in line]
    assert pulled and all(f"{unique}/app:" in line for line in pulled), lines
    assert again.image == image.image  # type: ignore[attr-defined]  # the same layers: the same digest


def _keeping(lines: list[str]) -> RecordingRunner:
    class Keeping(RecordingRunner):
        async def __call__(self, argv, *, env=None, log_path=None, on_line=None):  # type: ignore[no-untyped-def]
            def keep(line: str) -> None:
                lines.append(line)
                if on_line is not None:
                    on_line(line)

            return await super().__call__(argv, env=env, log_path=log_path, on_line=keep)

    return Keeping()


async def test_platforms(
    local_cluster, builder: ImageBuilder, recorder: RecordingRunner, unique, tmp_path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f'FROM {local_cluster.image}\nRUN echo ran > /ran\nENTRYPOINT ["cat", "/ran"]\n'
    )
    tag = f"{local_cluster.registry}/{unique}/plat:latest"
    [image] = await package_async(
        [pk.docker_container(SlurmSpec(tag=tag), context=ctx, platforms=["linux/amd64"])], builder=builder
    )
    assert podman_run(image.image) == "ran\n"  # type: ignore[attr-defined]
    assert "linux/amd64" in next(argv for argv in recorder.calls if argv[1] == "build")
    if "aarch64" in registered_emulators():
        pytest.skip("this machine has an arm64 emulator: the refusal below cannot happen here")
    recorder.calls.clear()
    with pytest.raises(
        ValidationError, match=r"'linux/arm64' cannot be built on this x86_64 machine: no emulator"
    ):
        await package_async(
            [pk.docker_container(SlurmSpec(tag=tag), context=ctx, platforms=["linux/arm64"])], builder=builder
        )
    with pytest.raises(ValidationError, match=r"podman builds one platform per image"):
        await package_async(
            [pk.docker_container(SlurmSpec(tag=tag), context=ctx, platforms=["linux/amd64", "linux/arm64"])],
            builder=builder,
        )
    assert recorder.calls == []  # refused before any build


def _wheel(folder: Path, name: str) -> str:
    """A minimal pure-Python wheel (no build backend, no network): `import <name>` prints a line."""
    import base64
    import hashlib
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        f"{name}/__init__.py": "",
        f"{name}/__main__.py": f"print('{name} is installed in', __file__)\n",
        f"{name}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{name}-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: xm-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-0.1.dist-info/RECORD,,")
    wheel = folder / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{name}-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel.name


async def test_extra_python_packages_are_installed_in_the_uv_environment(
    local_cluster, builder: ImageBuilder, unique, tmp_path
) -> None:
    from packaging_helpers import uv_binary, uv_lock

    uv = uv_binary()
    if uv is None:
        pytest.skip("no uv executable on this machine to build the local uv image from")
    uv_ctx = tmp_path / "uvimage"
    uv_ctx.mkdir()
    shutil.copy(uv, uv_ctx / "uv")
    (uv_ctx / "Dockerfile").write_text('FROM scratch\nCOPY uv /uv\nCMD ["/uv"]\n')
    [uv_image] = await package_async(
        [pk.docker_container(SlurmSpec(tag=f"{local_cluster.registry}/{unique}/uv:latest"), context=uv_ctx)],
        builder=builder,
    )
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
    )
    uv_lock(uv, project)
    wheel = _wheel(project / "vendor", f"xmextra_{unique[-6:]}")
    packageable = pk.uv_container(
        SlurmSpec(tag=f"{local_cluster.registry}/{unique}/app:latest"),
        pk.xm.CommandList(["-m", f"xmextra_{unique[-6:]}"]),
        context=project,
        base_image=local_cluster.python_image,
        uv_image=uv_image.image,  # type: ignore[attr-defined]
        extra_python_packages=[f"./vendor/{wheel}"],  # not in uv.lock: installed after the sync
    )
    [image] = await package_async([packageable], builder=builder)
    out = podman_run(image.image)  # type: ignore[attr-defined]
    assert out.startswith(f"xmextra_{unique[-6:]} is installed in /opt/venv/lib/"), out
