"""The records of the metadata store: frozen, keyword-only dataclasses.

A `*Patch` describes a change: a field left `None` is left unchanged. Collections are stored as tuples or
frozensets so that every model is hashable and can be shared between threads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

from xm_slurm.errors import MetadataError, ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.ssh_config import READABLE_FIELDS, STORED_FIELDS, SlurmSSHConfig
from xm_slurm.text_rules import (
    MAX_ARGS,
    MAX_LINE,
    MAX_TEXT,
    MAX_TITLE,
    check_id,
    check_line,
    check_name,
    check_text,
)

_Model = TypeVar("_Model")
#: A job row recorded before its sbatch (experiment/handles.py `PendingJob`):
#: `pending:<submission token>:<unix seconds>[_<array task> | +<component>]`.
PENDING_JOB_ID = re.compile(r"pending:xms-[0-9a-f]{24}:\d+(?:_\d+|\+\d+)?")

#: How versions before the `retry_of` field (store revision 0006) named a retry:
#: `<name> [retry of <old Slurm job id>]`. Only ever read (`legacy_retry_lineage`), never written.
_LEGACY_RETRY_NAME = re.compile(r"(.*) \[retry of (\d+(?:_\d+|\+\d+)?)\]", re.DOTALL)

CONFIG_ARTIFACT_NAMES: tuple[str, ...] = ("GRAPHVIZ", "PYTHON")
ConfigArtifactName = Literal["GRAPHVIZ", "PYTHON"]


class ConflictError(MetadataError):
    """A write clashes with what is stored: a work unit id or identity already taken with other content."""


class ExperimentUnitRole(enum.Enum):
    """What a stored unit is: a work unit, or an auxiliary unit (e.g. a TensorBoard beside a sweep)."""

    WORK_UNIT = "WORK_UNIT"
    AUX_UNIT = "AUX_UNIT"


def require_role(value: object, what: str) -> ExperimentUnitRole:
    """An `ExperimentUnitRole`, or its name as text (`"AUX_UNIT"`, as JSON bodies carry it)."""
    if isinstance(value, ExperimentUnitRole):
        return value
    if isinstance(value, str) and value in ExperimentUnitRole.__members__:
        return ExperimentUnitRole[value]
    names = " or ".join(f"ExperimentUnitRole.{r.name}" for r in ExperimentUnitRole)
    raise ValidationError(f"{what} must be {names}, got {value!r:.100}")


def _set(instance: object, name: str, value: object) -> None:
    # Normalising a field of a frozen dataclass in __post_init__ needs the base setattr.
    object.__setattr__(instance, name, value)


def from_store(cls: type[_Model], **fields: Any) -> _Model:
    """A model as stored, without the write checks: a row written by an older version (or by hand) must
    still read, so that one bad row never hides a whole experiment. Only writes are checked."""
    instance = object.__new__(cls)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name not in fields and field.default is not dataclasses.MISSING:
            _set(instance, field.name, field.default)  # a field newer than the row (or answer)
    for name, value in fields.items():
        _set(instance, name, value)
    return instance


def check_job_id(value: object, what: str) -> str:
    """A stored job id: a Slurm job id (`SlurmJobId.parse`) or a pending row id, without spaces."""
    check_line(value, what, MAX_LINE)
    assert isinstance(value, str)
    if PENDING_JOB_ID.fullmatch(value):
        return value
    if value.strip() == value:
        try:
            SlurmJobId.parse(value)
            return value
        except ValidationError:
            pass
    raise ValidationError(
        f"{what}={value!r:.100} is not a Slurm job id (e.g. 1234, 1234_7, 1234_[0-9], 1234+1, 1234;cluster) "
        "nor a pending row id (pending:xms-<24 hex digits>:<unix seconds>)"
    )


def check_retry_of(value: object, what: str = "SlurmJob.retry_of") -> str | None:
    """None, or the Slurm job id (`SlurmJobId.parse`, never a pending row id) of the job a retry replaces."""
    if value is None:
        return None
    if isinstance(value, SlurmJobId):
        return value.to_string()
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    check_line(value, what, MAX_LINE)
    assert isinstance(value, str)
    try:
        if value.strip() == value:
            SlurmJobId.parse(value)
            return value
    except ValidationError:
        pass
    raise ValidationError(
        f"{what}={value!r:.100} must be None or the Slurm job id of the job this one retries "
        "(e.g. 1234, 1234_7, 1234+1)"
    )


def legacy_retry_lineage(name: str) -> tuple[str, str | None]:
    """`(name, retry_of)` of a job name as versions before the `retry_of` field wrote a retry's name
    (`<name> [retry of <old id>]`, the old id a job, an array task or a het component); `(name, None)` for
    any other name.

    A read-side fallback only, for rows those versions wrote: the SQL store's revision 0006 moves the mark
    into the field (with this same rule), and the REST codec and server apply it to an older server's answer
    or an older client's request (which carry no `retry_of` key). Never applied to a job that has the field,
    so a name that merely contains the mark stays a name."""
    m = _LEGACY_RETRY_NAME.fullmatch(name)
    return (name, None) if m is None else (m.group(1), m.group(2))


def check_stored_ssh_config(text: str) -> str:
    """A job row's SSH config as JSON: null, {} or an object with only host, port, user and host_public_key.

    Connection options (client_keys, known_hosts, config_files, anything else) are refused: a reader
    takes them from its own machine, never from the store (a stored `config_files` could name a
    ProxyCommand that every reader would run).
    """
    check_text(text, "SlurmJob.slurm_ssh_config", MAX_TEXT)
    return _check_ssh_json(text)


@functools.lru_cache(maxsize=64)
def _check_ssh_json(text: str) -> str:
    # Cached: every job of a sweep carries the same text, checked once rather than once per row.
    what = "SlurmJob.slurm_ssh_config"
    try:
        data = json.loads(text)
    except ValueError:
        raise ValidationError(f"{what}={text!r:.100} is not JSON of an SSH config") from None
    if data is None:
        return text
    if not isinstance(data, dict):
        raise ValidationError(
            f"{what}={text!r:.100} must be a JSON object (host, port, user, host_public_key)"
        )
    extra = sorted(k for k, v in data.items() if k not in READABLE_FIELDS and v is not None)
    if extra:
        raise ValidationError(
            f"{what} holds {', '.join(repr(k) for k in extra)}: a stored SSH config holds only "
            f"{', '.join(STORED_FIELDS)}; keys, known_hosts and config files come from each reader's own "
            "machine (XM_SLURM_SSH_CONFIG, ~/.ssh/config)"
        )
    if data:
        try:
            SlurmSSHConfig.from_dict(data)
        except (KeyError, TypeError) as e:
            raise ValidationError(f"{what}={text!r:.100} is not a valid SSH config: {e}") from None
    return text


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
        if self.title is not None:
            check_line(self.title, "ExperimentPatch.title", MAX_TITLE)
        for field in ("description", "note"):
            value = getattr(self, field)
            if value is not None:
                check_text(value, f"ExperimentPatch.{field}", MAX_TEXT)
        if self.tags is not None:
            if isinstance(self.tags, str) or not isinstance(self.tags, Iterable):
                raise ValidationError(
                    f"ExperimentPatch.tags must be a collection of strings, got {self.tags!r:.100}"
                )
            tags = frozenset(self.tags)
            for tag in tags:
                check_line(tag, "ExperimentPatch.tags[]", MAX_LINE)
            _set(self, "tags", tags)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmJob:
    """One submitted Slurm job. `slurm_ssh_config` is kept as JSON text (see `ssh_config_to_json`).

    `retry_of`: None, or the Slurm job id (as `SlurmJobId.to_string()` spells it, e.g. `1234_7`) of the job
    of the same work unit, on the same cluster, that this job retries. A Slurm id rather than a store row id:
    it is what a reader already holds for every job, it stays the same while the launcher swaps pending rows
    for real ones (row ids do not), and it reaches REST clients, which never see row ids. A unit's current
    jobs are those no other job of the unit names in `retry_of`; a retry of a retry names the retry."""

    name: str
    slurm_job_id: str
    slurm_ssh_config: str
    retry_of: str | None = None
    # The last known state (`api.job_states`): set by reads, never by inserts; not compared.
    state: str | None = dataclasses.field(default=None, compare=False)
    state_reason: str | None = dataclasses.field(default=None, compare=False)
    exit_code: int | None = dataclasses.field(default=None, compare=False)
    state_seen_at: dt.datetime | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_line(self.name, "SlurmJob.name", MAX_LINE)
        if isinstance(self.slurm_job_id, int) and not isinstance(self.slurm_job_id, bool):
            _set(self, "slurm_job_id", str(self.slurm_job_id))
        check_job_id(self.slurm_job_id, "SlurmJob.slurm_job_id")
        _set(self, "slurm_ssh_config", check_stored_ssh_config(ssh_config_to_json(self.slurm_ssh_config)))
        _set(self, "retry_of", check_retry_of(self.retry_of))
        if self.retry_of is not None and self.retry_of == self.slurm_job_id:
            raise ValidationError(f"SlurmJob.retry_of={self.retry_of!r} names the job itself")

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
        check_name(self.name, "Artifact.name")
        check_text(self.uri, "Artifact.uri", MAX_TEXT)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConfigArtifact:
    name: ConfigArtifactName
    uri: str

    def __post_init__(self) -> None:
        check_name(self.name, "ConfigArtifact.name")
        if self.name not in CONFIG_ARTIFACT_NAMES:
            raise ValidationError(
                f"ConfigArtifact.name must be one of {', '.join(CONFIG_ARTIFACT_NAMES)}, got {self.name!r}"
            )
        # The "URI" of a config artifact is the whole config (Python or Graphviz text): the args cap.
        check_text(self.uri, "ConfigArtifact.uri", MAX_ARGS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentUnitPatch:
    identity: str | None = None
    args: str | None = None  # the unit's arguments, serialised by the caller (the experiment layer uses JSON)
    role: ExperimentUnitRole | None = None

    def __post_init__(self) -> None:
        if self.identity is not None:
            check_line(self.identity, f"{type(self).__name__}.identity", MAX_LINE)
        if self.args is not None:
            check_text(self.args, f"{type(self).__name__}.args", MAX_ARGS)
        if self.role is not None:
            _set(self, "role", require_role(self.role, f"{type(self).__name__}.role"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkUnitPatch(ExperimentUnitPatch):
    """A unit to insert (the role defaults to a work unit; `ExperimentUnitRole.AUX_UNIT` for auxiliary ones)."""

    wid: int
    role: ExperimentUnitRole = ExperimentUnitRole.WORK_UNIT

    def __post_init__(self) -> None:
        super().__post_init__()
        check_id(self.wid, "WorkUnitPatch.wid (1-based)")
        if self.role is None:
            raise ValidationError("WorkUnitPatch.role must be an ExperimentUnitRole, got None")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentUnit:
    identity: str = ""
    args: str | None = None
    jobs: tuple[SlurmJob, ...] = ()
    role: ExperimentUnitRole = ExperimentUnitRole.WORK_UNIT

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


#: Rows of one `list_experiments` page: the default and the most.
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
MAX_OFFSET = 2**63 - 1


def require_page(limit: object, offset: object) -> tuple[int, int]:
    """A page of a listing: `limit` in 1..MAX_LIST_LIMIT rows after skipping `offset` (>= 0)."""
    if not (isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= MAX_LIST_LIMIT):
        raise ValidationError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r:.100}")
    if not (isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset <= MAX_OFFSET):
        raise ValidationError(f"offset must be an integer from 0 to {MAX_OFFSET}, got {offset!r:.100}")
    return limit, offset


def require_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{what} must be True or False, got {value!r:.100}")
    return value


def require_id(value: object, what: str) -> int:
    """An experiment or work unit id: an integer in 1 .. 2**63 - 1 (`text_rules.check_id`)."""
    return check_id(value, what)


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
        check_id(pair[0], "insert_jobs: a work unit id (wid)")
    return pairs


def job_refs_of(items: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """Validate the `(wid, slurm_job_id)` pairs naming job rows to remove."""
    refs = list(items)
    for ref in refs:
        if not (isinstance(ref, tuple) and len(ref) == 2):
            raise ValidationError(f"replace_jobs: remove expects (wid, slurm_job_id) pairs, got {ref!r:.200}")
        require_id(ref[0], "replace_jobs: a wid to remove a job from")
        # Only a key to delete by: any one-line text, so that a bad row an older version stored can go.
        check_line(ref[1], "replace_jobs: a slurm_job_id to remove", MAX_LINE)
        if not ref[1]:
            raise ValidationError("replace_jobs: a slurm_job_id to remove must not be empty")
    return refs


def wids_of(items: Iterable[int], what: str) -> list[int]:
    """Validate a list of work unit ids."""
    if isinstance(items, (str, int)):
        raise ValidationError(f"{what} must be a list of work unit ids, got {items!r:.100}")
    wids = list(items)
    for wid in wids:
        require_id(wid, f"{what}: a work unit id (wid)")
    return wids
