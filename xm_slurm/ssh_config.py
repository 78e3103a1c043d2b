"""SSH settings of a cluster: `SlurmSSHConfig` and `PublicKey` (model layer: pure data, no I/O).

The transport (`xm_slurm.transport.ssh`) turns these into asyncssh options. Host aliases, `HostName`, `Port`,
`User`, `IdentityFile` and `ProxyJump` come from OpenSSH config files, which asyncssh parses itself: the file
named by `XM_SLURM_SSH_CONFIG` first (first value wins, as in OpenSSH), then `~/.ssh/config`. Values given here
override both.

Host keys are always verified: against the pinned `host_public_key` when given (nothing else is trusted, so a
changed key is refused), else against `known_hosts` (default `~/.ssh/known_hosts`). Verification is never off.

The metadata store keeps only `host`, `port`, `user` and the pinned `host_public_key` of a job's cluster
(`to_dict` / `to_json`); rows of xmanager-slurm 0.4.x (the key as `[algorithm, key]`; 0.4.19+'s `endpoints` and
`public_key`) read too. Whoever reads a stored row (`from_dict` / `from_json`) connects with the keys,
known_hosts and OpenSSH config files of their own machine: any other stored field is ignored with a warning,
since a `config_files` entry written by someone else could name a `ProxyCommand` the reader would run.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from xm_slurm.errors import ValidationError

SSH_CONFIG_ENV_VAR = "XM_SLURM_SSH_CONFIG"
#: The fields of a stored SSH config (a job row of the metadata store): where to connect, never how.
STORED_FIELDS = ("host", "port", "user", "host_public_key")
#: The same facts as xmanager-slurm 0.4.19+ stores them: `{"endpoints": [[host, port], ...], "public_key":
#: [algorithm, key], "user": ...}`. Read (the first endpoint is the host and port), never written by us.
UPSTREAM_FIELDS = ("endpoints", "public_key")
#: Every field a stored config may hold; anything else is ignored on read and refused on write.
READABLE_FIELDS = STORED_FIELDS + UPSTREAM_FIELDS

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()  # (host, ignored fields and values): once per process, not per row

_KEY_ALGORITHMS = frozenset(
    {
        "ssh-ed25519",
        "ssh-ed448",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


@dataclasses.dataclass(frozen=True)
class PublicKey:
    """A pinned SSH host key, e.g. `PublicKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAA...")`.

    `key` is the base64 body as it appears in `known_hosts` or in `/etc/ssh/ssh_host_*_key.pub`.
    """

    algorithm: str
    key: str

    def __post_init__(self) -> None:
        if self.algorithm not in _KEY_ALGORITHMS:
            raise ValidationError(
                f"PublicKey algorithm {self.algorithm!r} is not an SSH host key algorithm; "
                f"expected one of {sorted(_KEY_ALGORITHMS)}"
            )
        if not isinstance(self.key, str) or not self.key:
            raise ValidationError(f"PublicKey key {self.key!r} must be a non-empty base64 string")
        try:
            blob = base64.b64decode(self.key, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(
                f"PublicKey key {self.key[:24]!r}... is not valid base64; copy the second field of the "
                "server's `ssh-keyscan` output or of its ssh_host_*_key.pub"
            ) from None
        # The wire format starts with the algorithm name: a truncated or mismatched paste fails here.
        if len(blob) < 4:
            raise ValidationError(f"PublicKey key {self.key!r} is too short to be an SSH key")
        (name_len,) = struct.unpack(">I", blob[:4])
        name = blob[4 : 4 + name_len].decode("ascii", errors="replace")
        if name != self.algorithm:
            raise ValidationError(
                f"PublicKey key encodes algorithm {name!r}, but algorithm {self.algorithm!r} was given"
            )

    @classmethod
    def from_openssh(cls, line: str) -> PublicKey:
        """Parse `"<algorithm> <base64> [comment]"` (a .pub file or the key part of a known_hosts line)."""
        parts = line.split()
        if len(parts) < 2:
            raise ValidationError(
                f"{line!r} is not an OpenSSH public key line ('<algorithm> <base64> [comment]')"
            )
        return cls(parts[0], parts[1])

    def to_openssh(self) -> str:
        return f"{self.algorithm} {self.key}"

    def __str__(self) -> str:
        return self.to_openssh()


def _check_text(field: str, value: object, *, allow_at: bool = True) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"SlurmSSHConfig {field}={value!r} must be a non-empty string")
    if any(c.isspace() for c in value) or value.startswith("-") or (not allow_at and "@" in value):
        raise ValidationError(
            f"SlurmSSHConfig {field}={value!r} is not valid: no whitespace, no leading '-'"
            + ("" if allow_at else ", no '@' (give the user as user=...)")
        )


def _as_paths(field: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, Sequence) or isinstance(items, bytes):
        raise ValidationError(f"SlurmSSHConfig {field}={value!r} must be a path or a sequence of paths")
    paths: list[str] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)) or not os.fspath(item):
            raise ValidationError(f"SlurmSSHConfig {field} entry {item!r} must be a non-empty path")
        paths.append(str(os.fspath(item)))
    return tuple(paths)


@dataclasses.dataclass(frozen=True)
class SlurmSSHConfig:
    """How to reach a cluster's login node over SSH.

    `host` may be an alias from `~/.ssh/config` / `$XM_SLURM_SSH_CONFIG`. `port` and `user` default to the
    config files' values, then to 22 and the local user. `host_public_key` pins the server key. `client_keys`
    (identity files) and `known_hosts` (a file path) override the defaults; `config_files` replaces the
    default list of OpenSSH config files.
    """

    host: str
    port: int | None = None
    user: str | None = None
    host_public_key: PublicKey | None = None
    client_keys: tuple[str, ...] | None = None
    known_hosts: str | None = None
    config_files: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_text("host", self.host, allow_at=False)
        if self.port is not None and (
            isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536
        ):
            raise ValidationError(f"SlurmSSHConfig port={self.port!r} must be an integer in 1..65535")
        if self.user is not None:
            _check_text("user", self.user, allow_at=False)
        key = self.host_public_key
        if isinstance(key, str):  # accept "ssh-ed25519 AAAA..." for convenience
            object.__setattr__(self, "host_public_key", PublicKey.from_openssh(key))
        elif key is not None and not isinstance(key, PublicKey):
            raise ValidationError(
                f"SlurmSSHConfig host_public_key={key!r} must be a PublicKey(algorithm, key) or None"
            )
        object.__setattr__(self, "client_keys", _as_paths("client_keys", self.client_keys))
        object.__setattr__(self, "config_files", _as_paths("config_files", self.config_files))
        if self.known_hosts is not None:
            known = _as_paths("known_hosts", self.known_hosts)
            if known is None or len(known) != 1:
                raise ValidationError(f"SlurmSSHConfig known_hosts={self.known_hosts!r} must be one path")
            object.__setattr__(self, "known_hosts", known[0])

    @property
    def destination(self) -> str:
        """`[user@]host[:port]`, for messages."""
        text = f"{self.user}@{self.host}" if self.user else self.host
        return f"{text}:{self.port}" if self.port else text

    def __str__(self) -> str:
        return self.destination

    def openssh_config_files(self) -> list[str]:
        """The OpenSSH config files to honour, highest precedence first (reads the environment, not files)."""
        if self.config_files is not None:
            return list(self.config_files)
        files = []
        if extra := os.environ.get(SSH_CONFIG_ENV_VAR):
            files.append(os.path.expanduser(extra))
        files.append(os.path.expanduser("~/.ssh/config"))
        return files

    # --- serialisation for the metadata store: where to connect, never how (see the module docstring) ---

    def to_dict(self) -> dict[str, Any]:
        """The stored form: host, port, user and the pinned public key only."""
        key = self.host_public_key
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "host_public_key": None if key is None else {"algorithm": key.algorithm, "key": key.key},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlurmSSHConfig:
        """Read a stored config: ours, 0.4.7's (the key as `[algorithm, key]`) or 0.4.19+'s (`endpoints`,
        `public_key`). Other fields (client_keys, known_hosts, config_files, unknown ones) are ignored with a
        warning naming them; the reader's own keys and config files apply instead."""
        if not isinstance(data, Mapping) or ("host" not in data and "endpoints" not in data):
            raise ValidationError(
                f"{data!r:.200} is not a serialised SlurmSSHConfig (needs at least 'host' or 'endpoints')"
            )
        host, port = _stored_endpoint(data)
        config = cls(
            host=host,
            port=port,
            user=data.get("user"),
            host_public_key=_one_of(data, "host_public_key", "public_key", _stored_key),
        )
        ignored = {str(k): v for k, v in data.items() if k not in READABLE_FIELDS and v is not None}
        if ignored:
            _warn_ignored(config.host, ignored)
        return config

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SlurmSSHConfig:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise ValidationError(f"{text!r:.200} is not JSON of a SlurmSSHConfig: {e}") from None
        return cls.from_dict(data)


def _first_endpoint(value: object) -> tuple[Any, Any]:
    """0.4.19+'s `endpoints`: a non-empty list of `[host, port]`; the first is where we connect."""
    if isinstance(value, (list, tuple)) and value:
        first = value[0]
        if isinstance(first, (list, tuple)) and len(first) == 2:
            return first[0], first[1]
    raise ValidationError(
        f'stored endpoints {value!r:.200} is not a non-empty list of [host, port] (e.g. [["login", 22]])'
    )


def _stored_endpoint(data: Mapping[str, Any]) -> tuple[Any, Any]:
    """(host, port) of a stored config: `host`/`port`, or the first of 0.4.19+'s `endpoints`."""
    if data.get("endpoints") is None:
        return data.get("host"), data.get("port")
    host, port = _first_endpoint(data["endpoints"])
    for field, value in (("host", host), ("port", port)):
        if data.get(field) is not None and data[field] != value:
            raise ValidationError(
                f"stored SSH config has {field}={data[field]!r:.100} but its first endpoint has "
                f"{value!r:.100}: give one of the two"
            )
    return host, port


def _one_of(data: Mapping[str, Any], ours: str, upstream: str, read: Any) -> Any:
    """A field stored under our name or 0.4.19+'s; both present must agree."""
    mine, theirs = read(data.get(ours)), read(data.get(upstream))
    if mine is not None and theirs is not None and mine != theirs:
        raise ValidationError(f"stored SSH config has {ours} and {upstream} that differ: give one of the two")
    return mine if mine is not None else theirs


def _stored_key(value: object) -> PublicKey | None:
    """A stored host key: {"algorithm", "key"}, the 0.4.7 list form [algorithm, key], or "algorithm key"."""
    if value is None or isinstance(value, PublicKey):
        return value
    if isinstance(value, Mapping) and set(value) >= {"algorithm", "key"}:
        return PublicKey(value["algorithm"], value["key"])
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return PublicKey(value[0], value[1])
    if isinstance(value, str):
        return PublicKey.from_openssh(value)
    raise ValidationError(
        f"stored host_public_key {value!r:.200} is not {{'algorithm': ..., 'key': ...}}, "
        "[algorithm, key] or 'algorithm key'"
    )


def _warn_ignored(host: str, ignored: Mapping[str, Any]) -> None:
    fields = sorted(ignored)
    key = (host, json.dumps(ignored, sort_keys=True, default=str))
    if key in _warned:
        return
    if len(_warned) > 1000:
        _warned.clear()
    _warned.add(key)
    log.warning(
        "ignoring %s of the stored SSH config of %r: a stored config holds only host, port, user and "
        "host_public_key; keys, known_hosts and OpenSSH config files come from this machine "
        "(XM_SLURM_SSH_CONFIG, ~/.ssh/config)",
        ", ".join(f"{f!r:.100}" for f in fields),
        host,
    )
