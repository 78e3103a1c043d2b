"""The pure parts of provenance, without the cluster: git state read from real repositories, capping,
secret filtering and redaction, run identity lines run by a real POSIX shell, and the comparison."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import git, make_repo

import xm_slurm
from xm_slurm.errors import ValidationError
from xm_slurm.executables.secret import REDACTED, Secret, redact_secrets
from xm_slurm.experiment import provenance as p
from xm_slurm.experiment.provenance_diff import compare_code
from xm_slurm.experiment.provenance_git import read_code_state
from xm_slurm.experiment.tracking import RunTracking
from xm_slurm.rendering.payload import entrypoint_script
from xm_slurm.rendering.run_identity import (
    RunIdentity,
    generation_of,
    run_lines,
    with_run_generation,
)
from xm_slurm.text_rules import MAX_TEXT


def test_status_entries_renames_and_untracked_files_are_parsed() -> None:
    out = " M train.py\0R  new name.py\0old.py\0?? data/x y.txt\0A  .env\0"
    changes = p.parse_status(out)
    assert [(c.status, c.path, c.source) for c in changes] == [
        (" M", "train.py", None),
        ("R ", "new name.py", "old.py"),
        ("??", "data/x y.txt", None),
        ("A ", ".env", None),
    ]
    kept, omitted = p.split_changes(changes)
    assert omitted == [".env"] and [c.path for c in kept] == ["train.py", "new name.py", "data/x y.txt"]


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        (".env", True),
        ("conf/.env.production", True),
        ("prod.env", True),
        ("certs/server.pem", True),
        ("tls.KEY", True),
        ("home/.ssh/id_ed25519", True),
        ("id_rsa.pub", True),
        ("train.py", False),
        ("environment.yml", False),
        ("keys.py", False),
    ],
)
def test_secret_looking_file_names(path: str, secret: bool) -> None:
    assert p.is_secret_file(path) is secret


def test_cap_cuts_at_a_line_end_and_says_so() -> None:
    text = "".join(f"line {i}\n" for i in range(10_000))
    kept, cut = p.cap(text, 1_000, "diff")
    assert cut and len(kept) < 1_100
    assert kept.splitlines()[-1].startswith("[xm_slurm: diff cut at 1,000 characters;")
    content = kept.split("\n[xm_slurm:")[0]
    assert text.startswith(content) and content.endswith("\n")  # whole lines only
    assert p.cap("short\n", 1_000, "diff") == ("short\n", False)


def test_redact_replaces_longer_secrets_first_and_ignores_tiny_ones() -> None:
    text = "token=abcd1234XYZ short=ab abcd1234"
    assert p.redact(text, ["abcd1234", "abcd1234XYZ", "ab"]) == f"token={REDACTED} short=ab {REDACTED}"


def test_secret_is_a_str_hidden_from_repr_and_from_stored_args() -> None:
    value = Secret("hunter2-value")
    assert value == "hunter2-value" and isinstance(value, str)
    assert "hunter2" not in repr(value) and "hunter2" not in repr({"K": value})
    assert xm_slurm.Secret is Secret
    nested = {"env_vars": {"K": value, "L": "plain"}, "args": [value, 1]}
    assert redact_secrets(nested) == {"env_vars": {"K": REDACTED, "L": "plain"}, "args": [REDACTED, 1]}


def test_a_dirty_repository_gives_commit_branch_diff_and_leaves_secret_files_out(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"main.py": "print('v1')\n", "lib/util.py": "X = 1\n"})
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "main.py").write_text("print('v2')\n")
    (repo / "new file.py").write_text("NEW = True\n")
    (repo / ".env").write_text("API_TOKEN=very-secret-token-123\n")
    (repo / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    state = read_code_state(repo)
    assert state is not None
    assert (state.commit, state.branch, state.dirty) == (commit, "main", True)
    assert {c.path for c in state.changes} == {"main.py", "new file.py", ".env", "id_rsa"}
    assert "-print('v1')" in state.diff and "+print('v2')" in state.diff
    assert "+NEW = True" in state.diff  # untracked files are in the diff whole
    assert state.omitted == (".env", "id_rsa")
    assert "very-secret-token" not in state.diff and "PRIVATE KEY" not in state.diff
    record = state.to_json()
    assert ".env" in record["omitted_note"] and "id_rsa" in record["omitted_note"]
    assert record["diff_cap"] == p.DIFF_CAP


def test_a_context_below_the_root_sees_only_its_own_changes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "mono", {"svc/app.py": "a = 1\n", "other/x.py": "b = 1\n"})
    (repo / "other/x.py").write_text("b = 2\n")
    clean = read_code_state(repo / "svc")
    assert clean is not None and not clean.dirty and clean.diff == ""
    assert Path(clean.root) == repo.resolve() and clean.context == str((repo / "svc").resolve())
    git(repo, "checkout", "-q", "--detach")
    assert read_code_state(repo / "svc").branch is None  # type: ignore[union-attr]


def test_a_huge_change_is_capped_and_a_folder_outside_git_has_no_state(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "big", {"data.txt": "x\n"})
    (repo / "data.txt").write_text("".join(f"row {i} " + "y" * 60 + "\n" for i in range(5_000)))
    state = read_code_state(repo)
    assert state is not None and state.diff_truncated
    assert p.DIFF_CAP - 200 < len(state.diff) <= p.DIFF_CAP + 200
    assert "diff cut at 50,000 characters" in state.diff
    plain = tmp_path / "plain"
    plain.mkdir()
    assert read_code_state(plain) is None


def test_artifact_text_stays_within_the_store_cap_and_holds_no_secret() -> None:
    diff = ('"\\' * 20_000 + "\x01\n") * 2 + "secret-value-42\n"
    text = p.to_text({"diff": diff, "note": "secret-value-42"}, ["secret-value-42"])
    assert len(text) <= MAX_TEXT
    assert "secret-value-42" not in text
    parsed = json.loads(text)
    assert parsed["diff_truncated"] is True and "\x01" not in parsed["diff"]


def test_unique_name_skips_what_is_recorded_and_numbers_what_differs() -> None:
    known = {"xm_slurm.launch": "A", "xm_slurm.launch.2": "B"}
    assert p.unique_name(known, "xm_slurm.launch", "A") is None
    assert p.unique_name(known, "xm_slurm.launch", "B") is None
    assert p.unique_name(known, "xm_slurm.launch", "C") == "xm_slurm.launch.3"
    assert p.unique_name({}, "xm_slurm.launch", "C") == "xm_slurm.launch"
    name = p.code_artifact_name("/home/me/my project")
    assert name.startswith("xm_slurm.code.my_project-") and "/" not in name


def _run_entrypoint(run: RunIdentity, env: dict[str, str]) -> dict[str, str]:
    script = entrypoint_script(
        experiment_id=7,
        work_unit_id=3,
        env={"USER_VAR": "u"},
        workdir=None,
        command=["env"],
        run=run_lines(run, 7, 3),
    )
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_run_identity_lines_in_a_real_shell() -> None:
    run = RunIdentity(namespace="0a1b2c3d", wandb=True)
    first = _run_entrypoint(run, {"PATH": "/usr/bin:/bin"})
    assert first["XM_SLURM_RUN_ID"] == "xm-0a1b2c3d-7-3" and first["XM_SLURM_ATTEMPT"] == "1"
    assert first["WANDB_RUN_ID"] == first["XM_SLURM_RUN_ID"] and first["WANDB_RESUME"] == "allow"
    again = _run_entrypoint(run, {"PATH": "/usr/bin:/bin", "SLURM_RESTART_COUNT": "1"})
    assert again["XM_SLURM_RUN_ID"] == first["XM_SLURM_RUN_ID"] and again["XM_SLURM_ATTEMPT"] == "2"
    retried = _run_entrypoint(run, {"PATH": "/usr/bin:/bin", "XM_SLURM_RUN_GENERATION": "2"})
    assert retried["XM_SLURM_RUN_ID"] == "xm-0a1b2c3d-7-3-r2" and retried["XM_SLURM_ATTEMPT"] == "1"
    plain = _run_entrypoint(RunIdentity(namespace="0a1b2c3d"), {"PATH": "/usr/bin:/bin"})
    assert "WANDB_RUN_ID" not in plain and "MLFLOW_RUN_ID" not in plain
    mlflow = RunIdentity(
        namespace="0a1b2c3d", mlflow_tracking_uri="http://mlflow.invalid", mlflow_run_ids={3: "abc123"}
    )
    tracked = _run_entrypoint(mlflow, {"PATH": "/usr/bin:/bin"})
    assert tracked["MLFLOW_RUN_ID"] == "abc123" and tracked["MLFLOW_TRACKING_URI"] == "http://mlflow.invalid"


def test_a_retried_script_gets_the_next_generation_after_its_directives() -> None:
    script = "#!/usr/bin/env bash\n#SBATCH --job-name=x\n#SBATCH --time=1\n# Generated by xm_slurm for 1\necho hi\n"
    once = with_run_generation(script, generation_of(script) + 1)
    assert once.splitlines()[4] == "export XM_SLURM_RUN_GENERATION=1"
    twice = with_run_generation(once, generation_of(once) + 1)
    assert generation_of(twice) == 2 and twice.count("XM_SLURM_RUN_GENERATION") == 1
    assert twice.replace("export XM_SLURM_RUN_GENERATION=2\n", "") == script
    bare = with_run_generation("#!/bin/sh\n#SBATCH -t 1\necho\n", 1)
    assert bare.splitlines()[2] == "export XM_SLURM_RUN_GENERATION=1"
    with pytest.raises(ValidationError, match="generation=0"):
        with_run_generation(script, 0)


def test_bad_tracking_options_are_refused_naming_the_value() -> None:
    with pytest.raises(ValidationError, match="file:///tmp/mlruns"):
        RunTracking(mlflow_tracking_uri="file:///tmp/mlruns")
    with pytest.raises(ValidationError, match="wandb='yes'"):
        RunTracking(wandb="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="namespace 'XYZ'"):
        RunIdentity(namespace="XYZ")


def test_code_comparison_names_files_committed_between_and_uncommitted(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "cmp", {"main.py": "v = 1\n", "other.py": "o = 1\n"})
    (repo / "main.py").write_text("v = 2\n")
    before = read_code_state(repo)
    git(repo, "commit", "-qam", "second")
    after = read_code_state(repo)
    assert before is not None and after is not None
    change = compare_code(before.to_json(), after.to_json())
    assert change is not None
    assert change["changed_files"] == ["main.py"] and change["dirty"] == [True, False]
    assert compare_code(after.to_json(), after.to_json()) is None
    (repo / "other.py").write_text("o = 2\n")
    dirty_again = read_code_state(repo)
    assert dirty_again is not None
    assert compare_code(after.to_json(), dirty_again.to_json())["changed_files"] == ["other.py"]  # type: ignore[index]
