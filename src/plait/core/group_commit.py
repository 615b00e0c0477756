"""Group commit: a writer thread does the work of every request waiting at that moment in
one go (one transaction, one fsync), then answers each of them.

A commit that has to reach the disk (SQLite with ``synchronous=FULL``, PostgreSQL's WAL
flush) costs milliseconds; paying it once per group instead of once per request is what
lets one server take many concurrent writes while still answering only after they are
durable. The event store and the inbox's webhooks both write through one."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

_STOP = object()


class GroupWorker(Generic[Item, Outcome]):
    """Writer threads (one unless ``writers`` says more) running ``work`` over groups of
    submitted items; :meth:`submit` blocks until its item's group is done.

    ``work`` gets the group's items and returns one outcome per item, in order. If it raises
    for a group, each item is retried alone, so one bad request fails only itself.
    """

    def __init__(
        self,
        work: Callable[[Sequence[Item]], Sequence[Outcome]],
        *,
        name: str,
        max_size: int,
        size: Callable[[Item], int] = lambda _item: 1,
        writers: int = 1,
    ) -> None:
        self._work = work
        self._size = size
        self.max_size = max_size
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=name, daemon=True) for _ in range(writers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: Item) -> Outcome:
        """Queue ``item`` for the next group and wait for its outcome (or its error)."""
        return self.enqueue(item).result()

    async def submit_async(self, item: Item) -> Outcome:
        """:meth:`submit` for the event loop: waits without holding a thread."""
        return await asyncio.wrap_future(self.enqueue(item))

    def enqueue(self, item: Item) -> Future[Outcome]:
        """Queue ``item`` for the next group; its outcome (or error) will settle the future."""
        done: Future[Outcome] = Future()
        self._queue.put((item, done))
        return done

    def close(self) -> None:
        """Finish what is queued, then stop the writer threads."""
        for _thread in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            group = [first]
            size = self._size(first[0])  # type: ignore[index]
            while size < self.max_size:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is _STOP:
                    stopping = True
                    break
                group.append(queued)
                size += self._size(queued[0])  # type: ignore[index]
            self._finish(group)  # type: ignore[arg-type]

    def _finish(self, group: list[tuple[Item, Future[Outcome]]]) -> None:
        try:
            outcomes = self._work([item for item, _done in group])
        except Exception as exc:
            if len(group) == 1:
                settle(group[0][1], exception=exc)
                return
            for waiting in group:
                self._finish([waiting])
            return
        except BaseException as exc:  # every waiter must hear of the failure
            for _item, done in group:
                settle(done, exception=exc)
            raise
        for (_item, done), outcome in zip(group, outcomes, strict=True):
            settle(done, outcome)


def settle(
    done: Future[Any], outcome: Any = None, *, exception: BaseException | None = None
) -> None:
    """Give a waiter its outcome, unless it stopped waiting (a cancelled request): the work
    is done either way, and the writer thread must live on."""
    try:
        if exception is not None:
            done.set_exception(exception)
        else:
            done.set_result(outcome)
    except InvalidStateError:
        pass
