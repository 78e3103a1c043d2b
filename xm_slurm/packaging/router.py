"""The packaging router: XManager packageables in, `RemoteImage` executables out.

Per executable spec:
  * `xm_slurm.Dockerfile` (or XManager's `xm.Dockerfile`): build, push to `Slurm.Spec(tag=...)`,
    pin by digest (`registry/name@sha256:...`); what it runs comes from `image inspect`;
  * `xm_slurm.DockerImage` (or `xm.Container`): the existing image, pinned by digest, what it runs
    read from its config blob in the registry (an unreachable registry is an error: without the
    image's ENTRYPOINT/CMD a job would not know what to run);
  * a `RemoteImage` already: returned as is.

The `RemoteImage` gets the image's ENTRYPOINT (or CMD) as `entrypoint` and its WORKDIR as `workdir`
(rules in `image_config.py`).

Everything is validated before anything is built, so a bad tag or path in the tenth packageable
fails the call at once instead of after nine builds. `package` is the synchronous entry point
XManager's `AsyncPackager` calls (it works inside a running event loop too); `package_async` is
its coroutine twin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from xmanager import xm

from xm_slurm.errors import PackagingError, ValidationError
from xm_slurm.executables import Dockerfile, DockerImage, ImageCredentials, RemoteImage
from xm_slurm.executables.build_options import ssh_paths
from xm_slurm.executors import SlurmSpec
from xm_slurm.packaging.builder import ImageBuild, ImageBuilder
from xm_slurm.packaging.client import BuildRequest, ImageBuildClient
from xm_slurm.packaging.credentials import RegistryCredentials, find_credentials
from xm_slurm.packaging.image_config import ImageConfig, run_fields
from xm_slurm.packaging.image_ref import ImageReference, parse_image_ref, require_registry
from xm_slurm.packaging.platforms import check_buildable

# How long to wait for a registry when pinning an existing image before keeping its tag.
RESOLVE_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class _Build:
    index: int
    packageable: xm.Packageable
    build: ImageBuild
    workdir: str | None
    # The platforms asked for with `platforms=` (empty: the client's default, not checked here).
    platforms: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Existing:
    index: int
    packageable: xm.Packageable
    ref: ImageReference
    workdir: str | None


def _describe(index: int, packageable: xm.Packageable) -> str:
    spec = packageable.executable_spec
    return f"packageable #{index} ({type(spec).__name__} {getattr(spec, 'name', '?')!r})"


def _ignorefile_for(dockerfile: Path) -> Path | None:
    """BuildKit's convention: `<Dockerfile>.dockerignore` beside the Dockerfile (used when the context has none)."""
    candidate = dockerfile.with_name(dockerfile.name + ".dockerignore")
    return candidate if candidate.is_file() else None


def _build_plan(index: int, packageable: xm.Packageable, spec: Dockerfile | xm.Dockerfile) -> _Build:
    where = _describe(index, packageable)
    executor_spec = packageable.executor_spec
    if not isinstance(executor_spec, SlurmSpec):
        raise ValidationError(
            f"{where}: executor_spec={executor_spec!r} is not a Slurm spec; "
            "use xm_slurm.Slurm.Spec(tag='registry.example.org/me/image:latest')"
        )
    if not executor_spec.tag:
        raise ValidationError(
            f"{where}: Slurm.Spec has no tag, so there is nowhere to push the built image; "
            "pass Slurm.Spec(tag='registry.example.org/me/image:latest')"
        )
    tag_ref = require_registry(executor_spec.tag, what=f"{where}: Slurm.Spec tag")
    if tag_ref.tag is None:
        tag_ref = dataclasses.replace(tag_ref, tag="latest")
    ssh: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    if isinstance(spec, Dockerfile):
        context, dockerfile = Path(spec.context), Path(spec.dockerfile)
        build_args = tuple(sorted(spec.build_args.items()))
        target, workdir = spec.target, spec.workdir
        labels = tuple(sorted(spec.labels.items()))
        # 0.4.x's default: the image's own push target, whose last push holds the cache.
        # Dockerfile.__post_init__ normalised these three to tuples of str (or None for cache_from).
        cache_from = (str(tag_ref),) if spec.cache_from is None else cast(tuple[str, ...], spec.cache_from)
        ssh, platforms = cast(tuple[str, ...], spec.ssh), cast(tuple[str, ...], spec.platforms)
    else:
        context, dockerfile = Path(spec.path), Path(spec.dockerfile)
        build_args, target, workdir, labels, cache_from = (), None, None, (), ()
    # The build writes its cache back only where it reads it from: the push target's repository.
    cache_to = str(tag_ref) if tag_ref.name in {parse_image_ref(c).name for c in cache_from} else None
    for path, what in ((context, "build context"), (dockerfile, "Dockerfile")):
        if not path.is_absolute():
            raise ValidationError(f"{where}: {what} path {str(path)!r} is relative; pass an absolute path")
    if not context.is_dir():
        raise ValidationError(f"{where}: build context {str(context)!r} is not a directory")
    if not dockerfile.is_file():
        raise ValidationError(f"{where}: Dockerfile {str(dockerfile)!r} does not exist")
    request = BuildRequest(
        dockerfile=dockerfile,
        context=context,
        build_args=build_args,
        target=target,
        labels=labels,
        cache_from=cache_from,
        ignorefile=_ignorefile_for(dockerfile),
        ssh=ssh,
        cache_to=cache_to,
        **({"platform": platforms[0]} if len(platforms) == 1 else {}),
    )
    return _Build(index, packageable, ImageBuild(request=request, tag=str(tag_ref)), workdir, platforms)


def _plan(index: int, packageable: xm.Packageable) -> _Build | _Existing | RemoteImage:
    if not isinstance(packageable, xm.Packageable):
        raise ValidationError(f"item #{index} is {packageable!r}, not an xm.Packageable")
    spec = packageable.executable_spec
    if isinstance(spec, (Dockerfile, xm.Dockerfile)):
        return _build_plan(index, packageable, spec)
    if isinstance(spec, DockerImage):
        return _Existing(index, packageable, parse_image_ref(spec.image), spec.workdir)
    if isinstance(spec, xm.Container):
        return _Existing(index, packageable, parse_image_ref(spec.image_path), None)
    if isinstance(spec, RemoteImage):
        return spec
    raise ValidationError(
        f"{_describe(index, packageable)}: the Slurm backend cannot package {type(spec).__name__}; use "
        "xm_slurm.docker_container, docker_image, python_container, uv_container or mamba_container"
    )


def _check_build_inputs(build: _Build, client: ImageBuildClient) -> None:
    """What the chosen client and this machine must provide: the platforms asked for, the SSH sockets and keys."""
    where = _describe(build.index, build.packageable)
    try:
        if build.platforms:
            client.check_platforms(build.platforms)
            if client.builds_here():
                check_buildable(build.platforms)
        for option in build.build.request.ssh:
            if option == "default" and not client.env.get("SSH_AUTH_SOCK"):
                raise ValidationError(
                    "ssh=True forwards the SSH agent named by SSH_AUTH_SOCK, which is not set; start an "
                    "agent (eval $(ssh-agent); ssh-add) or pass ssh=['/path/to/agent.sock' or key]"
                )
        request_paths = ssh_paths(build.build.request.ssh)
        if "default" in build.build.request.ssh:
            request_paths.append(client.env["SSH_AUTH_SOCK"])
        for path in request_paths:
            if not os.path.exists(path):
                raise ValidationError(f"ssh: {path!r} does not exist; name an agent socket or a private key")
    except ValidationError as e:
        raise ValidationError(f"{where}: {e}") from None


def _check_auth_file(env: dict[str, str]) -> None:
    auth_file = env.get("REGISTRY_AUTH_FILE")
    if auth_file and not Path(auth_file).is_file():
        # podman refuses to push with it (and says only "stat ...: no such file").
        raise ValidationError(
            f"REGISTRY_AUTH_FILE={auth_file!r} does not exist; log in with `podman login` or unset it"
        )


def _image_credentials(creds: RegistryCredentials | None) -> ImageCredentials | None:
    return None if creds is None else ImageCredentials(username=creds.username, password=creds.password)


def _remote_image(
    packageable: xm.Packageable,
    image: str,
    workdir: str | None,
    config: ImageConfig,
    creds: RegistryCredentials | None,
) -> RemoteImage:
    entrypoint, workdir = run_fields(config, image=image, workdir=workdir)
    return RemoteImage(
        name=packageable.executable_spec.name,
        image=image,
        workdir=workdir,
        entrypoint=entrypoint,
        args=packageable.args,
        env_vars=packageable.env_vars,
        credentials=_image_credentials(creds),
    )


def push_targets(packageables: Sequence[xm.Packageable]) -> list[ImageReference]:
    """Validate `packageables` as `package` does first (a `ValidationError` naming the bad one) and return
    where their builds push, one reference per registry (for checks made before any build)."""
    refs: dict[str, ImageReference] = {}
    for plan in [_plan(i, p) for i, p in enumerate(packageables)]:
        if isinstance(plan, _Build):
            ref = parse_image_ref(plan.build.tag)
            refs.setdefault(ref.domain, ref)
    return list(refs.values())


async def package_async(
    packageables: Sequence[xm.Packageable], *, builder: ImageBuilder | None = None
) -> list[xm.Executable]:
    """Package every packageable (building concurrently); results in the same order."""
    plans = [_plan(i, p) for i, p in enumerate(packageables)]
    builds = [p for p in plans if isinstance(p, _Build)]
    existing = [p for p in plans if isinstance(p, _Existing)]
    if builder is None:
        builder = ImageBuilder()
    if builds:
        # Choose the client (and check XM_DOCKER_CLIENT) before anything runs; not needed otherwise.
        client = builder.ensure_client()
        _check_auth_file(builder.env)
        for build in builds:
            _check_build_inputs(build, client)
    env = builder.env

    async def credentials_for(ref: ImageReference) -> RegistryCredentials | None:
        return await asyncio.to_thread(find_credentials, ref.domain, ref.repository, env=env)

    async def pin(item: _Existing) -> tuple[str, ImageConfig, RegistryCredentials | None]:
        creds = await credentials_for(item.ref)
        ref = item.ref
        try:
            if ref.digest is None:
                digest = await builder.resolver(ref, credentials=creds, timeout=RESOLVE_TIMEOUT_S)
                ref = ref.with_digest(digest)
            # From the pinned manifest, so the config read is the one of the image the cluster runs.
            config = await builder.config_fetcher(ref, credentials=creds, timeout=RESOLVE_TIMEOUT_S)
        except PackagingError as e:
            raise PackagingError(
                f"{_describe(item.index, item.packageable)}: cannot read what image {item.ref} runs "
                f"(its ENTRYPOINT/CMD and WORKDIR) from its registry: {e}. If only the cluster can reach "
                "that registry, use xm_slurm.RemoteImage(image=..., entrypoint=[...], workdir=...) instead"
            ) from None
        return str(ref), config, creds

    built, pinned = await asyncio.gather(
        builder.build_all([b.build for b in builds]),
        asyncio.gather(*(pin(e) for e in existing)),
    )
    build_creds = await asyncio.gather(*(credentials_for(parse_image_ref(b.build.tag)) for b in builds))

    out: list[xm.Executable | None] = [None] * len(plans)
    for b, image, creds in zip(builds, built, build_creds, strict=True):
        out[b.index] = _remote_image(b.packageable, image.pinned, b.workdir, image.config, creds)
    for e, (ref, config, creds) in zip(existing, pinned, strict=True):
        out[e.index] = _remote_image(e.packageable, ref, e.workdir, config, creds)
    for i, plan in enumerate(plans):
        if isinstance(plan, RemoteImage):
            out[i] = plan
    return [x for x in out if x is not None]


def package(packageables: Sequence[xm.Packageable]) -> list[xm.Executable]:
    """Synchronous `package_async`, for XManager's packager; safe to call inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(package_async(packageables))
    # A loop runs in this thread (e.g. `experiment.package(...)` inside an async main): run ours
    # in a worker thread and wait for it, as a synchronous call must.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="xm-slurm-package") as pool:
        return pool.submit(asyncio.run, package_async(packageables)).result()
