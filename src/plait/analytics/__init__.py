"""Measure: sessions, conversions, channel attribution (rule-based, Markov, Shapley),
journeys and funnels, as Ibis expressions over the lake (DuckDB by default, or Spark).

Every function returns a pandas DataFrame, so analysts can work from a notebook::

    from plait.analytics import channel_report, period
    channel_report(settings, period("2026-01-01", "2026-03-31", "Europe/Berlin"), "linear")

Names load on first use, so ``plait --help`` does not pay for Ibis.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from plait.analytics.period import Period, period  # light; and the name is its module's too

_HOMES = {
    "MODELS": "catalog",
    "PATH_MODELS": "catalog",
    "connect": "engine",
    "attribute_paths": "path_data",
    "read_paths": "path_data",
    "attribution": "reports",
    "channel_report": "reports",
    "daily_totals": "reports",
    "funnel": "reports",
    "paths": "reports",
    "transitions": "reports",
}
__all__ = [  # noqa: RUF022 (grouped: loaded on use, then loaded now)
    "MODELS",
    "PATH_MODELS",
    "attribute_paths",
    "attribution",
    "channel_report",
    "connect",
    "daily_totals",
    "funnel",
    "paths",
    "read_paths",
    "transitions",
    "Period",
    "period",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'plait.analytics' has no attribute {name!r}")
    return getattr(import_module(f"plait.analytics.{_HOMES[name]}"), name)
