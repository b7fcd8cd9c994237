"""The broker's group commit (forge_broker.batcher): every call handed in is flushed, whenever it
arrives. Real asyncio, a flush that answers its items."""

from __future__ import annotations

import asyncio
import itertools

from forge_broker.batcher import Batcher


async def doubled(items: list[int]) -> list[int]:
    await asyncio.sleep(0)
    return [2 * i for i in items]


def test_a_call_made_as_the_last_flush_ends_is_flushed_too() -> None:
    """A call handed in after the flush task found nothing more to take, but before asyncio
    had run that task's done callbacks, once waited for the next call to start a flush."""
    async def main() -> list[int]:
        batcher = Batcher(doubled, max_items=10, name="test", concurrency=1)
        later: list[asyncio.Future[list[int]]] = []
        first = batcher.start([1])
        # Runs right after the flush answers the first call, before its task is forgotten.
        first.add_done_callback(lambda _: later.append(batcher.start([2])))
        assert await first == [2]
        await asyncio.sleep(0)
        return await asyncio.wait_for(later[0], 2)

    assert asyncio.run(main()) == [4]


def test_calls_from_many_tasks_are_each_answered_their_own() -> None:
    async def main() -> list[list[int]]:
        batcher = Batcher(doubled, max_items=7, name="test", concurrency=1, linger=0.001)

        async def caller(n: int) -> list[int]:
            out: list[int] = []
            for k in range(20):
                out += await batcher.submit([n * 100 + k])
            return out

        return await asyncio.wait_for(asyncio.gather(*(caller(n) for n in range(16))), 10)

    answers = asyncio.run(main())
    assert answers == [[2 * (n * 100 + k) for k in range(20)] for n in range(16)]


def test_a_batcher_is_idle_only_with_nothing_waiting_or_flushing() -> None:
    async def main() -> list[bool]:
        batcher = Batcher(doubled, max_items=10, name="test", concurrency=1)
        seen = [batcher.idle]
        call = batcher.start([1])
        seen.append(batcher.idle)  # waiting, its flush not yet begun
        await asyncio.sleep(0)
        seen.append(batcher.idle)  # flushing
        await call
        await asyncio.sleep(0)
        seen.append(batcher.idle)
        return seen

    assert asyncio.run(main()) == [True, False, False, True]


def _flush_starts(flush_seconds: float, linger: float) -> list[float]:
    """When each flush started, for calls that keep coming: two at once, then two more
    while each flush runs (each flush carries two: the broker is under load), four flushes."""
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        starts: list[float] = []
        later: list[asyncio.Future[list[int]]] = []

        async def flush(items: list[int]) -> list[int]:
            starts.append(loop.time())
            if len(starts) < 4:  # these arrive during this flush
                later.extend(batcher.start([len(starts)]) for _ in range(2))
            await asyncio.sleep(flush_seconds)
            return items

        batcher = Batcher(flush, max_items=10, name="test", concurrency=1, linger=linger)
        await asyncio.gather(batcher.start([0]), batcher.start([0]))
        while later:
            await later.pop(0)
        return starts

    return asyncio.run(main())


def test_under_load_a_flush_waits_out_the_linger_from_the_last_flush_start() -> None:
    """A quick flush: the next starts a linger after it started, having gathered meanwhile."""
    starts = _flush_starts(flush_seconds=0.0, linger=0.08)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.075 <= gap < 0.14 for gap in gaps), gaps


def test_a_flush_longer_than_the_linger_is_followed_at_once() -> None:
    """The calls that came during a flush longer than the linger have waited enough: the next
    flush starts as that one ends, not a linger later (0.1 s apart, not 0.18)."""
    starts = _flush_starts(flush_seconds=0.1, linger=0.08)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.095 <= gap < 0.16 for gap in gaps), gaps
