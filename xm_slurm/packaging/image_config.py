"""An image's run configuration (ENTRYPOINT, CMD, WORKDIR) and the command a job runs from it.

Jobs start the container with the library's own bootstrap (`/bin/sh -c ...`, see
`xm_slurm.rendering.payload`), which then `exec`s `RemoteImage.entrypoint` followed by the job's
args. So packaging reads what the image would run and writes it into the `RemoteImage`:

  * `entrypoint` = the image's ENTRYPOINT; when it has none, its CMD. Job args are appended to it.
    When an image has both, CMD (Docker's *default* arguments) is dropped: the job's args take its
    place, as `docker run IMAGE ARGS` does. (For a CMD-only image Docker would *replace* CMD by the
    args; we append them, so `CMD ["python", "-m", "train"]` + args runs `python -m train ARGS`.
    To run another command, give `xm_slurm.RemoteImage(image=..., entrypoint=[...])` directly.)
  * `workdir` = the image's WORKDIR, else `/` (Docker's default, made explicit so that Apptainer,
    which would otherwise start in the caller's folder, behaves the same).

An image with neither ENTRYPOINT nor CMD cannot run anything: that is a `PackagingError` naming the
image and the fix.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from xm_slurm.errors import PackagingError

DEFAULT_WORKDIR = "/"


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI/Docker image config that decide what a container runs and where."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = ""

    @property
    def command(self) -> tuple[str, ...]:
        """What a job runs before its own args: ENTRYPOINT, or CMD when there is no ENTRYPOINT."""
        return self.entrypoint or self.cmd


def _words(value: Any, field: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(w, str) for w in value):
        return tuple(value)
    raise PackagingError(f"{where}: the image config's {field} is {value!r}, not a list of strings")


def parse_config(config: Mapping[str, Any] | None, *, where: str) -> ImageConfig:
    """From the `config` object of an image config blob, or the `Config` of `image inspect`."""
    if config is None:
        return ImageConfig()
    if not isinstance(config, Mapping):
        raise PackagingError(f"{where}: the image config is {type(config).__name__}, not an object")
    workdir = config.get("WorkingDir") or ""
    if not isinstance(workdir, str):
        raise PackagingError(f"{where}: the image config's WorkingDir is {workdir!r}, not a string")
    return ImageConfig(
        entrypoint=_words(config.get("Entrypoint"), "Entrypoint", where),
        cmd=_words(config.get("Cmd"), "Cmd", where),
        workdir=workdir,
    )


def parse_inspect_output(text: str, *, where: str) -> ImageConfig:
    """The output of `podman|docker image inspect --format '{{json .Config}}' IMAGE`."""
    try:
        data = json.loads(text.strip() or "null")
    except json.JSONDecodeError:
        raise PackagingError(f"{where}: `image inspect` printed no JSON: {text.strip()[:200]!r}") from None
    return parse_config(data, where=where)


def run_fields(config: ImageConfig, *, image: str, workdir: str | None) -> tuple[list[str], str]:
    """(entrypoint, workdir) for a `RemoteImage`; `workdir` given by the user wins over the image's."""
    command = list(config.command)
    if not command:
        raise PackagingError(
            f"image {image} has neither ENTRYPOINT nor CMD, so a job would not know what to run; add "
            'e.g. `ENTRYPOINT ["python", "-m", "train"]` to its Dockerfile, or use '
            "xm_slurm.RemoteImage(image=..., entrypoint=[...]) instead of packaging it"
        )
    return command, workdir or config.workdir or DEFAULT_WORKDIR
