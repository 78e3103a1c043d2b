"""The local cluster's second-factor sshd (`scripts/local-cluster`: sshd-mfa, key then a TOTP code) for tests."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from local_cluster import LocalCluster, parse_env_file

from xm_slurm.ssh_config import Endpoint, PublicKey, SSHConfig
from xm_slurm.transport import ssh_session

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SecondFactorSSHD:
    port: int
    user: str
    secret_file: str  # root-only 0600 file holding the TOTP secret (base32)
    host_key: PublicKey
    log: str  # its sshd log: one "Accepted keyboard-interactive/pam" line per second factor answered


def second_factor_sshd() -> SecondFactorSSHD:
    env = parse_env_file(REPO / ".local-cluster" / "env.sh")
    if "XM_TEST_MFA_PORT" not in env:
        raise RuntimeError("the local cluster has no sshd-mfa: rerun `scripts/local-cluster up`")
    return SecondFactorSSHD(
        port=int(env["XM_TEST_MFA_PORT"]),
        user=env["XM_TEST_MFA_USER"],
        secret_file=env["XM_TEST_MFA_SECRET_FILE"],
        host_key=PublicKey.from_openssh(Path(env["XM_TEST_MFA_HOST_KEY"]).read_text()),
        log=env["XM_TEST_MFA_LOG"],
    )


def totp(secret_file: str, at: float | None = None) -> str:
    """The current RFC 6238 code (SHA-1, 30 s, 6 digits), as an authenticator app shows it."""
    secret = Path(secret_file).read_text().strip()
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(
        key, struct.pack(">Q", int(time.time() if at is None else at) // 30), hashlib.sha1
    ).digest()
    offset = digest[-1] & 15
    return f"{(struct.unpack('>I', digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def accepted_second_factors(sshd: SecondFactorSSHD) -> int:
    return Path(sshd.log).read_text(errors="replace").count("Accepted keyboard-interactive/pam")


def mfa_config(lc: LocalCluster, sshd: SecondFactorSSHD, **overrides: object) -> SSHConfig:
    fields: dict[str, object] = {
        "endpoints": (Endpoint("127.0.0.1", sshd.port),),
        "public_key": sshd.host_key,
        "user": sshd.user,
        "client_keys": (lc.ssh_key,),
        "config_files": (),
    }
    fields.update(overrides)
    return SSHConfig(**fields)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def stop_session_holder(config: SSHConfig) -> int | None:
    """End this state folder's session holder of `config`'s cluster, if one runs; its pid is the peer of its
    socket (SO_PEERCRED). Returns the pid."""
    path = ssh_session.paths_for(config)["sock"]
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return None
        pid, _uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return int(pid)
