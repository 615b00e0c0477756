"""The Inbox reports page in-process, on SQLite and PostgreSQL: the figures of a small
hand-built set of conversations per channel, agent and team, the CSV against the table, who
may open it, the navigation and bad input."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import WebSession
from tests.inbox.test_inbox_reports import SINCE, UNTIL, handmade  # noqa: F401 (a fixture)

RANGE = f"from={SINCE}&to={UNTIL}"


def report_table(page: str) -> list[list[str]]:
    """The report table's rows (header, groups, total) as the texts of their cells."""
    table = page.split('id="inbox-report"', 1)[1].split("</table>", 1)[0]
    return [
        [html.unescape(cell) for cell in re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    ]


def by_group(page: str) -> dict[str, dict[str, str]]:
    header, *rows = report_table(page)
    shown = [row for row in rows if len(row) > 1]  # not the "no conversations" line
    return {row[0]: dict(zip(header, row, strict=True)) for row in shown}


def kpis(page: str) -> dict[str, tuple[str, str]]:
    found = re.findall(
        r'data-kpi="([^"]+)".*?<p class="value">([^<]*)</p>\s*<p class="previous note">([^<]*)<',
        page,
        re.S,
    )
    return {key: (html.unescape(value), html.unescape(note)) for key, value, note in found}


def nav(page: str) -> tuple[list[str], list[str]]:
    """The main navigation's labels, and the label(s) marked as the current page."""
    block = page.split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    links = re.findall(r'<a href="[^"]+"([^>]*)>([^<]+)</a>', block)
    current = [label for attrs, label in links if "aria-current" in attrs]
    return [label for _, label in links], current


def alerts(page: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'role="alert">([^<]*)<', page)]


@pytest.fixture
def alice(client: TestClient, handmade: None) -> WebSession:  # noqa: F811
    """Alice, an agent the hand-built conversations are assigned to."""
    return WebSession(TestClient(client.app), "alice@example.com")


# --- the figures -----------------------------------------------------------------------


def test_an_agent_sees_the_figures_per_channel(alice: WebSession) -> None:
    response = alice.get(f"/inbox/reports?{RANGE}")
    assert response.status_code == 200
    page = response.text
    assert "By channel · 2026-03-02 to 2026-03-08, UTC" in page
    rows = by_group(page)
    assert list(rows) == ["SMS", "Email", "Total"]
    sms, email, total = rows["SMS"], rows["Email"], rows["Total"]
    assert [sms[name] for name in ("Conversations", "Messages in", "Messages out")] == [
        "3",
        "2",
        "2",
    ]
    assert sms["First response median"] == "2m 00s"  # 60, 120, 300 (the February one is out)
    assert sms["First response average"] == "2m 40s"
    assert sms["Resolved"] == "3"
    assert sms["Resolution median"] == "1d 0h"
    assert sms["Resolution average"] == "4d 4h"  # (3600 + 86400 + 1000000) / 3 seconds
    assert sms["Resolution median (business hours)"] == "8h 00m"
    assert sms["SLA hit rate"] == "67 %"
    assert (sms["CSAT average"], sms["CSAT 4 or 5"], sms["CSAT ratings"]) == ("4.00", "50 %", "2")
    assert email["Conversations"] == "2"
    assert email["First response median"] == "2h 00m"
    assert email["First response median (business hours)"] == "1h 00m"
    assert email["Resolution median (business hours)"] == "8h 20m"
    assert email["SLA hit rate"] == "0 %"
    assert total["Conversations"] == "5"
    assert total["First response median"] == "3m 30s"  # 60, 120, 300, 7200
    assert total["SLA hit rate"] == "50 %"

    shown = kpis(page)
    assert shown["conversations"] == ("5", "4 resolved")
    assert shown["inbound"][0] == "5"
    assert shown["outbound"][0] == "3"
    assert shown["first_response"] == ("3m 30s", "average 32m 00s")
    assert shown["sla_hit_rate"][0] == "50 %"
    assert shown["sla_hit_rate"][1].endswith("first response on time 75 %")
    assert shown["csat"] == ("4.00", "3 ratings, 67 % rated 4 or 5")
    assert 'data-chart="inbox-volume-chart"' in page


def test_the_figures_per_agent_and_per_team(alice: WebSession) -> None:
    page = alice.get_page(f"/inbox/reports?{RANGE}&by=agent")
    assert report_table(page)[0][0] == "Agent"
    agents = by_group(page)
    assert list(agents) == ["alice@example.com", "(unassigned)", "bob@example.com", "Total"]
    assert agents["alice@example.com"]["Conversations"] == "3"
    assert agents["alice@example.com"]["First response median"] == "2m 00s"
    assert agents["bob@example.com"]["Resolution median (business hours)"] == "8h 20m"
    assert agents["(unassigned)"]["First response median"] == "\u2013"

    page = alice.get_page(f"/inbox/reports?since={SINCE}&until={UNTIL}&by=team")
    assert "By team · 2026-03-02 to 2026-03-08, UTC" in page
    teams = by_group(page)
    assert list(teams) == ["Support", "(no team)", "Sales", "Total"]
    assert teams["Support"]["Conversations"] == "3"
    assert teams["Support"]["SLA hit rate"] == "67 %"
    assert teams["Sales"]["CSAT average"] == "4.00"
    assert teams["(no team)"]["Conversations"] == "1"
    assert '<option value="team" selected>Team</option>' in page
    presets = re.findall(r'<a href="(/inbox/reports\?preset=[^"]+)"', page)
    assert presets
    assert all("by=team" in html.unescape(link) for link in presets)


def test_a_time_zone_moves_the_days(alice: WebSession) -> None:
    rows = by_group(alice.get_page(f"/inbox/reports?{RANGE}&tz=America/New_York"))
    assert rows["Email"]["Conversations"] == "3"  # 22:00 on 8 March in New York
    assert rows["Total"]["Conversations"] == "6"


def test_an_empty_range_says_so(alice: WebSession) -> None:
    page = alice.get_page("/inbox/reports?from=2020-01-01&to=2020-01-31")
    assert "No conversations, messages or ratings in this range." in page
    assert list(by_group(page)) == ["Total"]
    assert by_group(page)["Total"]["Conversations"] == "0"
    assert by_group(page)["Total"]["First response median"] == "\u2013"
    assert "inbox-volume-chart" not in page


@pytest.mark.parametrize("by", ["channel", "agent", "team"])
def test_the_csv_is_the_table(alice: WebSession, by: str) -> None:
    page = alice.get_page(f"/inbox/reports?{RANGE}&by={by}")
    link = re.search(r'href="(/inbox/reports\.csv\?[^"]+)"', page)
    assert link
    response = alice.get(html.unescape(link.group(1)))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f"inbox-by-{by}-{SINCE}-to-{UNTIL}.csv" in response.headers["content-disposition"]
    assert list(csv.reader(io.StringIO(response.text))) == report_table(page)


def test_the_default_is_the_last_thirty_days_by_channel(alice: WebSession) -> None:
    page = alice.get_page("/inbox/reports")
    assert re.search(r'<a href="[^"]*preset=last_30_days[^"]*" aria-current="true">', page)
    assert report_table(page)[0][0] == "Channel"


# --- who may open it -------------------------------------------------------------------


def test_a_marketer_may_not_open_it(web_as: Any, handmade: None) -> None:  # noqa: F811
    marketer = web_as("marketer")
    for path in ("/inbox/reports", f"/inbox/reports.csv?{RANGE}"):
        response = marketer.get(path)
        assert response.status_code == 403, path
        assert "Not allowed" in response.text
    labels, _ = nav(marketer.get_page("/customers"))
    assert "Inbox reports" not in labels


def test_strangers_are_sent_to_sign_in(client: TestClient) -> None:
    for path in ("/inbox/reports", "/inbox/reports.csv"):
        response = client.get(f"{path}?by=agent", follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=%2Finbox%2Freports")


def test_the_navigation_marks_its_own_item(web_as: Any, alice: WebSession) -> None:
    labels, current = nav(alice.get_page("/inbox/reports"))
    assert labels[labels.index("Inbox") + 1] == "Inbox reports"
    assert current == ["Inbox reports"]
    assert nav(alice.get_page("/inbox"))[1] == ["Inbox"]

    admin = web_as("admin")
    labels, current = nav(admin.get_page(f"/inbox/reports?{RANGE}"))
    assert {"Inbox", "Inbox reports", "Inboxes"} <= set(labels)
    assert current == ["Inbox reports"]
    assert by_group(admin.get_page(f"/inbox/reports?{RANGE}"))["Total"]["Conversations"] == "5"


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("from=2026-13-01&to=2026-03-08", "'2026-13-01' is not a date (YYYY-MM-DD)"),
        ("since=yesterday", "'yesterday' is not a date (YYYY-MM-DD)"),
        ("from=2026-03-09&to=2026-03-08", "from (2026-03-09) is after to (2026-03-08)"),
        (f"{RANGE}&by=customer", "by is one of channel, agent, team"),
        (f"{RANGE}&tz=Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("preset=fortnight", "unknown preset 'fortnight'"),
    ],
)
def test_bad_input_is_explained(alice: WebSession, query: str, problem: str) -> None:
    for path in ("/inbox/reports", "/inbox/reports.csv"):
        response = alice.get(f"{path}?{query}")
        assert response.status_code == 400, path
        assert problem in " ".join(alerts(response.text)), path


def test_every_problem_is_named_at_once(alice: WebSession) -> None:
    response = alice.get("/inbox/reports?from=soon&by=week")
    assert response.status_code == 400
    (message,) = alerts(response.text)
    assert "'soon' is not a date" in message
    assert "by is one of channel, agent, team" in message
