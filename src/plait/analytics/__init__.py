"""Measure: sessions, conversions, channel attribution (rule-based, Markov, Shapley),
journeys and funnels, as Ibis expressions over the lake (DuckDB by default, or Spark).

Every function returns a pandas DataFrame, so analysts can work from a notebook::

    from plait.analytics import channel_report, period
    channel_report(settings, period("2026-01-01", "2026-03-31", "Europe/Berlin"), "linear")
"""

from plait.analytics.engine import connect
from plait.analytics.models import MODELS
from plait.analytics.paths import PATH_MODELS, attribute_paths
from plait.analytics.period import Period, period
from plait.analytics.reports import attribution, channel_report, funnel, paths, transitions

__all__ = [
    "MODELS",
    "PATH_MODELS",
    "Period",
    "attribute_paths",
    "attribution",
    "channel_report",
    "connect",
    "funnel",
    "paths",
    "period",
    "transitions",
]
