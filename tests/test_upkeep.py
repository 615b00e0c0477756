"""The upkeep's identity resolution yields to a burst of ingestion, then catches up."""

from __future__ import annotations

from collections.abc import Callable

from plait.core.settings import ServerSettings
from plait.upkeep import yielding

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
