"""Per-report overrides of the ``[analytics]`` settings (lookback, repeats, Markov order,
half-life), validated like the settings themselves."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from plait.core.errors import InvalidInput
from plait.core.settings import AnalyticsSettings, Settings

OVERRIDABLE = ("lookback_days", "collapse_repeats", "markov_order", "half_life_days")


def with_options(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with the given analytics options changed (``None`` keeps a setting)."""
    given = {name: value for name, value in overrides.items() if value is not None}
    unknown = set(given) - set(OVERRIDABLE)
    if unknown:
        raise InvalidInput(f"unknown option {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    if not given:
        return settings
    try:
        analytics = AnalyticsSettings.model_validate({**settings.analytics.model_dump(), **given})
    except ValidationError as error:
        problem = error.errors()[0]
        name = str(problem["loc"][0])
        raise InvalidInput(f"{name}: {problem['msg']}", field=name) from None
    return settings.model_copy(update={"analytics": analytics})
