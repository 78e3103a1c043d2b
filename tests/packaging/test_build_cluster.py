"""Real builds with podman, pushed to the local registry, pinned by digest, run with podman."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from packaging_helpers import RecordingRunner, podman_run, read_text, registry_digest
from xmanager import xm

import xm_slurm.packageables as pk
from xm_slurm.errors import PackagingError
from xm_slurm.executables import RemoteImage
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging import ImageBuilder, package, package_async

pytestmark = pytest.mark.cluster


def _context(tmp_path: Path, base: str, *, message: str, run: str | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "msg.txt").write_text(message + "\n")
    lines = [f"FROM {base}", "COPY msg.txt /msg.txt"]
    if run:
        lines.append(f"RUN {run}")
    lines.append('ENTRYPOINT ["cat", "/msg.txt"]')
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    return ctx


async def test_build_push_pin_and_run(
    local_cluster,
    builder: ImageBuilder,
    recorder: RecordingRunner,
    progress_stream: io.StringIO,
    unique,
    tmp_path,
) -> None:
    ctx = _context(tmp_path, local_cluster.image, message=f"hello {unique}")
    tag = f"{local_cluster.registry}/{unique}/x:latest"
    packageable = pk.docker_container(
        SlurmSpec(tag=tag), context=ctx, args=["--lr", "0.1"], env_vars={"A": "1"}
    )

    [executable] = await package_async([packageable], builder=builder)

    assert isinstance(executable, RemoteImage)
    name, _, digest = executable.image.partition("@")
    assert name == f"{local_cluster.registry}/{unique}/x"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert registry_digest(tag) == digest
    assert podman_run(executable.image) == f"hello {unique}\n"
    # What the job will run, read back from the built image (ENTRYPOINT; no WORKDIR: "/").
    assert executable.entrypoint.to_list() == ["cat", "/msg.txt"] and executable.workdir == "/"
    assert executable.args.to_list() == ["--lr", "0.1"] and dict(executable.env_vars) == {"A": "1"}
    assert recorder.count("build") == 1 and recorder.count("push") == 1
    # One line when the work starts, one when it ends (with its time), even without a terminal.
    shown = progress_stream.getvalue()
    assert f"building {tag}" in shown and re.search(
        rf"{re.escape(tag)}: pushed sha256:\w+ in [0-9.]+ s", shown
    )


async def test_identical_builds_run_once(
    local_cluster, builder: ImageBuilder, recorder: RecordingRunner, unique, tmp_path
) -> None:
    ctx = _context(tmp_path, local_cluster.image, message=unique)
    tag1 = f"{local_cluster.registry}/{unique}/a:latest"
    tag2 = f"{local_cluster.registry}/{unique}/b:v2"
    same = pk.docker_container(SlurmSpec(tag=tag1), context=ctx)
    also_same = pk.docker_container(SlurmSpec(tag=tag1), context=ctx, args=["x"])
    other_tag = pk.docker_container(SlurmSpec(tag=tag2), context=ctx)
    # XManager's own packageable for the same Dockerfile is the same build too.
    xm_own = xm.dockerfile_container(SlurmSpec(tag=tag1), path=str(ctx))

    results = await package_async([same, also_same, other_tag, xm_own], builder=builder)

    assert recorder.count("build") == 1  # one build, tagged twice
    assert recorder.count("push") == 2  # each tag pushed once
    digests = {r.image.split("@")[1] for r in results if isinstance(r, RemoteImage)}
    assert digests == {registry_digest(tag1)} == {registry_digest(tag2)}
    assert [r.args.to_list() for r in results if isinstance(r, RemoteImage)] == [[], ["x"], [], []]


async def test_failing_build_names_image_command_and_log_tail(
    local_cluster, builder: ImageBuilder, recorder: RecordingRunner, unique, tmp_path
) -> None:
    ctx = _context(tmp_path, local_cluster.image, message="x", run=f"echo boom-{unique} && exit 3")
    tag = f"{local_cluster.registry}/{unique}/broken:latest"

    with pytest.raises(PackagingError) as info:
        await package_async([pk.docker_container(SlurmSpec(tag=tag), context=ctx)], builder=builder)

    message = str(info.value)
    assert tag in message
    assert "podman build --file" in message
    assert f"boom-{unique}" in message  # from the tail of the build log
    log = re.search(r"Full log: (\S+)", message)
    assert log is not None and f"boom-{unique}" in read_text(log.group(1))
    assert recorder.count("push") == 0


async def test_docker_image_is_pinned_and_its_command_read(local_cluster, builder: ImageBuilder) -> None:
    reachable = pk.docker_image(image=local_cluster.image, args=["-c", "true"])

    [pinned] = await package_async([reachable], builder=builder)

    assert isinstance(pinned, RemoteImage)
    assert pinned.image == local_cluster.image.rsplit(":", 1)[0] + "@" + registry_digest(local_cluster.image)
    assert pinned.args.to_list() == ["-c", "true"]
    # The busybox image has CMD ["/bin/sh"] and no ENTRYPOINT or WORKDIR (Docker's default: /).
    assert pinned.entrypoint.to_list() == ["/bin/sh"] and pinned.workdir == "/"


async def test_unreachable_docker_image_is_a_clear_error(local_cluster, builder: ImageBuilder) -> None:
    unreachable = pk.docker_image(image="127.0.0.1:9/nobody/nothing:latest")
    with pytest.raises(PackagingError) as info:
        await package_async([unreachable], builder=builder)
    message = str(info.value)
    assert "127.0.0.1:9/nobody/nothing:latest" in message and "ENTRYPOINT/CMD" in message
    assert "xm_slurm.RemoteImage(image=..., entrypoint=[...]" in message


async def test_sync_package_inside_running_loop(local_cluster, isolated_env) -> None:
    # As `experiment.package([...])` is called inside `async def main()`: must not deadlock.
    remote = RemoteImage(image=local_cluster.image)
    [as_is, pinned] = package(
        [
            xm.Packageable(executable_spec=remote, executor_spec=SlurmSpec()),  # type: ignore[arg-type]
            pk.docker_image(image=local_cluster.image),
        ]
    )
    assert as_is is remote
    assert isinstance(pinned, RemoteImage) and pinned.image.endswith(registry_digest(local_cluster.image))
