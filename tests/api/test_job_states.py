"""Job states in the store (`record_job_states`, revision 0011) on every backend: the last known state and
when it was seen come back with the job; an older observation never overwrites a newer one; other
experiments' jobs are untouched; a read-only token records nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from metadata_fixtures import Backend, Server, run_cli

from xm_slurm.api import ExperimentPatch, JobStateRecord, SlurmJob, WorkUnitPatch, XManagerAPI
from xm_slurm.api.rest import RestClient
from xm_slurm.errors import ConfigurationError, ValidationError

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)


def _experiment(api: XManagerAPI, job_ids: list[str]) -> int:
    xid = api.insert_experiment(ExperimentPatch(title="states"))
    api.insert_work_units(xid, [WorkUnitPatch(wid=i + 1) for i in range(len(job_ids))])
    ssh = {"host": "login", "port": 22}
    api.insert_jobs(
        xid,
        [
            (i + 1, SlurmJob(name="train", slurm_job_id=j, slurm_ssh_config=ssh))
            for i, j in enumerate(job_ids)
        ],
    )
    return xid


def _states(api: XManagerAPI, xid: int) -> list[tuple[object, ...]]:
    return [
        (j.slurm_job_id, j.state, j.state_reason, j.exit_code, j.state_seen_at)
        for wu in api.get_experiment(xid).work_units
        for j in wu.jobs
    ]


def test_recorded_states_come_back_with_their_time(api: XManagerAPI, backend: Backend) -> None:
    xid = _experiment(api, ["71_0", "71_1"])
    other = _experiment(api, ["71_0"])  # the same Slurm id in another experiment: not touched
    assert _states(api, xid) == [("71_0", None, None, None, None), ("71_1", None, None, None, None)]
    api.record_job_states(
        xid,
        [
            JobStateRecord(slurm_job_id="71_0", state="PENDING", reason="Priority", seen_at=T0),
            JobStateRecord(slurm_job_id="71_0", state="RUNNING", seen_at=T0 + dt.timedelta(seconds=5)),
            JobStateRecord(slurm_job_id="71_1", state="FAILED", exit_code=3, seen_at=T0),
            JobStateRecord(slurm_job_id="999", state="RUNNING", seen_at=T0),  # not this experiment's
        ],
    )
    assert _states(api, xid) == [
        ("71_0", "RUNNING", None, None, T0 + dt.timedelta(seconds=5)),
        ("71_1", "FAILED", None, 3, T0),
    ]
    # A slower poller's older observation arrives late: the newer state stays.
    api.record_job_states(xid, [JobStateRecord(slurm_job_id="71_0", state="PENDING", seen_at=T0)])
    assert _states(api, xid)[0][1] == "RUNNING"
    later = T0 + dt.timedelta(minutes=1)
    api.record_job_states(
        xid, [JobStateRecord(slurm_job_id="71_0", state="COMPLETED", exit_code=0, seen_at=later)]
    )
    assert _states(api, xid)[0] == ("71_0", "COMPLETED", None, 0, later)
    assert _states(api, other) == [("71_0", None, None, None, None)]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"state": "running"}, "state name"),
        ({"state": "RUNNING", "exit_code": 256}, "0..255"),
        ({"state": "RUNNING", "seen_at": dt.datetime(2026, 1, 1)}, "timezone"),
        ({"state": "RUNNING", "reason": "a\nb"}, "reason"),
    ],
)
def test_bad_states_are_refused_before_any_write(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        JobStateRecord(slurm_job_id="1", **{"seen_at": T0, **fields})  # type: ignore[arg-type]


def test_a_read_only_token_records_nothing(rest_server: Server) -> None:
    made = run_cli("server", "token", "create", "--name", "viewer", "--read-only", "--db", rest_server.db_url)
    assert made.returncode == 0, made.stderr
    writer = RestClient(rest_server.base_url, rest_server.token)
    viewer = RestClient(rest_server.base_url, made.stdout.strip())
    xid = _experiment(writer, ["72"])
    with pytest.raises(ConfigurationError, match="HTTP 403"):
        viewer.record_job_states(xid, [JobStateRecord(slurm_job_id="72", state="RUNNING", seen_at=T0)])
    assert _states(writer, xid) == [("72", None, None, None, None)]
