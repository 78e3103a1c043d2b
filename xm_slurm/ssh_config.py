"""SSH settings of a cluster: `SlurmSSHConfig` and `PublicKey` (model layer: pure data, no I/O).

The transport (`xm_slurm.transport.ssh`) turns these into asyncssh options. Host aliases, `HostName`, `Port`,
`User`, `IdentityFile` and `ProxyJump` come from OpenSSH config files, which asyncssh parses itself: the file
named by `XM_SLURM_SSH_CONFIG` first (first value wins, as in OpenSSH), then `~/.ssh/config`. Values given here
override both.

Host keys are always verified: against the pinned `host_public_key` when given (nothing else is trusted, so a
changed key is refused), else against `known_hosts` (default `~/.ssh/known_hosts`). Verification is never off.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from xm_slurm.errors import ValidationError

SSH_CONFIG_ENV_VAR = "XM_SLURM_SSH_CONFIG"

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

    # --- serialisation for the metadata store (no secrets: key *paths* and public keys only) ---

    def to_dict(self) -> dict[str, Any]:
        key = self.host_public_key
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "host_public_key": None if key is None else {"algorithm": key.algorithm, "key": key.key},
            "client_keys": None if self.client_keys is None else list(self.client_keys),
            "known_hosts": self.known_hosts,
            "config_files": None if self.config_files is None else list(self.config_files),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlurmSSHConfig:
        if not isinstance(data, Mapping) or "host" not in data:
            raise ValidationError(f"{data!r} is not a serialised SlurmSSHConfig (needs at least 'host')")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValidationError(f"unknown SlurmSSHConfig fields {sorted(unknown)} in {data!r}")
        fields = dict(data)
        key = fields.get("host_public_key")
        if isinstance(key, Mapping):
            fields["host_public_key"] = PublicKey(key["algorithm"], key["key"])
        return cls(**fields)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SlurmSSHConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValidationError(f"{text!r} is not JSON of a SlurmSSHConfig: {e}") from None
        return cls.from_dict(data)
