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
import re
import shlex
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


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# What makes an element a shell command line rather than one argv word.
_SHELL_OPERATORS = frozenset({"&&", "||", ";", "|", "&", ">", ">>", "<", "2>", "2>&1"})
_SHELL_MARKS = ("&&", "||", ";", "|", "`", "$", ">", "<")
_PYTHONS = frozenset({"python", "python3"})


def entrypoint_argv(
    entrypoint: xm.ModuleName | xm.CommandList, *, python: str, what: str = "python_container"
) -> list[str]:
    """The ENTRYPOINT argv for an XManager entry point; job arguments are appended by the runtime.

    As in xmanager-slurm 0.4.x, the elements of a command list are the interpreter's arguments, each one
    argv word: `xm.CommandList(["main.py", "--fast"])` runs `python main.py --fast ARGS`, and
    `xm.ModuleName("m")` runs `python -m m ARGS`. An element that reads as a shell command line is refused
    (there is no shell here to run it), with the argv form to use instead.
    """
    if isinstance(entrypoint, xm.ModuleName):
        module = entrypoint.module_name
        if not isinstance(module, str) or not _MODULE.fullmatch(module):
            raise ValidationError(
                f"{what}: entrypoint xm.ModuleName({module!r}) is not a module name; "
                "expected a dotted Python name, e.g. xm.ModuleName('train') or xm.ModuleName('pkg.train')"
            )
        return [python, "-m", module]
    if isinstance(entrypoint, xm.CommandList):
        words = list(entrypoint.commands)
        if not words:
            raise ValidationError(
                f"{what}: entrypoint xm.CommandList([]) is empty; give the script to run, "
                "e.g. xm.CommandList(['main.py'])"
            )
        _check_argv(words, python=python, what=what)
        return [python, *words]
    raise ValidationError(
        f"{what}: entrypoint {entrypoint!r} is neither xm.ModuleName('module') nor "
        "xm.CommandList(['script.py', ...])"
    )


def _operator_in(word: str) -> bool:
    """A shell operator as a word of its own (`a && b`), or a line break: no single argument reads so."""
    return "\n" in word or any(part in _SHELL_OPERATORS for part in word.split())


def _check_argv(words: list[object], *, python: str, what: str) -> None:
    """Options, then the script (one path), then its arguments (free text, but no shell operators)."""
    for word in words:
        if not isinstance(word, str) or not word:
            raise ValidationError(
                f"{what}: entrypoint xm.CommandList({words!r}) holds {word!r}; each element is one non-empty "
                f"argv word of `{python} <elements> ARGS`, e.g. xm.CommandList(['main.py', '--fast'])"
            )
    texts = [str(w) for w in words]
    i = 0
    while i < len(texts) and texts[i].startswith("-"):
        if _operator_in(texts[i]):
            _refuse(texts[i], texts, python=python, what=what)
        if texts[i] in ("-c", "-m"):  # the code or module follows; the words after it are its arguments
            i += 2
            break
        i += 2 if texts[i] in ("-W", "-X") else 1
    else:
        if i < len(texts):
            script = texts[i]
            if len(script.split()) > 1 or any(mark in script for mark in _SHELL_MARKS) or "\n" in script:
                _refuse(script, texts, python=python, what=what)
            i += 1
    for word in texts[i:]:
        if _operator_in(word):
            _refuse(word, texts, python=python, what=what)


def _refuse(word: str, words: list[str], *, python: str, what: str) -> None:
    suggestion = _argv_form(words)
    hint = (
        f"did you mean xm.CommandList({suggestion!r})?"
        if suggestion is not None
        else "put shell steps in a script of your project and run that (xm.CommandList(['run.py'])), or "
        "use docker_container with your own ENTRYPOINT"
    )
    raise ValidationError(
        f"{what}: entrypoint element {word!r} of xm.CommandList({words!r}) reads as a shell command line, "
        f"but each element is one argv word of `{python} <elements> ARGS` (no shell runs them, as in "
        f"xmanager-slurm 0.4.x): {hint}"
    )


def _argv_form(words: list[str]) -> list[str] | None:
    """The argv a command-line-looking list meant, when it is one plain `[python] script.py args` line."""
    out: list[str] = []
    for i, word in enumerate(words):
        try:
            parts = shlex.split(word)
        except ValueError:
            return None
        if any(part in _SHELL_OPERATORS or "`" in part or "$(" in part for part in parts):
            return None
        if i > 0 and parts and parts[0] in _PYTHONS:
            return None  # several commands, not one
        out.extend(parts)
    if out and out[0] in _PYTHONS:
        out = out[1:]
    if not out or not (out[0].endswith(".py") or out[0].startswith("-")):
        return None
    return out


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
