"""The group writer thread: a waiter that stops waiting does not stop the writer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

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
