"""SlurmSSHConfig / PublicKey: validation, hashing, serialisation (pure, no network)."""

from __future__ import annotations

import re

import pytest

from xm_slurm.errors import ValidationError
from xm_slurm.ssh_config import PublicKey, SlurmSSHConfig

# A real ed25519 public key body (generated for this test; not used anywhere).
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIGd8vX1hW6G0r+6VbSB0iJ0k5X4gHhhYk8ZJmWm3b0sE"
RSA_PREFIX = "AAAAB3NzaC1yc2EAAAADAQABAAABAQ"  # "ssh-rsa" + exponent: a valid-looking start


def test_public_key_positional_and_keyword() -> None:
    assert PublicKey("ssh-ed25519", ED25519) == PublicKey(algorithm="ssh-ed25519", key=ED25519)
    assert PublicKey.from_openssh(f"ssh-ed25519 {ED25519} root@host").key == ED25519
    assert str(PublicKey("ssh-ed25519", ED25519)) == f"ssh-ed25519 {ED25519}"


@pytest.mark.parametrize(
    ("algorithm", "key", "match"),
    [
        ("ed25519", ED25519, "'ed25519' is not an SSH host key algorithm"),
        ("ssh-ed25519", "not base64!", "not valid base64"),
        ("ssh-ed25519", "", "non-empty"),
        ("ssh-rsa", ED25519, "encodes algorithm 'ssh-ed25519', but algorithm 'ssh-rsa'"),
        ("ssh-ed25519", "AAAA", "too short|encodes"),
    ],
)
def test_public_key_validation(algorithm: str, key: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        PublicKey(algorithm, key)


def test_ssh_config_defaults_and_destination() -> None:
    config = SlurmSSHConfig(host="login.example.org", user="me")
    assert config.port is None and config.host_public_key is None
    assert config.destination == "me@login.example.org"
    assert SlurmSSHConfig(host="h", port=2222).destination == "h:2222"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"host": ""}, "host=''"),
        ({"host": "a b"}, "host='a b'"),
        ({"host": "-oProxyCommand=x"}, "leading '-'"),
        ({"host": "me@host"}, "no '@'"),
        ({"host": "h", "port": 0}, "port=0"),
        ({"host": "h", "port": 70000}, "port=70000"),
        ({"host": "h", "port": "22"}, "port='22'"),
        ({"host": "h", "port": True}, "port=True"),
        ({"host": "h", "user": "a b"}, "user='a b'"),
        ({"host": "h", "host_public_key": 12}, "host_public_key=12"),
        ({"host": "h", "client_keys": [""]}, "client_keys entry ''"),
        ({"host": "h", "known_hosts": ["a", "b"]}, "known_hosts="),
    ],
)
def test_ssh_config_validation_names_value(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        SlurmSSHConfig(**kwargs)  # type: ignore[arg-type]


def test_ssh_config_is_hashable_and_normalises_paths() -> None:
    a = SlurmSSHConfig(host="h", client_keys="/k", config_files=["/c"])
    b = SlurmSSHConfig(host="h", client_keys=("/k",), config_files=("/c",))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.client_keys == ("/k",)
    key_text = SlurmSSHConfig(host="h", host_public_key=f"ssh-ed25519 {ED25519}")  # type: ignore[arg-type]
    assert key_text.host_public_key == PublicKey("ssh-ed25519", ED25519)


def test_ssh_config_round_trip() -> None:
    config = SlurmSSHConfig(
        host="h",
        port=2222,
        user="u",
        host_public_key=PublicKey("ssh-ed25519", ED25519),
        client_keys=("/id",),
        known_hosts="/kh",
    )
    # The stored form says where to connect, never how: keys and known_hosts stay on each machine.
    stored = SlurmSSHConfig(host="h", port=2222, user="u", host_public_key=PublicKey("ssh-ed25519", ED25519))
    assert SlurmSSHConfig.from_dict(config.to_dict()) == stored
    assert SlurmSSHConfig.from_json(config.to_json()) == stored
    assert SlurmSSHConfig.from_dict({"host": "x"}) == SlurmSSHConfig(host="x")
    assert SlurmSSHConfig.from_dict({"host": "x", "password": "hunter2"}) == SlurmSSHConfig(host="x")
    with pytest.raises(ValidationError, match="not JSON"):
        SlurmSSHConfig.from_json("{")


def test_config_files_follow_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("XM_SLURM_SSH_CONFIG", "/etc/xm/ssh_config")
    files = SlurmSSHConfig(host="h").openssh_config_files()
    assert files[0] == "/etc/xm/ssh_config" and files[1].endswith("/.ssh/config")
    monkeypatch.delenv("XM_SLURM_SSH_CONFIG")
    assert len(SlurmSSHConfig(host="h").openssh_config_files()) == 1
    assert SlurmSSHConfig(host="h", config_files=["/x"]).openssh_config_files() == ["/x"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"connect_timeout": 0}, "connect_timeout=0"),
        ({"connect_timeout": float("nan")}, "connect_timeout=nan"),
        ({"connect_timeout": "5"}, "connect_timeout='5'"),
        ({"max_retries": -1}, "max_retries=-1"),
        ({"max_retries": 1.5}, "max_retries=1.5"),
    ],
)
def test_ssh_transport_options_are_validated(kwargs: dict[str, object], match: str) -> None:
    from xm_slurm.transport import SSHTransport

    with pytest.raises(ValidationError, match=re.escape(match)):
        SSHTransport(SlurmSSHConfig(host="login.example.org"), **kwargs)  # type: ignore[arg-type]
