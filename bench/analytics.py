"""Analytics speed: the channel report over a large lake, and Markov/Shapley on path data.

What it measures
    1. ``--events`` events (default 10,000,000) of ``--profiles`` customers (default
       1,000,000) over 90 days are generated with DuckDB straight into a lake laid out as
       ``plait`` writes it (``events/date=…/*.parquet``, the typed columns analytics read) plus
       an identity map (1.5 anonymous ids per customer, so the identity join matters). Mix:
       78% page views over GA4 channels, 12% product views, 4% calls/store visits/chats,
       2.5% sign-ups, 1% lead qualified, 1.5% orders with revenue. Then, on DuckDB in this
       process:
       - ``channel_report`` under last touch (sessions by channel and by original channel,
         contacts, qualified, sales, revenue) derived from the events, once (cold);
       - ``refresh_history``: every customer's sessions and conversions derived and kept
         beside the lake (what ``plait serve`` does in the background);
       - then, best of ``--repeats`` after a warm-up, ``channel_report`` from the kept
         history, and the full report under every rule-based model at once (sessions by
         channel and by original channel; contacts, qualified leads and sales credited under
         first, last, last non-direct, linear, time decay, position, J, inverse J, W, full
         path and custom) — what the dashboard shows when comparing models;
       - then ``--new-events`` more events (new files) and ``--moved`` of the identifiers
         merged into other customers: ``channel_report`` once with those changes recomputed
         at read time, the incremental ``refresh_history`` that folds them in, and the
         report after it.
    2. ``--paths`` aggregated paths (default 1,000,000 rows, ChannelAttribution's format) over
       10 channels: ``plait.analytics.attribute_paths`` with ``markov`` and with ``shapley``,
       against ``ChannelAttribution.markov_model`` at its defaults (order 1, 1e5 simulations)
       in the same run (each the best of ``--repeats`` runs), and
       ``marketing-attribution-models`` (``MAM``) Markov and Shapley once on the same paths
       (or a ``--mam-paths`` sample of them if given).

    Results are printed as a table and written as JSON to ``--json-out`` (default
    bench/results/analytics.json). Run: ``python bench/analytics.py`` (add ``--events
    1000000`` for a quick run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from plait.analytics import attribute_paths, channel_report, connect, period
from plait.analytics.catalog import RULE_MODELS
from plait.analytics.history import refresh_history
from plait.analytics.inputs import inputs
from plait.analytics.reports import _credit_by_kind, _sessions_per_channel
from plait.core.settings import Settings

CHANNELS = [
    "Direct", "Organic Search", "Paid Search", "Paid Social", "Organic Social", "Email",
    "Referral", "Display", "Affiliates", "SMS",
]  # fmt: skip


def build_lake(lake: Path, events: int, profiles: int) -> None:
    """A lake of ``events`` events for ``profiles`` customers, written by DuckDB."""
    anonymous = int(profiles * 1.5)
    (lake / "events").mkdir(parents=True, exist_ok=True)
    (lake / "identity_map").mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"""
        COPY ({_events_sql(0, events, anonymous)}) TO '{lake / "events"}'
        (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)
    """)
    con.execute(f"""
        COPY (
          SELECT 'anonymous_id' AS kind, 'a' || i AS value, 'p' || i AS profile_id,
                 'c' || (i % {profiles}) AS customer_id
          FROM range({anonymous}) t(i)
        ) TO '{lake / "identity_map" / "identity_map.parquet"}' (FORMAT parquet)
    """)


def add_changes(lake: Path, events: int, profiles: int, new_events: int, moved: float) -> None:
    """What a lake sync and an identity-map export bring: ``new_events`` more events (seq
    after the others, new files), and a ``moved`` share of anonymous ids now belonging to
    another customer (merges)."""
    anonymous = int(profiles * 1.5)
    con = duckdb.connect()
    con.execute(f"""
        COPY ({_events_sql(events, new_events, anonymous)}) TO '{lake / "events"}'
        (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd, APPEND)
    """)
    every = round(1 / moved)
    path = lake / "identity_map" / "identity_map.parquet"
    con.execute(f"""
        COPY (
          SELECT kind, value, profile_id,
                 CASE WHEN hash(value) % {every} = 0
                      THEN 'c' || ((hash(value) // {every}) % {profiles}) ELSE customer_id END
                   AS customer_id
          FROM read_parquet('{path}')
        ) TO '{path}.new' (FORMAT parquet)
    """)
    os.replace(f"{path}.new", path)


def _events_sql(first_seq: int, count: int, anonymous: int) -> str:
    """Events ``first_seq``… (``count`` of them) spread over ``anonymous`` anonymous ids."""
    channels = ", ".join(f"'{c}'" for c in CHANNELS)
    return f"""
          WITH base AS (
            SELECT i AS seq, hash(i) AS h, hash(i * 7919 + 1) AS g,
                   (hash(i * 31 + 7) % {anonymous}) AS anon
            FROM range({first_seq}, {first_seq + count}) t(i)
          ), kinds AS (
            SELECT *, (h % 1000) AS k FROM base
          )
          SELECT
            uuid()::VARCHAR AS id, seq, uuid()::VARCHAR AS message_id, 'src' AS source_id,
            'Bench' AS source,
            CASE WHEN k < 780 THEN 'page' ELSE 'track' END AS type,
            CASE WHEN k < 780 THEN NULL WHEN k < 900 THEN 'Product Viewed'
                 WHEN k < 915 THEN 'Call Completed' WHEN k < 930 THEN 'Store Visited'
                 WHEN k < 940 THEN 'Chat Started' WHEN k < 965 THEN 'Signed Up'
                 WHEN k < 975 THEN 'Lead Qualified' WHEN k < 990 THEN 'Order Completed'
                 ELSE 'Application Backgrounded' END AS event,
            NULL AS name, NULL AS user_id, 'a' || anon AS anonymous_id, NULL AS group_id,
            NULL AS previous_id,
            CASE WHEN k >= 900 AND k < 915 THEN 'Phone' WHEN k >= 915 AND k < 930 THEN 'Store'
                 WHEN k >= 930 AND k < 940 THEN 'Live Chat'
                 ELSE [{channels}][1 + (g % {len(CHANNELS)})::INTEGER] END AS channel,
            NULL AS traffic_source, NULL AS traffic_medium,
            CASE WHEN g % 5 = 0 THEN 'spring' ELSE NULL END AS traffic_campaign,
            'desktop' AS device_type, 'Mac OS X' AS os, 'Chrome' AS browser,
            TIMESTAMPTZ '2026-01-01 00:00:00+00'
              + to_microseconds((hash(anon) % 7776000000000)::BIGINT)
              + to_microseconds(((g % 604800000000) * (h % 3))::BIGINT) AS timestamp,
            NULL::TIMESTAMPTZ AS original_timestamp, NULL::TIMESTAMPTZ AS sent_at,
            NULL::TIMESTAMPTZ AS received_at, NULL AS traits, NULL AS properties,
            NULL AS context, NULL AS warnings, 'anonymous_id' AS identity_kind,
            'a' || anon AS identity_value,
            CASE WHEN k >= 975 AND k < 990 THEN 20 + (g % 300)::DOUBLE END AS revenue,
            CASE WHEN k >= 975 AND k < 990 THEN 'USD' END AS currency,
            false AS contactable, NULL AS lifecycle_stage,
            strftime(timestamp, '%Y-%m-%d') AS date
          FROM kinds
    """


def time_report(settings: Settings, args: argparse.Namespace) -> dict[str, float]:
    """The channel report from the events alone, then from the kept history: best of
    ``repeats`` after a warm-up, once with changes since (read-time recompute), and the
    refreshes that write it."""
    span = period("2026-01-01", "2026-06-30")
    results: dict[str, float] = {}

    def timed(name: str, work: Callable[[], object]) -> object:
        start = time.perf_counter()
        done = work()
        results[name] = time.perf_counter() - start
        return done

    timed("channel_report_from_events", lambda: channel_report(settings, span, "last_touch"))
    timed("history_full_refresh", lambda: refresh_history(settings))
    best: dict[str, list[float]] = {"channel_report": [], "channel_report_all_rule_models": []}
    for attempt in range(args.repeats + 1):
        start = time.perf_counter()
        report = channel_report(settings, span, "last_touch")
        best["channel_report"].append(time.perf_counter() - start)
        start = time.perf_counter()
        source = inputs(settings, span, connect(settings))
        source.con.execute(_sessions_per_channel(source))
        _credit_by_kind(source, list(RULE_MODELS))
        best["channel_report_all_rule_models"].append(time.perf_counter() - start)
        if attempt == 0:
            print(report.head(14).to_string())
            for timings in best.values():
                timings.clear()  # the first run is a warm-up
    results.update({name: min(values) for name, values in best.items()})
    add_changes(Path(settings.lake), args.events, args.profiles, args.new_events, args.moved)
    timed("channel_report_with_changes", lambda: channel_report(settings, span, "last_touch"))
    timed("history_incremental_refresh", lambda: refresh_history(settings))
    timed("channel_report_after_refresh", lambda: channel_report(settings, span, "last_touch"))
    return results


def make_paths(count: int, seed: int = 7) -> pd.DataFrame:
    """``count`` aggregated paths over ten channels, lengths 1-12, with conversions,
    value and non-converting counts that depend on the channels (so models differ)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 13, count)
    strength = np.linspace(0.2, 2.0, len(CHANNELS))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    steps = rng.integers(0, len(CHANNELS), lengths.sum())
    boost = np.add.reduceat(strength[steps], starts) / lengths
    journeys = rng.integers(1, 40, count)
    conversions = rng.binomial(journeys, np.clip(0.05 * boost, 0, 1))
    names = np.array(CHANNELS, dtype=object)[steps]
    paths = [" > ".join(names[a : a + n]) for a, n in zip(starts, lengths, strict=True)]
    return pd.DataFrame(
        {
            "path": paths,
            "total_conversions": conversions,
            "total_conversion_value": conversions * rng.uniform(20, 200, count),
            "total_null": journeys - conversions,
        }
    )


def time_paths(data: pd.DataFrame, mam_rows: int | None, repeats: int) -> dict[str, float]:
    """Plait's Markov and Shapley and ChannelAttribution's Markov, each the best of
    ``repeats`` runs (after a small warm-up for Plait); ``mam`` once, it is slow."""
    settings = Settings()
    con = connect(settings)
    results: dict[str, float] = {}

    def best(work: Callable[[], object]) -> float:
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            work()
            timings.append(time.perf_counter() - start)
        return min(timings)

    for model in ("markov", "shapley"):
        attribute_paths(data.head(1000), [model], settings=settings, con=con)  # warm-up
        results[f"plait_{model}"] = best(
            lambda model=model: attribute_paths(data, [model], settings=settings, con=con)
        )
    import ChannelAttribution

    results["channelattribution_markov"] = best(
        lambda: ChannelAttribution.markov_model(
            data, "path", "total_conversions", var_value="total_conversion_value",
            var_null="total_null", verbose=0, flg_pro=False,
        )
    )  # fmt: skip
    results.update(_time_mam(data if mam_rows is None else data.head(mam_rows)))
    return results


def _time_mam(data: pd.DataFrame) -> dict[str, float]:
    """marketing-attribution-models on the same paths, as grouped journeys (path,
    occurrences, converted); its Shapley model caps coalitions at 4 channels by default."""
    from mam import MAM

    converted = data.assign(occurrences=data.total_conversions, converted=True)
    dropped = data.assign(occurrences=data.total_null, converted=False)
    grouped = pd.concat([converted, dropped], ignore_index=True)
    grouped = grouped[grouped.occurrences > 0][["path", "occurrences", "converted"]]
    results: dict[str, float] = {}
    start = time.perf_counter()
    model = MAM(
        grouped, format_type="grouped_journey", channels_colname="path",
        journey_with_conv_colname="converted", occurrences_colname="occurrences",
    )  # fmt: skip
    results["mam_preprocess"] = time.perf_counter() - start
    for name, run in (("mam_markov", model.run_markov), ("mam_shapley", model.run_shapley)):
        start = time.perf_counter()
        run()
        results[name] = time.perf_counter() - start
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--paths", type=int, default=1_000_000)
    parser.add_argument("--mam-paths", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--new-events", type=int, default=100_000, help="events added after the history is kept"
    )
    parser.add_argument(
        "--moved", type=float, default=0.01, help="share of identifiers merged elsewhere then"
    )
    parser.add_argument(
        "--part", choices=("report", "paths", "both"), default="both", help="what to time"
    )
    parser.add_argument("--json-out", type=Path, default=Path("bench/results/analytics.json"))
    args = parser.parse_args()

    results: dict[str, object] = {
        "events": args.events,
        "profiles": args.profiles,
        "paths": args.paths,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    if args.part in ("report", "both"):
        with tempfile.TemporaryDirectory() as home:
            settings = Settings(home=Path(home))
            start = time.perf_counter()
            build_lake(Path(settings.lake), args.events, args.profiles)
            results["lake_build_seconds"] = time.perf_counter() - start
            results.update(time_report(settings, args))
    if args.part in ("paths", "both"):
        data = make_paths(args.paths)
        results["distinct_paths"] = int(data.path.nunique())
        results.update(time_paths(data, args.mam_paths, args.repeats))
        ca, plait_markov = results["channelattribution_markov"], results["plait_markov"]
        results["markov_speedup_vs_channelattribution"] = ca / plait_markov
        results["shapley_speedup_vs_channelattribution_markov"] = ca / results["plait_shapley"]

    print(f"\n{'measure':48} {'value':>12}")
    for name, value in results.items():
        shown = f"{value:12.3f}" if isinstance(value, float) else f"{value!s:>12}"
        print(f"{name:48} {shown}")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
