"""The build keywords of the packageables (`ssh`, `cache_from`, `labels`, `platforms`), put in one shape.

Pure: values are checked and normalised here; what exists on this machine (sockets, keys, emulators) is
checked by the packaging layer before it builds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from immutabledict import immutabledict

from xm_slurm.errors import ValidationError
from xm_slurm.executables.image_ref import parse_image_ref

# `os/arch[/variant]`, as docker and podman take `--platform`.
_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?")
# `id=path[,path]` or `default`: BuildKit's and podman's `--ssh` forms.
_SSH_ID = re.compile(r"[A-Za-z0-9_.-]+")

SshOption = bool | str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None


def _items(value: object, field: str) -> list[object]:
    """A list from a str (one item, never its characters), a path or a sequence."""
    if isinstance(value, (str, os.PathLike)):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    raise ValidationError(f"{field}={value!r} must be a str or a list of str")


def cache_refs(value: object) -> tuple[str, ...] | None:
    """`cache_from`: None (the default: the image's own tag), or image references ('repo:tag' is one ref)."""
    if value is None:
        return None
    refs = []
    for item in _items(value, "cache_from"):
        if not isinstance(item, str):
            raise ValidationError(f"cache_from item {item!r} is not an image reference str")
        try:
            parse_image_ref(item)
        except ValidationError as e:
            raise ValidationError(f"cache_from={item!r}: {e}") from None
        if item not in refs:
            refs.append(item)
    return tuple(refs)


def ssh_options(value: SshOption) -> tuple[str, ...]:
    """`ssh`: True forwards the default agent (`SSH_AUTH_SOCK`); a list names agent sockets or private keys
    (each a path; together they form the `default` id) or `id=path[,path]` entries; as `--ssh` values."""
    if value is None or value is False:
        return ()
    if value is True:
        return ("default",)
    out: list[str] = []
    paths: list[str] = []
    for item in _items(value, "ssh"):
        if not isinstance(item, (str, os.PathLike)) or not os.fspath(item):
            raise ValidationError(f"ssh item {item!r} must be an agent socket or key path, or 'id=path'")
        text = os.fspath(item)
        if "\n" in text or "\0" in text:
            raise ValidationError(f"ssh item {text!r} holds a newline or NUL byte")
        ident, sep, rest = text.partition("=")
        if text == "default" or (sep and _SSH_ID.fullmatch(ident) and rest):
            out.append(text)
            continue
        if "," in text:
            raise ValidationError(f"ssh path {text!r} holds ','; give each socket or key as its own item")
        paths.append(os.path.abspath(os.path.expanduser(text)))
    if paths:
        if any(o == "default" or o.startswith("default=") for o in out):
            raise ValidationError(
                f"ssh={value!r} names the default agent twice: give paths, or 'default', not both"
            )
        out.insert(0, "default=" + ",".join(paths))
    return tuple(out)


def ssh_paths(options: Sequence[str]) -> list[str]:
    """The sockets and keys an `ssh_options` result names (what must exist on this machine)."""
    return [path for option in options if "=" in option for path in option.split("=", 1)[1].split(",")]


def platform_list(value: object) -> tuple[str, ...]:
    """`platforms`: `os/arch[/variant]` names ('linux/arm64' is one platform); empty: the default."""
    if value is None:
        return ()
    out: list[str] = []
    for item in _items(value, "platforms"):
        if not isinstance(item, str) or not _PLATFORM.fullmatch(item):
            raise ValidationError(
                f"platforms item {item!r} is not a platform; use 'os/arch[/variant]', e.g. 'linux/arm64'"
            )
        if item not in out:
            out.append(item)
    return tuple(out)


def label_map(value: Mapping[Any, Any] | None) -> immutabledict[str, str]:
    """`labels`: name -> value, both as text; a name is non-empty and holds no '=' (it would split)."""
    if value is None:
        return immutabledict()
    if not isinstance(value, Mapping):
        raise ValidationError(f"labels={value!r} must be a mapping of names to values")
    out = {}
    for key, item in value.items():
        name, text = str(key), str(item)
        if not name or "=" in name or any(c in name for c in "\n\0") or "\0" in text:
            raise ValidationError(
                f"label {name!r}: a label name is non-empty text without '=' or newlines, and no NUL"
            )
        out[name] = text
    return immutabledict(out)
