"""SSH settings of a cluster: `SlurmSSHConfig` and `PublicKey` (model layer, pure data).

Placeholder written by the lead; the transport helper owns and completes this module.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class PublicKey:
    """A pinned SSH host key: algorithm (e.g. `ssh-ed25519`) and base64 key body."""

    algorithm: str
    key: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmSSHConfig:
    host: str
    port: int | None = None
    user: str | None = None
    host_public_key: PublicKey | None = None
