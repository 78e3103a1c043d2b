"""Registry credentials from the container auth files that docker and podman already use.

Looked up, in order: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
`~/.config/containers/auth.json`, `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
Entries may hold an inline `auth` (base64 `user:password`) or name a docker credential helper
(`credHelpers` / `credsStore`), which is asked over stdin so the host never reaches a command
line with a secret and the secret never reaches one at all.

The secret lives only in `RegistryCredentials.password`, which is left out of `repr`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from xm_slurm.errors import PackagingError, ValidationError


@dataclasses.dataclass(frozen=True)
class RegistryCredentials:
    """A username and secret for one registry. The secret is never printed."""

    username: str
    password: str = dataclasses.field(repr=False)
    registry: str = ""
    source: str = ""  # the auth file it came from, for messages


def auth_file_candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    """Auth files in the order podman and docker consult them."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    out: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        out.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        out.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    out.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "containers" / "auth.json")
    out.append(Path(env.get("DOCKER_CONFIG") or home / ".docker") / "config.json")
    return out


def _normalize_key(key: str) -> str:
    """`https://index.docker.io/v1/` -> `docker.io`; `host/ns/` -> `host/ns`."""
    key = key.strip()
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            # Docker writes URLs with an API path; only the host counts then.
            key = key.split("/", 1)[0]
    key = key.rstrip("/")
    if key in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return key


def _candidate_keys(registry: str, repository: str | None) -> Iterator[str]:
    """Most specific first, as podman matches `host/ns/repo`, then `host/ns`, then `host`."""
    if repository:
        parts = repository.split("/")
        for n in range(len(parts), 0, -1):
            yield f"{registry}/{'/'.join(parts[:n])}"
    yield registry


def _load(path: Path) -> dict | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PackagingError(f"cannot read container auth file {path}: {e.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        # Never echo the file: it holds secrets.
        raise ValidationError(
            f"container auth file {path} is not valid JSON (line {e.lineno}); fix or remove it"
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(f"container auth file {path} must hold a JSON object")
    return data


def _decode_inline(entry: Mapping[str, object], *, path: Path, key: str) -> RegistryCredentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValidationError(
                f"the 'auth' entry for {key!r} in {path} is not base64 of 'user:password'"
            ) from None
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise ValidationError(f"the 'auth' entry for {key!r} in {path} is not base64 of 'user:password'")
        return RegistryCredentials(user, secret, registry=key, source=str(path))
    name, token = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(token, str) and name:
        return RegistryCredentials(name, token, registry=key, source=str(path))
    return None


def _from_helper(
    helper: str, server: str, *, path: Path, env: Mapping[str, str]
) -> RegistryCredentials | None:
    """Ask `docker-credential-<helper>`; the server name goes over stdin, the secret comes back on stdout."""
    program = f"docker-credential-{helper}"
    found = shutil.which(program, path=env.get("PATH"))
    if found is None:
        raise PackagingError(f"{path} names the credential helper {helper!r}, but {program} is not on PATH")
    try:
        proc = subprocess.run(
            [found, "get"], input=server.encode(), capture_output=True, timeout=30, check=False, env=dict(env)
        )
    except subprocess.TimeoutExpired:
        raise PackagingError(f"credential helper {program} did not answer for {server} within 30 s") from None
    if proc.returncode != 0:
        # "credentials not found" is an ordinary miss; the helper's output is not shown (may hold secrets).
        return None
    try:
        data = json.loads(proc.stdout)
        return RegistryCredentials(
            str(data["Username"]), str(data["Secret"]), registry=server, source=program
        )
    except (json.JSONDecodeError, KeyError, TypeError):
        raise PackagingError(f"credential helper {program} gave an unreadable answer for {server}") from None


def find_credentials(
    registry: str, repository: str | None = None, *, env: Mapping[str, str] | None = None
) -> RegistryCredentials | None:
    """The credentials for `registry` (and optionally a repository in it), or None if none are stored."""
    env = os.environ if env is None else env
    registry = _normalize_key(registry)
    for path in auth_file_candidates(env):
        data = _load(path)
        if data is None:
            continue
        auths = data.get("auths") or {}
        if isinstance(auths, dict):
            normalized = {_normalize_key(k): v for k, v in auths.items() if isinstance(v, dict)}
            for key in _candidate_keys(registry, repository):
                if key in normalized:
                    found = _decode_inline(normalized[key], path=path, key=key)
                    if found is not None:
                        return found
        helpers = data.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for host, helper in helpers.items():
                if _normalize_key(host) == registry and isinstance(helper, str):
                    return _from_helper(helper, host, path=path, env=env)
        store = data.get("credsStore")
        if isinstance(store, str) and store:
            server = "https://index.docker.io/v1/" if registry == "docker.io" else registry
            found = _from_helper(store, server, path=path, env=env)
            if found is not None:
                return found
    return None
