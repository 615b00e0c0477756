"""Time-ordered UUIDv7 identifiers for rows Plait creates (RFC 9562).

The 48-bit millisecond timestamp comes first, so ids sort by creation time across
processes; within a millisecond a process-wide counter (``itertools.count`` is atomic
under the GIL, so no lock is needed) keeps a process's ids apart and mostly in order.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid

_counter = itertools.count(int.from_bytes(os.urandom(2)))


def uuid7() -> uuid.UUID:
    """A new UUIDv7."""
    ms = time.time_ns() // 1_000_000
    sequence = next(_counter) & 0xFFF
    tail = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (sequence << 64) | (0b10 << 62) | tail)
