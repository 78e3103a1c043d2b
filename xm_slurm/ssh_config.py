"""SSH settings of a cluster: `SSHConfig` / `SlurmSSHConfig`, `Endpoint`, `PublicKey` (model layer, pure data).

`SSHConfig(endpoints=(Endpoint("robot.site.org"), Endpoint("login.site.org", 22)), public_key=PublicKey(alg,
key), user="me")` (0.5.0's spelling) and `SlurmSSHConfig(host, host_public_key=None, user=None, port=None)`
(0.4.x's order) make the same kind of object. The transport tries the endpoints in order: the next one only
when one refuses the connection or does not answer in time, never after a host key mismatch or a refused login.

Host aliases, `HostName`, `Port`, `User`, `IdentityFile` and `ProxyJump` come from OpenSSH config files (the
file named by `XM_SLURM_SSH_CONFIG` first, then `~/.ssh/config`); values given here override both.
`prompt_handler(prompt, echo) -> str` answers keyboard-interactive prompts (a second factor); without one,
prompts go to the terminal when there is one. Host keys are always verified: against the pinned `public_key`
when given (nothing else is trusted), else against `known_hosts` (default `~/.ssh/known_hosts`).

The metadata store keeps only the endpoints, the user and the pinned key, in 0.4.19+'s form (`{"endpoints":
[[host, port], ...], "public_key": [algorithm, key], "user": ...}`); our earlier form and 0.4.7's (`host`,
`port`, `host_public_key`) read too. A reader of a stored row connects with the keys, known_hosts and OpenSSH
config files of their own machine: any other stored field is ignored with a warning (a `config_files` entry
written by someone else could name a `ProxyCommand` the reader would run).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple

from xm_slurm.errors import ValidationError

SSH_CONFIG_ENV_VAR = "XM_SLURM_SSH_CONFIG"
#: The fields of a stored SSH config (a job row of the metadata store) as we write it (0.4.19+'s form):
#: where to connect, never how.
STORED_FIELDS = ("endpoints", "public_key", "user")
#: The same facts as earlier versions stored them (ours before 0.6 and 0.4.7's): read, never written.
EARLIER_FIELDS = ("host", "port", "host_public_key")
#: Every field a stored config may hold; anything else is ignored on read and refused on write.
READABLE_FIELDS = STORED_FIELDS + EARLIER_FIELDS

#: Answers one keyboard-interactive prompt: `(prompt, echo) -> answer` (or an awaitable of it).
PromptHandler = Callable[[str, bool], "str | Awaitable[str]"]

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


def _check_text(field: str, value: object, *, allow_at: bool = True) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"SlurmSSHConfig {field}={value!r} must be a non-empty string")
    if any(c.isspace() for c in value) or value.startswith("-") or (not allow_at and "@" in value):
        raise ValidationError(
            f"SlurmSSHConfig {field}={value!r} is not valid: no whitespace, no leading '-'"
            + ("" if allow_at else ", no '@' (give the user as user=...)")
        )


def _check_port(port: object) -> None:
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ValidationError(f"SlurmSSHConfig port={port!r} must be an integer in 1..65535")


class _PublicKeyFields(NamedTuple):
    algorithm: str
    key: str


class PublicKey(_PublicKeyFields):
    """A pinned SSH host key, e.g. `PublicKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAA...")`; a named tuple
    (`algorithm, key = public_key`).

    `key` is the base64 body as it appears in `known_hosts` or in `/etc/ssh/ssh_host_*_key.pub`.
    """

    __slots__ = ()

    def __new__(cls, algorithm: str, key: str) -> PublicKey:
        if algorithm not in _KEY_ALGORITHMS:
            raise ValidationError(
                f"PublicKey algorithm {algorithm!r} is not an SSH host key algorithm; "
                f"expected one of {sorted(_KEY_ALGORITHMS)}"
            )
        if not isinstance(key, str) or not key:
            raise ValidationError(f"PublicKey key {key!r} must be a non-empty base64 string")
        try:
            blob = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(
                f"PublicKey key {key[:24]!r}... is not valid base64; copy the second field of the "
                "server's `ssh-keyscan` output or of its ssh_host_*_key.pub"
            ) from None
        # The wire format starts with the algorithm name: a truncated or mismatched paste fails here.
        if len(blob) < 4:
            raise ValidationError(f"PublicKey key {key!r} is too short to be an SSH key")
        (name_len,) = struct.unpack(">I", blob[:4])
        name = blob[4 : 4 + name_len].decode("ascii", errors="replace")
        if name != algorithm:
            raise ValidationError(
                f"PublicKey key encodes algorithm {name!r}, but algorithm {algorithm!r} was given"
            )
        return super().__new__(cls, algorithm, key)

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


class _EndpointFields(NamedTuple):
    hostname: str
    port: int | None = None


class Endpoint(_EndpointFields):
    """One address of a cluster's login: `Endpoint("login.site.org", 22)`; port None: the OpenSSH config
    files' `Port`, else 22. `hostname` may be an alias of those files."""

    __slots__ = ()

    def __new__(cls, hostname: str, port: int | None = None) -> Endpoint:
        _check_text("host", hostname, allow_at=False)
        _check_port(port)
        return super().__new__(cls, hostname, port)

    def __str__(self) -> str:
        return f"{self.hostname}:{self.port}" if self.port else self.hostname


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


def _as_key(field: str, key: object) -> PublicKey | None:
    if key is None or isinstance(key, PublicKey):
        return key
    if isinstance(key, str):  # accept "ssh-ed25519 AAAA..." for convenience
        return PublicKey.from_openssh(key)
    if isinstance(key, tuple) and len(key) == 2:
        return PublicKey(*key)
    raise ValidationError(f"SlurmSSHConfig {field}={key!r} must be a PublicKey(algorithm, key) or None")


def _as_endpoints(endpoints: object) -> tuple[Endpoint, ...]:
    if isinstance(endpoints, (str, Endpoint)) or not isinstance(endpoints, Sequence) or not endpoints:
        raise ValidationError(
            f"SSHConfig endpoints={endpoints!r:.200} must be a non-empty sequence of "
            "Endpoint(hostname, port), e.g. (Endpoint('login.site.org', 22),)"
        )
    out: list[Endpoint] = []
    for item in endpoints:
        if isinstance(item, str):
            item = Endpoint(item)
        elif isinstance(item, Sequence) and not isinstance(item, Endpoint) and len(item) == 2:
            item = Endpoint(item[0], item[1])
        if not isinstance(item, Endpoint):
            raise ValidationError(f"SSHConfig endpoint {item!r:.100} must be an Endpoint(hostname, port)")
        if item in out:
            raise ValidationError(f"SSHConfig endpoint {item} is listed twice; give each address once")
        out.append(item)
    return tuple(out)


@dataclasses.dataclass(frozen=True, init=False, eq=False)
class SlurmSSHConfig:
    """How to reach a cluster's login over SSH: `SlurmSSHConfig(host, host_public_key=None, user=None,
    port=None)` (0.4.x's order) or `SlurmSSHConfig(endpoints=(Endpoint(...), ...), public_key=..., user=...)`.

    `host` may be an alias from `~/.ssh/config` / `$XM_SLURM_SSH_CONFIG`. `port` and `user` default to the
    config files' values, then to 22 and the local user. `public_key` (`host_public_key`) pins the server key.
    `client_keys` (identity files) and `known_hosts` (a file path) override the defaults; `config_files`
    replaces the default list of OpenSSH config files. `prompt_handler(prompt, echo)` answers
    keyboard-interactive prompts (a second factor). `host=` / `port=` given with `endpoints=` replace the first
    endpoint's (so `dataclasses.replace(config, port=2222)` works). Frozen, unlike 0.4.7's.
    """

    endpoints: tuple[Endpoint, ...]
    public_key: PublicKey | None
    user: str | None
    client_keys: tuple[str, ...] | None
    known_hosts: str | None
    config_files: tuple[str, ...] | None
    prompt_handler: PromptHandler | None

    def __init__(
        self,
        host: str | None = None,
        host_public_key: PublicKey | str | None = None,
        user: str | None = None,
        port: int | None = None,
        *,
        endpoints: Sequence[Endpoint] | None = None,
        public_key: PublicKey | str | None = None,
        client_keys: Sequence[str | os.PathLike[str]] | str | None = None,
        known_hosts: str | os.PathLike[str] | None = None,
        config_files: Sequence[str | os.PathLike[str]] | None = None,
        prompt_handler: PromptHandler | None = None,
    ) -> None:
        set_ = object.__setattr__
        if endpoints is None:
            if host is None:
                raise ValidationError("SlurmSSHConfig needs host= (or endpoints=(Endpoint(host, port), ...))")
            found: tuple[Endpoint, ...] = (Endpoint(host, port),)
        else:
            found = _as_endpoints(endpoints)
            if host is not None or port is not None:
                first = found[0]
                changed = Endpoint(
                    first.hostname if host is None else host, first.port if port is None else port
                )
                found = (changed, *(e for e in found[1:] if e != changed))
        set_(self, "endpoints", found)
        set_(
            self,
            "public_key",
            _as_key("host_public_key", host_public_key) or _as_key("public_key", public_key),
        )
        if user is not None:
            _check_text("user", user, allow_at=False)
        set_(self, "user", user)
        set_(self, "client_keys", _as_paths("client_keys", client_keys))
        set_(self, "config_files", _as_paths("config_files", config_files))
        known = _as_paths("known_hosts", known_hosts)
        if known is not None and len(known) != 1:
            raise ValidationError(f"SlurmSSHConfig known_hosts={known_hosts!r} must be one path")
        set_(self, "known_hosts", None if known is None else known[0])
        if prompt_handler is not None and not callable(prompt_handler):
            raise ValidationError(
                f"prompt_handler={prompt_handler!r} must be a callable (prompt, echo) -> answer"
            )
        set_(self, "prompt_handler", prompt_handler)

    # The same cluster whatever the spelling (SSHConfig or SlurmSSHConfig) and whoever answers prompts:
    # an experiment's connections are keyed by it, and a stored config has no prompt_handler.
    def _key(self) -> tuple[object, ...]:
        return (
            self.endpoints,
            self.public_key,
            self.user,
            self.client_keys,
            self.known_hosts,
            self.config_files,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlurmSSHConfig) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def host(self) -> str:
        """The first endpoint's host name (0.4.x's single `host`)."""
        return self.endpoints[0].hostname

    @property
    def port(self) -> int | None:
        """The first endpoint's port (None: the OpenSSH config files', else 22)."""
        return self.endpoints[0].port

    @property
    def host_public_key(self) -> PublicKey | None:
        """0.4.x's name of `public_key`."""
        return self.public_key

    @property
    def destination(self) -> str:
        """`[user@]host[:port]` of the first endpoint (and how many others), for messages."""
        text = f"{self.user}@{self.endpoints[0]}" if self.user else str(self.endpoints[0])
        more = len(self.endpoints) - 1
        return f"{text} (+{more} other endpoint{'s' if more > 1 else ''})" if more else text

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
        """The stored form (0.4.19+'s): endpoints, the pinned public key and the user only."""
        key = self.public_key
        return {
            "endpoints": [[e.hostname, e.port] for e in self.endpoints],
            "public_key": None if key is None else [key.algorithm, key.key],
            "user": self.user,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlurmSSHConfig:
        """Read a stored config: 0.4.19+'s form (`endpoints`, `public_key`: every endpoint kept), our earlier
        one and 0.4.7's (`host`, `port`, `host_public_key` as a mapping or `[algorithm, key]`). Other fields
        (client_keys, known_hosts, config_files, unknown ones) are ignored with a warning naming them; the
        reader's own keys and config files apply instead."""
        if not isinstance(data, Mapping) or ("host" not in data and "endpoints" not in data):
            raise ValidationError(
                f"{data!r:.200} is not a serialised SlurmSSHConfig (needs at least 'host' or 'endpoints')"
            )
        config = cls(
            endpoints=_stored_endpoints(data),
            user=data.get("user"),
            public_key=_one_of(data, "host_public_key", "public_key", _stored_key),
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


class SSHConfig(SlurmSSHConfig):
    """0.5.0's spelling: `SSHConfig(endpoints=(Endpoint(hostname, port), ...), public_key=PublicKey(algorithm,
    key), user=None)`, plus this library's `client_keys`, `known_hosts`, `config_files` and `prompt_handler`.
    A `SlurmSSHConfig`, accepted wherever one is; equal to one with the same settings."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        public_key: PublicKey | str | None = None,
        user: str | None = None,
        **options: Any,
    ) -> None:
        """`options`: client_keys, known_hosts, config_files, prompt_handler (as `SlurmSSHConfig`'s)."""
        super().__init__(endpoints=endpoints, public_key=public_key, user=user, **options)


def _stored_endpoints(data: Mapping[str, Any]) -> list[Endpoint]:
    """The endpoints of a stored config: 0.4.19+'s `endpoints` (all of them), else `host`/`port`."""
    value = data.get("endpoints")
    if value is None:
        return [Endpoint(data.get("host"), data.get("port"))]  # type: ignore[arg-type]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValidationError(
            f'stored endpoints {value!r:.200} is not a non-empty list of [host, port] (e.g. [["login", 22]])'
        )
    endpoints = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValidationError(
                f'stored endpoints {value!r:.200} is not a non-empty list of [host, port] (e.g. [["login", 22]])'
            )
        endpoints.append(Endpoint(item[0], item[1]))
    first = endpoints[0]
    for field, given in (("host", first.hostname), ("port", first.port)):
        if data.get(field) is not None and data[field] != given:
            raise ValidationError(
                f"stored SSH config has {field}={data[field]!r:.100} but its first endpoint has "
                f"{given!r:.100}: give one of the two"
            )
    return endpoints


def _one_of(data: Mapping[str, Any], ours: str, upstream: str, read: Any) -> Any:
    """A field stored under our earlier name or 0.4.19+'s; both present must agree."""
    mine, theirs = read(data.get(ours)), read(data.get(upstream))
    if mine is not None and theirs is not None and mine != theirs:
        raise ValidationError(f"stored SSH config has {ours} and {upstream} that differ: give one of the two")
    return mine if mine is not None else theirs


def _stored_key(value: object) -> PublicKey | None:
    """A stored host key: [algorithm, key] (0.4.x), {"algorithm", "key"} (ours before) or "algorithm key"."""
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
        "ignoring %s of the stored SSH config of %r: a stored config holds only the endpoints, the user and "
        "the pinned public key; keys, known_hosts and OpenSSH config files come from this machine "
        "(XM_SLURM_SSH_CONFIG, ~/.ssh/config)",
        ", ".join(f"{f!r:.100}" for f in fields),
        host,
    )
