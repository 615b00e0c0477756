"""The Customers pages in real Chromium against the demo site: find a customer by email and
open the 360, filter the timeline by channel, accept a merge suggestion and split it again
(after the confirmation); screenshots of the list and the 360."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from playwright.sync_api import expect
from tests.conftest import DemoSite, screenshot

from plait.web.customers import STAGE_LABELS, match_percent

SHOWCASE = sa.text(
    """
    SELECT p.root_id AS id, COUNT(DISTINCT e.channel) AS channels
    FROM events e
    JOIN identities i ON i.kind = e.identity_kind AND i.value = e.identity_value
    JOIN profiles p ON p.id = i.profile_id
    WHERE p.root_id IN (
        SELECT p2.root_id FROM profiles p2
        JOIN identities i2 ON i2.profile_id = p2.id AND i2.kind = 'email'
    )
    GROUP BY p.root_id
    HAVING SUM(CASE WHEN e.event = 'Order Completed' THEN 1 ELSE 0 END) > 0
       AND SUM(CASE WHEN e.event IN ('Call Completed', 'Chat Started', 'Store Visited',
                                     'Message Received') THEN 1 ELSE 0 END) > 0
    ORDER BY channels DESC, p.root_id
    LIMIT 25
    """
)


def showcase_customer(demo_site: DemoSite) -> dict[str, Any]:
    """A customer worth a screenshot: an email, orders, a conversation, and the most
    channels among their latest timeline page."""
    engine = sa.create_engine(demo_site.settings.database_url)
    try:
        with engine.connect() as conn:
            candidates = [str(uuid.UUID(str(row.id))) for row in conn.execute(SHOWCASE)]
    finally:
        engine.dispose()
    assert candidates, "the demo has no customer with orders and a conversation"

    def variety(customer_id: str) -> int:
        page = demo_site.api(f"/api/profiles/{customer_id}/timeline", limit=30)["events"]
        return len({event["channel"] for event in page})

    best = max(candidates, key=variety)
    return demo_site.api(f"/api/profiles/{best}")


def test_search_by_email_opens_the_360(page_as, demo_site: DemoSite) -> None:
    customer = showcase_customer(demo_site)
    email = customer["identifiers"]["email"][0]
    page = page_as("admin")
    page.goto("/customers")
    expect(page.get_by_role("heading", name="Customers", level=1)).to_be_visible()
    expect(page.locator("table.customer-table tbody tr").first).to_be_visible()
    screenshot(page, "customers")

    page.get_by_label("Find a customer").fill(email.upper())
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(lambda url: "/customers?q=" in url)
    rows = page.locator("table.customer-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(email)
    expect(rows.first).to_contain_text(STAGE_LABELS[customer["lifecycle_stage"]])

    rows.first.locator("a.who-link").click()
    page.wait_for_url(f"**/customers/{customer['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text(customer["name"])
    header = page.locator(".profile-head")
    expect(header).to_contain_text(email)
    expect(header).to_contain_text(STAGE_LABELS[customer["lifecycle_stage"]])
    last_contact = page.locator(".last-contact")
    expect(last_contact).to_contain_text(customer["last_contact"]["channel"])
    expect(last_contact).to_contain_text(customer["last_contact"]["summary"])
    kpis = page.get_by_role("region", name="Key figures")
    expect(kpis).to_contain_text(f"{customer['lifetime_revenue']:,.2f}")
    expect(kpis).to_contain_text(customer["first_touch_channel"])
    newest = demo_site.api(f"/api/profiles/{customer['id']}/timeline", limit=1)["events"][0]
    expect(page.locator("#timeline time").first).to_have_attribute("datetime", newest["timestamp"])
    screenshot(page, "customer-360")


def test_filter_the_timeline_by_channel(page_as, demo_site: DemoSite) -> None:
    customer = showcase_customer(demo_site)
    page = page_as("marketer")
    page.goto(f"/customers/{customer['id']}")
    chips = page.get_by_role("navigation", name="Filter the timeline by channel")
    expect(chips.get_by_role("link", name="All channels")).to_have_attribute("aria-current", "true")
    channels = [
        row["channel"]
        for row in demo_site.api(f"/api/profiles/{customer['id']}/timeline", limit=1000)["events"]
        if row["channel"]
    ]
    channel = next(name for name in ("Phone", "Live Chat", "Store", "Email") if name in channels)
    chips.get_by_role("link", name=channel).click()
    page.wait_for_url(lambda url: "?channel=" in url)
    expect(chips.get_by_role("link", name=channel)).to_have_attribute("aria-current", "true")
    expect(page.locator("#timeline-h")).to_contain_text(channel)

    shown = page.locator("#timeline .ev-channel")
    expected = demo_site.api(f"/api/profiles/{customer['id']}/timeline", channel=channel, limit=30)[
        "events"
    ]
    assert expected
    assert set(shown.all_inner_texts()) == {channel}
    expect(page.locator("#timeline time").first).to_have_attribute(
        "datetime", expected[0]["timestamp"]
    )
    expect(page.locator("#merges button")).to_have_count(0)

    chips.get_by_role("link", name="All channels").click()
    page.wait_for_url(lambda url: url.endswith(f"/customers/{customer['id']}#timeline"))
    assert len(set(page.locator("#timeline .ev-channel").all_inner_texts())) > 1


def send_look_alikes(demo_site: DemoSite) -> tuple[str, str]:
    """Two records of one person with different e-mails and no account, through the tracking
    API with a demo write key; returns the two e-mails once both are customers."""
    tag = uuid.uuid4().hex[:6]
    people = [
        ("Wilhelmina", "Zandvoort-Bakker", f"w.zandvoort.{tag}@example.com"),
        ("Wilhelmina", "Zandvoort Bakker", f"mina.zb.{tag}@example.org"),
    ]
    batch = [
        {
            "type": "identify",
            "anonymousId": f"look-alike-{tag}-{index}",
            "messageId": f"look-alike-{tag}-{index}",
            "traits": {
                "first_name": first,
                "last_name": last,
                "email": email,
                "postcode": "1017 AB",
                "city": "Amsterdam",
                "birthday": "1984-05-17",
            },
        }
        for index, (first, last, email) in enumerate(people)
    ]
    key = demo_site.summary["new_write_keys"]["Website"]
    sent = httpx.post(f"{demo_site.url}/v1/batch", json={"batch": batch}, auth=(key, ""))
    assert sent.status_code == 200, sent.text
    emails = [email for _, _, email in people]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [demo_site.api("/api/profiles", q=email)["profiles"] for email in emails]
        if all(found):
            return emails[0], emails[1]
        time.sleep(0.3)
    raise AssertionError("the look-alikes were not resolved into customers within 30 s")


def customer_ids(demo_site: DemoSite, *emails: str) -> set[str]:
    """The ids of the customers holding ``emails``, as the API finds them."""
    return {demo_site.api("/api/profiles", q=email)["profiles"][0]["id"] for email in emails}


def run_suggestions(demo_site: DemoSite) -> None:
    response = httpx.post(
        f"{demo_site.url}/api/identity/suggestions/run",
        json={"threshold": 0.5},
        headers={"authorization": f"Bearer {demo_site.summary['admin_token']}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text


def test_accept_a_merge_suggestion_in_the_page(page_as, demo_site: DemoSite) -> None:
    first, second = send_look_alikes(demo_site)
    run_suggestions(demo_site)
    pending = demo_site.api("/api/identity/suggestions", limit=500)["suggestions"]
    [suggestion] = [
        s for s in pending if {*s["left"]["emails"], *s["right"]["emails"]} == {first, second}
    ]
    left = suggestion["left"]["id"]

    page = page_as("admin")
    page.goto("/customers")
    expect(page.locator(".dupes-panel")).to_contain_text("Possible duplicates")
    page.goto(f"/customers/{left}")
    panel = page.locator("#duplicates")
    expect(panel).to_contain_text(match_percent(suggestion["probability"]))
    accept = panel.locator(f'form[action="/suggestions/{suggestion["id"]}/accept"] button')
    expect(accept).to_have_text("Accept")
    accept.click()
    page.wait_for_url(lambda url: url.endswith("?done=accepted"))
    expect(page.get_by_role("status")).to_contain_text("Suggestion accepted")
    identifiers = page.get_by_role("region", name="Identifiers")
    expect(identifiers).to_contain_text(first)
    expect(identifiers).to_contain_text(second)
    expect(page.locator("#merges")).to_contain_text("Accepted suggestion")

    ids = customer_ids(demo_site, first, second)
    assert len(ids) == 1
    assert page.url.split("/customers/")[1].split("?")[0] in ids
    decided = demo_site.api("/api/identity/suggestions", status="accepted", limit=500)
    assert suggestion["id"] in {s["id"] for s in decided["suggestions"]}

    split = page.locator("#merges").get_by_role("button", name=re.compile(r"^Split profile"))
    page.once("dialog", lambda dialog: dialog.dismiss())
    split.click()
    page.wait_for_timeout(500)
    assert page.url.endswith("?done=accepted")
    still = customer_ids(demo_site, first, second)
    assert still == ids
    page.once("dialog", lambda dialog: dialog.accept())
    split.click()
    page.wait_for_url(lambda url: url.endswith("?done=split"))
    expect(page.get_by_role("status")).to_contain_text("Merge split")
    apart = customer_ids(demo_site, first, second)
    assert len(apart) == 2
