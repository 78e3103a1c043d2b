"""A corpus of wrong calls across the public API: each is refused with a ValidationError that names the bad
value, BEFORE any side effect: no command that writes or submits on the cluster, no new job in squeue for our
marker, no new row in the metadata store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from local_cluster import LocalCluster
from reliability_helpers import cluster_config, ssh_config
from xmanager import xm

import xm_slurm
from xm_slurm import dependencies as deps
from xm_slurm.api import ExperimentPatch, SlurmJob, WorkUnitPatch, client
from xm_slurm.errors import ValidationError
from xm_slurm.transport import CountingTransport, SSHTransport

pytestmark = pytest.mark.cluster

MARKER = f"rel-bad-{uuid.uuid4().hex[:10]}"


@dataclasses.dataclass(frozen=True)
class NotSlurmSpec(xm.ExecutorSpec):
    pass


@dataclasses.dataclass(frozen=True)
class NotSlurm(xm.Executor):
    Spec = NotSlurmSpec


class Ctx:
    def __init__(self, lc: LocalCluster, experiment: Any) -> None:
        self.lc = lc
        self.e = experiment
        self.cluster = cluster_config(lc)
        self.other_cluster = cluster_config(lc, name="other")
        self.image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["true"])

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
            name=MARKER,
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
    ("identity on a sweep", lambda c: c.add(c.job(), args=[{}, {}], identity="sweep"), "identity"),
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


async def test_bad_input_corpus_refused_before_any_side_effect(
    local_cluster: LocalCluster, store: Path
) -> None:
    assert len(CASES) >= 40
    transports: list[CountingTransport] = []

    def factory(config: xm_slurm.SlurmSSHConfig) -> CountingTransport:
        transports.append(CountingTransport(SSHTransport(config)))
        return transports[-1]

    problems: list[str] = []
    async with xm_slurm.create_experiment(MARKER, transport_factory=factory) as experiment:
        ctx = Ctx(local_cluster, experiment)
        before = _snapshot(store / "db.sqlite3")
        for case_id, call, needle in CASES:
            started = time.monotonic()
            sent = sum(
                t.counts[k] for t in transports for k in ("sbatch", "<write_text>", "<mkdir>", "scancel")
            )
            try:
                result = call(ctx)
                if isinstance(result, Awaitable):
                    await result
            except ValidationError as e:
                if needle not in str(e):
                    problems.append(f"{case_id}: message does not name {needle!r}: {e}")
            except Exception as e:
                problems.append(f"{case_id}: {type(e).__name__} instead of ValidationError: {e}")
            else:
                problems.append(f"{case_id}: accepted")
            if (
                sum(t.counts[k] for t in transports for k in ("sbatch", "<write_text>", "<mkdir>", "scancel"))
                != sent
            ):
                problems.append(f"{case_id}: wrote to or submitted on the cluster")
            if time.monotonic() - started > 5:
                problems.append(f"{case_id}: took {time.monotonic() - started:.0f} s to be refused")
        writes = sum(
            t.counts[k] for t in transports for k in ("sbatch", "<write_text>", "<mkdir>", "scancel")
        )
        after = _snapshot(store / "db.sqlite3")
        submitted = _marker_jobs()
    assert not problems, "\n".join(problems)
    assert writes == 0, [c for t in transports for c in t.commands]
    assert after == before
    assert submitted == []


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
