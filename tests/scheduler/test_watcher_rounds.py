"""`JobWatcher` is a cluster's one status source: concurrent status calls share one round, an answer younger
than `max_age` costs nothing, rounds never overlap, and what a round raises reaches each of its callers.
Fast: on FakeSlurm (tests/fakes), whose squeue/sacct answer like the real ones; a gate holds squeue so that a
round stays in flight while the test looks."""

from __future__ import annotations

import asyncio

import pytest
from counting_transport import CountingTransport
from fake_slurm import FakeSlurm

from xm_slurm.errors import ConnectionLostError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import JobWatcher, submit
from xm_slurm.status import SlurmJobState as S
from xm_slurm.transport import Command, CommandResult


class GatedSqueue(CountingTransport):
    """Counts commands and holds every squeue until `gate` is set; records the ids each squeue asked for
    and how many squeues were in flight at once."""

    def __init__(self, inner: FakeSlurm) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()
        self.gate.set()
        self.asked: list[list[str]] = []
        self.in_flight = self.most_in_flight = 0

    async def run(self, command: Command, **kw: object) -> CommandResult:  # type: ignore[override]
        if isinstance(command, list) and command[0] == "squeue":
            self.asked.append(command[command.index("-j") + 1].split(","))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await self.gate.wait()
            finally:
                self.in_flight -= 1
        return await super().run(command, **kw)  # type: ignore[arg-type]


async def _jobs(fake: FakeSlurm, n: int) -> list[SlurmJobId]:
    return [
        await submit(fake, "#!/bin/bash\ntrue\n", directory=f"{fake.home}/jobs", name=f"job{i}.sh")
        for i in range(n)
    ]


@pytest.fixture
def fake() -> FakeSlurm:
    return FakeSlurm()


async def test_concurrent_polls_share_one_round(fake: FakeSlurm) -> None:
    jobs = await _jobs(fake, 50)
    transport = GatedSqueue(fake)
    watcher = JobWatcher(transport)
    answers = await asyncio.gather(*(watcher.poll([j]) for j in jobs))
    assert [a[j].state for a, j in zip(answers, jobs, strict=True)] == [S.PENDING] * 50
    assert (transport.count("squeue"), transport.count("sacct"), watcher.polls) == (1, 0, 1)
    assert sorted(transport.asked[0], key=int) == [str(j) for j in jobs]


async def test_an_answer_younger_than_max_age_costs_nothing_and_a_final_one_never_expires(
    fake: FakeSlurm,
) -> None:
    [job] = await _jobs(fake, 1)
    transport = GatedSqueue(fake)
    watcher = JobWatcher(transport, min_interval=60)
    await watcher.poll([job])
    assert (await watcher.poll([job]))[job].state is S.PENDING  # within min_interval: from the cache
    assert (transport.count("squeue"), watcher.polls, watcher.reused) == (1, 1, 1)
    fake.finish(job, "FAILED", exit_code=3)
    assert (await watcher.poll([job]))[job].state is S.PENDING  # still the cached answer
    final = (await watcher.poll([job], max_age=0))[job]
    assert (final.state, final.exit_code, transport.count("squeue")) == (S.FAILED, 3, 2)
    assert (await watcher.poll([job], max_age=0))[job].state is S.FAILED  # final: never asked again
    assert transport.count("squeue") == 2


async def test_rounds_never_overlap_and_latecomers_share_the_next(fake: FakeSlurm) -> None:
    a, b, c = await _jobs(fake, 3)
    transport = GatedSqueue(fake)
    watcher = JobWatcher(transport, min_interval=0)
    transport.gate.clear()
    first = asyncio.ensure_future(watcher.poll([a]))
    while not transport.asked:  # noqa: ASYNC110  (the round's squeue has been sent)
        await asyncio.sleep(0)
    # While it runs: `a` again joins it (asked moments ago); `b` and `c` wait for the next round, together.
    again = asyncio.ensure_future(watcher.poll([a]))
    later = [asyncio.ensure_future(watcher.poll([b])), asyncio.ensure_future(watcher.poll([a, c]))]
    await asyncio.sleep(0.05)
    assert transport.asked == [[str(a)]] and not any(t.done() for t in [first, again, *later])
    transport.gate.set()
    await asyncio.gather(first, again, *later)
    assert sorted(map(sorted, transport.asked)) == [[str(a)], sorted([str(a), str(b), str(c)])]
    assert (transport.most_in_flight, watcher.polls) == (1, 2)


async def test_a_failed_round_reaches_each_caller_and_the_next_round_asks_again(fake: FakeSlurm) -> None:
    a, b = await _jobs(fake, 2)
    transport = GatedSqueue(fake)
    watcher = JobWatcher(transport)
    fake.unreachable = True
    results = await asyncio.gather(watcher.poll([a]), watcher.poll([b]), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionLostError, ConnectionLostError]
    assert watcher.polls == 0
    fake.reconnect()
    answers = await watcher.poll([a, b])
    assert {j: s.state for j, s in answers.items()} == {a: S.PENDING, b: S.PENDING}
    assert watcher.polls == 1


async def test_a_caller_that_goes_away_leaves_the_round_to_the_others(fake: FakeSlurm) -> None:
    a, b = await _jobs(fake, 2)
    transport = GatedSqueue(fake)
    watcher = JobWatcher(transport)
    transport.gate.clear()
    gone, stays = asyncio.ensure_future(watcher.poll([a])), asyncio.ensure_future(watcher.poll([b]))
    while not transport.asked:  # noqa: ASYNC110
        await asyncio.sleep(0)
    gone.cancel()
    fake.start_job(b)
    transport.gate.set()
    assert (await stays)[b].state is S.RUNNING
    assert gone.cancelled() and transport.count("squeue") == 1


async def test_waiting_and_polling_share_rounds(fake: FakeSlurm) -> None:
    a, b = await _jobs(fake, 2)
    transport = GatedSqueue(fake)
    watcher = JobWatcher(transport, min_interval=0.05, max_interval=0.2)
    waiting = asyncio.ensure_future(watcher.wait([a, b], timeout=10))
    for _ in range(5):
        await asyncio.gather(*(watcher.poll([a]) for _ in range(10)))
        await asyncio.sleep(0.02)
    fake.finish(a)
    fake.finish(b, "FAILED", exit_code=2)
    final = await waiting
    assert (final[a].state, final[b].state, final[b].exit_code) == (S.COMPLETED, S.FAILED, 2)
    assert transport.count("squeue") == watcher.polls and transport.most_in_flight == 1
    await watcher.aclose()
