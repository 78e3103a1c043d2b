"""The abstract metadata client: every operation as a synchronous method and an async one.

Each operation is written once, in `operation` (its checks, the SQL it runs, the REST call it sends). This
class makes each one a synchronous method for scripts and tools (`client.insert_job(xid, wid, job)`, as in
0.4.x) and an `a`-prefixed coroutine method for async code (`await client.ainsert_job(xid, wid, job)`): both
build the same `Operation` and hand it to the backend's executor, `run` or `arun`. A backend implements
`run`; `arun` runs it in a worker thread (so it never blocks the event loop) unless the backend has a
native async path (REST: `httpx.AsyncClient`). `await client.arun(op)` runs any operation directly.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from xm_slurm.api import operation as ops
from xm_slurm.api.models import DEFAULT_LIST_LIMIT, ConflictError
from xm_slurm.api.operation import Operation
from xm_slurm.api.store_info import get_store_info as get_store_info_op

__all__ = ["DEFAULT_LIST_LIMIT", "ConflictError", "Operation", "XManagerAPI"]

P = ParamSpec("P")
R = TypeVar("R")


def _named(method: Callable[..., Any], build: Callable[..., Any], name: str, doc: str | None) -> None:
    """Give a generated method the operation's name, documentation and signature (for help() and IDEs)."""
    method.__name__ = name
    method.__qualname__ = f"XManagerAPI.{name}"
    method.__doc__ = doc
    signature = inspect.signature(build)
    returns = str(signature.return_annotation).removeprefix("Operation[").removesuffix("]")
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_parameter, *signature.parameters.values()], return_annotation=returns
    )


def _sync(build: Callable[P, Operation[R]]) -> Callable[Concatenate[XManagerAPI, P], R]:
    def method(self: XManagerAPI, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.run(build(*args, **kwargs))

    _named(method, build, build.__name__, build.__doc__)
    return method


def _async(build: Callable[P, Operation[R]]) -> Callable[Concatenate[XManagerAPI, P], Coroutine[Any, Any, R]]:
    async def method(self: XManagerAPI, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.arun(build(*args, **kwargs))

    doc = f"`{build.__name__}` for async code: same arguments, never blocks the event loop."
    _named(method, build, f"a{build.__name__}", doc)
    return method


class XManagerAPI(abc.ABC):
    """Where experiments, work units, jobs and artifacts are recorded. Every write is idempotent when repeated.

    The operations (see `xm_slurm.api.operation` for each one's contract) in 0.4.x's positional order:
    `get_experiment(xid)`, `insert_experiment(patch)`, `update_experiment(xid, patch)`,
    `delete_experiment(xid)`, `insert_work_unit(xid, patch)`, `update_work_unit(xid, wid, patch)`,
    `insert_job(xid, wid, job)`, `insert_work_unit_artifact(xid, wid, artifact)`,
    `delete_work_unit_artifact(xid, wid, name)`, `insert_experiment_artifact(xid, artifact)`,
    `delete_experiment_artifact(xid, name)`, `insert_experiment_config_artifact(xid, config)`,
    `delete_experiment_config_artifact(xid, name)`; and `list_experiments`, `insert_work_units`,
    `reserve_work_unit_ids`, `get_work_unit`, `find_work_unit`, `insert_jobs`, `replace_jobs`.
    Each has an `a`-prefixed async twin taking the same arguments.
    """

    @abc.abstractmethod
    def run(self, op: Operation[R]) -> R:
        """Execute one operation (one transaction, or one request) and return its result."""

    async def arun(self, op: Operation[R]) -> R:
        """`run` without blocking the event loop: in a worker thread, unless the backend overrides it."""
        return await asyncio.to_thread(self.run, op)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (the client stays usable: they reopen on demand)."""

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # -- the operations: generated from `operation`, one synchronous and one async method each ------------
    # experiments
    get_experiment = _sync(ops.get_experiment)
    aget_experiment = _async(ops.get_experiment)
    insert_experiment = _sync(ops.insert_experiment)
    ainsert_experiment = _async(ops.insert_experiment)
    update_experiment = _sync(ops.update_experiment)
    aupdate_experiment = _async(ops.update_experiment)
    delete_experiment = _sync(ops.delete_experiment)
    adelete_experiment = _async(ops.delete_experiment)
    list_experiments = _sync(ops.list_experiments)
    alist_experiments = _async(ops.list_experiments)
    get_store_info = _sync(get_store_info_op)
    aget_store_info = _async(get_store_info_op)
    # work units
    insert_work_unit = _sync(ops.insert_work_unit)
    ainsert_work_unit = _async(ops.insert_work_unit)
    insert_work_units = _sync(ops.insert_work_units)
    ainsert_work_units = _async(ops.insert_work_units)
    reserve_work_unit_ids = _sync(ops.reserve_work_unit_ids)
    areserve_work_unit_ids = _async(ops.reserve_work_unit_ids)
    update_work_unit = _sync(ops.update_work_unit)
    aupdate_work_unit = _async(ops.update_work_unit)
    get_work_unit = _sync(ops.get_work_unit)
    aget_work_unit = _async(ops.get_work_unit)
    find_work_unit = _sync(ops.find_work_unit)
    afind_work_unit = _async(ops.find_work_unit)
    # jobs
    insert_job = _sync(ops.insert_job)
    ainsert_job = _async(ops.insert_job)
    insert_jobs = _sync(ops.insert_jobs)
    ainsert_jobs = _async(ops.insert_jobs)
    record_job_states = _sync(ops.record_job_states)
    arecord_job_states = _async(ops.record_job_states)
    replace_jobs = _sync(ops.replace_jobs)
    areplace_jobs = _async(ops.replace_jobs)
    # artifacts
    insert_work_unit_artifact = _sync(ops.insert_work_unit_artifact)
    ainsert_work_unit_artifact = _async(ops.insert_work_unit_artifact)
    delete_work_unit_artifact = _sync(ops.delete_work_unit_artifact)
    adelete_work_unit_artifact = _async(ops.delete_work_unit_artifact)
    insert_experiment_artifact = _sync(ops.insert_experiment_artifact)
    ainsert_experiment_artifact = _async(ops.insert_experiment_artifact)
    delete_experiment_artifact = _sync(ops.delete_experiment_artifact)
    adelete_experiment_artifact = _async(ops.delete_experiment_artifact)
    insert_experiment_config_artifact = _sync(ops.insert_experiment_config_artifact)
    ainsert_experiment_config_artifact = _async(ops.insert_experiment_config_artifact)
    delete_experiment_config_artifact = _sync(ops.delete_experiment_config_artifact)
    adelete_experiment_config_artifact = _async(ops.delete_experiment_config_artifact)
