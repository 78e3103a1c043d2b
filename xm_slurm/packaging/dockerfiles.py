"""Generate Dockerfiles for Python projects from the templates shipped in `templates/`.

The project directory itself is the build context, so its own `.dockerignore` (or
`.containerignore`) applies as it would to any build. The Dockerfile is written to a
content-addressed folder in the user's cache (the same project renders to the same path, so
repeated launches and duplicate packageables are recognised as the same build); if the project
has no ignore file, a default one (`Dockerfile.dockerignore`, which BuildKit and our podman
invocation both honour) keeps `.git`, virtual environments and caches out of the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import jinja2
from xmanager import xm

from xm_slurm.errors import ValidationError

DEFAULT_WORKDIR = "/workdir"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("xm_slurm.packaging", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfiles, not HTML
    )


@dataclasses.dataclass(frozen=True)
class GeneratedDockerfile:
    dockerfile: Path
    context: Path
    # Set when the project has no ignore file of its own and ours applies.
    ignorefile: Path | None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xm-slurm" / "dockerfiles"


def has_ignorefile(context: Path) -> bool:
    return (context / ".dockerignore").exists() or (context / ".containerignore").exists()


def entrypoint_argv(entrypoint: xm.ModuleName | xm.CommandList, *, python: str = "python3") -> list[str]:
    """The ENTRYPOINT argv for an XManager entry point; job arguments are appended by the runtime.

    A module runs as `python -m module ARGS`. A command list runs as a shell script whose last
    command gets the job's arguments (`"$@"`), as XManager's own packagers do.
    """
    if isinstance(entrypoint, xm.ModuleName):
        if not entrypoint.module_name or any(c.isspace() for c in entrypoint.module_name):
            raise ValidationError(
                f"entrypoint module {entrypoint.module_name!r} is not a module name; expected e.g. xm.ModuleName('train')"
            )
        return [python, "-m", entrypoint.module_name]
    if isinstance(entrypoint, xm.CommandList):
        commands = [c for c in entrypoint.commands if c.strip()]
        if not commands:
            raise ValidationError("entrypoint xm.CommandList([]) has no commands; give at least one")
        script = "\n".join(commands)
        if not script.rstrip().endswith(('"$@"', "$@")):
            script += ' "$@"'
        return ["/bin/sh", "-c", script, "xm-slurm-entrypoint"]
    raise ValidationError(
        f"entrypoint {entrypoint!r} is neither xm.ModuleName(...) nor xm.CommandList([...])"
    )


def project_file(project: Path, name: str | os.PathLike[str], *, what: str) -> str:
    """A file of the project as a path relative to it (what COPY needs); it must exist inside it."""
    path = Path(name)
    full = path if path.is_absolute() else project / path
    full = full.resolve()
    if not full.is_file():
        raise ValidationError(f"{what} {str(full)!r} does not exist; create it or pass the right path")
    try:
        return full.relative_to(project.resolve()).as_posix()
    except ValueError:
        raise ValidationError(
            f"{what} {str(full)!r} is outside the project {str(project)!r}; the build can only copy files from it"
        ) from None


def has_requirements(requirements: Path) -> bool:
    """Whether a requirements file lists anything (an empty or comment-only file needs no pip)."""
    for line in requirements.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return True
    return False


def render(template: str, **values: object) -> str:
    return _environment().get_template(template).render(**values)


def instructions(lines: Sequence[str] | None, *, what: str) -> list[str]:
    out = list(lines or ())
    for line in out:
        if not isinstance(line, str) or not line.strip():
            raise ValidationError(f"{what} must be non-empty Dockerfile instructions; got {line!r}")
    return out


def write_generated(project: Path, text: str) -> GeneratedDockerfile:
    """Store `text` as a Dockerfile in the cache; the project stays the build context."""
    ignore = None if has_ignorefile(project) else render("dockerignore.j2")
    key = hashlib.sha256(json.dumps([str(project), text, ignore]).encode()).hexdigest()[:24]
    folder = cache_dir() / key
    folder.mkdir(parents=True, exist_ok=True)
    dockerfile = folder / "Dockerfile"
    _write_atomically(dockerfile, text)
    ignorefile = None
    if ignore is not None:
        ignorefile = folder / "Dockerfile.dockerignore"
        _write_atomically(ignorefile, ignore)
    return GeneratedDockerfile(dockerfile=dockerfile, context=project, ignorefile=ignorefile)


def _write_atomically(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def json_argv(argv: Sequence[str]) -> str:
    """An exec-form Dockerfile instruction argument (a JSON array)."""
    return json.dumps(list(argv))
