"""From `add` calls to sbatch submissions (pure: no I/O).

Every `work_unit.add(job)` becomes a `PendingAdd` (validated at once). The jobs collected from one
`experiment.add` (a single job, a sweep, the jobs a set of generators added) are planned together:

* a `JobGroup` is one heterogeneous job;
* plain jobs with the same cluster, executable and executor become ONE job array (one task per add, order
  kept), each task carrying its own args and env vars; a lone job is a plain job;
* dependencies: a shared one goes on the array; per-trial `afterok` on task i of one array for task i of
  the new array becomes `aftercorr:<array>`; trials whose dependencies still differ are split by dependency;
* sizes: an array holds at most the cluster's `MaxArraySize` tasks (indices 0..k-1), so a larger sweep becomes
  several arrays of consecutive trials. A sweep split that way against an earlier sweep split the same way
  still pairs chunk by chunk (`aftercorr` on each chunk of the earlier one). With `Slurm(array_throttle=N)`
  each array gets `%N`, and the chunks of one sweep are chained (chunk k+1 waits `afterany` for chunk k) so
  that the whole sweep never runs more than N trials at once.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from xmanager import xm

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.dependencies import (
    SlurmDependency,
    SlurmDependencyOR,
    SlurmJobDependencyAfterOK,
    aftercorr,
)
from xm_slurm.errors import ValidationError
from xm_slurm.executables import RemoteImage
from xm_slurm.executables.secret import redact_secrets
from xm_slurm.executors import Slurm
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.rendering import JobComponent, Trial
from xm_slurm.text_rules import check_line

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")


def apply_args(job: xm.Job | xm.JobGroup, args: Mapping[str, Any] | None) -> xm.Job | xm.JobGroup:
    """A copy of `job` with `{"args": ..., "env_vars": ...}` merged in (for a group: one such dict per
    member name), as XManager does."""
    if isinstance(job, xm.JobGroup):
        group = copy.copy(job)
        args = dict(args or {})
        unknown = set(args) - set(job.jobs)
        if unknown:
            raise ValidationError(
                f"args keys {sorted(unknown)} are not members of the job group (members: {sorted(job.jobs)})"
            )
        group.jobs = {name: apply_args(member, args.get(name)) for name, member in job.jobs.items()}
        return group
    job = copy.copy(job)
    if not args:
        return job
    if not isinstance(args, Mapping):
        raise ValidationError(
            f"args={args!r} must be a mapping like {{'args': {{...}}, 'env_vars': {{...}}}}"
        )
    unknown = set(args) - {"args", "env_vars"}
    if unknown:
        raise ValidationError(
            f"args keys {sorted(unknown)} are not supported for an xm.Job; use "
            "{'args': {...}, 'env_vars': {...}} (xm_slurm.JobArgs)"
        )
    if "args" in args:
        job.args = xm.merge_args(job.args, args["args"])
    if "env_vars" in args:
        job.env_vars = {**job.env_vars, **dict(args["env_vars"])}
    return job


def display_args(job: object, args: Mapping[str, Any] | None) -> Any:
    """What the store shows as a work unit's args: the trial's args, else those of the job (as XManager)."""
    if args is not None:
        return args
    if isinstance(job, xm.Job):
        out = {"args": job.args.to_dict(kwargs_only=True), "env_vars": dict(job.env_vars)}
        return {k: v for k, v in out.items() if v}
    if isinstance(job, xm.JobGroup):
        return {name: display_args(member, None) for name, member in job.jobs.items()}
    return {}


def encode_args(value: Any) -> str:
    # A `Secret` env value is stored as `<secret>`: the store never holds it (docs/provenance.md).
    return json.dumps(redact_secrets(value), default=str, ensure_ascii=False)


def job_component(job: object, where: str) -> tuple[SlurmClusterConfig, JobComponent]:
    """Validate one `xm.Job` for Slurm and turn it into a rendering component."""
    if isinstance(job, xm.JobGroup):
        raise ValidationError(f"{where}: nested job groups are not supported; flatten the group")
    if not isinstance(job, xm.Job):
        raise ValidationError(f"{where}: {job!r} is not an xm.Job")
    if not isinstance(job.executor, Slurm):
        raise ValidationError(
            f"{where}: executor {job.executor!r} is not an xm_slurm.Slurm executor; use "
            "xm_slurm.Slurm(requirements=xm_slurm.JobRequirements(..., cluster=...), time=...)"
        )
    if not isinstance(job.executable, RemoteImage):
        raise ValidationError(
            f"{where}: executable {type(job.executable).__name__} is not packaged for Slurm; "
            "pass it through experiment.package([...]) first (or use xm_slurm.RemoteImage)"
        )
    cluster = job.executor.requirements.cluster
    assert cluster is not None  # Slurm() refuses requirements without a cluster
    # The directives render now, whatever order the requirements were built in: an accelerator the
    # cluster's resources/features maps do not know is refused here, at add() time.
    try:
        job.executor.to_directives()
    except ValidationError as e:
        raise ValidationError(f"{where}: {e}") from None
    if cluster.validate is not None:
        try:
            cluster.validate(job)
        except ValidationError:
            raise
        except Exception as e:
            raise ValidationError(f"{where}: cluster {cluster.name!r} refused the job: {e}") from e
    try:
        component = JobComponent(
            executable=job.executable, executor=job.executor, args=job.args, env_vars=job.env_vars
        )
    except ValidationError as e:
        raise ValidationError(f"{where}: {e}") from None
    return cluster, component


@dataclasses.dataclass(eq=False)
class PendingAdd:
    """One `work_unit.add(...)` waiting to be submitted; `future` resolves once it is submitted and recorded."""

    unit: Any  # the SlurmExperimentUnit that added it
    work_unit_id: int
    trial_index: int
    cluster: SlurmClusterConfig
    members: tuple[tuple[str, JobComponent], ...]  # one for a job, several for a job group
    group: bool
    dependency: SlurmDependency | None
    future: asyncio.Future[None]

    @property
    def label(self) -> str:
        return "+".join(name for name, _ in self.members)


def describe(
    job: xm.Job | xm.JobGroup, where: str
) -> tuple[SlurmClusterConfig, tuple[tuple[str, JobComponent], ...], bool]:
    """Validate a job or job group: (its cluster, its named components, whether it is a group)."""
    if isinstance(job, xm.JobGroup):
        if not job.jobs:
            raise ValidationError(f"{where}: the job group is empty")
        members = []
        clusters: dict[str, SlurmClusterConfig] = {}
        for name, member in job.jobs.items():
            check_line(name, f"{where}: job group member name")
            cluster, component = job_component(member, f"{where}, job {name!r}")
            clusters[name] = cluster
            members.append((str(name), component))
        first = next(iter(clusters.values()))
        if any(c != first for c in clusters.values()):
            targets = ", ".join(f"{n} -> {c.name}" for n, c in clusters.items())
            raise ValidationError(
                f"{where}: a job group is one heterogeneous Slurm job, so all its jobs must target one "
                f"cluster ({targets}); add them as separate work units instead"
            )
        return first, tuple(members), True
    given = getattr(job, "name", None)
    if given is not None:  # stored as the job's name and shown by `xm-slurm show`: one line
        check_line(given, f"{where}: job name")
    cluster, component = job_component(job, where)
    name = str(given or component.executable.name)
    return cluster, ((name, component),), False


def make_pending(
    unit: Any,
    work_unit_id: int,
    trial_index: int,
    job: xm.Job | xm.JobGroup,
    dependency: SlurmDependency | None,
) -> PendingAdd:
    where = f"work unit {work_unit_id}"
    if dependency is not None and not isinstance(dependency, SlurmDependency):
        raise ValidationError(
            f"{where}: dependency={dependency!r} must be an xm_slurm dependency such as wu.after_completed()"
        )
    cluster, members, group = describe(job, where)
    return PendingAdd(unit, work_unit_id, trial_index, cluster, members, group, dependency, _future())


def _future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


@dataclasses.dataclass(eq=False)
class Submission:
    """One sbatch: a plain job, a job array or a heterogeneous job group."""

    cluster: SlurmClusterConfig
    components: list[JobComponent]
    trials: list[Trial]
    array: bool
    dependency: SlurmDependency | None
    adds: list[PendingAdd]  # task i of an array is adds[i]
    after: Submission | None = None  # a throttled sweep's previous chunk: submit after it, waiting for it

    @property
    def job_name(self) -> str:
        return job_name(self.adds[0].label)

    @property
    def throttle(self) -> int | None:
        return self.components[0].executor.array_throttle if self.array else None


def job_name(label: str) -> str:
    name = _NAME_CHARS.sub("_", label).strip("_") or "job"
    return name[:200]


def _corr_base(dep: SlurmDependency | None, task: int) -> int | None:
    """The array A when `dep` is exactly `afterok(A_task)`, else None."""
    if not isinstance(dep, SlurmJobDependencyAfterOK) or len(dep.job_ids) != 1:
        return None
    jid = SlurmJobId.parse(dep.job_ids[0])
    if jid.array_task != task or jid.het_offset is not None:
        return None
    return jid.job_id


def _corr_runs(
    bucket: list[PendingAdd],
) -> tuple[list[tuple[list[PendingAdd], SlurmDependency]], list[PendingAdd]]:
    """Maximal runs of trials whose t-th trial waits on task t of one array A (-> `aftercorr:A`), and the
    trials that are in no such run (two or more trials long)."""
    runs: list[tuple[list[PendingAdd], SlurmDependency]] = []
    rest: list[PendingAdd] = []
    i = 0
    while i < len(bucket):
        base = _corr_base(bucket[i].dependency, 0)
        j = i + 1
        if base is not None:
            while j < len(bucket) and _corr_base(bucket[j].dependency, j - i) == base:
                j += 1
        if base is not None and j - i > 1:
            runs.append((bucket[i:j], aftercorr(str(base))))
        else:
            rest.extend(bucket[i:j])
        i = j
    return runs, rest


def _array(adds: list[PendingAdd], dependency: SlurmDependency | None) -> Submission:
    first = adds[0].members[0][1]
    if len(adds) == 1:
        return Submission(
            adds[0].cluster, [first], [Trial(work_unit_id=adds[0].work_unit_id)], False, dependency, adds
        )
    bare = dataclasses.replace(first, args=(), env_vars={})
    trials = [Trial.of_component(a.work_unit_id, a.members[0][1]) for a in adds]
    return Submission(adds[0].cluster, [bare], trials, True, dependency, adds)


def _chunked(adds: list[PendingAdd], dependency: SlurmDependency | None, size: int) -> list[Submission]:
    """Arrays of at most `size` consecutive trials; chained when the executor throttles the sweep."""
    chunks = [_array(adds[k : k + size], dependency) for k in range(0, len(adds), size)]
    throttle = adds[0].members[0][1].executor.array_throttle
    if throttle is not None and len(chunks) > 1:
        if isinstance(dependency, SlurmDependencyOR):
            raise ValidationError(
                f"work units {adds[0].work_unit_id}-{adds[-1].work_unit_id}: a throttled sweep of "
                f"{len(adds)} trials needs {len(chunks)} arrays (MaxArraySize {size}) chained one after "
                f"another, which Slurm cannot combine with the any-of dependency {dependency}; use an "
                "all-of dependency (&), or drop array_throttle"
            )
        for previous, chunk in itertools.pairwise(chunks):
            chunk.after = previous
    return chunks


def plan(
    adds: Sequence[PendingAdd],
    max_array_size: Callable[[SlurmClusterConfig], int] | None = None,
) -> list[Submission]:
    """Group the adds into as few submissions as their cluster, image, executor, dependencies and the
    cluster's `MaxArraySize` (`max_array_size(cluster)`; unlimited if not given) allow."""
    submissions: list[Submission] = []
    buckets: list[list[PendingAdd]] = []
    for add in sorted(adds, key=lambda a: (a.trial_index, a.work_unit_id)):
        if add.group:
            components = [c for _, c in add.members]
            trial = Trial(work_unit_id=add.work_unit_id)
            submissions.append(Submission(add.cluster, components, [trial], False, add.dependency, [add]))
            continue
        component = add.members[0][1]
        for bucket in buckets:
            other = bucket[0].members[0][1]
            if (
                bucket[0].cluster == add.cluster
                and other.executable == component.executable
                and other.executor == component.executor
            ):
                bucket.append(add)
                break
        else:
            buckets.append([add])
    for bucket in buckets:
        size = max_array_size(bucket[0].cluster) if max_array_size is not None else len(bucket)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValidationError(
                f"max array size {size!r} of cluster {bucket[0].cluster.name!r} must be >= 1"
            )
        runs, rest = _corr_runs(bucket)
        for run, corr in runs:
            # A run is as long as the earlier array, so it fits unless the limit was lowered since: then
            # the first chunk keeps `aftercorr` and the others fall back to one afterok per trial.
            submissions += _chunked(run[:size], corr, size)
            rest += run[size:]
        by_dep: dict[str, list[PendingAdd]] = {}
        for add in sorted(rest, key=lambda a: (a.trial_index, a.work_unit_id)):
            key = "" if add.dependency is None else add.dependency.to_dependency_str()
            by_dep.setdefault(key, []).append(add)
        for same in by_dep.values():
            submissions += _chunked(same, same[0].dependency, size)
    return submissions


def trials_of(args: Any) -> tuple[list[Mapping[str, Any] | None], bool]:
    if isinstance(args, (list, tuple)):
        trials: list[Mapping[str, Any] | None] = []
        for i, trial in enumerate(args):
            if trial is not None and not isinstance(trial, Mapping):
                raise ValidationError(
                    f"sweep trial #{i} is {trial!r}; each trial must be a mapping such as "
                    "xm_slurm.JobArgs(args={...}, env_vars={...})"
                )
            trials.append(trial)
        return trials, True
    if args is not None and not isinstance(args, Mapping):
        raise ValidationError(f"args={args!r} must be a mapping (one work unit) or a list of them (a sweep)")
    return [args], False


def dependencies_of(dependency: Any, n: int, sweep: bool) -> list[SlurmDependency | None]:
    if isinstance(dependency, (list, tuple)):
        if not sweep:
            raise ValidationError(
                "dependency is a list, which is only for a sweep (one dependency per trial); "
                "combine dependencies with & or | instead"
            )
        if len(dependency) != n:
            raise ValidationError(
                f"dependency has {len(dependency)} entries for {n} trials; give one per trial (or one for all)"
            )
        deps = list(dependency)
    else:
        deps = [dependency] * n
    for i, dep in enumerate(deps):
        if dep is not None and not isinstance(dep, SlurmDependency):
            raise ValidationError(
                f"dependency #{i} is {dep!r}; use wu.after_completed(), xm_slurm.dependencies.afterok(...), ..."
            )
    return deps
