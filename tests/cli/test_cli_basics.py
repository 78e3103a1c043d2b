"""The CLI without a cluster: help, fast import, usage errors, `list` over a real SQLite store, parsers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import xm_cli

import xm_slurm.api as api
from xm_slurm.api import settings
from xm_slurm.cli import exit_codes, main
from xm_slurm.cli.doctor import parse_config, resolve_target, ssh_config_hosts
from xm_slurm.cli.listing import parse_start_rows
from xm_slurm.cli.preview import parse_test_only

COMMANDS = ["list", "show", "logs", "cancel", "wait", "preview", "doctor"]


@pytest.mark.parametrize("command", [*COMMANDS, "server"])
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])  # in-process: the same parser the console script builds
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: xm-slurm {command}" in out
    assert "examples:" in out and f"xm-slurm {command}" in out.split("examples:")[1]


def test_top_level_help_lists_commands_and_exit_codes() -> None:
    result = xm_cli("--help")
    assert result.returncode == 0
    for command in [*COMMANDS, "server"]:
        assert command in result.stdout
    assert "exit codes:" in result.stdout
    assert xm_cli().returncode == exit_codes.USAGE  # no command: help on stderr, usage error


def test_import_and_parser_stay_light() -> None:
    # Building the whole parser (what --help does) loads none of the heavy dependencies.
    code = (
        "import sys; from xm_slurm.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('xmanager', 'asyncssh', 'sqlalchemy', 'rich', 'jinja2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_module_entry_point_matches_console_script() -> None:
    result = subprocess.run(["xm-slurm", "--help"], capture_output=True, text=True, check=False)
    if result.returncode == 127:  # pragma: no cover - not installed as a script
        pytest.skip("xm-slurm is not on PATH")
    assert result.stdout == xm_cli("--help").stdout.replace("__main__.py", "xm-slurm")


@pytest.mark.parametrize(
    "args",
    [["show", "abc"], ["show", "0"], ["logs", "1", "-n", "-3"], ["wait", "1", "--timeout", "0"], ["nope"]],
)
def test_usage_errors_exit_2_without_traceback(args: list[str]) -> None:
    result = xm_cli(*args)
    assert result.returncode == exit_codes.USAGE
    assert "Traceback" not in result.stderr
    assert "usage:" in result.stderr


def test_missing_experiment_is_one_line_exit_3(store: Path) -> None:
    result = xm_cli("show", "987654")
    assert result.returncode == exit_codes.NOT_FOUND
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xm-slurm show: error: ") and "987654" in lines[0]
    assert "Traceback" not in result.stderr
    for command in ("logs", "cancel", "wait"):
        assert xm_cli(command, "987654").returncode == exit_codes.NOT_FOUND


def test_debug_shows_the_traceback(store: Path) -> None:
    for args in (["--debug", "show", "987654"], ["show", "987654", "--debug"]):
        result = xm_cli(*args)
        assert result.returncode == exit_codes.NOT_FOUND
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("xm-slurm show: error: ")


def test_bad_backend_setting_is_one_line(store: Path) -> None:
    result = xm_cli("list", env={"XM_SLURM_API_BACKEND": "mongodb"})
    assert result.returncode == exit_codes.USAGE  # a ConfigurationError is an invalid value
    assert len(result.stderr.strip().splitlines()) == 1 and "mongodb" in result.stderr


def _seed() -> dict[str, int]:
    settings.clear_cache()
    client = api.client()
    ids = {}
    for title, tags in [
        ("resnet base", {"baseline"}),
        ("resnet wide", {"wide"}),
        ("vit", {"baseline", "vit"}),
    ]:
        ids[title] = client.insert_experiment(api.ExperimentPatch(title=title, tags=frozenset(tags)))
    client.insert_work_units(ids["resnet base"], [api.WorkUnitPatch(wid=1, args="{}")])
    client.insert_work_units(ids["resnet wide"], [api.WorkUnitPatch(wid=1, args="{}")])
    client.insert_work_units(ids["vit"], [api.WorkUnitPatch(wid=i, args="{}") for i in (1, 2)])
    # The newest holds no work unit (a launch killed before its first add): left out unless --all.
    ids["started"] = client.insert_experiment(
        api.ExperimentPatch(title="started", tags=frozenset({"baseline"}))
    )
    return ids


def test_list_json_filters_and_order(store: Path) -> None:
    ids = _seed()
    rows = json.loads(xm_cli("list", "--json").stdout)
    assert [r["xid"] for r in rows] == [ids["vit"], ids["resnet wide"], ids["resnet base"]]  # newest first
    vit = rows[0]
    assert vit["title"] == "vit" and vit["tags"] == ["baseline", "vit"] and vit["num_work_units"] == 2
    assert vit["created_at"]
    assert [r["title"] for r in json.loads(xm_cli("list", "--json", "--tag", "baseline").stdout)] == [
        "vit",
        "resnet base",
    ]
    assert [r["title"] for r in json.loads(xm_cli("list", "--json", "--title", "resnet").stdout)] == [
        "resnet wide",
        "resnet base",
    ]
    assert len(json.loads(xm_cli("list", "--json", "--limit", "1").stdout)) == 1
    assert json.loads(xm_cli("list", "--json", "--tag", "nothing").stdout) == []
    every = json.loads(xm_cli("list", "--json", "--all", "--limit", "2").stdout)
    assert [(r["xid"], r["empty"]) for r in every] == [(ids["started"], True), (ids["vit"], False)]


def test_list_plain_text_when_not_a_terminal(store: Path) -> None:
    _seed()
    result = xm_cli("list")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["XID", "TITLE", "TAGS", "UNITS", "STATES", "CREATED"]
    assert "vit" in lines[1] and "baseline, vit" in lines[1]
    assert "\x1b[" not in result.stdout  # no colour codes in a pipe
    assert "started" not in result.stdout and "(empty)" not in result.stdout
    every = xm_cli("list", "--all").stdout.splitlines()
    assert "started" in every[1] and "0 (empty)" in every[1]


def test_parse_start_rows() -> None:
    out = "12_3|2026-12-01T22:00:00|Resources\n13|N/A|Dependency\n14_[5-6]|N/A|JobHeldUser\n\n"
    assert parse_start_rows(out) == {
        "12_3": ("2026-12-01T22:00:00", "Resources"),
        "13": (None, "Dependency"),
        "14_5": (None, "JobHeldUser"),
        "14_6": (None, "JobHeldUser"),
    }


def test_parse_test_only() -> None:
    err = "sbatch: Job 460 to start at 2026-12-01T21:55:28 using 1 processors on nodes localhost in partition debug\n"
    assert parse_test_only(err) == {
        "start": "2026-12-01T21:55:28",
        "cpus": "1",
        "nodes": "localhost",
        "partition": "debug",
    }
    assert parse_test_only("sbatch: error: invalid partition specified: nope") is None


def test_parse_config() -> None:
    text = "Configuration data as of 2026-12-01T21:00:00\nMaxArraySize            = 1001\nSLURM_VERSION = 22.05.8\n"
    config = parse_config(text)
    assert config["MaxArraySize"] == "1001" and config["SLURM_VERSION"] == "22.05.8"


def test_doctor_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host mycluster narval\n  HostName login.example.org\nHost *.example.org\n")
    monkeypatch.setenv("XM_SLURM_SSH_CONFIG", str(ssh_config))
    assert {"mycluster", "narval"} <= ssh_config_hosts([str(ssh_config)])
    assert "*.example.org" not in ssh_config_hosts([str(ssh_config)])

    ssh, how = resolve_target("me@host.example.org:2222", identity_files=["/k"], known_hosts="/kh")
    assert (ssh.host, ssh.user, ssh.port, ssh.client_keys, ssh.known_hosts, how) == (
        "host.example.org",
        "me",
        2222,
        ("/k",),
        "/kh",
        "host",
    )
    assert resolve_target("h:22", port=2200)[0].port == 2200  # --port wins
    ssh, how = resolve_target("mycluster")
    assert (ssh.host, ssh.user, how) == ("mycluster", None, "ssh config alias")
    ssh, how = resolve_target("narval")  # an alias shadows the preset of the same name
    assert how == "ssh config alias"
    ssh, how = resolve_target("me@Beluga")
    assert how == "preset beluga" and ssh.user == "me" and "beluga" in ssh.host


@pytest.mark.parametrize("target", ["me@", "host:port", "me@host:"])
def test_doctor_bad_target_is_a_usage_error(target: str) -> None:
    result = xm_cli("doctor", target)
    assert result.returncode == exit_codes.USAGE, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
