"""Inbox reports on a small hand-built set of conversations: every figure per channel, agent
and team, time zones, percentiles against numpy, the API's bad inputs and the CLI."""

from __future__ import annotations

import json
import random
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import numpy as np
import pytest
import sqlalchemy as sa
from tests.conftest import PASSWORD, Api

from plait.core.db import write
from plait.core.ids import uuid7
from plait.core.users import create_user
from plait.inbox.inboxes import create_inbox, ensure_team
from plait.inbox.reports import inbox_report, inbox_totals, report_period
from plait.inbox.schema import conversations, messages

SINCE, UNTIL = "2026-03-02", "2026-03-08"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def conversation(
    conn: sa.Connection,
    inbox: dict[str, Any],
    created: str,
    *,
    assignee: UUID | None = None,
    team: UUID | None = None,
    first_response: tuple[str, float, float] | None = None,
    resolved: tuple[str, float, float] | None = None,
    breaches: tuple[str, ...] = (),
    csat: tuple[int, str] | None = None,
    inbound: tuple[str, ...] = (),
    outbound: tuple[str, ...] = (),
) -> UUID:
    """A conversation as routing and the agents' work leave it, with its messages;
    ``first_response``/``resolved`` are (when, seconds, business seconds)."""
    number = conn.execute(sa.select(sa.func.count()).select_from(conversations)).scalar_one()
    conversation_id = uuid7()
    row: dict[str, Any] = {
        "id": conversation_id,
        "number": number + 1,
        "profile_id": uuid4(),
        "inbox_id": UUID(inbox["id"]),
        "status": "resolved" if resolved else "open",
        "priority": "normal",
        "assignee_id": assignee,
        "team_id": team,
        "labels": [],
        "token": secrets.token_urlsafe(18),
        "created_at": at(created),
        "updated_at": at(created),
        "last_message_at": at(created),
        "sla_breaches": [f"{clock}_due" for clock in breaches],
    }
    if first_response:
        when, seconds, business = first_response
        row.update(
            first_response_at=at(when),
            first_response_seconds=seconds,
            first_response_business_seconds=business,
        )
    if resolved:
        when, seconds, business = resolved
        row.update(
            resolved_at=at(when), resolution_seconds=seconds, resolution_business_seconds=business
        )
    if csat:
        score, when = csat
        row.update(csat_score=score, csat_answered_at=at(when), csat_token=secrets.token_hex(8))
    conn.execute(conversations.insert(), row)
    for direction, moments in (("in", inbound), ("out", outbound)):
        for moment in moments:
            conn.execute(
                messages.insert(),
                {
                    "id": uuid7(),
                    "conversation_id": conversation_id,
                    "inbox_id": UUID(inbox["id"]),
                    "direction": direction,
                    "channel": inbox["channel"],
                    "author_id": assignee if direction == "out" else None,
                    "body": "…",
                    "status": "received" if direction == "in" else "sent",
                    "created_at": at(moment),
                    "updated_at": at(moment),
                },
            )
    return conversation_id


@pytest.fixture
def handmade(engine: sa.Engine) -> None:
    """Alice (team Support) answers SMS, Bob (team Sales) email; one email is unassigned."""
    with write(engine) as conn:
        alice = UUID(str(create_user(conn, "alice@example.com", "agent", PASSWORD)["id"]))
        bob = UUID(str(create_user(conn, "bob@example.com", "agent", PASSWORD)["id"]))
        sms = create_inbox(conn, "sms", "Shop SMS", team="Support")
        email = create_inbox(conn, "email", "Help mailbox", team="Sales")
        support, sales = ensure_team(conn, "Support"), ensure_team(conn, "Sales")
        mine = {"assignee": alice, "team": support}
        conversation(
            conn, sms, "2026-03-02T10:00:00", **mine,
            first_response=("2026-03-02T10:01:00", 60, 60),
            resolved=("2026-03-02T11:00:00", 3600, 3600),
            csat=(5, "2026-03-02T12:00:00"),
            inbound=("2026-03-02T10:00:00",), outbound=("2026-03-02T10:01:00",),
        )  # fmt: skip
        conversation(
            conn, sms, "2026-03-03T10:00:00", **mine,
            first_response=("2026-03-03T10:05:00", 300, 300),
            resolved=("2026-03-04T10:00:00", 86400, 28800), breaches=("resolution",),
            csat=(3, "2026-03-04T12:00:00"),
            inbound=("2026-03-03T10:00:00",), outbound=("2026-03-03T10:05:00",),
        )  # fmt: skip
        conversation(
            conn, sms, "2026-03-04T09:00:00", **mine,
            first_response=("2026-03-04T09:02:00", 120, 120),
        )  # fmt: skip
        conversation(  # created before the range, resolved in it
            conn, sms, "2026-02-20T09:00:00", **mine,
            first_response=("2026-02-20T09:30:00", 1800, 1800),
            resolved=("2026-03-03T09:00:00", 1_000_000, 200_000),
            inbound=("2026-02-20T09:00:00",),
        )  # fmt: skip
        conversation(
            conn, email, "2026-03-05T08:00:00", assignee=bob, team=sales,
            first_response=("2026-03-05T10:00:00", 7200, 3600), breaches=("first_response",),
            resolved=("2026-03-06T09:00:00", 90000, 30000), csat=(4, "2026-03-06T10:00:00"),
            inbound=("2026-03-05T08:00:00", "2026-03-05T09:00:00"),
            outbound=("2026-03-05T10:00:00",),
        )  # fmt: skip
        conversation(conn, email, "2026-03-06T08:00:00", inbound=("2026-03-06T08:00:00",))
        # 22:00 on 8 March in New York (EDT since 07:00 UTC that day): in the range there only
        conversation(conn, email, "2026-03-09T02:00:00", inbound=("2026-03-09T02:00:00",))


def rows(frame: Any, key: str) -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in frame.to_dict(orient="records")}


def test_figures_per_channel(engine: sa.Engine, handmade: None) -> None:
    report = rows(inbox_report(engine, report_period(SINCE, UNTIL), "channel"), "channel")
    assert list(report) == ["sms", "email"]
    sms, email = report["sms"], report["email"]
    assert (sms["conversations"], sms["inbound"], sms["outbound"]) == (3, 2, 2)
    assert (email["conversations"], email["inbound"], email["outbound"]) == (2, 3, 1)

    assert sms["first_responses"] == 3  # the one answered in February does not count
    assert sms["first_response_median"] == 120
    assert sms["first_response_avg"] == pytest.approx(160)
    assert sms["first_response_p90"] == pytest.approx(264)  # 120 + 0.8 * (300 - 120)
    assert email["first_response_median"] == 7200
    assert email["first_response_business_median"] == 3600

    assert sms["resolved"] == 3
    assert sms["resolution_median"] == 86400
    assert sms["resolution_avg"] == pytest.approx((3600 + 86400 + 1_000_000) / 3)
    assert sms["resolution_p90"] == pytest.approx(86400 + 0.8 * (1_000_000 - 86400))
    assert sms["resolution_business_median"] == 28800
    assert sms["resolution_business_p90"] == pytest.approx(28800 + 0.8 * (200_000 - 28800))

    assert sms["sla_hit_rate"] == pytest.approx(2 / 3)
    assert sms["first_response_sla_hit_rate"] == 1.0
    assert email["sla_hit_rate"] == 0.0
    assert email["first_response_sla_hit_rate"] == 0.0

    assert (sms["csat_responses"], sms["csat_average"], sms["csat_satisfied"]) == (2, 4.0, 0.5)
    assert (email["csat_responses"], email["csat_average"], email["csat_satisfied"]) == (1, 4, 1)


def test_figures_per_agent_and_team(engine: sa.Engine, handmade: None) -> None:
    span = report_period(SINCE, UNTIL)
    agents = rows(inbox_report(engine, span, "agent"), "agent")
    assert list(agents) == ["alice@example.com", "(unassigned)", "bob@example.com"]
    alice, bob, nobody = (
        agents["alice@example.com"],
        agents["bob@example.com"],
        agents["(unassigned)"],
    )
    assert (alice["conversations"], alice["inbound"], alice["outbound"]) == (3, 2, 2)
    assert (bob["conversations"], bob["inbound"], bob["outbound"]) == (1, 2, 1)
    assert (nobody["conversations"], nobody["inbound"], nobody["outbound"]) == (1, 1, 0)
    assert [alice["resolved"], bob["resolved"], nobody["resolved"]] == [3, 1, 0]
    assert np.isnan(nobody["first_response_median"])
    assert np.isnan(nobody["csat_average"])
    assert bob["resolution_business_median"] == 30000

    teams = rows(inbox_report(engine, span, "team"), "team")
    assert set(teams) == {"Support", "Sales", "(no team)"}
    assert teams["Support"]["sla_hit_rate"] == pytest.approx(2 / 3)
    assert teams["Sales"]["csat_average"] == 4
    assert teams["(no team)"]["conversations"] == 1


def test_totals_and_time_zones(engine: sa.Engine, handmade: None) -> None:
    total = inbox_totals(engine, report_period(SINCE, UNTIL)).iloc[0]
    assert (total["conversations"], total["inbound"], total["outbound"]) == (5, 5, 3)
    assert total["first_response_median"] == 210  # 60, 120, 300, 7200
    assert total["first_response_p90"] == pytest.approx(300 + 0.7 * 6900)
    assert (total["resolved"], total["sla_hit_rate"]) == (4, 0.5)
    assert total["csat_responses"] == 3
    assert total["csat_satisfied"] == pytest.approx(2 / 3)

    new_york = report_period(SINCE, UNTIL, "America/New_York")
    assert new_york.end == at("2026-03-09T04:00:00")  # midnight EDT, after the DST change
    email = rows(inbox_report(engine, new_york, "channel"), "channel")["email"]
    assert email["conversations"] == 3
    assert inbox_totals(engine, new_york).iloc[0]["inbound"] == 6

    empty = inbox_totals(engine, report_period("2020-01-01", "2020-01-31")).iloc[0]
    assert empty["conversations"] == 0
    assert np.isnan(empty["first_response_median"])
    assert inbox_report(engine, report_period("2020-01-01", "2020-01-31"), "agent").empty


def test_percentiles_match_numpy(engine: sa.Engine) -> None:
    """Continuous percentiles computed by window functions equal numpy's (linear) ones."""
    rng = random.Random(7)
    values = {"sms": [rng.uniform(1, 5000) for _ in range(37)], "email": [42.0, 7.0]}
    with write(engine) as conn:
        for channel, times in values.items():
            inbox = create_inbox(conn, channel, f"{channel} inbox")
            for seconds in times:
                conversation(
                    conn, inbox, "2026-03-02T10:00:00",
                    first_response=("2026-03-02T11:00:00", seconds, seconds / 2),
                )  # fmt: skip
    report = rows(inbox_report(engine, report_period(SINCE, UNTIL), "channel"), "channel")
    for channel, times in values.items():
        assert report[channel]["first_response_median"] == pytest.approx(np.percentile(times, 50))
        assert report[channel]["first_response_p90"] == pytest.approx(np.percentile(times, 90))
        assert report[channel]["first_response_avg"] == pytest.approx(np.mean(times))
        halves = np.array(times) / 2
        assert report[channel]["first_response_business_p90"] == pytest.approx(
            np.percentile(halves, 90)
        )


def test_the_api_reports_as_json(admin_api: Api, token_api: Any, handmade: None) -> None:
    report = admin_api.get(f"/api/inbox/reports?since={SINCE}&until={UNTIL}&by=team")
    assert (report["since"], report["until"], report["tz"], report["by"]) == (
        SINCE, UNTIL, "UTC", "team",
    )  # fmt: skip
    teams = {row["team"]: row for row in report["rows"]}
    assert teams["Support"]["conversations"] == 3
    assert teams["(no team)"]["first_response_median"] is None
    assert report["total"]["conversations"] == 5
    assert report["total"]["first_response_median"] == 210
    by_agent = token_api("agent").get(f"/api/inbox/reports?since={SINCE}&until={UNTIL}&by=agent")
    assert by_agent["rows"][0]["agent"] == "alice@example.com"
    zoned = admin_api.get(f"/api/inbox/reports?since={SINCE}&until={UNTIL}&tz=America/New_York")
    assert zoned["total"]["conversations"] == 6
    default = admin_api.get("/api/inbox/reports")
    assert default["by"] == "channel"
    assert default["since"] < default["until"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=2026-13-01&until=2026-03-08", "since"),
        ("since=yesterday", "since"),
        ("since=2026-03-02&until=03/08/2026", "until"),
        ("since=2026-03-09&until=2026-03-08", "since"),
        ("since=2026-03-02&until=2026-03-08&by=customer", "by"),
        ("since=2026-03-02&until=2026-03-08&tz=Mars/Olympus_Mons", "tz"),
    ],
)
def test_the_api_refuses_bad_inputs(admin_api: Api, query: str, field: str) -> None:
    error = admin_api.get(f"/api/inbox/reports?{query}", status=400)["error"]
    assert error["code"] == "invalid_input"
    assert error["field"] == field


def test_the_api_needs_inbox_read(client: Any, token_api: Any) -> None:
    assert client.get("/api/inbox/reports").status_code == 401
    token_api("marketer").get("/api/inbox/reports", status=403)


def test_the_cli_prints_a_table_and_json(cli: Any, handmade: None) -> None:
    shown = cli("report", "inbox", "--since", SINCE, "--until", UNTIL, "--by", "agent")
    assert shown.returncode == 0, shown.stderr
    assert "Inbox by agent, 2026-03-02..2026-03-08 (UTC)" in shown.stdout
    lines = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if "│" in line}
    assert {"alice@example.com", "(unassigned)", "bob@example.com", "total"} <= set(lines)
    alice = [cell.strip() for cell in lines["alice@example.com"].split("│")[1:-1]]
    assert alice[:6] == ["alice@example.com", "3", "2", "2", "2m 00s", "4m 24s"]

    printed = cli("report", "inbox", "--since", SINCE, "--until", UNTIL, "--json")
    assert printed.returncode == 0, printed.stderr
    report = json.loads(printed.stdout)
    assert [row["channel"] for row in report["rows"]] == ["sms", "email"]
    assert report["rows"][0]["resolution_median"] == 86400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-02-30"], "since is not a date"),
        (["--by", "customer"], "by is one of channel, agent, team"),
        (["--tz", "Nowhere/Land"], "unknown time zone"),
    ],
)
def test_the_cli_explains_bad_inputs(cli: Any, args: list[str], message: str) -> None:
    done = cli("report", "inbox", *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_report_days_default_to_the_last_thirty(engine: sa.Engine) -> None:
    span = report_period(None, "2026-03-31", "Europe/Paris")
    assert (span.first.isoformat(), span.last.isoformat()) == ("2026-03-02", "2026-03-31")
    assert span.end - span.start == timedelta(days=30) - timedelta(hours=1)  # spring forward
