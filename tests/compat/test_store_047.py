"""A metadata store written by xmanager-slurm 0.4.7 is adopted in place (compat-04x.md item 10).

The store is rebuilt with `sqlite3` from tests/compat/data/store-047.sql (a real 0.4.7 store: two experiments,
one job and a two-trial array with tags "a,b", a PYTHON config artifact and a work-unit artifact) in the state
folder, and opened through the public API (`get_experiment`, `create_experiment`, SQLite backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import pathlib
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm.api import settings
from xm_slurm.errors import HostKeyError, MetadataError
from xm_slurm.ssh_config import PublicKey, SlurmSSHConfig
from xm_slurm.transport import SSHTransport

SQL = (pathlib.Path(__file__).parent / "data" / "store-047.sql").read_text()
KEY_047 = PublicKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAINVUtH0GXq2Vet57zZA1Jq53Oy7qvArV9Y5zW5tAvbg2")
SSH_047 = SlurmSSHConfig(host="127.0.0.1", port=2222, user="root", host_public_key=KEY_047)


@pytest.fixture
def state(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(folder))
    for name in ("XM_SLURM_API_BACKEND", "XM_SLURM_EXPERIMENT_ID", "XM_SLURM_WORK_UNIT_ID"):
        monkeypatch.delenv(name, raising=False)
    settings.clear_cache()
    yield folder
    settings.clear_cache()


def build_047(path: pathlib.Path, *edits: str) -> bytes:
    """The 0.4.7 store at `path` (with `edits` applied), as bytes."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(SQL + "\n".join(edits))
    return path.read_bytes()


def dump(path: pathlib.Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return list(db.iterdump())


def backups(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(folder.glob("db.sqlite3.bak-0.4.7-*"))


def snapshot(db: pathlib.Path) -> tuple[bytes, int, list[str]]:
    """The file's bytes and mode, and the names in its folder."""
    return db.read_bytes(), stat.S_IMODE(db.stat().st_mode), sorted(p.name for p in db.parent.iterdir())


def pinned_key(known_hosts: str) -> PublicKey:
    return PublicKey.from_openssh(pathlib.Path(known_hosts).read_text().split(None, 1)[1])


def reopen() -> xm_slurm.SlurmExperiment:
    settings.clear_cache()  # a new process would open the file afresh
    return xm_slurm.get_experiment(1)


async def test_both_experiments_read_as_0_4_7_wrote_them(state: pathlib.Path) -> None:
    build_047(state / "db.sqlite3")
    first = xm_slurm.get_experiment(1)
    sweep = xm_slurm.get_experiment(2)
    try:
        assert first.experiment_title == "written by 0.4.7"
        assert set(first.context.annotations.tags) == {"old"}
        assert dict(first.context.artifacts) == {"wandb": "https://wandb.ai/old"}
        [job] = first.work_units[1].slurm_jobs
        assert (job.job_id.to_string(), job.ssh) == ("3059", SSH_047)

        assert sweep.experiment_title == "sweep by 0.4.7"
        assert set(sweep.context.annotations.tags) == {"a", "b"}
        assert sweep.context.python_config == "seed = 0\n"
        assert dict(sweep.context.artifacts) == {}
        units = sweep.work_units()
        assert sorted(units) == [1, 2]
        assert dict(units[1].context.artifacts) == {"ckpt": "file:///x"}
        assert dict(units[2].context.artifacts) == {}
        ids = [j.job_id for wid in (1, 2) for j in units[wid].slurm_jobs]
        assert [i.to_string() for i in ids] == ["3115_0", "3115_1"]
        assert [(i.job_id, i.array_task) for i in ids] == [(3115, 0), (3115, 1)]
        assert all(j.ssh == SSH_047 for wid in (1, 2) for j in units[wid].slurm_jobs)
        stored_args = [xm_slurm.api.client().get_work_unit(2, w).args for w in (1, 2)]
        assert [json.loads(a or "null") for a in stored_args] == [
            {"args": {"lr": 0.1}},
            {"args": {"lr": 0.01}},
        ]
    finally:
        await first.aclose()
        await sweep.aclose()


async def test_a_new_experiment_is_created_beside_them(state: pathlib.Path) -> None:
    build_047(state / "db.sqlite3")
    async with xm_slurm.create_experiment("beside the old ones") as experiment:
        assert experiment.experiment_id == 3
        found = xm_slurm.api.client().list_experiments()
        assert sorted((s.xid, s.title) for s in found) == [
            (1, "written by 0.4.7"),
            (2, "sweep by 0.4.7"),
            (3, "beside the old ones"),
        ]
    assert xm_slurm.api.client().get_experiment(2).tags == frozenset({"a", "b"})


def test_a_backup_is_written_first_byte_for_byte_and_private(state: pathlib.Path) -> None:
    original = build_047(state / "db.sqlite3")
    assert backups(state) == []
    reopen()
    [backup] = backups(state)
    assert backup.read_bytes() == original
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    # The backup is the old store as it was: 0.4.7 (or a user) can open it.
    with contextlib.closing(sqlite3.connect(backup)) as db:
        assert db.execute("SELECT tags FROM experiments WHERE id = 2").fetchone() == ("a,b",)


def test_adoption_twice_changes_nothing_the_second_time(state: pathlib.Path) -> None:
    db = state / "db.sqlite3"
    build_047(db)
    reopen()
    adopted = dump(db)
    assert any("alembic_version" in line for line in adopted)
    assert not any("slurm_jobs" in line or '"artifacts"' in line for line in adopted)  # 0.4.7's tables went
    reopen()
    assert dump(db) == adopted
    assert len(backups(state)) == 1


# -- refused, and left as it was -------------------------------------------------------------------------

OUR_STORE = "our store without its alembic_version"


def _our_store_without_revision(path: pathlib.Path) -> bytes:
    xm_slurm.api.client().insert_experiment(xm_slurm.api.ExperimentPatch(title="ours"))
    settings.clear_cache()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode = DELETE")  # a file alone, without -wal/-shm beside it
        db.execute("DROP TABLE alembic_version")
    return path.read_bytes()


REFUSED = {
    "not SQLite": ("is not a SQLite database", None),
    OUR_STORE: ("no alembic_version table", None),
    "0.4.7 tables and one of ours": (
        "tables of this version (experiment_tags)",
        "CREATE TABLE experiment_tags (experiment_id INTEGER, tag TEXT);",
    ),
    "an unexpected column": (
        "its table experiments has columns",
        "ALTER TABLE experiments ADD COLUMN created_at VARCHAR;",
    ),
    "an unknown artifact type": (
        "artifact row 3 has type 'model'",
        "UPDATE artifacts SET type = 'model' WHERE id = 3;",
    ),
    "an empty alembic_version": (
        "empty alembic_version table",
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);",
    ),
    "a unit twice": (
        "two work_units rows have the same experiment_id, wid",
        "INSERT INTO work_units VALUES (4, 2, 2, '', '{}');",
    ),
}


def _make_refused_store(db: pathlib.Path, case: str, edit: str | None) -> None:
    if case == "not SQLite":
        db.write_bytes(b"this is not a database\n" * 200)
        db.chmod(0o644)
    elif case == OUR_STORE:
        _our_store_without_revision(db)
    else:
        build_047(db, edit or "")


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_store_it_cannot_adopt_is_refused_and_left_untouched(state: pathlib.Path, case: str) -> None:
    db = state / "db.sqlite3"
    expected, edit = REFUSED[case]
    _make_refused_store(db, case, edit)
    before = snapshot(db)

    with pytest.raises(MetadataError) as refused:
        reopen()
    message = str(refused.value)
    assert str(db) in message and expected in message and "left unchanged" in message
    assert f"mv {db} {db}.old" in message
    with pytest.raises(MetadataError, match="left unchanged"):
        settings.clear_cache()
        async with xm_slurm.create_experiment("refused"):
            pass

    assert snapshot(db) == before  # same bytes, same mode, no backup, no -wal or -shm beside it


def test_rows_that_belong_to_nothing_are_left_out_and_kept_in_the_backup(
    state: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 0.4.7 did not enforce its foreign keys: a deleted experiment can leave its units and artifacts behind.
    build_047(
        state / "db.sqlite3",
        "INSERT INTO work_units VALUES (9, 7, 1, '', '{}');",
        "INSERT INTO slurm_jobs VALUES (9, 9, 'orphan', 4000, NULL);",
        "INSERT INTO artifacts VALUES (9, 'lost', 'file:///lost', 'experiment');",
    )
    reopen()
    api = xm_slurm.api.client()
    assert sorted(s.xid for s in api.list_experiments()) == [1, 2]
    assert [a.name for a in api.get_experiment(1).artifacts] == ["wandb"]
    [warning] = [r.getMessage() for r in caplog.records if "left out 3 row(s)" in r.getMessage()]
    assert "work unit row 9" in warning and "job row 9" in warning and "artifact row 9 'lost'" in warning
    [backup] = backups(state)
    with contextlib.closing(sqlite3.connect(backup)) as old:
        assert old.execute("SELECT name FROM slurm_jobs WHERE id = 9").fetchone() == ("orphan",)


# -- on the real local cluster -----------------------------------------------------------------------------


async def test_the_fixtures_rows_point_at_another_cluster_and_say_so(
    state: pathlib.Path, local_cluster: LocalCluster
) -> None:
    """The rows pin the host key of the cluster 0.4.7 ran on; ours answers on the same address with another
    key, so a status query is refused (never silently trusted)."""
    build_047(state / "db.sqlite3")
    experiment = reopen()
    try:
        with pytest.raises(HostKeyError):
            await experiment.work_units[1].get_status()
    finally:
        await experiment.aclose()


async def _sbatch(transport: SSHTransport, lc: LocalCluster, *options: str) -> str:
    result = await transport.run(f"sbatch --parsable -p {lc.partition} {' '.join(options)}")
    return result.stdout.strip().split(";")[0]


async def _final(unit: xm_slurm.SlurmWorkUnit) -> xm_slurm.SlurmWorkUnitStatus:
    deadline = asyncio.get_running_loop().time() + 120
    while (status := await unit.get_status()).is_active:
        assert asyncio.get_running_loop().time() < deadline, f"still {status.status.name} after 120 s"
        await asyncio.sleep(1)
    return status


async def test_adopted_experiments_reopen_with_live_job_states(
    state: pathlib.Path, local_cluster: LocalCluster
) -> None:
    """A 0.4.7 store whose rows point at jobs of our cluster, in both stored SSH forms: reopened, each unit
    reports the state Slurm has for its job; a new experiment launches beside them."""
    lc = local_cluster
    host_key = pinned_key(lc.known_hosts)
    login = SlurmSSHConfig(
        host=lc.ssh_host,
        port=lc.ssh_port,
        user=lc.ssh_user,
        client_keys=(lc.ssh_key,),
        known_hosts=lc.known_hosts,
    )
    transport = SSHTransport(login)
    try:
        single = await _sbatch(transport, lc, "--wrap", "true")
        array = await _sbatch(transport, lc, "--array=0-1", "--wrap", "'test $SLURM_ARRAY_TASK_ID = 0'")
    finally:
        await transport.close()
    key = [host_key.algorithm, host_key.key]
    form_047 = {"host": lc.ssh_host, "host_public_key": key, "user": lc.ssh_user, "port": lc.ssh_port}
    form_0419 = {"endpoints": [[lc.ssh_host, lc.ssh_port]], "public_key": key, "user": lc.ssh_user}
    build_047(
        state / "db.sqlite3",
        f"UPDATE slurm_jobs SET slurm_job_id = {int(single)}, slurm_ssh_config = '{json.dumps(form_047)}' WHERE id = 1;",
        *(
            f"UPDATE slurm_jobs SET slurm_job_id = '{array}_{task}', slurm_ssh_config = '{json.dumps(form_0419)}' "
            f"WHERE id = {task + 2};"
            for task in (0, 1)
        ),
    )
    first, sweep = reopen(), xm_slurm.get_experiment(2)
    try:
        assert (await _final(first.work_units[1])).is_completed
        done, failed = await asyncio.gather(_final(sweep.work_units[1]), _final(sweep.work_units[2]))
        assert done.is_completed and failed.is_failed
        assert [j.job_id.to_string() for j in sweep.work_units[2].slurm_jobs] == [f"{array}_1"]
    finally:
        await first.aclose()
        await sweep.aclose()

    cluster = xm_slurm.SlurmClusterConfig(
        name="local", ssh=login, runtime=xm_slurm.ContainerRuntime.PODMAN, partition=lc.partition
    )
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )
    job = xm.Job(executable=xm_slurm.RemoteImage(image=lc.image, entrypoint=["true"]), executor=executor)
    async with xm_slurm.create_experiment("launched beside") as experiment:
        unit = await experiment.add(job)
        assert experiment.experiment_id == 3
    assert (await _final(unit)).is_completed
    assert [s.xid for s in sorted(xm_slurm.api.client().list_experiments(), key=lambda s: s.xid)] == [1, 2, 3]


def test_a_0_4_7_store_in_wal_mode_is_adopted_and_backed_up_whole(state: pathlib.Path) -> None:
    # An earlier version of ours switched the file to WAL before failing on `table experiments already exists`.
    db = state / "db.sqlite3"
    build_047(db)
    writer = sqlite3.connect(db)
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # the next row stays in the -wal file
        writer.execute("INSERT INTO experiments VALUES (5, 'only in the wal', NULL, NULL, 'w')")
        writer.commit()
        assert (state / "db.sqlite3-wal").stat().st_size > 0
        reopen()
    finally:
        writer.close()
    assert xm_slurm.api.client().get_experiment(5).tags == frozenset({"w"})
    [backup] = backups(state)
    with contextlib.closing(sqlite3.connect(backup)) as old:
        assert old.execute("SELECT title FROM experiments WHERE id = 5").fetchone() == ("only in the wal",)


def test_processes_opening_it_at_once_adopt_it_once(state: pathlib.Path) -> None:
    db = state / "db.sqlite3"
    build_047(db)
    code = (
        "import sys; from xm_slurm.api.sql import SqlClient; from xm_slurm.api.storage import sqlite_url; "
        "c = SqlClient.open(sqlite_url(sys.argv[1])); print(len(c.list_experiments()))"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    outcomes = [(p.communicate(timeout=120), p.returncode) for p in runs]
    assert [(out.strip(), rc) for (out, _), rc in outcomes] == [(b"2", 0)] * 3, [e for (_, e), _ in outcomes]
    api = xm_slurm.api.client()
    assert [(s.xid, s.tags) for s in sorted(api.list_experiments(), key=lambda s: s.xid)] == [
        (1, frozenset({"old"})),
        (2, frozenset({"a", "b"})),
    ]
    assert [len(wu.jobs) for wu in api.get_experiment(2).work_units] == [1, 1]
