"""The records of the metadata store: frozen, keyword-only dataclasses (SPEC §2).

A `*Patch` describes a change: a field left `None` is left unchanged. Collections are stored as tuples or
frozensets so that every model is hashable and can be shared between threads.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from xm_slurm.errors import ValidationError

CONFIG_ARTIFACT_NAMES: tuple[str, ...] = ("GRAPHVIZ", "PYTHON")
ConfigArtifactName = Literal["GRAPHVIZ", "PYTHON"]


class ExperimentUnitRole(enum.Enum):
    WORK_UNIT = "WORK_UNIT"
    AUX_UNIT = "AUX_UNIT"


def _set(instance: object, name: str, value: object) -> None:
    # Normalising a field of a frozen dataclass in __post_init__ needs the base setattr.
    object.__setattr__(instance, name, value)


def _require_str(value: object, field: str, model: str) -> None:
    if not isinstance(value, str):
        raise ValidationError(f"{model}.{field} must be a string, got {value!r}")


def ssh_config_to_json(config: object) -> str:
    """A JSON text for an SSH config: a `to_dict()`-able object, a dataclass, a mapping, or a string as is."""
    if config is None:
        return "null"
    if isinstance(config, str):
        return config
    if hasattr(config, "to_dict"):
        data: Any = config.to_dict()
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        data = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise ValidationError(
            f"SlurmJob.slurm_ssh_config must be a dataclass, a mapping or a JSON string, got {config!r}"
        )
    try:
        return json.dumps(data, sort_keys=True, default=str)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"SlurmJob.slurm_ssh_config is not JSON-serialisable: {e}") from e


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentPatch:
    title: str | None = None
    description: str | None = None
    note: str | None = None
    tags: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for field in ("title", "description", "note"):
            value = getattr(self, field)
            if value is not None:
                _require_str(value, field, "ExperimentPatch")
        if self.tags is not None:
            if isinstance(self.tags, str):
                raise ValidationError(
                    f"ExperimentPatch.tags must be a collection of strings, got {self.tags!r}"
                )
            tags = frozenset(self.tags)
            for tag in tags:
                _require_str(tag, "tags[]", "ExperimentPatch")
            _set(self, "tags", tags)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmJob:
    """One submitted Slurm job. `slurm_ssh_config` is kept as JSON text (see `ssh_config_to_json`)."""

    name: str
    slurm_job_id: str
    slurm_ssh_config: str

    def __post_init__(self) -> None:
        _require_str(self.name, "name", "SlurmJob")
        if isinstance(self.slurm_job_id, int) and not isinstance(self.slurm_job_id, bool):
            _set(self, "slurm_job_id", str(self.slurm_job_id))
        _require_str(self.slurm_job_id, "slurm_job_id", "SlurmJob")
        if not self.slurm_job_id:
            raise ValidationError("SlurmJob.slurm_job_id must not be empty, e.g. '1234' or '1234_7'")
        _set(self, "slurm_ssh_config", ssh_config_to_json(self.slurm_ssh_config))

    def ssh_config_dict(self) -> Any:
        """The SSH config decoded from JSON (or the raw string if it is not JSON)."""
        try:
            return json.loads(self.slurm_ssh_config)
        except ValueError:
            return self.slurm_ssh_config


@dataclasses.dataclass(frozen=True, kw_only=True)
class Artifact:
    name: str
    uri: str

    def __post_init__(self) -> None:
        _require_str(self.name, "name", type(self).__name__)
        _require_str(self.uri, "uri", type(self).__name__)
        if not self.name:
            raise ValidationError(f"{type(self).__name__}.name must not be empty")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConfigArtifact:
    name: ConfigArtifactName
    uri: str

    def __post_init__(self) -> None:
        if self.name not in CONFIG_ARTIFACT_NAMES:
            raise ValidationError(
                f"ConfigArtifact.name must be one of {', '.join(CONFIG_ARTIFACT_NAMES)}, got {self.name!r}"
            )
        _require_str(self.uri, "uri", "ConfigArtifact")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentUnitPatch:
    identity: str | None = None
    args: str | None = None  # the unit's arguments, serialised by the caller (the experiment layer uses JSON)

    def __post_init__(self) -> None:
        if self.identity is not None:
            _require_str(self.identity, "identity", type(self).__name__)
        if self.args is not None:
            _require_str(self.args, "args", type(self).__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkUnitPatch(ExperimentUnitPatch):
    wid: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.wid, int) or isinstance(self.wid, bool) or self.wid < 1:
            raise ValidationError(f"WorkUnitPatch.wid must be an integer >= 1 (1-based), got {self.wid!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentUnit:
    identity: str = ""
    args: str | None = None
    jobs: tuple[SlurmJob, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "jobs", tuple(self.jobs))


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkUnit(ExperimentUnit):
    wid: int
    artifacts: tuple[Artifact, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _set(self, "artifacts", tuple(self.artifacts))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Experiment:
    xid: int
    title: str = ""
    description: str | None = None
    note: str | None = None
    tags: frozenset[str] = frozenset()
    work_units: tuple[WorkUnit, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    config_artifacts: tuple[ConfigArtifact, ...] = ()
    created_at: str | None = None  # ISO 8601, UTC

    def __post_init__(self) -> None:
        _set(self, "tags", frozenset(self.tags))
        for field in ("work_units", "artifacts", "config_artifacts"):
            _set(self, field, tuple(getattr(self, field)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentSummary:
    """One row of `list_experiments`: the experiment without its work units."""

    xid: int
    title: str = ""
    description: str | None = None
    note: str | None = None
    tags: frozenset[str] = frozenset()
    num_work_units: int = 0
    created_at: str | None = None

    def __post_init__(self) -> None:
        _set(self, "tags", frozenset(self.tags))


def require_id(value: object, what: str) -> int:
    """An experiment or work unit id: a positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(f"{what} must be an integer >= 1, got {value!r:.100}")
    return value


#: Most work unit ids one `reserve_work_unit_ids` call hands out.
MAX_RESERVE = 1_000_000


def require_reserve_count(value: object) -> int:
    """How many work unit ids to reserve at once: an integer in 1..MAX_RESERVE."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_RESERVE:
        raise ValidationError(
            f"the count of work unit ids to reserve must be an integer in 1..{MAX_RESERVE:,}, got {value!r:.100}"
        )
    return value


def jobs_of(items: Iterable[tuple[int, SlurmJob]]) -> list[tuple[int, SlurmJob]]:
    """Validate the `(wid, SlurmJob)` pairs of a batch insert."""
    pairs = list(items)
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], SlurmJob)):
            raise ValidationError(f"insert_jobs expects (wid, SlurmJob) pairs, got {pair!r}")
        if not isinstance(pair[0], int) or pair[0] < 1:
            raise ValidationError(f"insert_jobs: wid must be an integer >= 1, got {pair[0]!r}")
    return pairs


def job_refs_of(items: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """Validate the `(wid, slurm_job_id)` pairs naming job rows to remove."""
    refs = list(items)
    for ref in refs:
        if not (isinstance(ref, tuple) and len(ref) == 2 and isinstance(ref[1], str) and ref[1]):
            raise ValidationError(f"replace_jobs: remove expects (wid, slurm_job_id) pairs, got {ref!r:.200}")
        require_id(ref[0], "replace_jobs: a wid to remove a job from")
    return refs


def wids_of(items: Iterable[int], what: str) -> list[int]:
    """Validate a list of work unit ids."""
    if isinstance(items, (str, int)):
        raise ValidationError(f"{what} must be a list of work unit ids, got {items!r:.100}")
    wids = list(items)
    for wid in wids:
        require_id(wid, f"{what}: a work unit id (wid)")
    return wids
