"""The Customers pages in-process, on SQLite and PostgreSQL: list and search with stage and
last contact, the customer 360, splitting a merge, accepting and rejecting suggestions,
roles, CSRF and bad input — over small worlds sent through the tracking API."""

from __future__ import annotations

import html
import re
from uuid import UUID

import pytest
import sqlalchemy as sa

from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.identity.identifiers import identity_rules
from plait.identity.merges import merge_log
from plait.identity.suggestions import identity_suggestions
from plait.profiles.customer360 import profile_360
from plait.profiles.pipeline import resolve
from plait.profiles.search import lookup
from plait.web import customers as customers_page

NOWHERE = "01900000-0000-7000-8000-000000000000"


def identify(anonymous_id: str, user_id: str | None, at: str, **traits: str) -> dict:
    message = {"type": "identify", "anonymousId": anonymous_id, "timestamp": at, "traits": traits}
    if user_id:
        message["userId"] = user_id
    return message


def track(anonymous_id: str, event: str, at: str, channel: str, **properties: object) -> dict:
    return {
        "type": "track",
        "event": event,
        "anonymousId": anonymous_id,
        "timestamp": at,
        "context": {"channel": channel},
        "properties": properties,
    }


def page(anonymous_id: str, at: str, name: str = "Home") -> dict:
    return {
        "type": "page",
        "anonymousId": anonymous_id,
        "name": name,
        "timestamp": at,
        "properties": {"title": f"{name} | Shop", "path": "/"},
    }


def build_world(send_events, engine: sa.Engine, settings: Settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Ana on two devices (merged by an email click), with a call and an order; Bo with an
    account; and two look-alike Thornburys without accounts. Returns customer ids by name."""
    send_events(
        page("ana-phone", "2026-03-01T10:00:00Z"),
        page("ana-phone", "2026-03-01T10:01:00Z", "Sofas"),
        identify(
            "ana-laptop",
            "cus_ana",
            "2026-03-02T10:05:00Z",
            email="ana@example.com",
            first_name="Ana",
            last_name="Lima",
        ),
        track(
            "ana-laptop",
            "Call Completed",
            "2026-03-04T09:00:00Z",
            "Phone",
            direction="inbound",
            summary="Asked when the sofa will be delivered",
        ),
        track(
            "ana-laptop",
            "Order Completed",
            "2026-03-05T15:00:00Z",
            "Store",
            order_id="S-1",
            revenue=120.5,
            currency="EUR",
        ),
        identify("bo-1", "cus_bo", "2026-03-01T12:00:00Z", email="bo@example.com", name="Bo Berg"),
        identify(
            "mt-1",
            None,
            "2026-03-01T13:00:00Z",
            email="m.thornbury@example.com",
            first_name="Margaret",
            last_name="Thornbury",
        ),
        identify(
            "mt-2",
            None,
            "2026-03-01T14:00:00Z",
            email="maggie.t@example.org",
            first_name="Margret",
            last_name="Thornbury",
        ),
    )
    resolve(engine, settings)
    send_events(
        {
            **track("ana-phone", "Email Clicked", "2026-03-03T09:00:00Z", "Email"),
            "context": {"channel": "Email", "traits": {"email": "ana@example.com"}},
        }
    )
    assert resolve(engine, settings).merges == 1
    rules = identity_rules(settings)
    with read(engine) as conn:
        return {
            name: str(lookup(conn, rules, "email", email))
            for name, email in (
                ("ana", "ana@example.com"),
                ("bo", "bo@example.com"),
                ("margaret", "m.thornbury@example.com"),
                ("margret", "maggie.t@example.org"),
            )
        }


@pytest.fixture
def world(send_events, engine: sa.Engine, settings: Settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return build_world(send_events, engine, settings)


def suggest_pair(engine: sa.Engine, left: str, right: str, probability: float = 0.93) -> str:
    """A pending merge suggestion, as the duplicate finder stores one."""
    low, high = sorted((UUID(left), UUID(right)))
    suggestion_id = uuid7()
    with write(engine) as conn:
        conn.execute(
            identity_suggestions.insert().values(
                id=suggestion_id,
                left_id=low,
                right_id=high,
                probability=probability,
                status="pending",
                created_at=utcnow(),
            )
        )
    return str(suggestion_id)


def status_of(engine: sa.Engine, suggestion_id: str) -> str:
    with read(engine) as conn:
        query = sa.select(identity_suggestions.c.status).where(
            identity_suggestions.c.id == UUID(suggestion_id)
        )
        return conn.execute(query).scalar_one()


def the_360(engine: sa.Engine, settings: Settings, customer: str) -> dict:
    with read(engine) as conn:
        return profile_360(conn, UUID(customer), settings.profiles)


def merges_of(engine: sa.Engine, customer: str) -> list[dict]:
    with read(engine) as conn:
        return merge_log(conn, UUID(customer))


def text_of(page_html: str) -> str:
    """The page's visible text, one space between words."""
    no_tags = re.sub(r"<(script|style)\b.*?</\1>|<[^>]+>", " ", page_html, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(no_tags))


def test_list_shows_stage_and_last_contact_and_search_finds_by_any_identifier(
    web_as, world: dict[str, str], engine: sa.Engine, settings: Settings, monkeypatch
) -> None:
    admin = web_as("admin")
    listed = admin.get("/customers")
    assert listed.status_code == 200
    shown = text_of(listed.text)
    for name in ("Ana Lima", "ana@example.com", "Bo Berg", "Margaret Thornbury"):
        assert name in shown
    ana_row = re.search(rf'href="/customers/{world["ana"]}".*?</tr>', listed.text, re.S)
    assert ana_row
    row = text_of(ana_row.group(0))
    ana = the_360(engine, settings, world["ana"])
    assert ana["lifecycle_stage"] == "customer"
    assert "Customer" in row
    assert "Phone" in row
    assert "Inbound" in row
    assert "Asked when the sofa will be delivered" in row
    assert "120.50 EUR" in row
    bo_row = re.search(rf'href="/customers/{world["bo"]}".*?</tr>', listed.text, re.S)
    assert bo_row
    assert "Lead" in text_of(bo_row.group(0))
    assert "No contact yet" in text_of(bo_row.group(0))

    for query, expected in (
        ("ANA@Example.com", {"ana"}),
        ("cus_bo", {"bo"}),
        ("thornbury", {"margaret", "margret"}),
        ("lima", {"ana"}),
    ):
        found = admin.get("/customers", params={"q": query})
        assert found.status_code == 200
        ids = set(re.findall(r'href="/customers/([0-9a-f-]{36})"', found.text))
        assert ids == {world[name] for name in expected}, query
    nobody = admin.get("/customers", params={"q": "nobody@example.com"})
    assert "No customer has the identifier or name" in text_of(nobody.text)
    blank = admin.get("/customers", params={"q": "  "})
    assert blank.status_code == 200
    assert "All customers" in text_of(blank.text)

    monkeypatch.setattr(customers_page, "LIST_PAGE", 2)
    first = admin.get("/customers")
    next_link = re.search(
        r'href="(/customers\?after=[0-9a-f-]{36})" rel="next">Next page', first.text
    )
    assert next_link
    second = admin.get(html.unescape(next_link.group(1)))
    first_ids = set(re.findall(r'href="/customers/([0-9a-f-]{36})"', first.text))
    second_ids = set(re.findall(r'href="/customers/([0-9a-f-]{36})"', second.text))
    assert len(first_ids) == 2
    assert len(second_ids) == 2
    assert first_ids.isdisjoint(second_ids)
    assert first_ids | second_ids == set(world.values())


def test_the_360_shows_facts_identifiers_merges_and_a_filterable_timeline(
    web_as, world: dict[str, str], engine: sa.Engine, settings: Settings, monkeypatch
) -> None:
    admin = web_as("admin")
    ana = world["ana"]
    response = admin.get(f"/customers/{ana}")
    assert response.status_code == 200
    shown = text_of(response.text)
    assert "Ana Lima" in shown
    assert "ana@example.com" in shown
    last_contact = re.search(r'<section class="last-contact".*?</section>', response.text, re.S)
    assert last_contact
    assert "Phone" in text_of(last_contact.group(0))
    assert "Inbound" in text_of(last_contact.group(0))
    assert "Asked when the sofa will be delivered" in text_of(last_contact.group(0))
    assert "Customer" in shown
    for identifier in ("cus_ana", "ana-phone", "ana-laptop"):
        assert identifier in shown
    assert "First touch" in shown
    assert "120.50" in shown
    assert "Joined by an event" in shown
    [merge] = merges_of(engine, ana)
    assert f'name="merge_id" value="{merge["id"]}"' in response.text
    for channel in ("Direct", "Email", "Phone", "Store"):
        assert f"?channel={channel}#timeline" in response.text
    assert "Order Completed" in shown
    assert "Email Clicked" in shown

    phone_only = admin.get(f"/customers/{ana}", params={"channel": "Phone"})
    assert phone_only.status_code == 200
    timeline = text_of(phone_only.text.split('id="timeline"')[1])
    assert "Call Completed" in timeline
    assert "Order Completed" not in timeline
    assert "Email Clicked" not in timeline

    monkeypatch.setattr(customers_page, "TIMELINE_PAGE", 2)
    newest = admin.get(f"/customers/{ana}")
    older = re.search(r'href="([^"]+)" rel="next">Older events', newest.text)
    assert older
    second = admin.get(html.unescape(older.group(1)))
    assert second.status_code == 200
    assert "Newest events" in second.text
    newest_events = text_of(newest.text.split('id="timeline"')[1])
    older_events = text_of(second.text.split('id="timeline"')[1])
    assert "Order Completed" in newest_events
    assert "Email Clicked" not in newest_events
    assert "Order Completed" not in older_events
    assert "Email Clicked" in older_events

    merged_away = merge["from_id"]
    assert merged_away != ana
    redirect = admin.get(f"/customers/{merged_away}?channel=Phone", follow_redirects=False)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == f"/customers/{ana}?channel=Phone"


def test_split_from_the_page_undoes_the_merge(
    web_as, world: dict[str, str], engine: sa.Engine, settings: Settings
) -> None:
    admin = web_as("admin")
    ana = world["ana"]
    [merge] = merges_of(engine, ana)
    assert len(the_360(engine, settings, ana)["merged_profiles"]) == 1

    done = admin.post(f"/customers/{ana}/split", {"merge_id": merge["id"]})
    assert done.status_code == 303
    assert done.headers["location"] == f"/customers/{ana}?done=split"
    after = admin.get(done.headers["location"])
    assert "Merge split" in text_of(after.text)
    assert the_360(engine, settings, ana)["merged_profiles"] == []
    restored = the_360(engine, settings, merge["from_id"])
    assert restored["id"] == merge["from_id"]
    [logged] = merges_of(engine, ana)
    assert logged["split_at"] is not None
    assert f'href="/customers/{merge["from_id"]}"' in after.text
    assert f'name="merge_id" value="{merge["id"]}"' not in after.text

    again = admin.post(f"/customers/{ana}/split", {"merge_id": merge["id"]})
    assert again.status_code == 409
    assert "already split" in again.text
    assert admin.post(f"/customers/{ana}/split", {"merge_id": NOWHERE}).status_code == 404


def test_accepting_and_rejecting_suggestions_is_for_admins(
    web_as, world: dict[str, str], engine: sa.Engine, settings: Settings
) -> None:
    thornburys = suggest_pair(engine, world["margaret"], world["margret"])
    accounts = suggest_pair(engine, world["ana"], world["bo"], 0.81)
    margaret = world["margaret"]

    for role in ("marketer", "agent"):
        person = web_as(role)
        listed = person.get("/customers")
        assert listed.status_code == 200
        assert "Possible duplicates" in listed.text
        page = person.get(f"/customers/{margaret}")
        assert page.status_code == 200
        assert "93 %" in text_of(page.text)
        assert "Margret Thornbury" in text_of(page.text)
        assert "/accept" not in page.text
        assert "/reject" not in page.text
        assert "/split" not in person.get(f"/customers/{world['ana']}").text
        refused = person.post(f"/suggestions/{thornburys}/accept", {"customer": margaret})
        assert refused.status_code == 403
        assert person.post(f"/suggestions/{thornburys}/reject").status_code == 403
        [merge] = merges_of(engine, world["ana"])
        split = person.post(f"/customers/{world['ana']}/split", {"merge_id": merge["id"]})
        assert split.status_code == 403
    assert status_of(engine, thornburys) == "pending"
    assert merges_of(engine, world["ana"])[0]["split_at"] is None

    admin = web_as("admin")
    page = admin.get(f"/customers/{margaret}")
    assert f'action="/suggestions/{thornburys}/accept"' in page.text
    accepted = admin.post(f"/suggestions/{thornburys}/accept", {"customer": margaret})
    assert accepted.status_code == 303
    merged = the_360(engine, settings, margaret)
    assert accepted.headers["location"] == f"/customers/{merged['id']}?done=accepted"
    assert set(merged["identifiers"]["email"]) == {
        "maggie.t@example.org",
        "m.thornbury@example.com",
    }
    shown = admin.get(accepted.headers["location"])
    assert "Suggestion accepted" in text_of(shown.text)
    assert "Accepted suggestion" in text_of(shown.text)
    assert status_of(engine, thornburys) == "accepted"

    # Ana and Bo both have an account: the page explains the limit and asks before forcing.
    ana = world["ana"]
    asked = admin.post(f"/suggestions/{accounts}/accept", {"customer": ana})
    assert asked.status_code == 409
    assert "Merge anyway" in asked.text
    assert "user_id (limit 1)" in asked.text
    assert status_of(engine, accounts) == "pending"
    rejected = admin.post(f"/suggestions/{accounts}/reject", {"customer": ana})
    assert rejected.status_code == 303
    assert rejected.headers["location"] == f"/customers/{ana}?done=rejected"
    assert status_of(engine, accounts) == "rejected"
    assert "Suggestion rejected" in text_of(admin.get(rejected.headers["location"]).text)
    late = admin.post(f"/suggestions/{accounts}/accept", {"customer": ana})
    assert late.status_code == 409
    assert "already rejected" in late.text
    assert the_360(engine, settings, ana)["id"] != the_360(engine, settings, world["bo"])["id"]


def test_merge_anyway_forces_a_merge_past_the_limits(
    web_as, world: dict[str, str], engine: sa.Engine, settings: Settings
) -> None:
    accounts = suggest_pair(engine, world["ana"], world["bo"])
    admin = web_as("admin")
    forced = admin.post(f"/suggestions/{accounts}/accept", {"customer": world["bo"], "force": "1"})
    assert forced.status_code == 303
    merged = the_360(engine, settings, world["bo"])
    assert merged["identifiers"]["user_id"] == ["cus_ana", "cus_bo"]
    assert status_of(engine, accounts) == "accepted"


def test_posts_without_the_csrf_token_are_refused_and_change_nothing(
    web_as, world: dict[str, str], engine: sa.Engine
) -> None:
    admin = web_as("admin")
    suggestion = suggest_pair(engine, world["margaret"], world["margret"])
    [merge] = merges_of(engine, world["ana"])
    for path, data in (
        (f"/customers/{world['ana']}/split", {"merge_id": merge["id"]}),
        (f"/suggestions/{suggestion}/accept", {"customer": world["margaret"]}),
        (f"/suggestions/{suggestion}/reject", {"customer": world["margaret"]}),
    ):
        for token in (None, "forged"):
            form = data if token is None else {**data, "csrf_token": token}
            response = admin.client.post(path, data=form, follow_redirects=False)
            assert response.status_code == 403, path
            assert "reload the page" in response.text
    assert status_of(engine, suggestion) == "pending"
    assert merges_of(engine, world["ana"])[0]["split_at"] is None


def test_bad_ids_and_parameters_are_clear_error_pages(
    web_as, world: dict[str, str], engine: sa.Engine
) -> None:
    admin = web_as("admin")
    ana = world["ana"]
    suggestion = suggest_pair(engine, world["margaret"], world["margret"])
    [merge] = merges_of(engine, ana)
    for path, status, words in (
        (f"/customers/{NOWHERE}", 404, "no profile"),
        ("/customers/not-an-id", 404, "no profile"),
        ("/customers?after=yesterday", 400, "after must be an id"),
        ("/customers?q=" + "x" * 201, 400, "at most 200"),
        (f"/customers/{ana}?channel=Carrier%20Pigeon", 400, "no events on the channel"),
        (f"/customers/{ana}?channel=" + "x" * 101, 400, "not a channel"),
        (f"/customers/{ana}?cursor=not-a-cursor", 400, "cursor"),
        (f"/customers/{ana}?done=hacked", 400, "unknown notice"),
    ):
        response = admin.get(path)
        assert response.status_code == status, path
        assert response.headers["content-type"].startswith("text/html")
        assert words in text_of(response.text), path
    for path, data, status in (
        ("/suggestions/not-an-id/accept", {}, 404),
        (f"/suggestions/{NOWHERE}/accept", {}, 404),
        (f"/suggestions/{NOWHERE}/reject", {}, 404),
        (f"/suggestions/{suggestion}/accept", {"customer": "nope"}, 400),
        (f"/suggestions/{suggestion}/accept", {"customer": ana, "force": "yes"}, 400),
        (f"/suggestions/{suggestion}/reject", {"customer": "nope"}, 400),
        (f"/customers/{ana}/split", {"merge_id": "nope"}, 400),
        (f"/customers/{ana}/split", {}, 400),
        (f"/customers/{NOWHERE}/split", {"merge_id": merge["id"]}, 404),
        (f"/customers/{world['bo']}/split", {"merge_id": merge["id"]}, 400),
    ):
        response = admin.post(path, data)
        assert response.status_code == status, (path, data)
        assert response.headers["content-type"].startswith("text/html")
    assert status_of(engine, suggestion) == "pending"
    assert merges_of(engine, ana)[0]["split_at"] is None


def test_signed_out_people_are_sent_to_sign_in(client, world: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    for path in ("/customers", f"/customers/{world['ana']}"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
