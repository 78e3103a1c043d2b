"""A job row's SSH config as xmanager-slurm 0.4.x stored it reads into our model (compat-04x.md item 10).

0.4.7: `{"host", "host_public_key": [algorithm, key], "user", "port"}`; 0.4.19+: `{"endpoints": [[host, port],
...], "public_key": [algorithm, key], "user"}`. Both hold only where to connect; anything else stays ignored on
read (with a warning) and refused on write, as for our own form.
"""

from __future__ import annotations

import json
import logging

import pytest

from xm_slurm.api import SlurmJob
from xm_slurm.api.models import from_store
from xm_slurm.errors import ValidationError
from xm_slurm.experiment.handles import SlurmLaunchedJob
from xm_slurm.ssh_config import Endpoint, PublicKey, SlurmSSHConfig

# The local cluster's sshd key, as it stands in tests/compat/data/store-047.sql.
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAINVUtH0GXq2Vet57zZA1Jq53Oy7qvArV9Y5zW5tAvbg2"
KEY = PublicKey("ssh-ed25519", ED25519)
FORM_047 = {"host": "127.0.0.1", "host_public_key": ["ssh-ed25519", ED25519], "user": "root", "port": 2222}
FORM_0419 = {
    "endpoints": [["127.0.0.1", 2222], ["login2.example.org", 22]],
    "public_key": ["ssh-ed25519", ED25519],
    "user": "root",
}
EXPECTED = SlurmSSHConfig(host="127.0.0.1", port=2222, user="root", host_public_key=KEY)
# 0.4.19+'s rows keep every endpoint, in order (the transport fails over from one to the next).
EXPECTED_0419 = SlurmSSHConfig(
    endpoints=(Endpoint("127.0.0.1", 2222), Endpoint("login2.example.org", 22)), user="root", public_key=KEY
)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "xm_slurm.ssh_config"]


@pytest.mark.parametrize(
    ("row", "expected"), [(FORM_047, EXPECTED), (FORM_0419, EXPECTED_0419)], ids=["0.4.7", "0.4.19"]
)
def test_both_upstream_forms_read_without_warning(
    row: dict, expected: SlurmSSHConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert SlurmSSHConfig.from_json(json.dumps(row)) == expected
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    ("row", "expected"), [(FORM_047, EXPECTED), (FORM_0419, EXPECTED_0419)], ids=["0.4.7", "0.4.19"]
)
def test_a_handle_is_built_from_an_upstream_row(row: dict, expected: SlurmSSHConfig) -> None:
    record = from_store(SlurmJob, name="train", slurm_job_id="3115_1", slurm_ssh_config=json.dumps(row))
    handle = SlurmLaunchedJob.from_record(record, experiment_id=2)
    assert handle.ssh == expected
    assert handle.job_id.to_string() == "3115_1"


@pytest.mark.parametrize("row", [FORM_047, FORM_0419], ids=["0.4.7", "0.4.19"])
def test_upstream_rows_may_be_written_again_as_they_are(row: dict) -> None:
    # A 0.4.x REST client posts its own form: it holds only where to connect, so it is accepted unchanged.
    text = json.dumps(row)
    assert SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=text).slurm_ssh_config == text


def test_an_endpoint_without_port_reads_as_the_default_port() -> None:
    row = {"endpoints": [["login", None]], "user": "me"}
    assert SlurmSSHConfig.from_json(json.dumps(row)) == SlurmSSHConfig(host="login", user="me")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"endpoints": []}, "non-empty list of \\[host, port\\]"),
        ({"endpoints": ["login"]}, "non-empty list of \\[host, port\\]"),
        ({"endpoints": [["login", 22, 1]]}, "non-empty list of \\[host, port\\]"),
        ({"endpoints": [["-oProxyCommand=x", 22]]}, "host="),
        ({"endpoints": [["login", 0]]}, "port="),
        ({"endpoints": [["a", 22]], "host": "b"}, "host='b' but its first endpoint has 'a'"),
        (
            {"host": "a", "host_public_key": ["ssh-ed25519", ED25519], "public_key": "ssh-rsa AAAA"},
            "PublicKey",
        ),
        ({"endpoints": [["a", 22]], "public_key": ["ssh-ed25519", "not base64!"]}, "base64"),
    ],
)
def test_malformed_upstream_forms_are_refused(row: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        SlurmSSHConfig.from_json(json.dumps(row))
    with pytest.raises(ValidationError):
        SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=json.dumps(row))


def test_two_different_pinned_keys_are_refused() -> None:
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    row = {"host": "a", "host_public_key": ["ssh-ed25519", ED25519], "public_key": ["ssh-ed25519", other]}
    with pytest.raises(ValidationError, match="host_public_key and public_key that differ"):
        SlurmSSHConfig.from_json(json.dumps(row))


@pytest.mark.parametrize("field", ["identity_file", "proxy_command", "config_files"])
def test_upstream_form_with_other_fields_ignores_them_on_read_and_refuses_on_write(
    field: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    row = {**FORM_0419, "endpoints": [[f"login-{field.replace('_', '-')}", 22]], field: "/tmp/attacker-value"}
    config = SlurmSSHConfig.from_json(json.dumps(row))
    assert (config.client_keys, config.known_hosts, config.config_files) == (None, None, None)
    [warning] = _warnings(caplog)
    assert repr(field) in warning and "attacker-value" not in warning
    with pytest.raises(ValidationError, match=field):
        SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=json.dumps(row))
