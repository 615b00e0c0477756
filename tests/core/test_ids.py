"""UUIDv7 ids: version and variant bits, time order, and no repeats across a fork."""

from __future__ import annotations

import os
import time

from plait.core.ids import uuid7


def test_ids_are_version_7_and_sort_by_creation_millisecond() -> None:
    first = uuid7()
    time.sleep(0.002)
    later = [uuid7() for _ in range(1000)]
    assert {value.version for value in [first, *later]} == {7}
    assert {value.variant for value in later} == {"specified in RFC 4122"}
    assert all(first < value for value in later)
    assert len(set(later)) == len(later)
    assert abs((first.int >> 80) - time.time_ns() // 1_000_000) < 5_000


def test_a_forked_child_does_not_repeat_its_parents_random_bits() -> None:
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write_end, b"".join(uuid7().bytes for _ in range(100)))
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    data = b""
    while chunk := os.read(read_end, 4096):
        data += chunk
    os.close(read_end)
    tail = (1 << 62) - 1
    theirs = {int.from_bytes(data[i : i + 16]) & tail for i in range(0, len(data), 16)}
    mine = {value.int & tail for value in (uuid7() for _ in range(100))}
    assert len(theirs) == 100
    assert not theirs & mine
