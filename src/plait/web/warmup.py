"""Keeps the dashboard's default views computed: when new data reaches the lake, a background
thread of the server recomputes the reports behind Overview, Channels (first and last
touch) and Journeys for their default range, so the first person to open them after a sync
reads from the report cache instead of waiting for the engine. Doing so reads the lake's
history into the workspace of its new state, which other ranges and models start from."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import Engine

from plait.analytics.report_cache import data_state, snapshot
from plait.core.db import read
from plait.core.settings import Settings
from plait.web import channels, journeys, overview
from plait.web.date_range import date_range

log = logging.getLogger("plait.web.warmup")


def warm_default_views(engine: Engine, settings: Settings) -> None:
    """Compute (into the report cache) what the analytics pages show when first opened."""
    chosen = date_range({})
    data = snapshot(engine, settings)
    overview.overview(data, chosen)
    channels.channel_table(data, chosen.span, ["last_touch", "first_touch"])
    journeys.reports(data, chosen.span, journeys.DEFAULT_KIND)


def start_warming(engine: Engine, settings: Settings) -> threading.Event:
    """Warm now and after each change of the lake's state (at most once per interval);
    set the returned event to stop."""
    stop = threading.Event()
    interval = settings.server.warm_interval_seconds

    def loop() -> None:
        warmed_state = None
        while not stop.is_set():
            started = time.monotonic()
            try:
                with read(engine) as conn:
                    state = data_state(conn)
                if state != warmed_state:
                    warm_default_views(engine, settings)
                    warmed_state = state
            except Exception:
                log.exception("warming the dashboard failed")
            stop.wait(max(1.0, interval - (time.monotonic() - started)))

    threading.Thread(target=loop, name="plait-warmup", daemon=True).start()
    return stop
