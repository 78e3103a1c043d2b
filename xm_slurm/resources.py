"""What a job asks for: `JobRequirements` (model layer, pure data), and `ResourceType` re-exported.

`JobRequirements` mirrors `xm.JobRequirements`: resources are given as a mapping or as keywords
(`CPU=4, RAM=16 * xm.GiB, GPU=1`, case-insensitive, `xm.ResourceType` keys accepted by name),
amounts are per task, `replicas` is the number of tasks (`--ntasks`).

Directive rules (see `JobRequirements.to_directives`):
  CPU                -> --cpus-per-task=N (whole CPUs only)
  MEMORY / RAM       -> --mem=<MiB>M when replicas == 1 (the one task owns the job's memory),
                        --mem-per-cpu=<ceil(MiB / cpus)>M when replicas > 1 (tasks may share nodes)
  EPHEMERAL_STORAGE  -> --tmp=<MiB>M
  GPU                -> --gpus-per-task=N: per replica, as in XManager (GPU=2, replicas=4 is 8 GPUs)
  named accelerator  -> --gpus-per-task=<type>:N from cluster.resources (MIG slices only this way), or
                        --gpus-per-task=N plus --constraint=<feature> from cluster.features; a gres
                        other than gpu ("shard:h100") -> --gres per node (see topology.py)
  replicas           -> --ntasks=N;  location -> --nodelist=...
  nodes, tasks_per_node -> --nodes=N, --ntasks-per-node=N;  GPU=Topology("AxB") -> A per task x B tasks
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.errors import ValidationError
from xm_slurm.resource_types import ResourceType  # public here too (users import it from here)
from xm_slurm.topology import Topology, accelerator_directives, task_layout

#: An amount as a launch script writes it: `CPU=4`, `RAM=16 * xm.GiB`, `GPU="2"` (0.4.x's name).
ResourceQuantity = int | float | str

#: Every accelerator `ResourceType` (GPU and the named ones): what `SlurmClusterConfig.resources` and
#: `features` may map, and what a job asks for at most one kind of (0.4.x's name).
AcceleratorType: frozenset[ResourceType] = frozenset(r for r in ResourceType if r.is_accelerator)


class FeatureType(enum.Enum):
    """A node property a job may need beyond a count of resources (0.4.x's name).

    A site spells these as its own Slurm node features; this enum names the property, not the spelling.
    """

    NVIDIA_MIG = "nvidia_mig"  # GPUs split into MIG slices
    NVIDIA_NVLINK = "nvidia_nvlink"  # GPUs of a node joined by NVLink

    def __str__(self) -> str:
        return self.name


# `replace()`: a keyword left out keeps the current value (None is a value: "no cluster", "no location").
_KEEP: Any = object()

log = logging.getLogger(__name__)

_MIB = 1024**2
#: Most whole units (CPUs, accelerators) one task may ask for. Slurm keeps cpus-per-task in 16 bits, with
#: 0xFFFE/0xFFFF as its NO_VAL/INFINITE sentinels, so 65533 is the largest count it can even represent; no
#: node comes near it (the largest hold a few hundred CPUs and at most a few dozen GPUs).
MAX_UNITS_PER_TASK = 0xFFFD


def _resource_key(key: object) -> ResourceType:
    if isinstance(key, ResourceType):
        return key
    if isinstance(key, str):
        return ResourceType[key]
    # An `xm.ResourceType` (or any enum) maps by member name: xm.ResourceType.V100 -> V100.
    name = getattr(key, "name", None)
    if isinstance(name, str) and name.upper() in ResourceType.__members__:
        return ResourceType[name]
    raise ValidationError(
        f"unknown resource {key!r}; use a ResourceType member or its name such as 'CPU' or 'A100'"
    )


def _amount(resource: ResourceType, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValidationError(f"{resource}={value!r} is not a number; give a positive int or float")
    try:
        amount = float(value)
    except ValueError:
        raise ValidationError(f"{resource}={value!r} is not a number; give a positive int or float") from None
    if not math.isfinite(amount) or amount <= 0:
        raise ValidationError(f"{resource}={value!r} must be a finite number > 0")
    if resource in (ResourceType.CPU,) or resource.is_accelerator:
        if not amount.is_integer():
            raise ValidationError(f"{resource}={value!r}: Slurm allocates whole units; use an integer >= 1")
        if amount > MAX_UNITS_PER_TASK:
            raise ValidationError(
                f"{resource}={value!r} per task is more than any node holds; Slurm cannot represent more "
                f"than {MAX_UNITS_PER_TASK} per task. Give the count one task uses (and replicas=N for "
                "several tasks)"
            )
    elif amount < _MIB:
        raise ValidationError(
            f"{resource}={value!r} bytes is less than 1 MiB; amounts are in bytes, e.g. 16 * xm.GiB"
        )
    return amount


_NODELIST = re.compile(r"[A-Za-z0-9_.\-\[\],]+")


class JobRequirements:
    """Resources of each task of a job, the number of tasks and where to run (validated here)."""

    task_requirements: dict[ResourceType, float]
    accelerator: ResourceType | None
    replicas: int
    nodes: int | None
    tasks_per_node: int | None
    topology: Topology | None
    location: str | None
    cluster: SlurmClusterConfig | None

    def __init__(
        self,
        resources: Mapping[Any, Any] | None = None,
        *,
        replicas: int | None = None,
        location: str | None = None,
        cluster: SlurmClusterConfig | None = None,
        nodes: int | None = None,
        tasks_per_node: int | None = None,
        **kw_resources: Any,
    ) -> None:
        self.task_requirements = {}
        self.accelerator = None
        self.topology = None
        for key, value in [*(resources or {}).items(), *kw_resources.items()]:
            if isinstance(key, str) and key.lower() == "replicas":
                if replicas is not None:
                    raise ValidationError("replicas given twice; pass it once as replicas=N")
                replicas = value
                continue
            resource = _resource_key(key)
            if resource in self.task_requirements:
                raise ValidationError(f"{resource} given twice ({key!r}); give each resource once")
            if isinstance(value, Topology):
                if not resource.is_accelerator:
                    raise ValidationError(f"{resource}={value!r}: a Topology is an accelerator's amount")
                self.topology, value = value, value.gpus_per_task
            amount = _amount(resource, value)
            if resource.is_accelerator:
                if self.accelerator is not None:
                    raise ValidationError(
                        f"two accelerators requested ({self.accelerator} and {resource}); a job uses one kind"
                    )
                self.accelerator = resource
            self.task_requirements[resource] = amount

        self.replicas, self.nodes, self.tasks_per_node = task_layout(
            replicas, nodes, tasks_per_node, self.topology
        )

        if location is not None and (not isinstance(location, str) or not _NODELIST.fullmatch(location)):
            raise ValidationError(
                f"location={location!r} is not a Slurm node list; use e.g. 'node01' or 'node[01-04]'"
            )
        self.location = location

        if cluster is not None:
            if not isinstance(cluster, SlurmClusterConfig):
                raise ValidationError(f"cluster={cluster!r} must be a SlurmClusterConfig")
            if self.accelerator is not None:
                self._accelerator_directives(cluster)  # raises if the cluster lacks it
        self.cluster = cluster

    @property
    def cpus(self) -> int | None:
        cpu = self.task_requirements.get(ResourceType.CPU)
        return None if cpu is None else int(cpu)

    @property
    def gres(self) -> tuple[str, str | None, str | None] | None:
        """(gres name, type, node feature) of the accelerator on this cluster (`gres_request`), or None."""
        return None if self.accelerator is None else gres_request(self.accelerator, self.cluster)

    @property
    def accelerator_count(self) -> int:
        return 0 if self.accelerator is None else int(self.task_requirements[self.accelerator])

    def with_recommended(self) -> dict[ResourceType, float]:
        """Each task's resources, with what the cluster recommends for this accelerator where the job sets
        none (`SlurmClusterConfig.recommended_for`); a set value that differs is kept and logged once."""
        tr = dict(self.task_requirements)
        if self.cluster is None or self.accelerator is None:
            return tr
        recommended = self.cluster.recommended_for(self.accelerator, self.accelerator_count)
        for resource, amount in recommended.items():
            if resource not in tr:
                tr[resource] = float(math.ceil(amount))
            elif tr[resource] != amount:
                _warn_once(
                    "%s=%s per task differs from what %s recommends for %s=%d (%s); keeping yours",
                    resource,
                    _shown(resource, tr[resource]),
                    self.cluster.name,
                    self.accelerator,
                    self.accelerator_count,
                    _shown(resource, amount),
                )
        return tr

    def to_directives(self) -> list[str]:
        """sbatch options (without `#SBATCH`) for these requirements, following the rules above."""
        out = self._layout_directives()
        tr = self.with_recommended()
        cpus = int(tr[ResourceType.CPU]) if ResourceType.CPU in tr else None
        if cpus is not None:
            out.append(f"--cpus-per-task={cpus}")
        if ResourceType.MEMORY in tr:
            mib = math.ceil(tr[ResourceType.MEMORY] / _MIB)
            if self.replicas == 1:
                out.append(f"--mem={mib}M")
            else:
                out.append(f"--mem-per-cpu={math.ceil(mib / (cpus or 1))}M")
        if ResourceType.EPHEMERAL_STORAGE in tr:
            out.append(f"--tmp={math.ceil(tr[ResourceType.EPHEMERAL_STORAGE] / _MIB)}M")
        if self.accelerator is not None:
            out += self._accelerator_directives(self.cluster)
        if self.location:
            out.append(f"--nodelist={self.location}")
        return out

    def _layout_directives(self) -> list[str]:
        out = [f"--ntasks={self.replicas}"]
        if self.nodes is not None:
            out.append(f"--nodes={self.nodes}")
        if self.tasks_per_node is not None:
            out.append(f"--ntasks-per-node={self.tasks_per_node}")
        return out + (self.topology.directives() if self.topology is not None else [])

    def _accelerator_directives(self, cluster: SlurmClusterConfig | None) -> list[str]:
        assert self.accelerator is not None
        gres = gres_request(self.accelerator, cluster)
        return accelerator_directives(gres, self.accelerator_count, self.replicas, self.tasks_per_node)

    def replace(
        self,
        cluster: SlurmClusterConfig | None = _KEEP,
        *,
        replicas: int | None = _KEEP,
        location: str | None = _KEEP,
        **kw_resources: ResourceQuantity,
    ) -> JobRequirements:
        """A copy with `cluster` (and `replicas`, `location`) replaced and `kw_resources` set on top of the
        current resources, as in 0.4.x: `req.replace(other_cluster, GPU=2)` keeps CPU and memory. Checked
        again, e.g. against the new cluster's accelerators."""
        resources: dict[Any, Any] = dict(self.task_requirements)
        if self.topology is not None and self.accelerator is not None:
            resources[self.accelerator] = self.topology  # keeps its switches; a new amount replaces it
        for key, value in kw_resources.items():
            resource = _resource_key(key)
            if resource.is_accelerator:  # a job uses one kind: a new one replaces the old
                resources = {r: v for r, v in resources.items() if not r.is_accelerator}
            resources.pop(resource, None)  # RAM=... replaces MEMORY, an alias
            resources[key] = value
        return JobRequirements(
            resources,
            replicas=self.replicas if replicas is _KEEP else replicas,
            location=self.location if location is _KEEP else location,
            cluster=self.cluster if cluster is _KEEP else cluster,
            nodes=self.nodes,
            tasks_per_node=self.tasks_per_node,
        )

    def __repr__(self) -> str:
        parts = [
            f"{r.name}={self.topology!r}" if r is self.accelerator and self.topology else f"{r.name}={v:g}"
            for r, v in self.task_requirements.items()
        ]
        if self.replicas != 1 and self.topology is None:
            parts.append(f"replicas={self.replicas}")
        parts += [f"{f}={getattr(self, f)}" for f in ("nodes", "tasks_per_node") if getattr(self, f)]
        if self.location:
            parts.append(f"location={self.location!r}")
        if self.cluster is not None:
            parts.append(f"cluster={self.cluster.name!r}")
        return f"JobRequirements({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobRequirements):
            return NotImplemented
        return (self.task_requirements, self.replicas, self.location, self.cluster) == (
            other.task_requirements,
            other.replicas,
            other.location,
            other.cluster,
        ) and (self.nodes, self.tasks_per_node, self.topology) == (
            other.nodes,
            other.tasks_per_node,
            other.topology,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like xm.JobRequirements


_warned: set[str] = set()


def _warn_once(message: str, *args: object) -> None:
    """A departure from a site's recommendation is worth one line per process, not one per render."""
    text = message % args
    if text not in _warned and len(_warned) < 1000:
        _warned.add(text)
        log.warning("%s", text)


def _shown(resource: ResourceType, amount: float) -> str:
    return f"{amount / 1024**3:g} GiB" if resource is ResourceType.MEMORY else f"{amount:g}"


def gres_request(
    accelerator: ResourceType, cluster: SlurmClusterConfig | None
) -> tuple[str, str | None, str | None]:
    """How `accelerator` is asked for on `cluster`: (gres name, gres type or None, node feature or None).

    A bare map value ("a100") is a GPU type, a value with a colon ("shard:h100") a full gres name and type.
    """
    resources = cluster.resources if cluster is not None else {}
    features = cluster.features if cluster is not None else {}
    if accelerator in resources:
        gres = resources[accelerator]
        name, _, gres_type = (gres if ":" in gres else f"gpu:{gres}").partition(":")
        return name, gres_type or None, None
    if accelerator.is_mig:
        # A MIG slice is its own gres type; a feature would only pick the node, then any whole GPU on it.
        name = cluster.name if cluster is not None else "(no cluster given)"
        mapped = ", ".join(sorted(str(r) for r in resources if r.is_mig)) or "none"
        raise ValidationError(
            f"MIG profile {accelerator} ({accelerator.mig_profile}) is not mapped on cluster {name!r} "
            f"(its MIG gres types: {mapped}); add it to SlurmClusterConfig(resources={{ResourceType."
            f"{accelerator}: '<the site's gres type, e.g. {accelerator.mig_profile}>'}})"
        )
    if accelerator in features:
        return "gpu", None, features[accelerator]
    if accelerator is ResourceType.GPU:
        return "gpu", None, None
    name = cluster.name if cluster is not None else "(no cluster given)"
    known = ", ".join(sorted(str(r) for r in {*resources, *features})) or "none"
    raise ValidationError(
        f"accelerator {accelerator} is not available on cluster {name!r} (its gres/feature maps know: {known}); "
        f"request GPU=N or add {accelerator} to SlurmClusterConfig(resources=...)"
    )
