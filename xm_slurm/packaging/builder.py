"""Build, push and pin a batch of images concurrently, and read what each one runs.

Identical builds (same Dockerfile bytes, context and build arguments) run once and the image is
tagged with every target asked for. At most `max_concurrency` builds run at a time. The first
failure cancels the rest (their processes are killed) and is raised as a PackagingError with the
command and the tail of its log; the full log is kept on disk. Logs of successful builds are
removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from xm_slurm.errors import PackagingError
from xm_slurm.packaging.client import BuildRequest, ImageBuildClient, select_client
from xm_slurm.packaging.credentials import RegistryCredentials, find_credentials
from xm_slurm.packaging.image_config import ImageConfig, run_fields
from xm_slurm.packaging.image_ref import ImageReference, parse_image_ref
from xm_slurm.packaging.progress import ProgressReporter
from xm_slurm.packaging.registry import fetch_config, resolve_digest
from xm_slurm.paths import local_state_dir

Resolver = Callable[..., Awaitable[str]]
ConfigFetcher = Callable[..., Awaitable[ImageConfig]]


@dataclasses.dataclass(frozen=True)
class ImageBuild:
    """Build `request` and push it to `tag` (a `registry/name:tag` reference)."""

    request: BuildRequest
    tag: str


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    tag: str
    digest: str
    # What the image runs (ENTRYPOINT, CMD, WORKDIR), from `image inspect` right after the build.
    config: ImageConfig = dataclasses.field(default_factory=ImageConfig)

    @property
    def pinned(self) -> str:
        """`registry/name@sha256:...`: what the cluster pulls, immune to the tag moving."""
        return str(parse_image_ref(self.tag).with_digest(self.digest))


def default_log_dir() -> Path:
    """Where build logs go: `build-logs/` in this machine's state folder (`paths.local_state_dir`)."""
    return local_state_dir() / "build-logs"


def _log_name(tag: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{os.getpid()}-{re.sub(r'[^A-Za-z0-9._-]+', '_', tag)[-80:]}"


class ImageBuilder:
    """Runs image builds for the packaging router; reusable across batches."""

    def __init__(
        self,
        client: ImageBuildClient | None = None,
        *,
        max_concurrency: int | None = None,
        reporter: ProgressReporter | None = None,
        log_dir: Path | None = None,
        resolver: Resolver = resolve_digest,
        config_fetcher: ConfigFetcher = fetch_config,
    ) -> None:
        self._client = client
        self.max_concurrency = max_concurrency or max(1, min(4, os.cpu_count() or 1))
        self.reporter = reporter if reporter is not None else ProgressReporter()
        self.log_dir = log_dir if log_dir is not None else default_log_dir()
        self.resolver = resolver
        self.config_fetcher = config_fetcher

    def ensure_client(self) -> ImageBuildClient:
        """The build client, chosen now (by `XM_DOCKER_CLIENT`) if none was given."""
        if self._client is None:
            self._client = select_client()
        return self._client

    @property
    def client(self) -> ImageBuildClient:
        return self.ensure_client()

    @property
    def env(self) -> dict[str, str]:
        """The environment credentials are looked up in (the client's, if one is chosen)."""
        return self._client.env if self._client is not None else dict(os.environ)

    async def build_all(self, builds: Sequence[ImageBuild]) -> list[BuiltImage]:
        """Build and push every item; results in the same order."""
        groups: dict[tuple[object, ...], tuple[BuildRequest, list[str]]] = {}
        for build in builds:
            key = build.request.key()
            request, tags = groups.setdefault(key, (build.request, []))
            groups[key] = (request.merged_with(build.request), tags)
            if build.tag not in tags:
                tags.append(build.tag)
        if not groups:
            return []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        semaphore = asyncio.Semaphore(self.max_concurrency)
        digests: dict[str, str] = {}
        configs: dict[str, ImageConfig] = {}

        async def one(request: BuildRequest, tags: list[str]) -> None:
            async with semaphore:
                found, config = await self._build_group(request, tags)
                digests.update(found)
                configs.update(dict.fromkeys(tags, config))

        with self.reporter:
            await _all_or_nothing([one(request, tags) for request, tags in groups.values()])
        return [BuiltImage(tag=b.tag, digest=digests[b.tag], config=configs[b.tag]) for b in builds]

    async def _build_group(
        self, request: BuildRequest, tags: list[str]
    ) -> tuple[dict[str, str], ImageConfig]:
        label = tags[0] if len(tags) == 1 else f"{tags[0]} (+{len(tags) - 1} more tags)"
        task = self.reporter.start(label, "building")
        log_path = self.log_dir / f"{_log_name(tags[0])}.build.log"
        try:
            await self.client.build(request, tags, log_path=log_path, on_line=task.line)
            log_path.unlink(missing_ok=True)
            config = await self.client.inspect_config(tags[0])
            run_fields(config, image=tags[0], workdir=None)  # nothing to run: fail before pushing
            out: dict[str, str] = {}
            for tag in tags:
                task.step(f"pushing {tag}")
                push_log = self.log_dir / f"{_log_name(tag)}.push.log"
                digest = await self.client.push(tag, log_path=push_log, on_line=task.line)
                if digest is None:
                    task.step(f"resolving the digest of {tag}")
                    digest = await self.resolve(parse_image_ref(tag))
                push_log.unlink(missing_ok=True)
                out[tag] = digest
        except asyncio.CancelledError:
            task.finish("cancelled")
            raise
        except PackagingError:
            task.finish("FAILED")
            raise
        task.finish(f"pushed {', '.join(out[t] for t in tags[:1])}")
        return out, config

    async def resolve(self, ref: ImageReference) -> str:
        """The registry's digest for `ref`, using stored credentials if there are any."""
        creds: RegistryCredentials | None = await asyncio.to_thread(
            find_credentials, ref.domain, ref.repository, env=self.env
        )
        return await self.resolver(ref, credentials=creds)


async def _all_or_nothing(coros: Sequence[Awaitable[None]]) -> None:
    """Run all; on the first failure cancel the others, wait for them to stop, and re-raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
