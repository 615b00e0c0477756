"""The names analytics are asked for by: models, backends, the ``(none)`` channel. Kept
free of heavy imports so the command line can list and check them without loading Ibis."""

from __future__ import annotations

from plait.core.errors import InvalidInput

BACKENDS = ("duckdb", "pyspark")
RULE_MODELS = (
    "first_touch",
    "last_touch",
    "last_non_direct",
    "linear",
    "time_decay",
    "position_based",
    "j_shaped",
    "inverse_j",
    "w_shaped",
    "full_path",
    "custom",
)
DATA_DRIVEN_MODELS = ("markov", "shapley")
MODELS = RULE_MODELS + DATA_DRIVEN_MODELS
TIMED_MODELS = ("time_decay", "w_shaped", "full_path")
"""Models that need touch times or milestones, so not available on path data."""
NO_TOUCH = "(none)"
"""Where a conversion with no touch in the lookback window goes: credit is never lost."""
PATH_MODELS = tuple(model for model in MODELS if model not in TIMED_MODELS)
"""The models aggregated path data (no times, no milestones) supports."""


def check_models(models: list[str] | tuple[str, ...], allowed: tuple[str, ...] = MODELS) -> None:
    """A clear error for a model name that is not one of ``allowed``."""
    if not models:
        raise InvalidInput("choose at least one model", field="model")
    for model in models:
        if model not in allowed:
            raise InvalidInput(
                f"unknown model {model!r}; choose from {', '.join(allowed)}", field="model"
            )


def credit_columns(models: list[str] | tuple[str, ...]) -> list[str]:
    """The result columns of a credit table: ``<model>_conversions``, ``<model>_value``."""
    return [f"{model}_{measure}" for model in models for measure in ("conversions", "value")]
