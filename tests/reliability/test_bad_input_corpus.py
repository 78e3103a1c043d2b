"""A corpus of wrong calls across the public API: each is refused with a ValidationError that names the bad
value, BEFORE any side effect: no command that writes or submits on the cluster, no new job in squeue for our
marker, no new row in the metadata store. Some are refused by the launch pre-flight, which may only read
(squeue, sacct, scontrol/sinfo)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from counting_transport import CountingTransport
from local_cluster import LocalCluster
from reliability_helpers import cluster_config, ssh_config
from xmanager import xm

import xm_slurm
from xm_slurm import dependencies as deps
from xm_slurm.api import ExperimentPatch, SlurmJob, WorkUnitPatch, client
from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.resources import ResourceType
from xm_slurm.scheduler.preflight import unknown_job_ids
from xm_slurm.transport import SSHTransport

pytestmark = pytest.mark.cluster

MARKER = f"rel-bad-{uuid.uuid4().hex[:10]}"


@dataclasses.dataclass(frozen=True)
class NotSlurmSpec(xm.ExecutorSpec):
    pass


@dataclasses.dataclass(frozen=True)
class NotSlurm(xm.Executor):
    Spec = NotSlurmSpec


class Ctx:
    def __init__(self, lc: LocalCluster, experiment: Any, gate: str = "") -> None:
        self.lc = lc
        self.e = experiment
        self.gate = gate  # a held job Slurm knows
        self.cluster = cluster_config(lc)
        self.other_cluster = cluster_config(lc, name="other")
        self.image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["true"])

    def config(self, **kw: Any) -> xm_slurm.SlurmClusterConfig:
        """The local cluster's config with some fields changed (same SSH account)."""
        return dataclasses.replace(self.cluster, **kw)

    def on(self, cluster: xm_slurm.SlurmClusterConfig, **resources: Any) -> xm.Job:
        """The marker job on `cluster` with these resources."""
        requirements = xm_slurm.JobRequirements(CPU=1, cluster=cluster, **resources)
        return self.job(executor=xm_slurm.Slurm(requirements=requirements, time=dt.timedelta(minutes=5)))

    def executor(self, cluster: xm_slurm.SlurmClusterConfig | None = None, **kw: Any) -> xm_slurm.Slurm:
        return xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster or self.cluster),
            time=dt.timedelta(minutes=5),
            **kw,
        )

    def job(self, **kw: Any) -> xm.Job:
        return xm.Job(
            executable=kw.pop("executable", self.image),
            executor=kw.pop("executor", None) or self.executor(),
            name=kw.pop("name", MARKER),
            **kw,
        )

    def add(self, *args: Any, **kw: Any) -> Awaitable[Any]:
        return self.e.add(*args, **kw)


Case = tuple[str, Callable[[Ctx], Any], str]

CASES: list[Case] = [
    # experiment.add: job types and shapes
    ("job is a string", lambda c: c.add("train.py"), "'train.py'"),
    ("job is None", lambda c: c.add(None), "None"),
    ("executor not Slurm", lambda c: c.add(c.job(executor=NotSlurm())), "NotSlurm"),
    ("unpackaged Dockerfile", lambda c: c.add(c.job(executable=xm_slurm.Dockerfile())), "Dockerfile"),
    ("args an int", lambda c: c.add(c.job(), args=42), "42"),
    ("sweep of ints", lambda c: c.add(c.job(), args=[1, 2]), "1"),
    ("unknown args key", lambda c: c.add(c.job(), args={"argz": {"a": 1}}), "argz"),
    ("env name with dash", lambda c: c.add(c.job(), args={"env_vars": {"A-B": "x"}}), "A-B"),
    ("env name starts with digit", lambda c: c.add(c.job(), args={"env_vars": {"1ABC": "x"}}), "1ABC"),
    ("env name empty", lambda c: c.add(c.job(), args={"env_vars": {"": "x"}}), "''"),
    ("env value with NUL", lambda c: c.add(c.job(), args={"env_vars": {"A": "a\0b"}}), "A"),
    ("identity not a string", lambda c: c.add(c.job(), identity=5), "5"),
    ("role a string", lambda c: c.add(c.job(), role="aux"), "'aux'"),
    ("dependency a string", lambda c: c.add(c.job(), dependency="afterok:1"), "afterok:1"),
    (
        "dependency list too short",
        lambda c: c.add(c.job(), args=[{}, {}, {}], dependency=[deps.afterok("1")]),
        "3",
    ),
    ("dependency list on one unit", lambda c: c.add(c.job(), dependency=[deps.afterok("1")]), "list"),
    (
        "mixing & and |",
        lambda c: c.add(c.job(), dependency=(deps.afterok("1") & deps.afterok("2")) | deps.afterany("3")),
        "&",
    ),
    ("dependency on bad job id", lambda c: c.add(c.job(), dependency=deps.afterok("12x")), "12x"),
    ("nested job groups", lambda c: c.add(xm.JobGroup(outer=xm.JobGroup(inner=c.job()))), "nested"),
    ("empty job group", lambda c: c.add(xm.JobGroup()), "empty"),
    (
        "group over two clusters",
        lambda c: c.add(xm.JobGroup(a=c.job(), b=c.job(executor=c.executor(c.other_cluster)))),
        "other",
    ),
    ("sweep list of strings", lambda c: c.add(c.job(), args=["--lr=1"]), "--lr=1"),
    # images
    (
        "image ref upper case",
        lambda c: xm_slurm.RemoteImage(image="Registry/UPPER:tag"),
        "Registry/UPPER:tag",
    ),
    ("image ref with space", lambda c: xm_slurm.RemoteImage(image="busy box:latest"), "busy box:latest"),
    ("image ref empty", lambda c: xm_slurm.RemoteImage(image=""), "''"),
    ("image digest too short", lambda c: xm_slurm.RemoteImage(image="busybox@sha256:abc"), "sha256:abc"),
    ("image tag empty", lambda c: xm_slurm.RemoteImage(image="busybox:"), "busybox:"),
    ("spec tag with space", lambda c: xm_slurm.Slurm.Spec(tag="my image"), "my image"),
    # executor and requirements
    (
        "time negative",
        lambda c: xm_slurm.Slurm(
            requirements=xm_slurm.JobRequirements(CPU=1, cluster=c.cluster), time=dt.timedelta(minutes=-1)
        ),
        "-1",
    ),
    (
        "time an int",
        lambda c: xm_slurm.Slurm(requirements=xm_slurm.JobRequirements(CPU=1, cluster=c.cluster), time=60),
        "60",
    ),
    ("partition with space", lambda c: c.executor(partition="a b"), "'a b'"),
    ("requeue attempts negative", lambda c: c.executor(requeue_max_attempts=-1), "-1"),
    ("requeue exit code 300", lambda c: c.executor(requeue_on_exit_code=300), "300"),
    ("timeout signal not a signal", lambda c: c.executor(timeout_signal=999), "999"),
    ("priority a string", lambda c: c.executor(priority="high"), "'high'"),
    (
        "grace period negative",
        lambda c: c.executor(timeout_signal_grace_period=dt.timedelta(seconds=-5)),
        "timeout_signal_grace_period",
    ),
    ("gpu negative", lambda c: xm_slurm.JobRequirements(GPU=-1), "-1"),
    ("unknown resource name", lambda c: xm_slurm.JobRequirements(TPU_V9=1), "TPU_V9"),
    ("accelerator the cluster lacks", lambda c: xm_slurm.JobRequirements(H100=1, cluster=c.cluster), "H100"),
    # cluster and SSH config
    ("ssh port zero", lambda c: xm_slurm.SlurmSSHConfig(host="h", port=0), "0"),
    ("ssh port too big", lambda c: xm_slurm.SlurmSSHConfig(host="h", port=70000), "70000"),
    ("ssh host empty", lambda c: xm_slurm.SlurmSSHConfig(host=""), "''"),
    ("ssh host with space", lambda c: xm_slurm.SlurmSSHConfig(host="login node"), "login node"),
    (
        "cluster name with !",
        lambda c: xm_slurm.SlurmClusterConfig(
            name="a!", ssh=ssh_config(c.lc), runtime=xm_slurm.ContainerRuntime.PODMAN
        ),
        "a!",
    ),
    (
        "runtime a string",
        lambda c: xm_slurm.SlurmClusterConfig(name="a", ssh=ssh_config(c.lc), runtime="podman"),
        "podman",
    ),
    # experiments and the store
    ("experiment title not str", lambda c: xm_slurm.create_experiment(5), "5"),
    ("get_experiment(0)", lambda c: xm_slurm.get_experiment(0), "0"),
    ("get_experiment('1')", lambda c: xm_slurm.get_experiment("1"), "'1'"),
    ("get_experiment(True)", lambda c: xm_slurm.get_experiment(True), "True"),
    ("store: xid negative", lambda c: client().get_experiment(-3), "-3"),
    ("store: patch of wrong type", lambda c: client().insert_experiment({"title": "x"}), "title"),
    (
        "store: work unit id zero",
        lambda c: client().insert_work_unit(c.e.experiment_id, WorkUnitPatch(wid=0)),
        "0",
    ),
    (
        "store: job without id",
        lambda c: client().insert_job(
            c.e.experiment_id, 1, SlurmJob(name="j", slurm_job_id="", slurm_ssh_config={})
        ),
        "slurm_job_id",
    ),
    (
        "store: tags not strings",
        lambda c: client().update_experiment(c.e.experiment_id, ExperimentPatch(tags=frozenset({1}))),
        "1",
    ),
]


MAX_JOB_COUNT = 10_000  # scripts/local-cluster keeps Slurm's default (checked by the test)


def _env(value: Any) -> Callable[[Ctx], Any]:
    return lambda c: c.add(c.job(), args={"env_vars": {"A": value}})


def _mounts(mounts: dict[str, str]) -> Callable[[Ctx], Any]:
    return lambda c: c.config(runtime=xm_slurm.ContainerRuntime.APPTAINER, mounts=mounts)


# Accepted before issue 21 (finding 7): each was stored raw, stringified, rendered into the runtime's
# syntax, or passed to Slurm (which refused it after the launch had written its files, or ran it as if the
# dependency were met). Now each is refused before anything reaches the cluster or the store.
ISSUE_21_CASES: list[Case] = [
    # names, identities and titles are one line of printable text (xm_slurm.text_rules.check_line)
    ("job name with newline", lambda c: c.add(c.job(name="a\nb")), "a\\nb"),
    ("job name with NUL", lambda c: c.add(c.job(name="a\0b")), "a\\x00b"),
    ("job name with ESC", lambda c: c.add(c.job(name="a\x1b[2Jb")), "\\x1b"),
    ("group member name with newline", lambda c: c.add(xm.JobGroup(**{"x\ny": c.job()})), "x\\ny"),
    ("group member name with NUL", lambda c: c.add(xm.JobGroup(**{"x\0y": c.job()})), "x\\x00y"),
    ("identity with newline", lambda c: c.add(c.job(), identity="id\nrow"), "id\\nrow"),
    ("identity with NUL", lambda c: c.add(c.job(), identity="id\0"), "id\\x00"),
    ("identity with DEL", lambda c: c.add(c.job(), identity="id\x7f"), "id\\x7f"),
    ("identity with tab", lambda c: c.add(c.job(), identity="id\tx"), "id\\tx"),
    ("title with newline", lambda c: xm_slurm.create_experiment("t\nrow"), "t\\nrow"),
    ("title with NUL", lambda c: xm_slurm.create_experiment("t\0"), "t\\x00"),
    ("title with CR", lambda c: xm_slurm.create_experiment("t\rx"), "t\\rx"),
    ("title with lone surrogate", lambda c: xm_slurm.create_experiment("t\ud800"), "surrogate"),
    # env values are str, int or float; names xm_slurm sets itself are reserved
    ("env value None", _env(None), "None"),
    ("env value object()", _env(object()), "object"),
    ("env value list", _env([1, 2]), "[1, 2]"),
    ("env value dict", _env({"k": 1}), "{'k': 1}"),
    ("env value bytes", _env(b"x"), "b'x'"),
    ("env value bool", _env(True), "True"),
    ("env value None on xm.Job", lambda c: c.add(c.job(env_vars={"B": None})), "None"),
    (
        "env value None in one trial",
        lambda c: c.add(c.job(), args=[{"env_vars": {"A": "1"}}, {"env_vars": {"A": None}}]),
        "trial #1",
    ),
    (
        "env XM_SLURM_SUBMISSION",
        lambda c: c.add(c.job(), args={"env_vars": {"XM_SLURM_SUBMISSION": "x"}}),
        "XM_SLURM_SUBMISSION",
    ),
    ("env SLURM_UMASK", lambda c: c.add(c.job(), args={"env_vars": {"SLURM_UMASK": "0022"}}), "SLURM_UMASK"),
    (
        "env XM_SLURM_TMPDIR",
        lambda c: c.add(c.job(), args={"env_vars": {"XM_SLURM_TMPDIR": "/x"}}),
        "XM_SLURM_TMPDIR",
    ),
    (
        "image env SLURM_UMASK",
        lambda c: xm_slurm.RemoteImage(image=c.lc.image, env_vars={"SLURM_UMASK": "0"}),
        "SLURM_UMASK",
    ),
    (
        "cluster container env XM_SLURM_SUBMISSION",
        lambda c: c.config(container_environment={"XM_SLURM_SUBMISSION": "x"}),
        "XM_SLURM_SUBMISSION",
    ),
    # mounts: what Apptainer's --bind (comma-separated src:dst) and Podman's --volume can carry
    ("mount source with ','", _mounts({"/data,x": "/data"}), "/data,x"),
    ("mount destination with ','", _mounts({"/data": "/d,x"}), "/d,x"),
    ("mount destination '/'", _mounts({"/data": "/"}), "'/'"),
    ("mount source with '..'", _mounts({"/data/../etc": "/data"}), "/data/../etc"),
    ("mount destination with '..'", _mounts({"/data": "/mnt/../etc"}), "/mnt/../etc"),
    ("mount source with NUL", _mounts({"/da\0ta": "/data"}), "/da\\x00ta"),
    ("two mounts to one destination", _mounts({"/a": "/data", "/b": "/data"}), "/data"),
    # amounts no cluster can grant
    ("CPU=10**6", lambda c: xm_slurm.JobRequirements(CPU=10**6, cluster=c.cluster), "1000000"),
    ("GPU=10**6", lambda c: xm_slurm.JobRequirements(GPU=10**6), "1000000"),
    (
        "time=10**6 days",
        lambda c: dataclasses.replace(c.executor(), time=dt.timedelta(days=10**6)),
        "1000000",
    ),
    # refused by the launch pre-flight (read-only queries), before any write, row or sbatch
    ("afterok on an unknown job", lambda c: c.add(c.job(), dependency=deps.afterok("99999999")), "99999999"),
    (
        "known & unknown job",
        lambda c: c.add(c.job(), dependency=deps.afterok(c.gate) & deps.afterany("99999998")),
        "99999998",
    ),
    (
        "unknown array task",
        lambda c: c.add(c.job(), dependency=deps.afterok("99999997_3")),
        "99999997_3",
    ),
    (
        "after+time on an unknown job",
        lambda c: c.add(c.job(), dependency=deps.after("99999995", time=dt.timedelta(minutes=1))),
        "99999995",
    ),
    (
        "one unknown per-trial dependency",
        lambda c: c.add(c.job(), args=[{}, {}], dependency=[deps.afterok(c.gate), deps.afterok("99999996")]),
        "99999996",
    ),
    ("more GPUs per task than any node has", lambda c: c.add(c.on(c.cluster, GPU=9)), "gpu"),
    (
        "mapped accelerator no node has",
        lambda c: c.add(c.on(c.config(resources={ResourceType.A100: "a100"}), A100=1)),
        "gpu:a100",
    ),
    (
        "mapped feature no node has",
        lambda c: c.add(c.on(c.config(features={ResourceType.V100: "volta"}), V100=1)),
        "volta",
    ),
    ("unknown partition", lambda c: c.add(c.job(executor=c.executor(partition="nosuch"))), "nosuch"),
    ("unknown cluster partition", lambda c: c.add(c.on(c.config(partition="nosuch2"))), "nosuch2"),
    (
        "one unknown of two partitions",
        lambda c: c.add(c.job(executor=c.executor(partition=f"{c.lc.partition},nosuch3"))),
        "nosuch3",
    ),
    (
        "sweep larger than MaxJobCount",
        lambda c: c.add(c.job(), args=[{"args": {"i": i}} for i in range(MAX_JOB_COUNT + 1)]),
        f"{MAX_JOB_COUNT + 1:,}",
    ),
]
CASES += ISSUE_21_CASES
#: Seconds a case may take to be refused (default 5): the big sweep prepares 10,001 trials first.
BUDGET = {"sweep larger than MaxJobCount": 30.0}


def _snapshot(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("work_units", "jobs", "work_unit_artifacts")
        )  # type: ignore[return-value]


def _marker_jobs() -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "--name", MARKER, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def _writes(transports: list[CountingTransport]) -> int:
    """Commands that write or submit on the cluster, so far."""
    return sum(t.counts[k] for t in transports for k in ("sbatch", "<write_text>", "<mkdir>", "scancel"))


def _max_job_count() -> int:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    return int(next(line.split("=")[1] for line in out.splitlines() if line.startswith("MaxJobCount")))


@contextlib.contextmanager
def _held_gate() -> Iterator[str]:
    """A held job (never runs) that dependencies may name: Slurm knows it."""
    out = subprocess.run(
        ["sbatch", "--parsable", "--hold", f"--job-name={MARKER}-gate", "--wrap", "true"],
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = out.stdout.strip().split(";")[0]
    try:
        yield job_id
    finally:
        subprocess.run(["scancel", job_id], check=False)


async def test_bad_input_corpus_refused_before_any_side_effect(
    local_cluster: LocalCluster, store: Path
) -> None:
    assert len(CASES) >= 40 + len(ISSUE_21_CASES) and len(ISSUE_21_CASES) >= 24
    assert _max_job_count() == MAX_JOB_COUNT
    transports: list[CountingTransport] = []

    def factory(config: xm_slurm.SlurmSSHConfig) -> CountingTransport:
        transports.append(CountingTransport(SSHTransport(config)))
        return transports[-1]

    problems: list[str] = []
    refused = 0
    exit_error: ValidationError | None = None
    with _held_gate() as gate:
        try:
            async with xm_slurm.create_experiment(MARKER, transport_factory=factory) as experiment:
                ctx = Ctx(local_cluster, experiment, gate)
                refused, problems = await _run_cases(ctx, transports, store)
                writes = _writes(transports)
                submitted = _marker_jobs()
        except ValidationError as e:  # the experiment raises its first failed launch again as it exits
            exit_error = e
    assert not problems, "\n".join(problems)
    assert exit_error is None or "nothing was submitted" in str(exit_error)
    assert refused == len(CASES)
    assert writes == 0, [c for t in transports for c in t.commands]
    assert submitted == []


async def _run_cases(ctx: Ctx, transports: list[CountingTransport], store: Path) -> tuple[int, list[str]]:
    """Run every case; (how many were refused as they must be, the problems found)."""
    problems: list[str] = []
    refused = 0
    before = _snapshot(store / "db.sqlite3")
    for case_id, call, needle in CASES:
        started = time.monotonic()
        sent = _writes(transports)
        try:
            result = call(ctx)
            if isinstance(result, Awaitable):
                await result
        except ValidationError as e:
            if needle not in str(e):
                problems.append(f"{case_id}: message does not name {needle!r}: {e}")
            else:
                refused += 1
        except Exception as e:
            problems.append(f"{case_id}: {type(e).__name__} instead of ValidationError: {e}")
        else:
            problems.append(f"{case_id}: accepted")
        if _writes(transports) != sent:
            problems.append(f"{case_id}: wrote to or submitted on the cluster")
        if time.monotonic() - started > BUDGET.get(case_id, 5.0):
            problems.append(f"{case_id}: took {time.monotonic() - started:.0f} s to be refused")
        if _snapshot(store / "db.sqlite3") != before:
            problems.append(f"{case_id}: wrote to the store")
            before = _snapshot(store / "db.sqlite3")
    return refused, problems


async def _refused_before_submission(lc: LocalCluster, args: dict[str, Any], needle: str) -> None:
    transports: list[CountingTransport] = []

    def factory(config: xm_slurm.SlurmSSHConfig) -> CountingTransport:
        transports.append(CountingTransport(SSHTransport(config)))
        return transports[-1]

    async with xm_slurm.create_experiment(MARKER, transport_factory=factory) as experiment:
        ctx = Ctx(lc, experiment)
        with pytest.raises(ValidationError, match=needle):
            await experiment.add(ctx.job(), args=args)
    assert sum(t.counts["sbatch"] for t in transports) == 0


async def test_nul_in_an_argument_is_refused(local_cluster: LocalCluster) -> None:
    await _refused_before_submission(local_cluster, {"args": {"x": "a\0b"}}, "x")


async def test_reserved_env_var_is_refused(local_cluster: LocalCluster) -> None:
    await _refused_before_submission(
        local_cluster, {"env_vars": {"XM_SLURM_WORK_UNIT_ID": "7"}}, "XM_SLURM_WORK_UNIT_ID"
    )


def _finished_job() -> str:
    """A job sacct lists that squeue no longer does (finished longer than MinJobAge ago)."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-S", "now-30days", "-o", "JobIDRaw,State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    ended = [row.split("|")[0] for row in out if row.split("|")[-1].startswith(("COMPLETED", "FAILED"))]
    for job_id in ended[:200]:
        listed = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True)
        if not listed.stdout.strip():
            return job_id
    pytest.skip("no finished job in the cluster's accounting yet")


async def test_preflight_knows_queued_and_finished_jobs(local_cluster: LocalCluster) -> None:
    finished = _finished_job()
    transport = CountingTransport(SSHTransport(ssh_config(local_cluster)))
    try:
        with _held_gate() as gate:
            queued = await unknown_job_ids(transport, [SlurmJobId.parse(gate), SlurmJobId.parse(f"{gate}_0")])
            assert (queued, transport.counts["sacct"]) == ([], 0)  # squeue answered for all
            ids = [SlurmJobId.parse(i) for i in (gate, finished, "99999999", "99999998_2")]
            unknown = await unknown_job_ids(transport, ids)
        alone = await unknown_job_ids(transport, [SlurmJobId.parse("99999999")])  # squeue exits 1 then
    finally:
        await transport.close()
    assert unknown == [SlurmJobId.parse("99999998_2"), SlurmJobId.parse("99999999")]
    assert transport.counts["sacct"] == 2  # once per query with ids squeue lacked
    assert alone == [SlurmJobId.parse("99999999")]
