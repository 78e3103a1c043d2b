"""The image build client: the docker or podman command line, chosen by `XM_DOCKER_CLIENT`.

Without `XM_DOCKER_CLIENT`: `docker buildx bake` where the buildx plugin exists, else `docker build`
with BuildKit (both only when the docker daemon answers), else `podman build`.

Both take the same `build` and `push` flags for what we need; the differences (BuildKit's
`--network=host`, podman's `--digestfile` and `--ignorefile`) live in the two subclasses.
Credentials never reach a command line: both programs read their own auth files
(`$REGISTRY_AUTH_FILE`, `auth.json`, `~/.docker/config.json`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from xm_slurm.errors import PackagingError, ValidationError
from xm_slurm.packaging.image_config import ImageConfig, parse_inspect_output
from xm_slurm.packaging.image_ref import parse_image_ref
from xm_slurm.packaging.process import ProcessResult, ProcessRunner, run_process

ENV_VAR = "XM_DOCKER_CLIENT"
CLIENTS = ("docker", "podman")
DEFAULT_PLATFORM = "linux/amd64"
PROBE_TIMEOUT_S = 10.0

_DIGEST_IN_OUTPUT = re.compile(r"digest: (sha256:[0-9a-f]{64})")


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """One image build. Equal requests (same Dockerfile bytes, context, args) are built once."""

    dockerfile: Path
    context: Path
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    cache_from: tuple[str, ...] = ()
    platform: str = DEFAULT_PLATFORM
    # An ignore file to use when the context has no .dockerignore of its own.
    ignorefile: Path | None = None
    network: str | None = "host"
    # `--ssh` values (agent sockets, keys) forwarded to the build's `RUN --mount=type=ssh` steps.
    ssh: tuple[str, ...] = ()
    # Where the build's layer cache goes for later builds (the push target), if anywhere.
    cache_to: str | None = None

    def key(self) -> tuple[object, ...]:
        """Identity for deduplication: the Dockerfile's content, not its path, counts. The cache settings do
        not: they change how fast an image is built, not what it holds (`merged_with` joins them)."""
        digest = hashlib.sha256(self.dockerfile.read_bytes()).hexdigest()
        ignore = hashlib.sha256(self.ignorefile.read_bytes()).hexdigest() if self.ignorefile else None
        return (
            digest,
            str(self.context.resolve()),
            tuple(sorted(self.build_args)),
            self.target,
            tuple(sorted(self.labels)),
            self.platform,
            ignore,
            self.network,
            self.ssh,
        )

    def merged_with(self, other: BuildRequest) -> BuildRequest:
        """This build, reading the caches of both and writing its own (or else the other's)."""
        return dataclasses.replace(
            self,
            cache_from=tuple(dict.fromkeys((*self.cache_from, *other.cache_from))),
            cache_to=self.cache_to or other.cache_to,
        )


def display_command(argv: Sequence[str]) -> str:
    """The command as a shell line, with build-arg values hidden (they may hold tokens)."""
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            shown.append(arg.split("=", 1)[0] + "=***" if "=" in arg else arg)
            hide_next = False
        elif arg == "--build-arg":
            shown.append(arg)
            hide_next = True
        elif arg.startswith("--build-arg="):
            shown.append(arg.split("=", 2)[0] + "=" + arg.split("=", 2)[1] + "=***")
        else:
            shown.append(arg)
    return shlex.join(shown)


def failure_message(what: str, result: ProcessResult) -> str:
    lines = [
        f"{what} failed: `{display_command(result.argv)}` exited with status {result.returncode}.",
    ]
    if result.log_path is not None:
        lines.append(f"Full log: {result.log_path}")
    if result.tail:
        lines.append(f"Last {len(result.tail)} lines of the log:")
        lines.extend(f"  | {line}" for line in result.tail)
    return "\n".join(lines)


class ImageBuildClient:
    """Build and push images with a container CLI. Subclasses say which one."""

    kind: ClassVar[str]

    def __init__(
        self,
        program: str | None = None,
        *,
        runner: ProcessRunner = run_process,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.program = program or self.kind
        self.runner = runner
        self.env = dict(os.environ if env is None else env)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(program={self.program!r})"

    # -- argv construction (pure, unit-testable) ------------------------------------------------

    def build_argv(self, request: BuildRequest, tags: Sequence[str]) -> list[str]:
        argv = [self.program, "build", "--file", str(request.dockerfile)]
        for tag in tags:
            argv += ["--tag", tag]
        for name, value in request.build_args:
            argv += ["--build-arg", f"{name}={value}"]
        if request.target:
            argv += ["--target", request.target]
        for name, value in request.labels:
            argv += ["--label", f"{name}={value}"]
        argv += self._cache_flags(request)
        for option in request.ssh:
            argv += ["--ssh", option]
        if request.platform:
            argv += ["--platform", request.platform]
        if request.network:
            argv += [f"--network={request.network}"]
        argv += self._extra_build_flags(request)
        argv.append(str(request.context))
        return argv

    def _extra_build_flags(self, request: BuildRequest) -> list[str]:
        return []

    def _cache_flags(self, request: BuildRequest) -> list[str]:
        """BuildKit: cache refs as given; the pushed image carries its cache inline for later builds."""
        argv = [flag for ref in request.cache_from for flag in ("--cache-from", ref)]
        if request.cache_to:
            argv += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        return argv

    def check_platforms(self, platforms: Sequence[str]) -> None:
        """Refuse what this client cannot build: one image holds one platform here (no manifest lists)."""
        if len(platforms) > 1:
            raise ValidationError(
                f"platforms={list(platforms)!r}: {self.kind} builds one platform per image with xm_slurm "
                "(several would need a multi-platform manifest list, which it does not build); use one "
                "packageable per platform, each with its own Slurm.Spec tag"
            )

    def builds_here(self) -> bool:
        """Whether builds run on this machine (so its emulators are the ones that count)."""
        return True

    def push_argv(self, tag: str, digestfile: Path) -> list[str]:
        return [self.program, "push", tag]

    def build_env(self) -> dict[str, str]:
        return self.env

    # -- running ----------------------------------------------------------------------------------

    async def build(
        self,
        request: BuildRequest,
        tags: Sequence[str],
        *,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> ProcessResult:
        argv = self.build_argv(request, tags)
        result = await self.runner(argv, env=self.build_env(), log_path=log_path, on_line=on_line)
        if not result.ok:
            raise PackagingError(failure_message(f"building image {', '.join(tags)}", result))
        return result

    async def push(
        self,
        tag: str,
        *,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> str | None:
        """Push `tag`; returns the pushed manifest's digest when the CLI tells it, else None."""
        with tempfile.TemporaryDirectory(prefix="xm-slurm-push-") as tmp:
            digestfile = Path(tmp) / "digest"
            argv = self.push_argv(tag, digestfile)
            result = await self.runner(argv, env=self.env, log_path=log_path, on_line=on_line)
            if not result.ok:
                raise PackagingError(failure_message(f"pushing image {tag}", result))
            if digestfile.exists():
                digest = digestfile.read_text().strip()
                if digest:
                    return digest
        found = _DIGEST_IN_OUTPUT.findall(result.output)
        return found[-1] if found else None

    async def inspect_config(self, image: str) -> ImageConfig:
        """The run configuration (ENTRYPOINT, CMD, WORKDIR) of a local image, from `image inspect`."""
        argv = [self.program, "image", "inspect", "--format", "{{json .Config}}", image]
        result = await self.runner(argv, env=self.env)
        if not result.ok:
            raise PackagingError(failure_message(f"inspecting image {image}", result))
        return parse_inspect_output(result.tail[-1] if result.tail else "", where=f"image {image}")


class PodmanClient(ImageBuildClient):
    """`podman build`; podman's own layer cache makes an unchanged rebuild print `Using cache`."""

    kind = "podman"

    def _extra_build_flags(self, request: BuildRequest) -> list[str]:
        if request.ignorefile is not None and not _has_own_ignorefile(request.context):
            return ["--ignorefile", str(request.ignorefile)]
        return []

    def _cache_flags(self, request: BuildRequest) -> list[str]:
        # podman takes a repository (no tag, no digest): the layers `--cache-to` pushed there, by cache key.
        repos = list(dict.fromkeys(parse_image_ref(ref).name for ref in request.cache_from))
        argv = [flag for repo in repos for flag in ("--cache-from", repo)]
        if request.cache_to:
            argv += ["--cache-to", parse_image_ref(request.cache_to).name]
        return argv

    def builds_here(self) -> bool:
        return not self.env.get("CONTAINER_HOST")

    def push_argv(self, tag: str, digestfile: Path) -> list[str]:
        return [self.program, "push", "--digestfile", str(digestfile), tag]


class DockerClient(ImageBuildClient):
    kind = "docker"

    def builds_here(self) -> bool:
        return not self.env.get("DOCKER_HOST")

    def build_env(self) -> dict[str, str]:
        # BuildKit reads `<Dockerfile>.dockerignore` (our default ignores) and builds faster.
        return {"DOCKER_BUILDKIT": "1", **self.env}


class DockerBuildxClient(DockerClient):
    """`docker buildx bake` with a generated bake file; the result is loaded into docker's image store
    (`output: type=docker`) and pushed with `docker push`, like the plain docker client.

    Not exercised against a real buildx on the project's test machine (no buildx package there): the
    bake file is checked by unit tests only.
    """

    TARGET = "xm-slurm"

    def bake_definition(self, request: BuildRequest, tags: Sequence[str]) -> dict[str, object]:
        target: dict[str, object] = {
            "context": str(request.context),
            "dockerfile": str(request.dockerfile),
            "tags": list(tags),
            "output": ["type=docker"],
        }
        if request.build_args:
            target["args"] = dict(request.build_args)
        if request.target:
            target["target"] = request.target
        if request.labels:
            target["labels"] = dict(request.labels)
        if request.cache_from:
            target["cache-from"] = list(request.cache_from)
        if request.cache_to:
            target["cache-to"] = ["type=inline"]
        if request.ssh:
            target["ssh"] = list(request.ssh)
        if request.platform:
            target["platforms"] = [request.platform]
        return {"target": {self.TARGET: target}}

    def bake_argv(self, bakefile: Path) -> list[str]:
        return [self.program, "buildx", "bake", "--file", str(bakefile), "--progress=plain", self.TARGET]

    async def build(
        self,
        request: BuildRequest,
        tags: Sequence[str],
        *,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> ProcessResult:
        # The bake file may hold build-arg values: a private folder, removed right after.
        with tempfile.TemporaryDirectory(prefix="xm-slurm-bake-") as tmp:
            bakefile = Path(tmp) / "docker-bake.json"
            bakefile.write_text(json.dumps(self.bake_definition(request, tags)))
            argv = self.bake_argv(bakefile)
            result = await self.runner(argv, env=self.build_env(), log_path=log_path, on_line=on_line)
        if not result.ok:
            raise PackagingError(failure_message(f"building image {', '.join(tags)}", result))
        return result


def _has_own_ignorefile(context: Path) -> bool:
    return (context / ".dockerignore").exists() or (context / ".containerignore").exists()


def _answers(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether a probe command exits 0 (quietly, within a few seconds)."""
    try:
        done = subprocess.run(
            list(argv), env=dict(env), capture_output=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _docker_client(program: str, env: Mapping[str, str], runner: ProcessRunner) -> ImageBuildClient:
    """`docker buildx bake` when the buildx plugin answers, else `docker build` with BuildKit."""
    if _answers([program, "buildx", "version"], env):
        return DockerBuildxClient(program, runner=runner, env=env)
    return DockerClient(program, runner=runner, env=env)


def select_client(
    env: Mapping[str, str] | None = None,
    *,
    runner: ProcessRunner = run_process,
) -> ImageBuildClient:
    """The build client: `XM_DOCKER_CLIENT` if set; else docker (buildx bake, else BuildKit) when its
    daemon answers; else podman; a clear error when none of them can build."""
    env = os.environ if env is None else env
    path = env.get("PATH")
    choice = env.get(ENV_VAR, "").strip()
    if choice:
        if choice not in CLIENTS:
            raise ValidationError(f"{ENV_VAR}={choice!r} is not supported; set it to 'docker' or 'podman'")
        program = shutil.which(choice, path=path)
        if program is None:
            raise ValidationError(
                f"{ENV_VAR}={choice!r} but {choice!r} is not on PATH; install it or choose the other"
            )
        if choice == "docker":
            return _docker_client(program, env, runner)
        return PodmanClient(program, runner=runner, env=env)
    docker = shutil.which("docker", path=path)
    # A docker CLI without a running daemon cannot build (common where only podman is used).
    if docker is not None and _answers([docker, "version", "--format", "{{.Server.Version}}"], env):
        return _docker_client(docker, env, runner)
    podman = shutil.which("podman", path=path)
    if podman is not None:
        return PodmanClient(podman, runner=runner, env=env)
    if docker is not None:
        raise ValidationError(
            f"docker is on PATH ({docker}) but its daemon does not answer `docker version`, and podman "
            f"is not installed; start the docker daemon, or install podman (or set {ENV_VAR})"
        )
    raise ValidationError(
        f"neither podman nor docker is on PATH; install one (or set {ENV_VAR} to the one you have)"
    )
