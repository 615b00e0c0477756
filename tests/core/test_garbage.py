"""Pausing the cyclic garbage collector around hot paths, and tuning it in the server's
long-running processes."""

from __future__ import annotations

import gc
import multiprocessing
import threading
from pathlib import Path

import pytest

from plait.core.garbage import SERVING_THRESHOLDS, collector_paused


@pytest.fixture(autouse=True)
def _collector_running():
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_paused_inside_and_resumes_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_it_resumes_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_nested_pauses_resume_only_when_the_outermost_ends() -> None:
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_threads_leave_it_running_after_the_last_one() -> None:
    """Thread A pauses, B pauses, A leaves, B leaves: on only once both have left."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with collector_paused():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second() -> None:
        a_in.wait(5)
        with collector_paused():
            b_in.set()
            a_out.wait(5)
            seen["after A left"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"after A left": False}
    assert gc.isenabled()


def _collector_of_a_started_server(home: str) -> tuple[tuple[int, ...], int]:
    import os

    os.environ["PLAIT_HOME"] = home
    from plait.server_runner import app_factory

    app_factory()
    return gc.get_threshold(), gc.get_freeze_count()


def test_the_server_process_collects_seldom_and_never_rescans_its_start_up(
    tmp_path: Path,
) -> None:
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        thresholds, frozen = pool.apply(_collector_of_a_started_server, (str(tmp_path),))
    assert thresholds == SERVING_THRESHOLDS
    assert frozen > 10_000  # the modules, app and settings loaded at start-up
