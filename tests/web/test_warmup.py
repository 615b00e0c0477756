"""The server keeps the analytics pages' default views in the report cache."""

from __future__ import annotations

import time

import sqlalchemy as sa
from test_analytics_pages import world  # noqa: F401  (fixture)

from plait.analytics.report_cache import REPORTS
from plait.core.settings import Settings
from plait.web.warmup import start_warming, warm_default_views

DEFAULT_VIEWS = ("/overview", "/channels", "/channels?compare=first_touch", "/journeys")


def test_warming_computes_what_the_default_pages_read(
    world: Settings,  # noqa: F811
    engine: sa.Engine,
    web_as,
) -> None:
    session = web_as("marketer")
    REPORTS.clear()
    warm_default_views(engine, world)
    warmed = len(REPORTS)
    assert warmed > 0
    for path in DEFAULT_VIEWS:
        assert session.get(path).status_code == 200
    assert len(REPORTS) == warmed  # every page read from the cache; nothing was computed


def test_the_warming_thread_warms_at_once_and_stops(world: Settings, engine: sa.Engine) -> None:  # noqa: F811
    REPORTS.clear()
    stop = start_warming(engine, world)
    try:
        deadline = time.monotonic() + 60
        while len(REPORTS) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(REPORTS) > 0
    finally:
        stop.set()
