"""The analytics pages in real headless Chromium against ``plait demo`` behind ``plait
serve``: the Channels table shows exactly the API's numbers as the model, the dates and the
time zone change, its CSV download is the same table, Journeys draws its Sankey, and every
page is saved as screenshots (desktop and phone)."""

from __future__ import annotations

import csv
from typing import Any

import pytest
from tests.conftest import DemoSite, screenshot

pytestmark = pytest.mark.slow

COLUMNS = [
    "sessions",
    "sessions_by_original_channel",
    "contacts",
    "qualified",
    "sales",
    "revenue",
    "contact_rate",
    "qualified_rate",
    "sale_rate",
]


def shown(value: float, key: str, cell: str, thousands: str = ",") -> str:
    """The API's ``value`` written as the page (or, without ``thousands``, the CSV) writes
    it, with as many decimals as ``cell`` has."""
    digits = len(cell.split(".")[1]) if "." in cell else 0
    number = value * 100 if key.endswith("_rate") else value
    return f"{number:{thousands}.{digits}f}"


def page_table(page: Any) -> list[list[str]]:
    """The channel table's body and totals rows: channel, then the cells as shown."""
    return page.eval_on_selector_all(
        "#channel-table tbody tr, #channel-table tfoot tr",
        """rows => rows.map(row => [row.dataset.channel,
            ...[...row.querySelectorAll('td')].map(td => td.innerText.trim())])""",
    )


def filters(page: Any) -> dict[str, str]:
    """The date range the page shows, as the API's query parameters."""
    return {
        "from": page.get_by_label("From", exact=True).input_value(),
        "to": page.get_by_label("To", exact=True).input_value(),
        "tz": page.get_by_label("Time zone").input_value(),
    }


def api_table(demo_site: DemoSite, model: str, dates: dict[str, str]) -> list[list[str]]:
    """The API's channel rows and totals, shaped like ``page_table`` once written as shown."""
    body = demo_site.api("/api/analytics/channels", model=model, **dates)
    assert (body["from"], body["to"], body["tz"]) == (dates["from"], dates["to"], dates["tz"])
    return [[row["channel"], *[row[k] for k in COLUMNS]] for row in body["rows"]] + [
        ["Total", *[body["totals"][k] for k in COLUMNS]]
    ]


def assert_shows(
    page_rows: list[list[str]], api_rows: list[list[Any]], thousands: str = ","
) -> None:
    """Same channels in the same order, and every number exactly as the API has it."""
    assert [row[0] for row in page_rows] == [row[0] for row in api_rows]
    for shown_row, api_row in zip(page_rows, api_rows, strict=True):
        expected = [
            shown(value, key, cell, thousands)
            for key, value, cell in zip(COLUMNS, api_row[1:], shown_row[1:], strict=True)
        ]
        assert shown_row[1:] == expected, shown_row[0]


def test_channels_show_the_api_numbers_for_each_model_and_range_and_download_them(
    page_as: Any, demo_site: DemoSite, tmp_path: Any
) -> None:
    page = page_as("marketer")
    page.goto("/channels")
    assert page.get_by_label("Attribution model").input_value() == "last_touch"

    with page.expect_navigation():  # the model picker applies itself when changed
        page.get_by_label("Attribution model").select_option("first_touch")
    assert "model=first_touch" in page.url
    dates = filters(page)
    first = page_table(page)
    assert_shows(first, api_table(demo_site, "first_touch", dates))

    with page.expect_navigation():
        page.get_by_label("Attribution model").select_option("last_touch")
    last = page_table(page)
    assert last != first
    assert_shows(last, api_table(demo_site, "last_touch", dates))

    page.get_by_role("link", name="Last 7 days").click()
    page.wait_for_url("**preset=last_7_days**")
    assert page.get_by_role("link", name="Last 7 days").get_attribute("aria-current") == "true"
    week = filters(page)
    assert week != dates
    assert_shows(page_table(page), api_table(demo_site, "last_touch", week))

    page.get_by_label("From", exact=True).fill(dates["from"])
    page.get_by_label("To", exact=True).fill(week["to"])
    page.get_by_label("Time zone").select_option("America/New_York")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**tz=America%2FNew_York**")
    chosen = {"from": dates["from"], "to": week["to"], "tz": "America/New_York"}
    assert filters(page) == chosen
    shown_rows = page_table(page)
    assert_shows(shown_rows, api_table(demo_site, "last_touch", chosen))

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    saved = tmp_path / "channels.csv"
    download.value.save_as(saved)
    with saved.open(newline="", encoding="utf-8") as file:
        lines = list(csv.reader(file))
    headers = page.eval_on_selector_all(
        "#channel-table thead th", "cells => cells.map(c => c.innerText.trim())"
    )
    assert lines[0] == headers
    assert lines[1:] == [[row[0], *[c.replace(",", "") for c in row[1:]]] for row in shown_rows]
    assert_shows(lines[1:], api_table(demo_site, "last_touch", chosen), thousands="")

    page.goto("/channels")
    page.wait_for_selector("[data-chart='chart-sales'] .main-svg")
    screenshot(page, "channels")
    page.get_by_label("Compare with").select_option("markov")
    page.wait_for_url("**compare=markov**")
    page.wait_for_selector("[data-chart='chart-sales'] .main-svg")
    headers = page.eval_on_selector_all(
        "#channel-table thead th", "cells => cells.map(c => c.innerText.trim())"
    )
    assert "Sales (last touch)" in headers
    assert "Sales (markov chain)" in headers
    screenshot(page, "channels-compare")


def test_overview_and_journeys_are_drawn(page_as: Any, demo_site: DemoSite) -> None:
    page = page_as("marketer")
    page.goto("/overview")
    page.wait_for_selector("[data-chart='spark-sessions'] .main-svg")
    dates = filters(page)
    totals = demo_site.api("/api/analytics/channels", **dates)["totals"]
    sessions = page.locator("[data-kpi='sessions'] .value").inner_text()
    assert sessions == f"{totals['sessions']:,.0f}"
    assert page.locator(".kpi .delta").count() == 6
    screenshot(page, "overview")

    page.get_by_role("link", name="Journeys", exact=True).click()
    page.wait_for_url("**/journeys")
    page.wait_for_selector("[data-chart='sankey-chart'] g.sankey")
    nodes = page.locator("[data-chart='sankey-chart'] g.sankey-node").count()
    moves = demo_site.api("/api/analytics/transitions", **dates)["rows"]
    assert nodes >= 3
    assert moves
    assert page.locator("[data-chart='funnel-chart'] .main-svg").count() >= 1
    with page.expect_navigation():
        page.get_by_label("Conversion").select_option("contact")
    assert "kind=contact" in page.url
    page.wait_for_selector("[data-chart='sankey-chart'] g.sankey")
    screenshot(page, "journeys")
