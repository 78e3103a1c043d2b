"""A retried job's dependency, re-pointed at the current attempts of the jobs it names (pure: no I/O).

Where the dependency is known: in the job's script, `#SBATCH --dependency=...` (the rendering writes it
there, see `rendering.script`). A retry needs that script anyway (it resubmits it), it stays in the
experiment's folder on the cluster, it is there for experiments launched by any version, and each retry's
copy gets the re-pointed value written back (`with_dependency`), so a retry of a retry reads what its
previous attempt waited for. `scontrol show job` forgets a job `MinJobAge` seconds after its end and `sacct`
has no dependency field, so neither can tell it later. (The sbatch command line of a retry also carries
it, so accounting's `SubmitLine` shows it too.)

Re-pointing, for each job id a term names, along the experiment's stored lineage (`retry_of`) and the
retries made by the same command (`Lineage`):

* a job, array task or het component that was retried -> its newest attempt (`123_4` -> `130_4`);
* a whole array or job group some member of which was retried -> each member's newest attempt, a job
  whose recorded members are all current written as the whole job (`afterok:123` -> `afterok:123_0:...:130`);
* `aftercorr`: task i of the retried array waits on the newest attempt of task i (`aftercorr:130`), so
  tasks whose partners were retried into different arrays are resubmitted apart (`Dependency.per_task`);
* any other id (not retried, or not of this experiment) is kept.

Slurm silently drops a dependency on a job it does not know, so the retry checks the re-pointed targets'
states before submitting anything (`retrying`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator

from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId

#: Dependency kinds that need their jobs to succeed: a failed target is never satisfied.
NEEDS_SUCCESS = frozenset({"afterok", "aftercorr"})
_KINDS = frozenset({"after", "afterany", "afterok", "afternotok", "aftercorr", "afterburstbuffer"})
_DIRECTIVE = re.compile(r"^#SBATCH[ \t]+(?:--dependency=|-d[ \t]*)(\S*)[ \t]*\n?", re.MULTILINE)
_AFTER_TIME = re.compile(r"(.*?)(\+\d+)?")


@dataclasses.dataclass(frozen=True)
class Term:
    """One `kind:id[:id...]` term (`singleton` has no ids). An `after` id may carry `+<minutes>`."""

    kind: str
    ids: tuple[SlurmJobId, ...] = ()
    delays: tuple[str, ...] = ()  # `+<minutes>` per id of an `after` term ("" for none)

    def text(self, ids: Iterable[tuple[SlurmJobId, str]]) -> str:
        if self.kind == "singleton":
            return "singleton"
        return ":".join([self.kind, *(f"{i}{delay}" for i, delay in ids)])


@dataclasses.dataclass(frozen=True)
class Dependency:
    """A parsed `--dependency` value: terms joined by `,` (all of) or `?` (any of)."""

    terms: tuple[Term, ...]
    separator: str

    @classmethod
    def parse(cls, value: str) -> Dependency:
        if "," in value and "?" in value:
            raise ValidationError(f"dependency {value!r} mixes ',' and '?', which Slurm refuses")
        separator = "?" if "?" in value else ","
        return cls(tuple(_term(part, value) for part in value.split(separator)), separator)

    def per_task(self, lineage: Lineage, task: int | None) -> tuple[str, list[tuple[str, SlurmJobId]]]:
        """This dependency re-pointed for array task `task` (None: a plain job or group), and its targets
        as `(kind, job id)` (whole jobs included as such)."""
        texts: list[str] = []
        targets: list[tuple[str, SlurmJobId]] = []
        for term in self.terms:
            ids: list[tuple[SlurmJobId, str]] = []
            for job_id, delay in zip(term.ids, term.delays, strict=True):
                partner = lineage.partner(job_id, task) if term.kind == "aftercorr" else None
                if partner is not None:  # task i waits on task i of the array that now runs it
                    targets.append((term.kind, partner))
                    currents = [partner.base]
                else:
                    currents = lineage.current(job_id)
                    targets += [(term.kind, i) for i in currents]
                ids += [(i, delay) for i in currents if (i, delay) not in ids]
            texts.append(term.text(ids))
        return self.separator.join(texts), targets


def _term(text: str, whole: str) -> Term:
    if text == "singleton":
        return Term("singleton")
    kind, _, rest = text.partition(":")
    if kind not in _KINDS or not rest:
        raise ValidationError(
            f"dependency {whole!r}: cannot read term {text!r} (expected after, afterany, afterok, "
            "afternotok, aftercorr or afterburstbuffer with job ids, or singleton)"
        )
    ids: list[SlurmJobId] = []
    delays: list[str] = []
    for word in rest.split(":"):
        m = _AFTER_TIME.fullmatch(word) if kind == "after" else None
        job, delay = (m.group(1), m.group(2) or "") if m is not None else (word, "")
        try:
            job_id = SlurmJobId.parse(job)
        except ValidationError:
            raise ValidationError(f"dependency {whole!r}: {word!r} is not a Slurm job id") from None
        if job_id.array_spec is not None or job_id.step is not None:
            raise ValidationError(f"dependency {whole!r}: {word!r} names no single job, task or component")
        ids.append(job_id.without_cluster())
        delays.append(delay)
    return Term(kind, tuple(ids), tuple(delays))


def script_dependency(script: str) -> str | None:
    """The value of the script's `#SBATCH --dependency=` (the last one: sbatch lets a later one win), or
    None. Only the directives before the first command count, as for sbatch."""
    found = None
    for m in _DIRECTIVE.finditer(_directive_block(script)):
        found = m.group(1) or None
    return found


def with_dependency(script: str, dependency: str | None) -> str:
    """`script` with its `#SBATCH --dependency=` line set to `dependency` (removed for None)."""
    header = _directive_block(script)
    body = script[len(header) :]
    header = _DIRECTIVE.sub("", header)
    if dependency is not None:
        first, newline, rest = header.partition("\n")
        header = f"{first}{newline}#SBATCH --dependency={dependency}\n{rest}"
    return header + body


def _directive_block(script: str) -> str:
    """The leading lines of a script up to its first command (sbatch reads directives there only)."""
    lines = script.splitlines(keepends=True)
    end = 0
    for i, line in enumerate(lines):
        if i and line.strip() and not line.lstrip().startswith("#"):
            break
        end += len(line)
    return script[:end]


class Lineage:
    """Which job replaced which, on one cluster: the stored `retry_of` of every job row of the experiment,
    plus the retries of the running command (`add`). Ids are compared without their `;cluster`."""

    def __init__(self, jobs: Iterable[tuple[SlurmJobId, SlurmJobId | None]] = ()) -> None:
        self._next: dict[SlurmJobId, SlurmJobId] = {}
        self._members: dict[int, list[SlurmJobId]] = {}
        for job_id, retry_of in jobs:
            self.add(retry_of, job_id)

    def add(self, old: SlurmJobId | None, new: SlurmJobId) -> None:
        """`new` is a recorded job; it replaces `old` (None: it replaces nothing)."""
        new = new.without_cluster()
        members = self._members.setdefault(new.job_id, [])
        if new not in members:
            members.append(new)
        if old is not None:
            self._next[old.without_cluster()] = new

    def knows(self, job_id: SlurmJobId) -> bool:
        return job_id.job_id in self._members

    def members(self, job_id: SlurmJobId) -> list[SlurmJobId]:
        """The recorded members of a job (its array tasks, het components, or itself)."""
        return list(self._members.get(job_id.job_id, []))

    def newest(self, job_id: SlurmJobId) -> SlurmJobId:
        seen = {job_id}
        while job_id in self._next:
            job_id = self._next[job_id]
            if job_id in seen:  # a hand-edited store could loop; stop rather than spin
                break
            seen.add(job_id)
        return job_id

    def partner(self, job_id: SlurmJobId, task: int | None) -> SlurmJobId | None:
        """The newest attempt of task `task` of array `job_id` (an `aftercorr` partner), or None when
        `job_id` is no recorded array with that task (or `task` is None: the dependent is no array)."""
        if task is None or job_id.array_task is not None or job_id.het_offset is not None:
            return None
        mine = job_id.task(task)
        return self.newest(mine) if mine in self._members.get(job_id.job_id, []) else None

    def current(self, job_id: SlurmJobId) -> list[SlurmJobId]:
        """The current attempts standing for `job_id` (see the module docstring)."""
        members = self.members(job_id)
        whole = job_id.array_task is None and job_id.het_offset is None
        if not whole or not members or members == [job_id]:
            return [self.newest(job_id)]
        newest = [self.newest(m) for m in members]
        if newest == members:
            return [job_id]
        return list(self._collapsed(newest))

    def _collapsed(self, ids: list[SlurmJobId]) -> Iterator[SlurmJobId]:
        """`ids` with each job all of whose recorded members are listed written as the whole job."""
        done: set[int] = set()
        for i in ids:
            if i.job_id in done:
                continue
            members = self.members(i)
            if (i.array_task is not None or i.het_offset is not None) and all(m in ids for m in members):
                done.add(i.job_id)
                yield i.base
            else:
                yield i


__all__ = ["NEEDS_SUCCESS", "Dependency", "Lineage", "Term", "script_dependency", "with_dependency"]
