"""Time-ordered UUIDv7 identifiers for rows Plait creates (RFC 9562).

The 48-bit millisecond timestamp comes first, so ids sort by creation time across
processes; within a millisecond a process-wide counter (``itertools.count`` is atomic
under the GIL, so no lock is needed) keeps a process's ids apart and mostly in order.

The 62 random bits come from a generator seeded from the operating system once per
process (and again in a forked child), not from ``os.urandom`` per id: that system call
lets go of the GIL, and a busy server's request threads then wait up to a switch interval
(5 ms) to get it back, once per event. Ids need to be unique, not secret.
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid

_counter = itertools.count(int.from_bytes(os.urandom(2)))
_random = random.Random(os.urandom(32))


def _reseed() -> None:
    _random.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def uuid7() -> uuid.UUID:
    """A new UUIDv7."""
    ms = time.time_ns() // 1_000_000
    sequence = next(_counter) & 0xFFF
    tail = _random.getrandbits(62)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (sequence << 64) | (0b10 << 62) | tail)
