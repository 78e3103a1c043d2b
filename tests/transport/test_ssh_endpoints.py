"""0.5.0's `SSHConfig(endpoints=..., public_key=..., user=...)` beside 0.4.7's `SlurmSSHConfig(host,
host_public_key=None, user=None, port=None)`: one model, equal configs, every endpoint stored (0.4.19+'s form)."""

from __future__ import annotations

import dataclasses
import json

import pytest

import xm_slurm
from xm_slurm import config
from xm_slurm.api import SlurmJob
from xm_slurm.errors import ValidationError
from xm_slurm.ssh_config import Endpoint, PublicKey, SlurmSSHConfig, SSHConfig

ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
KEY = PublicKey("ssh-ed25519", ED25519)


def test_the_names_are_exported_where_scripts_import_them() -> None:
    assert config.SSHConfig is xm_slurm.SSHConfig is SSHConfig
    assert config.Endpoint is xm_slurm.Endpoint is Endpoint
    assert config.PublicKey is xm_slurm.PublicKey is PublicKey
    assert {"SSHConfig", "Endpoint", "PublicKey", "SlurmSSHConfig"} <= set(config.__all__)


def test_named_tuples_unpack_and_port_none_means_the_default() -> None:
    algorithm, key = KEY
    assert (algorithm, key) == ("ssh-ed25519", ED25519)
    host, port = Endpoint("login.example.org")
    assert (host, port) == ("login.example.org", None)
    assert str(Endpoint("login.example.org", 2222)) == "login.example.org:2222"
    assert Endpoint(hostname="h", port=22) == ("h", 22)


def test_0_4_7_positional_order_and_0_5_0_keywords_make_equal_configs() -> None:
    old = SlurmSSHConfig("login.example.org", KEY, "me", 2222)
    assert (old.host, old.host_public_key, old.user, old.port) == ("login.example.org", KEY, "me", 2222)
    new = SSHConfig(endpoints=(Endpoint("login.example.org", 2222),), public_key=KEY, user="me")
    assert new == old and hash(new) == hash(old) and isinstance(new, SlurmSSHConfig)
    assert {old: "one cluster"}[new] == "one cluster"  # one connection per cluster, whatever the spelling
    positional = SSHConfig([Endpoint("login.example.org", 2222)], KEY, "me")
    assert positional == old
    # A cluster config takes either.
    cluster = xm_slurm.SlurmClusterConfig(name="c", ssh=new, runtime=xm_slurm.ContainerRuntime.PODMAN)
    assert cluster.ssh.endpoints == (Endpoint("login.example.org", 2222),)


def test_every_endpoint_is_stored_in_the_0_4_19_form_and_read_back() -> None:
    ssh = SSHConfig(
        endpoints=(Endpoint("robot.example.org"), Endpoint("login.example.org", 22)),
        public_key=KEY,
        user="me",
        client_keys=("~/.ssh/id_site",),
        prompt_handler=lambda prompt, echo: "123456",
    )
    stored = json.loads(ssh.to_json())
    assert stored == {
        "endpoints": [["robot.example.org", None], ["login.example.org", 22]],
        "public_key": ["ssh-ed25519", ED25519],
        "user": "me",
    }
    back = SlurmSSHConfig.from_json(ssh.to_json())
    assert back.endpoints == ssh.endpoints and back.public_key == KEY and back.prompt_handler is None
    assert back.client_keys is None  # how to log in is never stored
    row = SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=ssh)
    assert json.loads(row.slurm_ssh_config) == stored


def test_replace_changes_the_first_endpoint() -> None:
    ssh = SSHConfig(endpoints=(Endpoint("a", 22), Endpoint("b", 22)), user="me")
    moved = dataclasses.replace(ssh, port=2222)
    assert moved.endpoints == (Endpoint("a", 2222), Endpoint("b", 22)) and moved.user == "me"
    assert dataclasses.replace(ssh, host="b").endpoints == (Endpoint("b", 22),)  # listed once


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"endpoints": ()}, "non-empty sequence of Endpoint"),
        ({"endpoints": "login"}, "non-empty sequence of Endpoint"),
        ({"endpoints": (Endpoint("a"), Endpoint("a"))}, "listed twice"),
        ({"endpoints": (("a", 22, 1),)}, "must be an Endpoint"),
        ({"endpoints": (Endpoint("a"),), "public_key": 42}, "PublicKey"),
        ({"endpoints": (Endpoint("a"),), "prompt_handler": "123456"}, "must be a callable"),
    ],
)
def test_bad_ssh_configs_are_refused_naming_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        SSHConfig(**kwargs)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("-oProxyCommand=x",), "host='-oProxyCommand=x'"),
        (("a", 0), "port=0"),
        (("a", True), "port=True"),
        (("me@a",), "no '@'"),
    ],
)
def test_bad_endpoints_are_refused(args: tuple, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Endpoint(*args)


def test_a_config_without_host_or_endpoints_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs host="):
        SlurmSSHConfig()
