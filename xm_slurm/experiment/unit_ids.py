"""Work unit ids, reserved in the metadata store so that launches in several processes never share one.

Every `experiment.add` asks for as many ids as it makes units. The store hands out ranges that no other
reservation and no existing work unit holds (`XManagerAPI.reserve_work_unit_ids`), so two processes adding
to one experiment at once get distinct units, never one unit with two jobs. Requests made while a
reservation is in flight wait for it and then share ONE store call; ranges follow the order of the
requests, so the ids of one process follow the order of its `add` calls.
"""

from __future__ import annotations

import asyncio

from xm_slurm.api import XManagerAPI


class UnitIdReserver:
    """Hands out work unit ids of one experiment, reserved in batches in the store."""

    def __init__(self, client: XManagerAPI, experiment_id: int) -> None:
        self._client = client
        self._experiment_id = experiment_id
        self._queue: list[tuple[int, asyncio.Future[int]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def reserve(self, count: int) -> int:
        """The first of `count` consecutive ids reserved for the caller."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((count, future))
        if self._flushing is None or self._flushing.done():
            # Runs after the adds already scheduled have queued their own requests: one store call for all.
            self._flushing = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                first = await self._client.areserve_work_unit_ids(
                    self._experiment_id, sum(count for count, _ in batch)
                )
            except BaseException as e:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                if isinstance(e, asyncio.CancelledError):
                    raise
                continue
            for count, future in batch:
                if not future.done():
                    future.set_result(first)
                first += count
