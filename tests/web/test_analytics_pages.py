"""The analytics pages (Overview, Channels, Journeys) in-process, on SQLite and PostgreSQL:
who may open them, what they show for a tiny world of four customers, the CSV, and clear
400 pages for bad filters."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable
from datetime import date, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from tests.conftest import Api, WebSession

from plait.analytics import daily_totals, period
from plait.analytics.catalog import MODELS
from plait.collect.replication import sync_lake
from plait.core.clock import utcnow
from plait.core.settings import Settings
from plait.identity.identity_map import export_identity_map
from plait.profiles.pipeline import resolve
from plait.web.channels import MODEL_LABELS
from plait.web.date_range import PRESETS, date_range

GOOGLE = {"referrer": "https://www.google.com/"}
EMAIL = "https://shop.example/?utm_source=newsletter&utm_medium=email"
SOCIAL = "https://shop.example/?utm_source=facebook&utm_medium=paid_social"


def page(who: str, at: str, url: str = "https://shop.example/", **context: Any) -> dict:
    return {
        "type": "page",
        "anonymousId": who,
        "timestamp": at,
        "context": {"page": {"url": url, **context}},
    }


def track(who: str, at: str, event: str, **properties: Any) -> dict:
    return {
        "type": "track",
        "anonymousId": who,
        "timestamp": at,
        "event": event,
        "properties": properties,
    }


# Previous period 03-01..03-03, current 03-04..03-06 (UTC):
# - Ann: Organic Search on 03-02 and signs up (contact); an e-mail visit on 03-05 and an
#   order of 80 (sale after Organic Search > Email).
# - Bob: Direct on 03-04 and qualifies; Direct again on 03-06 and orders 45.50.
# - Cy: a Paid Social visit on 03-05, nothing else (drops off).
# - Dee: an order of 20 on 03-06 with no touch: "(none)".
WORLD = [
    page("ann", "2026-03-02T10:00:00Z", **GOOGLE),
    track("ann", "2026-03-02T10:05:00Z", "Signed Up"),
    page("ann", "2026-03-05T09:00:00Z", EMAIL),
    track("ann", "2026-03-05T09:10:00Z", "Order Completed", revenue=80, currency="USD"),
    page("bob", "2026-03-04T12:00:00Z"),
    track("bob", "2026-03-04T12:05:00Z", "Lead Qualified"),
    page("bob", "2026-03-06T18:00:00Z"),
    track("bob", "2026-03-06T18:02:00Z", "Order Completed", revenue=45.5, currency="USD"),
    page("cy", "2026-03-05T15:00:00Z", SOCIAL),
    track("dee", "2026-03-06T11:00:00Z", "Order Completed", revenue=20, currency="USD"),
]
RANGE = {"from": "2026-03-04", "to": "2026-03-06", "tz": "UTC"}


@pytest.fixture
def world(send_events, engine: sa.Engine, settings: Settings) -> Settings:
    """The four customers, resolved and replicated to the lake with their identity map."""
    send_events(*WORLD)
    resolve(engine, settings)
    sync_lake(engine, settings)
    export_identity_map(engine, settings)
    return settings


@pytest.fixture
def marketer(web_as: Callable[[str], WebSession]) -> WebSession:
    return web_as("marketer")


def url(path: str, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{path}?{query}" if query else path


class Tables(HTMLParser):
    """Every ``<table>`` of a page as header texts and rows of cell texts (thead, tbody
    and tfoot rows alike), with the texts of elements hidden from sight left out."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list]] = {}
        self._table: dict[str, list] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False
        self._hidden = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if self._hidden or attributes.get("aria-hidden") == "true" or tag == "caption":
            self._hidden += 1
        elif tag == "table":
            self._table = {"header": [], "rows": []}
            self.tables[attributes.get("id") or str(len(self.tables))] = self._table
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._hidden:
            self._hidden -= 1
            return
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._table is not None and self._row is not None:
            self._table["header" if self._in_head else "rows"].append(self._row)
            self._row = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._hidden:
            self._cell.append(data)


def table_of(html: str, table_id: str = "channel-table") -> tuple[list[str], list[list[str]]]:
    found = Tables(html).tables[table_id]
    return found["header"][0], found["rows"]


def chart_spec(html: str, chart_id: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{chart_id}">(.*?)</script>', html)
    assert found, f"no chart {chart_id}"
    return json.loads(found.group(1))


def shown(value: float, cell: str, percent: bool = False) -> str:
    """``value`` written as the page writes it, with as many decimals as ``cell`` has."""
    digits = len(cell.split(".")[1]) if "." in cell else 0
    return f"{value * 100 if percent else value:,.{digits}f}"


def test_a_marketer_opens_all_three_pages(world: Settings, marketer: WebSession) -> None:
    overview = marketer.get(url("/overview", **RANGE))
    assert overview.status_code == 200
    assert "<title>Overview · Plait</title>" in overview.text
    assert "against 2026-03-01 to 2026-03-03" in overview.text
    channels = marketer.get(url("/channels", **RANGE))
    assert channels.status_code == 200
    assert "Download CSV" in channels.text
    journeys = marketer.get(url("/journeys", **RANGE))
    assert journeys.status_code == 200
    assert 'data-chart="sankey-chart"' in journeys.text
    for response in (overview, channels, journeys):
        assert '<script src="/static/plotly-' in response.text
        assert "<script>" not in response.text  # the CSP allows no inline scripts


@pytest.mark.parametrize("path", ["/overview", "/channels", "/channels.csv", "/journeys"])
def test_an_agent_may_not_open_the_analytics_pages(
    web_as: Callable[[str], WebSession], path: str
) -> None:
    response = web_as("agent").get(url(path, **RANGE))
    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"]
    assert "may not open this page" in response.text


def test_strangers_are_sent_to_sign_in(client) -> None:
    response = client.get("/channels?model=linear", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fchannels%3Fmodel%3Dlinear"


BAD_FILTERS = [
    ("/overview", {"from": "2026-13-01"}, "'2026-13-01' is not a date (YYYY-MM-DD)"),
    ("/overview", {"from": "2026-03-01", "to": "yesterday"}, "'yesterday' is not a date"),
    ("/overview", {"to": "03/06/2026"}, "'03/06/2026' is not a date"),
    ("/channels", {"from": "2026-03-06", "to": "2026-03-01"}, "from (2026-03-06) is after to"),
    ("/journeys", {"tz": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'"),
    ("/channels.csv", {"tz": "../etc"}, "unknown time zone '../etc'"),
    ("/overview", {"preset": "yesterday"}, "unknown preset 'yesterday'; choose from last_7_days"),
    ("/channels", {"from": "1990-01-01", "to": "2026-01-01"}, "choose at most 3660 days"),
    ("/channels", {"model": "best"}, "unknown model 'best'; choose from first_touch"),
    ("/channels.csv", {"model": "Linear"}, "unknown model 'Linear'"),
    ("/channels", {"compare": "gut_feeling"}, "unknown model to compare with 'gut_feeling'"),
    ("/journeys", {"kind": "purchase"}, "unknown conversion 'purchase'; choose from contact"),
]


def test_bad_filters_give_a_clear_400_page(
    marketer: WebSession, engine: sa.Engine, settings: Settings
) -> None:
    for path, params, message in BAD_FILTERS:
        response = marketer.get(url(path, **params))
        assert response.status_code == 400, (path, params)
        assert "text/html" in response.headers["content-type"]
        assert "That did not work" in response.text
        assert message.replace("'", "&#39;") in response.text, (path, params, response.text)


def test_overview_kpis_are_the_sums_of_the_daily_totals_and_the_api_totals(
    world: Settings, marketer: WebSession, admin_api: Api, engine: sa.Engine
) -> None:
    html = marketer.get(url("/overview", **RANGE)).text
    kpis = {
        key: (value, previous)
        for key, value, previous in re.findall(
            r'data-kpi="(\w+)".*?<p class="value">([^<]+)</p>'
            r'.*?<p class="previous">([^<]+?) in the previous',
            html,
            re.S,
        )
    }
    days = daily_totals(world, period("2026-03-01", "2026-03-06"))
    current, previous = days[days.day >= date(2026, 3, 4)], days[days.day < date(2026, 3, 4)]
    for key in ("sessions", "contacts", "qualified", "sales"):
        assert kpis[key] == (f"{current[key].sum():,}", f"{previous[key].sum():,}"), key
    assert kpis["revenue"] == ("145.50", "0.00")
    assert kpis["conversion_rate"] == ("75.00 %", "0.00 %")  # 3 sales / 4 sessions; 0 / 1
    assert (current.sessions.sum(), current.sales.sum(), current.revenue.sum()) == (4, 3, 145.5)

    totals = admin_api.get(url("/api/analytics/channels", **RANGE))["totals"]
    for key in ("sessions", "contacts", "qualified", "sales"):
        assert kpis[key][0] == f"{totals[key]:,.0f}"
    assert kpis["revenue"][0] == f"{totals['revenue']:,.2f}"

    # Changes read without colour: a word and an arrow beside the class.
    assert 'class="delta up"><span aria-hidden="true">▲</span> up 300.0 %' in html  # sessions
    assert 'class="delta up"><span aria-hidden="true">▲</span> up from 0' in html
    assert 'class="delta down"><span aria-hidden="true">▼</span> down 100.0 %' in html
    sessions = chart_spec(html, "spark-sessions")
    assert sessions["data"][1]["y"] == [1, 2, 1]  # the current days, drawn over the previous
    assert sessions["layout"]["xaxis"]["visible"] is False


def test_the_channel_table_shows_the_api_rows_under_each_model(
    world: Settings, marketer: WebSession, admin_api: Api
) -> None:
    tables = {}
    for model in ("first_touch", "last_touch"):
        header, rows = table_of(marketer.get(url("/channels", model=model, **RANGE)).text)
        assert header == [
            "Channel",
            "Sessions",
            "Sessions by original channel",
            "Contacts",
            "Qualified",
            "Sales",
            "Revenue",
            "Contact rate %",
            "Qualified rate %",
            "Sale rate %",
        ]
        body = admin_api.get(url("/api/analytics/channels", model=model, **RANGE))
        keys = ["channel", *(k for k in body["rows"][0] if k != "channel")]
        expected = [
            [row["channel"]]
            + [
                shown(row[key], cell, percent=key.endswith("_rate"))
                for key, cell in zip(keys[1:], cells[1:], strict=True)
            ]
            for row, cells in zip(body["rows"], rows, strict=False)
        ]
        assert rows[:-1] == expected
        totals = body["totals"]
        assert rows[-1] == ["Total"] + [
            shown(totals[key], cell, percent=key.endswith("_rate"))
            for key, cell in zip(keys[1:], rows[-1][1:], strict=True)
        ]
        tables[model] = {row[0]: row for row in rows}
    # Ann's order: Organic Search under first touch, Email under last touch.
    assert tables["first_touch"]["Organic Search"][6] == "80.00"
    assert tables["last_touch"]["Email"][6] == "80.00"
    assert tables["last_touch"]["(none)"][5:7] == ["1", "20.00"]


def test_two_models_side_by_side(world: Settings, marketer: WebSession) -> None:
    html = marketer.get(url("/channels", model="first_touch", compare="last_touch", **RANGE)).text
    header, rows = table_of(html)
    assert header[:5] == [
        "Channel",
        "Sessions",
        "Sessions by original channel",
        "Contacts (first touch)",
        "Contacts (last touch)",
    ]
    assert "Sales (first touch)" in header
    assert "Sale rate % (last touch)" in header
    revenue = header.index("Revenue (first touch)")
    assert header[revenue + 1] == "Revenue (last touch)"
    by_channel = {row[0]: row for row in rows}
    assert by_channel["Email"][revenue : revenue + 2] == ["0.00", "80.00"]
    assert by_channel["Organic Search"][revenue : revenue + 2] == ["80.00", "0.00"]
    sales = chart_spec(html, "chart-sales")
    assert [trace["name"] for trace in sales["data"]] == ["First touch", "Last touch"]
    assert sales["layout"]["barmode"] == "group"


def test_comparing_a_model_with_itself_says_so(world: Settings, marketer: WebSession) -> None:
    response = marketer.get(url("/channels", model="linear", compare="linear", **RANGE))
    assert response.status_code == 200
    assert "A model compared with itself shows nothing new" in response.text
    assert "(linear)" not in table_of(response.text)[0][3]


@pytest.mark.parametrize("compare", [None, "markov"])
def test_the_csv_is_the_table_on_the_page(
    world: Settings, marketer: WebSession, compare: str | None
) -> None:
    params = {"model": "linear", **RANGE} | ({"compare": compare} if compare else {})
    header, rows = table_of(marketer.get(url("/channels", **params)).text)
    response = marketer.get(url("/channels.csv", **params))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert "2026-03-04-to-2026-03-06.csv" in response.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines[0] == header
    assert lines[1:] == [[cell.replace(",", "") for cell in row] for row in rows]
    assert len(lines) == 2 + len({r[0] for r in rows[:-1]})  # a row per channel and the totals


def test_the_page_links_its_csv_with_the_same_filters(
    world: Settings, marketer: WebSession
) -> None:
    html = marketer.get(url("/channels", model="shapley", compare="w_shaped", **RANGE)).text
    link = re.search(r'href="(/channels\.csv\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert link == (
        "/channels.csv?from=2026-03-04&to=2026-03-06&tz=UTC&model=shapley&compare=w_shaped"
    )


def test_every_model_is_offered_by_its_name(world: Settings, marketer: WebSession) -> None:
    html = marketer.get(url("/channels", **RANGE)).text
    assert set(MODEL_LABELS) == set(MODELS)
    picker = html.split('id="filter-model"')[1].split("</select>")[0]
    offered = re.findall(r'<option value="(\w+)"[^>]*>([^<]+)</option>', picker)
    assert [value for value, _ in offered] == list(MODELS)
    assert ("markov", "Markov chain") in offered
    assert ("shapley", "Shapley value") in offered
    assert ("last_touch", "Last touch") in offered
    assert re.search(r'<option value="last_touch" selected>', picker)  # the API's default


def test_journeys_show_the_transitions_paths_and_funnel(
    world: Settings, marketer: WebSession
) -> None:
    html = marketer.get(url("/journeys", **RANGE)).text
    sankey = chart_spec(html, "sankey-chart")["data"][0]
    assert sankey["type"] == "sankey"
    labels = sankey["node"]["label"]
    # Sales of the range: Ann (Organic Search > Email), Bob (Direct > Direct), Dee (none).
    assert "Start (3)" in labels
    assert "Sale (2)" in labels  # the conversion node is named after the kind
    assert "Drop-off (1)" in labels  # Cy
    links = {
        (labels[s].split(" (")[0], labels[t].split(" (")[0]): v
        for s, t, v in zip(
            sankey["link"]["source"], sankey["link"]["target"], sankey["link"]["value"], strict=True
        )
    }
    assert links[("Organic Search", "Email")] == 1
    assert links[("Email", "Sale")] == 1
    assert links[("Paid Social", "Drop-off")] == 1

    tables = Tables(html).tables
    converting, dropping = (tables[key]["rows"] for key in ("conversion-paths", "drop-off-paths"))
    assert ["Organic Search → Email", "1", "33.3", "1", "80.00"] in converting
    assert ["(none)", "1", "33.3", "1", "20.00"] in converting  # Dee, never touched
    assert ["Direct \u00d72", "1", "33.3", "1", "45.50"] in converting
    assert dropping == [["Paid Social", "1", "100.0"]]
    _, funnel = table_of(html, "funnel-table")
    # Customers whose first touch was in the range: Bob (Direct), Cy (Paid Social).
    assert ["Direct", "1", "1", "1", "1", "0 (0 %)", "0 (0 %)", "0 (0 %)", "100.0"] in funnel
    assert funnel[-1][:5] == ["Total", "2", "1", "1", "1"]
    assert chart_spec(html, "funnel-chart")["data"][0]["type"] == "funnel"


def test_the_kind_changes_the_journeys(world: Settings, marketer: WebSession) -> None:
    html = marketer.get(url("/journeys", kind="contact", **RANGE)).text
    assert "Towards a contact" in html
    labels = chart_spec(html, "sankey-chart")["data"][0]["node"]["label"]
    # No contact in the range (Ann signed up on 03-02); Bob and Cy never made one.
    assert labels == ["Start (2)", "Direct (2)", "Paid Social (1)", *labels[3:5], "Drop-off (2)"]
    assert '<option value="contact" selected>' in html
    assert "preset=last_7_days&amp;tz=UTC&amp;kind=contact" in html


def test_an_empty_range_shows_empty_reports(world: Settings, marketer: WebSession) -> None:
    quiet = {"from": "2025-01-01", "to": "2025-01-31", "tz": "UTC"}
    for path in ("/overview", "/channels", "/journeys"):
        response = marketer.get(url(path, **quiet))
        assert response.status_code == 200, path
    assert (
        "No journeys towards a sale in this range." in marketer.get(url("/journeys", **quiet)).text
    )


def test_the_default_range_is_the_last_30_days_in_the_time_zone(
    world: Settings, marketer: WebSession
) -> None:
    html = marketer.get("/channels?tz=Pacific/Auckland").text
    today = utcnow().astimezone(ZoneInfo("Pacific/Auckland")).date()
    assert f'name="from" value="{today - timedelta(days=29)}"' in html
    assert f'name="to" value="{today}"' in html
    assert '<option value="Pacific/Auckland" selected>' in html
    current = re.findall(r'<a href="([^"]+)" aria-current="true">([^<]+)</a>', html)
    assert current == [
        (
            "/channels?preset=last_30_days&amp;tz=Pacific%2FAuckland&amp;model=last_touch",
            "Last 30 days",
        )
    ]
    preset = marketer.get("/overview?preset=last_7_days&tz=Asia/Kathmandu").text
    assert f'name="from" value="{today_in("Asia/Kathmandu") - timedelta(days=6)}"' in preset
    assert '<option value="Asia/Kathmandu" selected>' in preset  # not a common zone: added


def today_in(tz: str) -> date:
    return utcnow().astimezone(ZoneInfo(tz)).date()


@pytest.mark.parametrize(
    ("preset", "first", "last"),
    [
        ("last_7_days", "2026-02-23", "2026-03-01"),
        ("last_30_days", "2026-01-31", "2026-03-01"),
        ("last_90_days", "2025-12-02", "2026-03-01"),
        ("this_month", "2026-03-01", "2026-03-01"),
        ("last_month", "2026-02-01", "2026-02-28"),
        ("this_year", "2026-01-01", "2026-03-01"),
    ],
)
def test_presets(preset: str, first: str, last: str) -> None:
    chosen = date_range({"preset": preset, "from": "2020-01-01"}, today=date(2026, 3, 1))
    assert (chosen.span.first.isoformat(), chosen.span.last.isoformat()) == (first, last)
    assert chosen.preset == preset
    assert [link.current for link in chosen.preset_links("/x")] == [
        name == preset for name in PRESETS
    ]


def test_date_range_defaults_and_previous_period() -> None:
    today = date(2026, 1, 15)
    assert date_range({}, today=today).preset == "last_30_days"
    last_month = date_range({"preset": "last_month"}, today=today)
    assert (last_month.span.first, last_month.span.last) == (date(2025, 12, 1), date(2025, 12, 31))
    only_to = date_range({"to": "2026-01-10"}, today=today)
    assert (only_to.span.first, only_to.days) == (date(2025, 12, 12), 30)
    only_from = date_range({"from": "2026-01-10"}, today=today)
    assert (only_from.span.last, only_from.preset) == (today, None)
    same_as_preset = date_range({"from": "2026-01-09", "to": "2026-01-15"}, today=today)
    assert same_as_preset.preset == "last_7_days"
    before = date_range({"from": "2026-03-01", "to": "2026-03-31"}, today=today).previous()
    assert (before.first, before.last) == (date(2026, 1, 29), date(2026, 2, 28))


def test_after_a_sync_pages_answer_from_the_state_read_before_until_the_new_one_is_read(
    world: Settings, marketer: WebSession, send_events, engine: sa.Engine
) -> None:
    def sessions_shown() -> str:
        lines = list(csv.reader(io.StringIO(marketer.get(url("/channels.csv", **RANGE)).text)))
        assert lines[-1][0] == "Total"
        return lines[-1][lines[0].index("Sessions")]

    assert sessions_shown() == "4"
    send_events(page("eve", "2026-03-05T08:00:00Z", EMAIL))
    resolve(engine, world)
    sync_lake(engine, world)
    assert sessions_shown() == "4"  # at once, from the lake as it was (read in the background)
    deadline = time.monotonic() + 60
    while sessions_shown() != "5":
        assert time.monotonic() < deadline, "the new state was never read"
        time.sleep(0.05)
