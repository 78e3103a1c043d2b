"""Parsing real captured sacct/squeue/sbatch output (tests/scheduler/data) and the lag rules, no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import (
    merge_rows,
    parse_sacct,
    parse_squeue,
    resolve,
    sacct_commands,
    squeue_commands,
    uncovered,
)
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


def test_squeue_commands_batch_like_sacct() -> None:
    ids = [J(f"{n}_{t}") for n in (5, 6) for t in range(50)] + [J("7+1"), J("8;other")]
    commands = squeue_commands(ids)
    assert [c[:7] for c in commands] == [
        ["squeue", "-h", "-r", "-t", "all", "-O", states_module.SQUEUE_FORMAT]
    ] * 2
    assert commands[0][-2:] == ["-j", "5,6,7"] and commands[1][-4:] == ["-M", "other", "-j", "8"]


def test_running_job_is_running_although_sacct_still_says_pending() -> None:
    """Real pair captured while job 2118 ran: squeue RUNNING, sacct PENDING. squeue answers alone and wins."""
    live, lagging = parse_squeue(read("squeue_O_running.txt")), parse_sacct(read("sacct_X_running_lag.txt"))
    job = J("2118")
    assert uncovered([job], live) == []  # no sacct needed at all
    assert resolve([job], lagging)[job].state is S.PENDING  # what sacct alone said
    for rows in (live, merge_rows(live, lagging)):
        answer = resolve([job], rows)[job]
        assert (answer.state, answer.source) == (S.RUNNING, "squeue")


def test_sacct_answers_for_jobs_squeue_forgot() -> None:
    """squeue (jobs 10-13) does not list hetjob 34 any more; sacct's rows for it fill in."""
    live = parse_squeue(read("squeue_O_mixed.txt"))
    wanted = [J("10"), J("11"), J("13_7"), J("34+0"), J("34+1"), J("34")]
    assert uncovered(wanted, live) == [J("34+0"), J("34+1"), J("34")]
    accounting = parse_sacct(read("sacct_X_hetjob_cancelled.txt"))
    answers = resolve(wanted, merge_rows(live, accounting), submitted_at={}, now=0.0)
    assert {str(j): (a.state, a.source) for j, a in answers.items()} == {
        "10": (S.COMPLETED, "squeue"),
        "11": (S.FAILED, "squeue"),
        "13_7": (S.COMPLETED, "squeue"),
        "34+0": (S.CANCELLED, "sacct"),
        "34+1": (S.CANCELLED, "sacct"),
        "34": (S.CANCELLED, "sacct"),
    }
    assert answers[J("11")].exit_code == 3


def test_squeue_wins_where_both_answer() -> None:
    """sacct's older view of array 13 (5 running, 5 pending) against squeue's (all completed)."""
    live = parse_squeue(read("squeue_O_mixed.txt"))
    merged = merge_rows(live, parse_sacct(read("sacct_X_array_pending_range.txt")))
    assert [r for r in merged if r.source == "sacct"] == []  # every task is covered by squeue
    answers = resolve([J("13"), J("13_2"), J("13_8")], merged, array_sizes={J("13"): 10})
    assert all(a.state is S.COMPLETED and a.source == "squeue" for a in answers.values())


def test_array_tasks_squeue_forgot_come_from_sacct() -> None:
    """Tasks end at different times, so squeue may forget some tasks of an array and still list others."""
    live = [r for r in parse_squeue(read("squeue_O_mixed.txt")) if (r.job_id.array_task or 0) >= 5]
    assert uncovered([J("13_7")], live) == []
    assert uncovered([J("13_2")], live) == [J("13_2")]
    # As a whole: with its size known, 5 of 10 tasks are not enough; without, finished tasks cannot tell
    # that a forgotten one failed, so accounting is asked too.
    assert uncovered([J("13")], live, {J("13"): 10}) == [J("13")]
    assert uncovered([J("13")], live) == [J("13")]
    assert uncovered([J("13")], live, {J("13"): 5}) == []
    merged = merge_rows(live, parse_sacct(read("sacct_X_mixed.txt")))
    answers = resolve([J("13"), J("13_2"), J("13_7")], merged, array_sizes={J("13"): 10})
    assert [(a.state, a.source) for a in answers.values()] == [
        (S.COMPLETED, "squeue"),
        (S.COMPLETED, "sacct"),
        (S.COMPLETED, "squeue"),
    ]


def test_a_live_task_makes_an_array_covered_and_the_bare_lag_row_is_dropped() -> None:
    live = parse_squeue("50_0|RUNNING|0|None\n50_[1-3]|PENDING|0|None\n")
    assert uncovered([J("50")], live) == [] and uncovered([J("50_2")], live) == []
    merged = merge_rows(live, parse_sacct("50|PENDING|0:0|None\n"))  # sacct's bare lag row of the array
    assert [str(r.job_id) for r in merged] == ["50_0", "50_[1-3]"]
    assert resolve([J("50")], merged)[J("50")].state is S.RUNNING
