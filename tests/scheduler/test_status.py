"""Every state string Slurm prints maps to a state and a work-unit status; aggregation follows XManager."""

from __future__ import annotations

import pytest
from xmanager import xm

from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.status import (
    SlurmJobState,
    SlurmJobStatus,
    SlurmWorkUnitStatus,
    SlurmWorkUnitStatusEnum,
)

W = SlurmWorkUnitStatusEnum

# (long name, squeue short code or None, work-unit status): from squeue(1)/sacct(1) "JOB STATE CODES".
ALL_STATES = [
    ("PENDING", "PD", W.PENDING),
    ("CONFIGURING", "CF", W.PENDING),
    ("REQUEUED", "RQ", W.PENDING),
    ("REQUEUE_HOLD", "RH", W.PENDING),
    ("REQUEUE_FED", "RF", W.PENDING),
    ("RESV_DEL_HOLD", "RD", W.PENDING),
    ("POWER_UP_NODE", None, W.PENDING),
    ("RUNNING", "R", W.RUNNING),
    ("COMPLETING", "CG", W.RUNNING),
    ("RESIZING", "RS", W.RUNNING),
    ("SUSPENDED", "S", W.RUNNING),
    ("STOPPED", "ST", W.RUNNING),
    ("SIGNALING", "SI", W.RUNNING),
    ("STAGE_OUT", "SO", W.RUNNING),
    ("UPDATE_DB", None, W.RUNNING),
    ("COMPLETED", "CD", W.COMPLETED),
    ("CANCELLED", "CA", W.CANCELLED),
    ("REVOKED", "RV", W.CANCELLED),
    ("FAILED", "F", W.FAILED),
    ("TIMEOUT", "TO", W.FAILED),
    ("PREEMPTED", "PR", W.FAILED),
    ("NODE_FAIL", "NF", W.FAILED),
    ("BOOT_FAIL", "BF", W.FAILED),
    ("DEADLINE", "DL", W.FAILED),
    ("OUT_OF_MEMORY", "OOM", W.FAILED),
    ("SPECIAL_EXIT", "SE", W.FAILED),
    ("LAUNCH_FAILED", "LF", W.FAILED),
    ("RECONFIG_FAIL", None, W.FAILED),
]


@pytest.mark.parametrize(("name", "short", "wu"), ALL_STATES)
def test_every_state_string(name: str, short: str | None, wu: SlurmWorkUnitStatusEnum) -> None:
    state = SlurmJobState.parse(name)
    assert state.value == name
    assert state.work_unit_status is wu
    assert state.is_active == (wu in (W.PENDING, W.RUNNING))
    assert SlurmJobState.parse(name.lower()) is state
    assert SlurmJobState.parse(name + "+") is state  # sacct's truncation mark without -P
    if short is not None:
        assert SlurmJobState.parse(short) is state


def test_table_covers_every_member() -> None:
    assert {n for n, _, _ in ALL_STATES} == {s.value for s in SlurmJobState} - {"UNKNOWN"}


@pytest.mark.parametrize("text", ["CANCELLED by 0", "CANCELLED by 1234", "CANCELED"])
def test_cancelled_by(text: str) -> None:
    assert SlurmJobState.parse(text) is SlurmJobState.CANCELLED


def test_unknown_strings_are_active_or_strict_error() -> None:
    assert SlurmJobState.parse("FROBNICATED") is SlurmJobState.UNKNOWN
    assert SlurmJobState.UNKNOWN.is_active  # keep polling rather than declaring the job over
    with pytest.raises(ValidationError, match="'FROBNICATED' is not a Slurm job state"):
        SlurmJobState.parse("FROBNICATED", strict=True)
    with pytest.raises(ValidationError):
        SlurmJobState.parse("   ")


def _job(state: str, n: int = 1, **kw: object) -> SlurmJobStatus:
    return SlurmJobStatus(SlurmJobId(n), SlurmJobState.parse(state), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], W.PENDING),
        (["COMPLETED"], W.COMPLETED),
        (["COMPLETED", "COMPLETED"], W.COMPLETED),
        (["COMPLETED", "PENDING"], W.PENDING),
        (["PENDING", "RUNNING"], W.RUNNING),
        (["RUNNING", "FAILED"], W.RUNNING),  # a job still runs: the unit is active (may produce results)
        (["PENDING", "CANCELLED"], W.PENDING),
        (["FAILED", "CANCELLED"], W.FAILED),  # 0.4.7: CANCELLED (docs/migrating-from-0.4.md)
        (["CANCELLED", "COMPLETED"], W.CANCELLED),
        (["CANCELLED", "TIMEOUT"], W.FAILED),
        (["OUT_OF_MEMORY", "COMPLETED"], W.FAILED),
        (["REQUEUED"], W.PENDING),
    ],
)
def test_aggregation(states: list[str], expected: SlurmWorkUnitStatusEnum) -> None:
    status = SlurmWorkUnitStatus([_job(s, i + 1) for i, s in enumerate(states)])
    assert isinstance(status, xm.ExperimentUnitStatus)
    assert status.status is expected
    assert status.is_active == (expected in (W.PENDING, W.RUNNING))
    assert status.is_completed == (expected is W.COMPLETED)
    assert status.is_failed == (expected is W.FAILED)
    assert status.is_cancelled == (expected is W.CANCELLED)
    if expected is W.CANCELLED:  # XManager: a stopped unit is neither active, completed nor failed
        assert not (status.is_active or status.is_completed or status.is_failed)


def test_message_names_failed_job_and_exit_code() -> None:
    status = SlurmWorkUnitStatus(
        [_job("COMPLETED", 1), _job("FAILED", 2, exit_code=3), _job("CANCELLED", 3, reason="CANCELLED by 0")]
    )
    assert status.is_failed
    assert "2 FAILED (exit code 3)" in status.message
    assert "3 CANCELLED" not in status.message
    running = SlurmWorkUnitStatus([_job("RUNNING", 1), _job("FAILED", 2, exit_code=3)])
    assert running.is_active and not running.is_failed
    assert SlurmWorkUnitStatus.from_state(SlurmJobState.TIMEOUT, message="m").is_failed
    assert SlurmWorkUnitStatus.from_state(SlurmJobState.TIMEOUT, message="m").message == "m"
