"""What to run: executable specs (`Dockerfile`, `DockerImage`) and the packaged `RemoteImage` (model layer).

`RemoteImage.credentials` is for the packaging layer (it writes the runtime's auth file); it is never rendered
into a job script and never shown by `repr`. Image references follow one grammar (`image_ref`), also behind
the 0.4.x names `ImageURI` and `ImageDescriptor`; the build keywords are normalised in `build_options`.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attr
from immutabledict import immutabledict
from xmanager import xm

from xm_slurm.errors import ValidationError
from xm_slurm.executables import build_options
from xm_slurm.executables.image_ref import (
    ImageDescriptor,
    ImageReference,
    ImageURI,
    parse_image_ref,
    validate_image_ref,
)
from xm_slurm.text_rules import MAX_NAME, check_line

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


#: Names xm_slurm sets itself in every job; a user value would be silently overridden (or, for
#: SLURM_UMASK, silently ignored: jobs run with umask 0077), so it is refused instead.
RESERVED_ENV_VARS = frozenset(
    {
        "XM_SLURM_EXPERIMENT_ID",  # the entrypoint exports both ids (inside the container and on the node)
        "XM_SLURM_WORK_UNIT_ID",
        "XM_SLURM_PAYLOAD",  # carries the task's base64 entrypoint into the container
        "XM_SLURM_TMPDIR",  # the job script's node-local scratch folder
        "XM_SLURM_SUBMISSION",  # the submission token sbatch runs with (exactly-once submission)
        "SLURM_UMASK",  # sbatch runs with SLURM_UMASK=0077: logs and outputs stay private
    }
)


def check_env_name(name: object, field: str) -> str:
    """A shell identifier that xm_slurm does not set itself."""
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ValidationError(
            f"{field}: {name!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        )
    if name in RESERVED_ENV_VARS:
        raise ValidationError(
            f"{field}: {name!r} is set by xm_slurm in every job and cannot be overridden; use another name"
        )
    return name


def env_value(name: str, value: object, field: str) -> str:
    """An env var value as the job sees it: a str as is, an int or float as `str()` gives it (as XManager
    does). Anything else is refused rather than stringified (`None` would become the text 'None'), bools
    too: `True` would become 'True', where programs expect '1' or 'true', so the caller spells it out."""
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
        hint = " (spell a flag out: '1'/'0' or 'true'/'false')" if isinstance(value, bool) else ""
        raise ValidationError(
            f"{field}[{name!r}]={value!r:.100} is a {type(value).__name__}; an environment value must be a "
            f"str, an int or a float{hint}"
        )
    text = value if isinstance(value, str) else str(value)
    if "\0" in text:
        raise ValidationError(f"{field}[{name!r}] contains a NUL byte, which no environment can hold")
    return text


def validate_env_vars(env_vars: Mapping[str, Any], *, field: str = "env_vars") -> immutabledict[str, str]:
    """Names must be shell identifiers not reserved by xm_slurm; values are str, int or float (see
    `env_value`)."""
    if not isinstance(env_vars, Mapping):
        raise ValidationError(f"{field}={env_vars!r:.100} must be a mapping of names to values")
    return immutabledict(
        {check_env_name(name, field): env_value(name, value, field) for name, value in env_vars.items()}
    )


@dataclasses.dataclass(frozen=True)
class ImageCredentials:
    """Registry login for pulling a private image. The password never appears in repr or a script.

    `RemoteRepositoryCredentials(username, password)` is its 0.4.x name (positional order as there)."""

    username: str
    password: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.username, str) or not isinstance(self.password, str):
            raise ValidationError("registry credentials take a username and a password, both str")


RemoteRepositoryCredentials = ImageCredentials


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dockerfile(xm.ExecutableSpec):
    """Build an image from a Dockerfile. Relative paths resolve against the current directory.

    `cache_from` None means the image's own push target (`Slurm.Spec(tag=...)`), `()` no cache; `ssh` is a
    tuple of `--ssh` values (`build_options.ssh_options`); `platforms` empty means the default platform.
    """

    dockerfile: pathlib.Path | str = "Dockerfile"
    context: pathlib.Path | str = "."
    target: str | None = None
    build_args: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    cache_from: Sequence[str] | str | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    workdir: str | None = None
    ssh: build_options.SshOption = ()
    platforms: Sequence[str] | str | None = ()

    def __post_init__(self) -> None:
        context = pathlib.Path(self.context).expanduser().absolute()
        dockerfile = pathlib.Path(self.dockerfile).expanduser()
        if not dockerfile.is_absolute():
            dockerfile = (
                (context / dockerfile) if str(self.dockerfile) == "Dockerfile" else dockerfile.absolute()
            )
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "dockerfile", dockerfile)
        object.__setattr__(
            self, "build_args", immutabledict({str(k): str(v) for k, v in self.build_args.items()})
        )
        object.__setattr__(self, "labels", build_options.label_map(self.labels))
        object.__setattr__(self, "cache_from", build_options.cache_refs(self.cache_from))
        object.__setattr__(self, "ssh", build_options.ssh_options(self.ssh))
        object.__setattr__(self, "platforms", build_options.platform_list(self.platforms))
        if self.workdir is not None and not str(self.workdir).startswith("/"):
            raise ValidationError(f"workdir={self.workdir!r} must be an absolute path inside the image")

    @property
    def name(self) -> str:
        return os.path.basename(str(self.context)) or "image"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DockerImage(xm.ExecutableSpec):
    """An existing image, by tag or digest."""

    image: str
    workdir: str | None = None

    def __post_init__(self) -> None:
        validate_image_ref(self.image)
        if self.workdir is not None and not str(self.workdir).startswith("/"):
            raise ValidationError(f"workdir={self.workdir!r} must be an absolute path inside the image")

    @property
    def name(self) -> str:
        return image_name(self.image)


def image_name(image: str) -> str:
    """`registry:5000/me/train:tag@sha256:...` -> `train`."""
    path = image.split("@", 1)[0]
    last = path.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _to_args(value: Any) -> xm.SequentialArgs:
    try:
        return xm.SequentialArgs.from_collection(value)
    except (ValueError, TypeError) as e:
        raise ValidationError(
            f"args {value!r} are not XManager args (a list, a dict or xm.SequentialArgs): {e}"
        ) from None


@attr.s(auto_attribs=True, kw_only=True)
class RemoteImage(xm.Executable):
    """A packaged image the cluster pulls: `entrypoint` is the command, `args` its base arguments."""

    name: str = ""
    image: str = attr.ib(validator=lambda _i, _a, v: validate_image_ref(v))
    workdir: str | None = None
    entrypoint: xm.SequentialArgs = attr.ib(factory=xm.SequentialArgs, converter=_to_args)
    args: xm.SequentialArgs = attr.ib(factory=xm.SequentialArgs, converter=_to_args)
    env_vars: Mapping[str, str] = attr.ib(factory=immutabledict, converter=validate_env_vars)
    credentials: ImageCredentials | None = attr.ib(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.workdir is not None and (
            not isinstance(self.workdir, str) or not self.workdir.startswith("/")
        ):
            raise ValidationError(f"workdir={self.workdir!r} must be an absolute path inside the image")
        if self.credentials is not None and not isinstance(self.credentials, ImageCredentials):
            raise ValidationError("credentials must be an ImageCredentials(username=..., password=...)")
        if not self.name:
            self.name = image_name(self.image)
        check_line(self.name, "RemoteImage name", MAX_NAME)


__all__ = [
    "DockerImage",
    "Dockerfile",
    "ImageCredentials",
    "ImageDescriptor",
    "ImageReference",
    "ImageURI",
    "RemoteImage",
    "RemoteRepositoryCredentials",
    "image_name",
    "parse_image_ref",
    "validate_env_vars",
    "validate_image_ref",
]
