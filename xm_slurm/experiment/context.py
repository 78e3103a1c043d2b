"""The experiment and work-unit context (`experiment.context`): annotations, tags, artifacts, configs.

Reads are served from memory. Every change is written through to the metadata store by a `WriteQueue`: each
change becomes a store `Operation` at once (so a bad value is refused where it was set), and one worker thread
runs them in the order they were made with the client's `run`, so nothing blocks the event loop. A thread,
not a task: changes are made by plain assignments, from the experiment's loop or from any other thread
(XManager's `with` runs the loop in a thread of its own; a reopened experiment may have no loop at all). `await context.flush()` waits for every earlier write and raises `MetadataError` if any failed;
the experiment layer awaits it when the experiment exits (and may at any time).

    ctx = ExperimentContext(client, xid)                           # a new experiment
    ctx = ExperimentContext.from_experiment(client, experiment)    # reloaded: get_experiment(xid)
    ctx.annotations.tags.add("baseline"); ctx.artifacts["wandb"] = "https://..."
    wu_ctx = ctx.work_unit(wid)                                    # shares the queue, so order holds
    await ctx.flush()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, MutableSet
from typing import Any

from xm_slurm.api import Artifact, ConfigArtifact, Experiment, ExperimentPatch, XManagerAPI
from xm_slurm.api import operation as ops
from xm_slurm.api.operation import Operation
from xm_slurm.errors import MetadataError, ValidationError
from xm_slurm.text_rules import check_name


@dataclasses.dataclass(frozen=True)
class _Write:
    description: str
    op: Operation[Any]


_STOP = object()


class WriteQueue:
    """Ordered write-behind: `put` returns at once; one daemon thread runs the operations in order with
    `client.run`.

    A failed write does not stop the later ones (they are independent changes); its error is kept and raised
    by the next `flush`.
    """

    def __init__(self, client: XManagerAPI) -> None:
        self._client = client
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._errors: list[tuple[str, BaseException]] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, description: str, op: Operation[Any]) -> None:
        """Queue `op`; `description` names the write in error messages."""
        self._start()
        self._queue.put(_Write(description, op))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="xm-slurm-metadata-writes", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, concurrent.futures.Future):
                errors, self._errors = self._errors, []
                item.set_result(errors)
                continue
            try:
                self._client.run(item.op)
            except Exception as e:  # kept for flush(); one failure must not stop the queue
                self._errors.append((item.description, e))

    def _marker(self) -> concurrent.futures.Future[list[tuple[str, BaseException]]]:
        self._start()
        marker: concurrent.futures.Future[list[tuple[str, BaseException]]] = concurrent.futures.Future()
        self._queue.put(marker)
        return marker

    @staticmethod
    def _raise(errors: list[tuple[str, BaseException]]) -> None:
        if errors:
            description, first = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise MetadataError(f"writing metadata failed: {description}: {first}{more}") from first

    async def flush(self) -> None:
        """Wait until every write queued before this call has been applied; raise if any failed."""
        self._raise(await asyncio.wrap_future(self._marker()))

    def flush_sync(self) -> None:
        """`flush` for synchronous code."""
        self._raise(self._marker().result())

    def close(self) -> None:
        """Stop the worker after the queued writes (call `flush` first to see their errors)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(_STOP)
                self._thread = None


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {value!r:.200}")
    return value


class Tags(MutableSet[str]):
    """The experiment's tags: a set whose every change is written through (the whole set is stored)."""

    def __init__(self, tags: Iterable[str], on_change: Callable[[frozenset[str]], None]) -> None:
        self._tags = set(tags)
        self._on_change = on_change

    def __contains__(self, tag: object) -> bool:
        return tag in self._tags

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tags))

    def __len__(self) -> int:
        return len(self._tags)

    def add(self, value: str) -> None:
        _require_str(value, "a tag")
        if value not in self._tags:
            self._tags.add(value)
            self._on_change(frozenset(self._tags))

    def discard(self, value: str) -> None:
        if value in self._tags:
            self._tags.discard(value)
            self._on_change(frozenset(self._tags))

    def update(self, *others: Iterable[str]) -> None:
        """Add every tag of `others`, as `set.update` does; written through once."""
        new = [tag for other in others for tag in other]
        for tag in new:
            _require_str(tag, "a tag")
        if not set(new) <= self._tags:
            self._tags.update(new)
            self._on_change(frozenset(self._tags))

    def __repr__(self) -> str:
        return f"Tags({sorted(self._tags)!r})"


class Artifacts(MutableMapping[str, str]):
    """Artifacts by name -> URI; setting or deleting one is written through."""

    def __init__(
        self,
        items: Mapping[str, str],
        on_set: Callable[[str, str], None],
        on_delete: Callable[[str], None],
    ) -> None:
        self._items = dict(items)
        self._on_set = on_set
        self._on_delete = on_delete

    def __getitem__(self, name: str) -> str:
        return self._items[name]

    def __setitem__(self, name: str, uri: str) -> None:
        check_name(name, "an artifact name")  # the store's rule, checked now rather than when written
        _require_str(uri, f"the URI of artifact {name!r}")
        if self._items.get(name) != uri:
            self._items[name] = uri
            self._on_set(name, uri)

    def __delitem__(self, name: str) -> None:
        check_name(name, "an artifact name")  # e.g. '..', which an older server accepted
        del self._items[name]
        self._on_delete(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Artifacts({self._items!r})"


class Annotations:
    """Title, description, note and tags of an experiment, written through on change."""

    def __init__(
        self, ctx: ExperimentContext, *, title: str, description: str, note: str, tags: Iterable[str]
    ):
        self._ctx = ctx
        self._title, self._description, self._note = title, description, note
        self.tags = Tags(tags, lambda tags: ctx._update(ExperimentPatch(tags=tags), "set tags"))

    @property
    def title(self) -> str:
        return self._title

    @title.setter
    def title(self, value: str) -> None:
        self._title = _require_str(value, "the title")
        self._ctx._update(ExperimentPatch(title=value), "set the title")

    @property
    def description(self) -> str:
        return self._description

    @description.setter
    def description(self, value: str) -> None:
        self._description = _require_str(value, "the description")
        self._ctx._update(ExperimentPatch(description=value), "set the description")

    @property
    def note(self) -> str:
        return self._note

    @note.setter
    def note(self, value: str) -> None:
        self._note = _require_str(value, "the note")
        self._ctx._update(ExperimentPatch(note=value), "set the note")


class WorkUnitContext:
    """A work unit's context: its `artifacts`."""

    def __init__(self, writes: WriteQueue, xid: int, wid: int, artifacts: Mapping[str, str]):
        self.experiment_id, self.work_unit_id = xid, wid
        self._writes = writes
        self.artifacts = Artifacts(
            artifacts,
            lambda name, uri: writes.put(
                f"set artifact {name!r} of work unit {wid}",
                ops.insert_work_unit_artifact(xid, wid, Artifact(name=name, uri=uri)),
            ),
            lambda name: writes.put(
                f"delete artifact {name!r} of work unit {wid}", ops.delete_work_unit_artifact(xid, wid, name)
            ),
        )

    async def flush(self) -> None:
        await self._writes.flush()


class ExperimentContext:
    """An experiment's context: `annotations`, `artifacts`, `python_config`, `graphviz_config`."""

    def __init__(
        self,
        client: XManagerAPI,
        xid: int,
        *,
        title: str = "",
        description: str = "",
        note: str = "",
        tags: Iterable[str] = (),
        artifacts: Mapping[str, str] | None = None,
        config_artifacts: Mapping[str, str] | None = None,
        writes: WriteQueue | None = None,
    ) -> None:
        self.experiment_id = xid
        self._writes = writes or WriteQueue(client)
        self._configs = dict(config_artifacts or {})
        self.annotations = Annotations(self, title=title, description=description, note=note, tags=tags)
        self.artifacts = Artifacts(
            artifacts or {},
            lambda name, uri: self._writes.put(
                f"set artifact {name!r}", ops.insert_experiment_artifact(xid, Artifact(name=name, uri=uri))
            ),
            lambda name: self._writes.put(
                f"delete artifact {name!r}", ops.delete_experiment_artifact(xid, name)
            ),
        )

    @classmethod
    def from_experiment(
        cls, client: XManagerAPI, experiment: Experiment, *, writes: WriteQueue | None = None
    ) -> ExperimentContext:
        """The context of a stored experiment (as returned by `client.get_experiment(xid)`)."""
        return cls(
            client,
            experiment.xid,
            title=experiment.title,
            description=experiment.description or "",
            note=experiment.note or "",
            tags=experiment.tags,
            artifacts={a.name: a.uri for a in experiment.artifacts},
            config_artifacts={a.name: a.uri for a in experiment.config_artifacts},
            writes=writes,
        )

    def work_unit(self, wid: int, artifacts: Mapping[str, str] | None = None) -> WorkUnitContext:
        """The context of work unit `wid` (sharing this context's write queue, so writes stay in order)."""
        return WorkUnitContext(self._writes, self.experiment_id, wid, artifacts or {})

    @property
    def writes(self) -> WriteQueue:
        return self._writes

    def _update(self, patch: ExperimentPatch, description: str) -> None:
        self._writes.put(description, ops.update_experiment(self.experiment_id, patch))

    def _set_config(self, name: str, value: str | None) -> None:
        if value is None:
            if self._configs.pop(name, None) is not None:
                self._writes.put(
                    f"delete the {name} config",
                    ops.delete_experiment_config_artifact(self.experiment_id, name),
                )
            return
        _require_str(value, f"the {name} config")
        self._configs[name] = value
        artifact = ConfigArtifact(name=name, uri=value)  # type: ignore[arg-type]  # name is PYTHON or GRAPHVIZ
        self._writes.put(
            f"set the {name} config", ops.insert_experiment_config_artifact(self.experiment_id, artifact)
        )

    @property
    def python_config(self) -> str | None:
        return self._configs.get("PYTHON")

    @python_config.setter
    def python_config(self, value: str | None) -> None:
        self._set_config("PYTHON", value)

    @property
    def graphviz_config(self) -> str | None:
        return self._configs.get("GRAPHVIZ")

    @graphviz_config.setter
    def graphviz_config(self, value: str | None) -> None:
        self._set_config("GRAPHVIZ", value)

    async def flush(self) -> None:
        """Wait for every write made so far (this context and its work units'); raise if any failed."""
        await self._writes.flush()

    def flush_sync(self) -> None:
        self._writes.flush_sync()
