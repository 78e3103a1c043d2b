from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from xm_slurm.errors import ValidationError
from xm_slurm.packaging.credentials import auth_file_candidates, find_credentials


def _auth(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "PATH": os.environ["PATH"], **extra}


def test_candidate_order(tmp_path: Path) -> None:
    env = _env(tmp_path, REGISTRY_AUTH_FILE="/a/auth.json", XDG_RUNTIME_DIR="/run/user/7")
    assert [str(p) for p in auth_file_candidates(env)] == [
        "/a/auth.json",
        "/run/user/7/containers/auth.json",
        f"{tmp_path}/home/.config/containers/auth.json",
        f"{tmp_path}/home/.docker/config.json",
    ]


def test_registry_auth_file_wins_and_most_specific_key(tmp_path: Path) -> None:
    first = tmp_path / "auth.json"
    first.write_text(
        json.dumps(
            {
                "auths": {
                    "registry.example.org": {"auth": _auth("host-user", "s3cret-host")},
                    "registry.example.org/team": {"auth": _auth("team-user", "s3cret:team")},
                }
            }
        )
    )
    docker = tmp_path / "home" / ".docker" / "config.json"
    docker.parent.mkdir(parents=True)
    docker.write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": _auth("hub", "hubsecret")}}})
    )
    env = _env(tmp_path, REGISTRY_AUTH_FILE=str(first))

    team = find_credentials("registry.example.org", "team/train", env=env)
    assert team is not None and (team.username, team.password) == ("team-user", "s3cret:team")
    host = find_credentials("registry.example.org", "other/x", env=env)
    assert host is not None and host.username == "host-user"
    hub = find_credentials("docker.io", "library/python", env=env)
    assert hub is not None and (hub.username, hub.password) == ("hub", "hubsecret")
    assert find_credentials("ghcr.io", "x/y", env=env) is None
    # The secret never shows in repr (which logs and error messages may use).
    assert "s3cret" not in repr(team) and "s3cret" not in str(team)


def test_credential_helper_gets_host_on_stdin(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-xmtest"
    # A real helper program: reads the server on stdin, answers JSON, records its argv.
    helper.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {tmp_path}/argv\n'
        "read server\n"
        'printf \'{"ServerURL":"%s","Username":"helper-user","Secret":"helper-secret"}\' "$server"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    cfg = tmp_path / "home" / ".docker" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"credHelpers": {"registry.example.org": "xmtest"}}))
    env = {**_env(tmp_path), "PATH": f"{bindir}:{os.environ['PATH']}"}
    creds = find_credentials("registry.example.org", env=env)
    assert creds is not None and (creds.username, creds.password) == ("helper-user", "helper-secret")
    assert (tmp_path / "argv").read_text().strip() == "get"


def test_broken_auth_file_is_named_without_its_content(tmp_path: Path) -> None:
    bad = tmp_path / "auth.json"
    bad.write_text('{"auths": {"r.io": {"auth": "topsecret-not-base64!!"}}}')
    with pytest.raises(ValidationError) as info:
        find_credentials("r.io", env=_env(tmp_path, REGISTRY_AUTH_FILE=str(bad)))
    assert str(bad) in str(info.value) and "topsecret" not in str(info.value)
    bad.write_text("{not json topsecret")
    with pytest.raises(ValidationError, match="not valid JSON") as info:
        find_credentials("r.io", env=_env(tmp_path, REGISTRY_AUTH_FILE=str(bad)))
    assert "topsecret" not in str(info.value)
