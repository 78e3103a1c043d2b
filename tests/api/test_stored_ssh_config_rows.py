"""What a job row's SSH config may hold (host, port, user, the pinned key) and how older rows read."""

from __future__ import annotations

import json
import logging

import pytest

from xm_slurm.api import SlurmJob
from xm_slurm.errors import ValidationError
from xm_slurm.experiment.handles import SlurmLaunchedJob
from xm_slurm.ssh_config import PublicKey, SlurmSSHConfig

ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "xm_slurm.ssh_config"]


def test_the_stored_form_holds_where_not_how() -> None:
    config = SlurmSSHConfig(
        host="login",
        port=2222,
        user="me",
        host_public_key=PublicKey("ssh-ed25519", ED25519),
        client_keys=("~/.ssh/id_team",),
        known_hosts="~/.ssh/known_hosts_team",
        config_files=("~/.ssh/team_config",),
    )
    stored = json.loads(config.to_json())
    # 0.4.19+'s form (compat-04x.md item 10), which 0.4.19+ and we both read.
    assert stored == {"endpoints": [["login", 2222]], "public_key": ["ssh-ed25519", ED25519], "user": "me"}
    assert config.to_dict() == stored
    assert SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=config).ssh_config_dict() == stored


def test_rows_of_earlier_versions_read_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    earlier = {
        "host": "login-earlier",
        "port": 22,
        "user": "me",
        "host_public_key": None,
        "client_keys": None,
        "known_hosts": None,
        "config_files": None,
    }
    assert SlurmSSHConfig.from_json(json.dumps(earlier)) == SlurmSSHConfig(
        host="login-earlier", port=22, user="me"
    )
    # ... and may be written again (other fields null: nothing to refuse).
    assert SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=json.dumps(earlier))
    assert _warnings(caplog) == []


def test_the_0_4_7_list_form_of_the_key_reads() -> None:
    row = {"host": "h", "host_public_key": ["ssh-ed25519", ED25519], "user": "u", "port": 2222}
    config = SlurmSSHConfig.from_json(json.dumps(row))
    assert config == SlurmSSHConfig(
        host="h", port=2222, user="u", host_public_key=PublicKey("ssh-ed25519", ED25519)
    )
    assert SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=json.dumps(row)).slurm_ssh_config


@pytest.mark.parametrize("field", ["client_keys", "known_hosts", "config_files", "password", "proxy_command"])
def test_other_fields_are_ignored_on_read_with_a_warning_and_refused_on_write(
    field: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    row = {"host": f"login-{field.replace('_', '-')}", "port": 22, field: ["/tmp/attacker-value"]}
    config = SlurmSSHConfig.from_json(json.dumps(row))
    assert (config.client_keys, config.known_hosts, config.config_files) == (None, None, None)
    [warning] = _warnings(caplog)
    assert repr(field) in warning and "attacker-value" not in warning
    with pytest.raises(ValidationError, match=field):
        SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=json.dumps(row))


def test_a_handle_rebuilt_from_a_planted_row_uses_this_machines_settings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from xm_slurm.api.models import from_store

    caplog.set_level(logging.WARNING)
    planted = json.dumps({"host": "login-planted", "config_files": ["/tmp/evil"], "client_keys": ["/tmp/k"]})
    record = from_store(SlurmJob, name="train", slurm_job_id="12", slurm_ssh_config=planted)
    handle = SlurmLaunchedJob.from_record(record, experiment_id=1)
    assert handle.ssh == SlurmSSHConfig(host="login-planted")
    assert "/tmp/evil" not in handle.ssh.openssh_config_files()
    assert any("'client_keys', 'config_files'" in w for w in _warnings(caplog))


@pytest.mark.parametrize(
    "text", ["not json", "[1, 2]", '"a string"', '{"host": "-oProxyCommand=x"}', '{"host": "a b"}']
)
def test_malformed_configs_are_refused_on_write(text: str) -> None:
    with pytest.raises(ValidationError, match=r"slurm_ssh_config|SlurmSSHConfig"):
        SlurmJob(name="j", slurm_job_id="1", slurm_ssh_config=text)
