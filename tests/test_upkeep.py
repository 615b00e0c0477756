"""The upkeep process: its identity resolution yields to a burst of ingestion, then catches
up; it shows under its own name and, like the server's workers, ends with the server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import LiveServer, child_pids, is_alive, process_stat

from plait.core.settings import ServerSettings, Settings
from plait.upkeep import UPKEEP_PROCESS_NAME, yielding

BURST = ServerSettings(resolver_burst_share=0.25, resolver_burst_seconds=30)


class World:
    """A fake clock and event log: events arrive at ``rate`` per second of the clock."""

    def __init__(self, rate: float) -> None:
        self.now, self.rate, self.seq = 100.0, rate, 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def newest(self) -> int:
        return int(self.seq)

    def pass_time(self, seconds: float) -> None:
        self.now += seconds
        self.seq += self.rate * seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.pass_time(seconds)

    def hook(self, server: ServerSettings, behind_for: float) -> Callable[[int], None]:
        return yielding(
            server, self.now - behind_for, self.newest, clock=self.clock, sleep=self.sleep
        )

    def resolve(self, hook: Callable[[int], None], chunks: list[float]) -> None:
        for seconds in chunks:
            self.pass_time(seconds)
            hook(500)


def test_resolution_takes_its_share_while_events_arrive_faster() -> None:
    world = World(rate=10_000)
    world.resolve(world.hook(BURST, behind_for=0), [0.1, 0.2])
    # A quarter of the time: three times each chunk's time asleep after it.
    assert world.slept == [0.3, 0.6]


def test_resolution_runs_flat_out_once_the_burst_is_over() -> None:
    world = World(rate=100)
    world.resolve(world.hook(BURST, behind_for=0), [0.1, 0.2])
    assert world.slept == []


def test_resolution_runs_flat_out_once_behind_for_long() -> None:
    world = World(rate=10_000)
    world.resolve(world.hook(BURST, behind_for=31), [0.1, 0.2])
    assert world.slept == []


def test_a_share_of_one_never_yields() -> None:
    world = World(rate=10_000)
    server = ServerSettings(resolver_burst_share=1, resolver_burst_seconds=30)
    world.resolve(world.hook(server, behind_for=0), [0.1])
    assert world.slept == []


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_a_killed_server_leaves_no_process_behind(settings: Settings, engine: object) -> None:
    """``plait serve --workers 2`` killed outright: its upkeep (which names itself, for ``ps``,
    ``top`` and the ingest bench, and runs at a lower CPU priority than the workers) and its
    worker processes exit instead of living on as orphans, still serving the port."""
    server = LiveServer(settings, args=("--workers", "2")).start()
    assert server.process is not None
    try:
        deadline, children = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            children = child_pids(server.process.pid)
            if any(_name(pid) == UPKEEP_PROCESS_NAME for pid in children):
                break
            time.sleep(0.1)
        upkeep = [pid for pid in children if _name(pid) == UPKEEP_PROCESS_NAME]
        assert upkeep
        assert len(children) >= 3  # the upkeep and two workers
        serving = _nice(server.process.pid)
        assert _nice(upkeep[0]) == min(19, serving + settings.server.upkeep_nice)
        assert {_nice(pid) for pid in children if pid not in upkeep} == {serving}
    finally:
        server.kill()  # returns once the children are gone, or after 30 s
    assert [pid for pid in children if is_alive(pid)] == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=2)


def _nice(pid: int) -> int:
    return int(process_stat(pid)[16])
