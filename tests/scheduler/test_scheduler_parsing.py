"""Parsing real captured sacct/squeue/sbatch output (tests/scheduler/data) and the lag rules, no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import parse_sacct, parse_squeue, resolve, sacct_commands
from xm_slurm.scheduler import states as states_module
from xm_slurm.status import SlurmJobState as S
from xm_slurm.status import SlurmWorkUnitStatus

DATA = Path(__file__).parent / "data"
J = SlurmJobId.parse


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_sbatch_parsable_capture() -> None:
    assert SlurmJobId.from_sbatch_parsable(read("sbatch_parsable.txt")).job_id > 0


def test_sacct_mixed_capture() -> None:
    rows = {str(r.job_id): r for r in parse_sacct(read("sacct_X_mixed.txt"))}
    assert rows["10"].state is S.COMPLETED and rows["10"].exit_code == 0
    assert (rows["11"].state, rows["11"].exit_code, rows["11"].signal) == (S.FAILED, 3, 0)
    assert rows["12"].state is S.CANCELLED and rows["12"].reason == "CANCELLED by 0"
    assert [f"13_{i}" in rows for i in range(10)] == [True] * 10

    answers = resolve([J("10"), J("11"), J("12"), J("13"), J("13_7")], parse_sacct(read("sacct_X_mixed.txt")))
    assert SlurmWorkUnitStatus([answers[J("11")]]).is_failed
    assert "exit code 3" in SlurmWorkUnitStatus([answers[J("11")]]).message
    assert SlurmWorkUnitStatus([answers[J("12")]]).is_cancelled
    assert answers[J("13_7")].state is S.COMPLETED
    assert answers[J("13")].state is S.COMPLETED  # the whole array, all tasks done


def test_steps_are_skipped() -> None:
    rows = parse_sacct(read("sacct_with_steps.txt"))
    assert [str(r.job_id) for r in rows] == ["10", "11", "12"]


def test_hetjob_components() -> None:
    rows = parse_sacct(read("sacct_X_hetjob_cancelled.txt"))
    answers = resolve([J("34+0"), J("34+1"), J("34")], rows)
    assert all(a.state is S.CANCELLED for a in answers.values())
    assert answers[J("34+1")].reason == "CANCELLED by 0"


def test_pending_array_range_covers_its_tasks() -> None:
    rows = parse_sacct(read("sacct_X_array_pending_range.txt"))
    answers = resolve([J(f"13_{i}") for i in range(10)] + [J("13")], rows, array_sizes={J("13"): 10})
    assert [answers[J(f"13_{i}")].state for i in range(10)] == [S.RUNNING] * 5 + [S.PENDING] * 5
    assert answers[J("13")].state is S.RUNNING


def snapshots() -> list[str]:
    return read("sacct_X_array_lag_trace.txt").split("== ")[1:]


def test_array_lag_never_final_too_early() -> None:
    """Each real snapshot: the array is final only once all 5 task rows are there."""
    tasks = [J(f"37_{i}") for i in range(5)]
    finals = []
    for snapshot in snapshots():
        rows = parse_sacct(snapshot.split("\n", 1)[1])
        answers = resolve([*tasks, J("37")], rows, array_sizes={J("37"): 5}, submitted_at={}, now=0.0)
        whole = answers[J("37")]
        task_rows_present = "37_0|" in snapshot
        assert whole.is_terminal == task_rows_present, snapshot
        assert all(answers[t].is_terminal == task_rows_present for t in tasks), snapshot
        finals.append(whole.is_terminal)
    assert finals[0] is False and finals[-1] is True and "37|COMPLETED" in "".join(snapshots())


def test_missing_job_is_pending_during_grace_then_unknown() -> None:
    job = J("999")
    young = resolve([job], [], submitted_at={job: 100.0}, grace=60, now=130.0)[job]
    assert (young.state, young.source) == (S.PENDING, "grace") and young.state.is_active
    old = resolve([job], [], submitted_at={job: 100.0}, grace=60, now=500.0)[job]
    assert (old.state, old.source) == (S.UNKNOWN, "missing")
    assert resolve([job], [])[job].source == "missing"  # no submission time known


def test_squeue_fallback_capture() -> None:
    rows = {str(r.job_id): r for r in parse_squeue(read("squeue_O_mixed.txt"))}
    assert (rows["11"].state, rows["11"].exit_code, rows["11"].signal) == (S.FAILED, 3, 0)  # 768 = 3 << 8
    assert (rows["12"].state, rows["12"].signal) == (S.CANCELLED, 15)
    assert rows["13_4"].state is S.COMPLETED and rows["11"].reason == "NonZeroExitCode"


def test_sacct_commands_batch_by_cluster_and_length(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [J(f"{n}_{t}") for n in (5, 6) for t in range(50)] + [J("7+1"), J("8;other")]
    commands = sacct_commands(ids)
    assert len(commands) == 2  # one per cluster, array tasks collapsed to their base id
    assert commands[0][-2:] == ["-j", "5,6,7"]
    assert commands[1][-4:] == ["-M", "other", "-j", "8"]
    monkeypatch.setattr(states_module, "MAX_COMMAND_CHARS", 120)
    many = sacct_commands([J(str(1000 + n)) for n in range(100)])
    assert len(many) > 1 and all(len(" ".join(c)) <= 120 + 10 for c in many)
    assert sum(len(c[-1].split(",")) for c in many) == 100
