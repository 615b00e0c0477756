"""The channel report, daily totals, paths, transitions and funnel on the hand-worked world of
``analytics_world.py``; through the Python API, HTTP and the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from analytics_world import build_world

from plait.analytics import (
    MODELS,
    attribution,
    channel_report,
    daily_totals,
    funnel,
    paths,
    period,
    transitions,
)
from plait.analytics.period import days
from plait.core.settings import Settings

MARCH = period("2026-03-01", "2026-03-06")  # the period of the world in analytics_world.py


@pytest.fixture
def world(send_events, engine: sa.Engine, settings: Settings) -> Settings:
    return build_world(send_events, engine, settings)


def by_channel(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["channel"]: row for row in table.to_dict(orient="records")}


def test_channel_report_under_last_and_first_touch(world: Settings) -> None:
    last = by_channel(channel_report(world, MARCH, "last_touch"))
    assert {c: r["sessions"] for c, r in last.items() if r["sessions"]} == {
        "Paid Social": 1,
        "Organic Search": 2,
        "Email": 1,
        "Direct": 2,
    }
    # Ann's three sessions go to her original channel, Bob's two and Dee's one to Direct.
    assert {
        c: r["sessions_by_original_channel"]
        for c, r in last.items()
        if r["sessions_by_original_channel"]
    } == {"Paid Social": 3, "Direct": 3}
    # Ann made contact after Paid Social > Organic Search; Bob after Direct.
    assert last["Organic Search"]["contacts"] == 1
    assert last["Direct"]["contacts"] == 1
    assert last["Organic Search"]["qualified"] == 1
    assert (last["Email"]["sales"], last["Email"]["revenue"]) == (1, 100)
    assert (last["Organic Search"]["sales"], last["Organic Search"]["revenue"]) == (1, 50)
    assert (last["(none)"]["sales"], last["(none)"]["revenue"]) == (1, 20)
    assert "Paid Search" not in last  # Eve's order is on 03-07 in UTC
    assert last["Direct"]["contact_rate"] == pytest.approx(1 / 2)
    assert last["Organic Search"]["sale_rate"] == pytest.approx(1 / 2)

    first = by_channel(channel_report(world, MARCH, "first_touch"))
    assert first["Paid Social"]["revenue"] == 100
    assert first["Direct"]["revenue"] == 50
    assert first["Paid Social"]["contacts"] == 1
    assert first["Direct"]["qualified"] == 1


def test_multi_touch_shares(world: Settings) -> None:
    models = ["linear", "w_shaped", "full_path", "time_decay"]
    credit = by_channel(attribution(world, MARCH, models, "sale"))
    # Linear: Ann's 100 in thirds, Bob's 50 in halves.
    assert credit["Paid Social"]["linear_value"] == pytest.approx(100 / 3)
    assert credit["Organic Search"]["linear_value"] == pytest.approx(100 / 3 + 25)
    assert credit["Direct"]["linear_value"] == pytest.approx(25)
    # W-shaped for Ann: first touch (Paid Social) and the contact's touch (Organic Search)
    # 30 % each, Email the other 10 %, normalised: 3/7, 3/7, 1/7.
    assert credit["Email"]["w_shaped_value"] == pytest.approx(100 / 7)
    # Full path: first, contact and sale touches 22.5 % each -> a third each.
    assert credit["Email"]["full_path_value"] == pytest.approx(100 / 3)
    # Time decay (half-life 7 days): Ann's touches were 4 d 2 h 10 min, 2 d 3 h 10 min and
    # 10 min before her order; Bob's 1 d 18 h 5 min and 5 min before his.
    week = 7 * 86400
    ann = {"Paid Social": 353_400, "Organic Search": 184_200, "Email": 600}
    bob = {"Direct": 151_500, "Organic Search": 300}
    for journey, revenue in ((ann, 100), (bob, 50)):
        total = sum(0.5 ** (age / week) for age in journey.values())
        for channel, age in journey.items():
            journey[channel] = revenue * 0.5 ** (age / week) / total
    assert credit["Paid Social"]["time_decay_value"] == pytest.approx(ann["Paid Social"])
    assert credit["Organic Search"]["time_decay_value"] == pytest.approx(
        ann["Organic Search"] + bob["Organic Search"]
    )


def test_every_model_gives_out_exactly_the_unattributed_totals(world: Settings) -> None:
    for model in MODELS:
        report = channel_report(world, MARCH, model)
        assert report.contacts.sum() == pytest.approx(2), model
        assert report.qualified.sum() == pytest.approx(1), model
        assert report.sales.sum() == pytest.approx(3), model
        assert report.revenue.sum() == pytest.approx(170), model


def test_time_zone_moves_the_days(world: Settings) -> None:
    new_york = channel_report(world, period("2026-03-01", "2026-03-06", "America/New_York"))
    assert by_channel(new_york)["Paid Search"]["revenue"] == 10  # Eve, 03-06 21:00 there
    assert new_york.sales.sum() == 4


TOTALS = ["sessions", "contacts", "qualified", "sales", "revenue"]


def per_day(table: pd.DataFrame) -> dict[str, list[float]]:
    return {row["day"].isoformat(): [row[c] for c in TOTALS] for row in table.to_dict("records")}


def test_daily_totals_count_each_day(world: Settings) -> None:
    table = daily_totals(world, MARCH)
    assert list(table.columns) == ["day", *TOTALS]
    assert per_day(table) == {
        "2026-03-01": [1, 0, 0, 0, 0],  # Ann's Paid Social visit; no contact yet
        "2026-03-02": [2, 1, 0, 0, 0],  # Bob (signs up) and Dee
        "2026-03-03": [1, 1, 0, 0, 0],  # Ann identifies with her e-mail
        "2026-03-04": [1, 0, 1, 2, 70],  # Bob qualifies and orders; Cy's untouched order
        "2026-03-05": [1, 0, 0, 1, 100],
        "2026-03-06": [0, 0, 0, 0, 0],
    }
    assert table[["sessions", "contacts", "qualified", "sales"]].dtypes.eq("int64").all()


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_daily_totals_add_up_to_the_channel_report_under_every_model(
    world: Settings, tz: str
) -> None:
    span = period("2026-03-01", "2026-03-06", tz)
    summed = daily_totals(world, span)[TOTALS].sum()
    for model in MODELS if tz == "UTC" else ["last_touch", "markov"]:
        report = channel_report(world, span, model)[TOTALS].sum()
        assert summed.to_dict() == pytest.approx(report.to_dict()), model


def test_daily_totals_have_every_day_and_zeros_away_from_the_sessions(world: Settings) -> None:
    table = daily_totals(world, period("2026-02-20", "2026-03-10"))
    assert table.day.tolist() == [date(2026, 2, 20) + timedelta(days=n) for n in range(19)]
    busy = {"2026-02-25", "2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"}
    busy.add("2026-03-07")  # Eve's order at 02:00 UTC
    for day, values in per_day(table).items():
        assert any(values) if day in busy else values == [0, 0, 0, 0, 0], day


def test_daily_totals_follow_the_time_zone(world: Settings) -> None:
    # Eve's order at 03-07 02:00 UTC is the evening before in New York.
    new_york = per_day(daily_totals(world, period("2026-03-01", "2026-03-06", "America/New_York")))
    assert new_york["2026-03-06"] == [0, 0, 0, 1, 10]
    # Dee's visit at 03-02 16:00 UTC is after midnight, 03-03, in Tokyo.
    tokyo = per_day(daily_totals(world, period("2026-03-01", "2026-03-06", "Asia/Tokyo")))
    assert tokyo["2026-03-02"] == [1, 1, 0, 0, 0]
    assert tokyo["2026-03-03"] == [2, 1, 0, 0, 0]


def test_days_are_23_or_25_hours_across_daylight_saving() -> None:
    hours = {
        day.isoformat(): (end - start) / timedelta(hours=1)
        for day, start, end in days(period("2026-03-07", "2026-03-09", "America/New_York"))
    }
    assert hours == {"2026-03-07": 24, "2026-03-08": 23, "2026-03-09": 24}
    autumn = days(period("2026-10-25", "2026-10-25", "Europe/Berlin"))
    assert (autumn[0][2] - autumn[0][1]) / timedelta(hours=1) == 25


def test_paths_transitions_and_funnel(world: Settings) -> None:
    top = paths(world, MARCH, "sale").set_index("path").journeys.to_dict()
    assert top == {
        "Paid Social > Organic Search > Email": 1,
        "Direct > Organic Search": 1,
        "(none)": 1,
    }
    dropped = paths(world, MARCH, "sale", outcome="drop-off")
    assert dropped.set_index("path").journeys.to_dict() == {"Direct": 1}  # Dee

    moves = transitions(world, MARCH, "sale")
    counts = {(r["source"], r["target"]): r["count"] for r in moves.to_dict(orient="records")}
    assert counts == {
        ("(start)", "Paid Social"): 1,
        ("(start)", "Direct"): 2,
        ("Paid Social", "Organic Search"): 1,
        ("Organic Search", "Email"): 1,
        ("Email", "(conversion)"): 1,
        ("Direct", "Organic Search"): 1,
        ("Organic Search", "(conversion)"): 1,
        ("Direct", "(drop-off)"): 1,
    }
    start = moves[moves.source == "(start)"].set_index("target").probability
    assert start["Direct"] == pytest.approx(2 / 3)

    stages = funnel(world, MARCH).set_index("channel")
    assert stages.loc["Paid Social", ["sessions", "contacts", "qualified", "sales"]].tolist() == [
        1,
        1,
        1,
        1,
    ]
    assert stages.loc["Direct", ["sessions", "contacts", "qualified", "sales"]].tolist() == [
        2,
        1,
        1,
        1,
    ]
    assert stages.loc["Direct", "sessions_to_contacts_drop_off"] == 1


def test_http_reports_need_an_analytics_role_and_valid_input(world: Settings, token_api) -> None:
    marketer = token_api("marketer")
    body = marketer.get("/api/analytics/channels?from=2026-03-01&to=2026-03-06&model=linear")
    assert body["model"] == "linear"
    assert body["totals"]["sales"] == pytest.approx(3)
    assert body["totals"]["revenue"] == pytest.approx(170)
    assert {row["channel"] for row in body["rows"]} >= {"Email", "Direct", "(none)"}
    funnel_body = marketer.get("/api/analytics/funnel?from=2026-03-01&to=2026-03-06")
    assert {row["channel"] for row in funnel_body["rows"]} == {"Paid Social", "Direct"}
    assert marketer.get("/api/analytics/paths?from=2026-03-01&to=2026-03-06")["rows"]
    assert marketer.get("/api/analytics/transitions?from=2026-03-01&to=2026-03-06")["rows"]
    several = marketer.get(
        "/api/analytics/attribution?from=2026-03-01&to=2026-03-06&model=markov&model=shapley"
    )
    assert set(several["rows"][0]) == {
        "channel",
        "markov_conversions",
        "markov_value",
        "shapley_conversions",
        "shapley_value",
    }

    token_api("agent").get("/api/analytics/channels?from=2026-03-01&to=2026-03-06", status=403)
    for query, field in (
        ("from=2026-03-01&to=2026-03-06&model=magic", "model"),
        ("from=2026-03-07&to=2026-03-01", "from"),
        ("from=March&to=2026-03-06", "from"),
        ("from=2026-03-01&to=2026-03-06&tz=Mars/Olympus", "tz"),
    ):
        error = marketer.get(f"/api/analytics/channels?{query}", status=400)["error"]
        assert error["field"] == field
    missing = marketer.get("/api/analytics/channels?to=2026-03-06", status=400)["error"]
    assert missing["field"] == "from"
    marketer.get("/api/analytics/paths?from=2026-03-01&to=2026-03-06&kind=refund", status=400)


def test_cli_reports_in_every_format(world: Settings, cli, tmp_path) -> None:
    shown = cli(
        "report", "channels", "--from", "2026-03-01", "--to", "2026-03-06", "--format", "json"
    )
    assert shown.returncode == 0, shown.stderr
    rows = by_channel(pd.DataFrame(json.loads(shown.stdout)))
    assert rows["Email"]["revenue"] == 100

    target = tmp_path / "report.parquet"
    written = cli(
        "report", "channels", "--from", "2026-03-01", "--to", "2026-03-06",
        "--model", "markov", "--format", "parquet", "--output", str(target),
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert pd.read_parquet(target).sales.sum() == pytest.approx(3)

    as_csv = cli(
        "report", "funnel", "--from", "2026-03-01", "--to", "2026-03-06", "--format", "csv"
    )
    assert as_csv.stdout.splitlines()[0].startswith("channel,sessions,contacts")

    for args, message in (
        (
            ["channels", "--from", "2026-03-01", "--to", "2026-03-06", "--model", "nope"],
            "unknown model",
        ),
        (["channels", "--from", "2026-03-09", "--to", "2026-03-06"], "is after"),
        (
            ["channels", "--from", "2026-03-01", "--to", "2026-03-06", "--format", "parquet"],
            "--output",
        ),
        (["paths"], "--from"),
    ):
        failed = cli("report", *args)
        assert failed.returncode == 2, args
        assert message in failed.stderr, failed.stderr


def test_path_data_file_from_the_cli(cli, tmp_path) -> None:
    data = tmp_path / "paths.csv"
    pd.DataFrame(
        {"path": ["A > B", "B", "A"], "total_conversions": [2, 1, 0], "total_null": [1, 1, 3]}
    ).to_csv(data, index=False)
    shown = cli("report", "paths", str(data), "--models", "first_touch,linear", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    rows = {row["channel"]: row for row in json.loads(shown.stdout)}
    assert rows["A"]["first_touch_conversions"] == 2
    assert rows["B"]["linear_conversions"] == 2
    missing = cli("report", "paths", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


def test_report_options_override_the_settings_for_one_report(
    world: Settings, token_api, cli
) -> None:
    marketer = token_api("marketer")
    # A one-day lookback leaves Ann's order only its same-day Email touch, so first touch
    # gives it to Email instead of Paid Social, and Bob's (same day as his search) to search.
    body = marketer.get(
        "/api/analytics/channels?from=2026-03-01&to=2026-03-06&model=first_touch&lookback_days=1"
    )
    revenue = {row["channel"]: row["revenue"] for row in body["rows"] if row["revenue"]}
    assert revenue == {"Email": 100, "Organic Search": 50, "(none)": 20}
    for query, field in (("lookback_days=0", "lookback_days"), ("markov_order=4", "markov_order")):
        error = marketer.get(
            f"/api/analytics/channels?from=2026-03-01&to=2026-03-06&{query}", status=400
        )["error"]
        assert error["field"] == field

    shown = cli(
        "report", "attribution", "--from", "2026-03-01", "--to", "2026-03-06",
        "--models", "first_touch", "--lookback-days", "1", "--format", "json", "--no-refresh",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    rows = {row["channel"]: row["first_touch_value"] for row in json.loads(shown.stdout)}
    assert rows["Email"] == 100
    failed = cli("report", "channels", "--from", "2026-03-01", "--to", "2026-03-06",
                 "--markov-order", "9")  # fmt: skip
    assert failed.returncode == 2
    assert "markov_order" in failed.stderr


def test_reports_on_an_empty_lake_are_empty_not_errors(settings: Settings) -> None:
    assert channel_report(settings, MARCH, "shapley").empty
    assert attribution(settings, MARCH, MODELS, "sale").empty
    assert paths(settings, MARCH).empty
    assert transitions(settings, MARCH).empty
    assert funnel(settings, MARCH).empty
    quiet = daily_totals(settings, MARCH)
    assert len(quiet) == 6
    assert (quiet[TOTALS] == 0).all().all()
