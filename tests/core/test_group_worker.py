"""The group writer threads: a waiter that stops waiting does not stop the writer, and
several writers work on several groups at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from plait.core.group_commit import GroupWorker


def test_a_cancelled_async_waiter_leaves_the_writer_running() -> None:
    release = threading.Event()
    done: list[list[int]] = []

    def work(items: Sequence[int]) -> list[int]:
        release.wait(5)
        done.append(list(items))
        return [item * 2 for item in items]

    worker: GroupWorker[int, int] = GroupWorker(work, name="test-writer", max_size=10)

    async def scenario() -> int:
        waiting = asyncio.create_task(worker.submit_async(1))
        await asyncio.sleep(0.05)
        waiting.cancel()  # the client went away while its item was being written
        await asyncio.gather(waiting, return_exceptions=True)
        release.set()
        return await asyncio.wait_for(worker.submit_async(21), timeout=5)

    try:
        assert asyncio.run(scenario()) == 42
        assert done == [[1], [21]]
    finally:
        worker.close()


def test_two_writers_have_two_groups_in_flight() -> None:
    both_in_flight = threading.Barrier(2, timeout=5)

    def work(items: Sequence[int]) -> list[int]:
        both_in_flight.wait()  # one writer alone would time out here
        return [item + 1 for item in items]

    worker: GroupWorker[int, int] = GroupWorker(work, name="test-writers", max_size=1, writers=2)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            assert list(pool.map(worker.submit, [1, 2])) == [2, 3]
    finally:
        worker.close()
    assert not any(thread.is_alive() for thread in worker._threads)
