"""The agent workspace end to end in headless Chromium against ``plait serve`` (SQLite and
PostgreSQL): SMS arrive by signed Twilio webhooks and appear without a reload, the agent
answers from the keyboard and the local Twilio receives the reply; and an admin connects an
SMS inbox, a canned reply and a team member on the settings page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect
from tests.conftest import PASSWORD, LiveServer, add_user, screenshot
from tests.inbox.conftest import (
    SHOP_NUMBER,
    TWILIO_ACCOUNT,
    TWILIO_TOKEN,
    _twilio_answer,
    eventually,
    twilio_sms,
)
from tests.inbox.providers import ProviderServer

from plait.core.clock import utcnow
from plait.core.db import read, write
from plait.core.ids import uuid7
from plait.core.settings import Settings
from plait.core.users import users
from plait.inbox.assignment import add_to_team
from plait.inbox.connectors.twilio_sms import signature
from plait.inbox.inboxes import create_inbox, ensure_team
from plait.inbox.schema import canned_replies, messages

CUSTOMER = "+14155550199"
SHIPPING = "Your order ships within 24 hours; you get the tracking link by SMS."


@dataclass
class InboxSite:
    server: LiveServer
    inbox: dict[str, Any]
    emails: dict[str, str]

    def text_in(self, body: str, sender: str = CUSTOMER) -> None:
        """An inbound SMS, posted and signed the way Twilio does it, to the live URL."""
        url = f"{self.server.url}/webhooks/twilio/{self.inbox['id']}"
        params = twilio_sms(sender, body)
        headers = {"X-Twilio-Signature": signature(TWILIO_TOKEN, url, params)}
        assert httpx.post(url, data=params, headers=headers, timeout=30).status_code == 200


@pytest.fixture
def twilio_server() -> Iterator[ProviderServer]:
    """Twilio's Messages API on loopback (the inbox tests' stand-in)."""
    server = ProviderServer(_twilio_answer)
    yield server
    server.close()


@pytest.fixture
def inbox_site(
    settings: Settings, engine: sa.Engine, twilio_server: ProviderServer
) -> Iterator[InboxSite]:
    """``plait serve`` with an SMS inbox sending to the local Twilio, an agent of its team,
    an admin and a canned reply."""
    emails = {role: add_user(engine, role) for role in ("admin", "agent")}
    with write(engine) as conn:
        inbox = create_inbox(
            conn,
            "sms",
            "Shop SMS",
            options={
                "account_sid": TWILIO_ACCOUNT,
                "phone_number": SHOP_NUMBER,
                "api_url": twilio_server.url,
            },
            secrets={"auth_token": TWILIO_TOKEN},
            team="Support",
        )
        agent_id = conn.execute(
            sa.select(users.c.id).where(users.c.email == emails["agent"])
        ).scalar_one()
        add_to_team(conn, ensure_team(conn, "Support"), agent_id)
        conn.execute(
            canned_replies.insert(),
            {"id": uuid7(), "shortcut": "shipping", "body": SHIPPING, "created_at": utcnow()},
        )
    server = LiveServer(settings).start()
    try:
        yield InboxSite(server, inbox, emails)
    finally:
        server.stop()


def sign_in(browser: Any, site: InboxSite, role: str, path: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=site.server.url)
    page = context.new_page()
    page.goto(path)
    page.get_by_label("Email").fill(site.emails[role])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}")
    return page


def still_the_same_page(page: Any) -> None:
    assert page.evaluate("window.plaitMarker") == "no reload", "the page was reloaded"


def test_a_text_arrives_live_and_the_agent_answers_from_the_keyboard(
    browser: Any,
    inbox_site: InboxSite,
    twilio_server: ProviderServer,
    engine: sa.Engine,
) -> None:
    inbox_site.text_in("Do you deliver to Oslo?", sender="+14155550170")
    inbox_site.text_in("My voucher code does not work", sender="+14155550171")
    page = sign_in(browser, inbox_site, "agent", "/inbox")
    expect(page.get_by_role("heading", name=re.compile("^Inbox"), level=1)).to_be_visible()
    expect(page.locator("#queue-list .queue-item")).to_have_count(2)
    toggle = page.get_by_role("button", name=re.compile("Available for new conversations"))
    expect(toggle).to_have_attribute("aria-pressed", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#live-status")).to_contain_text("available")
    page.evaluate("window.plaitMarker = 'no reload'")

    inbox_site.text_in("Hi! Where is my parcel?")
    item = page.locator("#queue-list .queue-item").filter(has_text="Where is my parcel?")
    expect(item).to_be_visible(timeout=15000)
    expect(item).to_contain_text("You")  # auto-assigned: available, in the inbox's team
    expect(item).to_contain_text("waiting")
    expect(
        page.get_by_role("navigation", name="Queues").get_by_role("link", name=re.compile("^Mine"))
    ).to_contain_text("1")
    still_the_same_page(page)

    page.keyboard.press("j")
    page.wait_for_url(re.compile(r"/inbox/[0-9a-f-]{36}"))
    conversation = page.url.split("/inbox/")[1].split("?")[0]
    thread = page.get_by_role("region", name="Messages")
    expect(thread.locator(".msg-inbound")).to_have_text(re.compile("Where is my parcel"))
    customer = page.locator("#customer")
    expect(customer).to_contain_text(CUSTOMER)
    expect(customer).to_contain_text("SMS")
    expect(customer.get_by_role("link", name=re.compile("full customer page"))).to_have_attribute(
        "href", re.compile(r"^/customers/")
    )
    expect(page.get_by_label("Send through")).to_contain_text(f"Shop SMS → {CUSTOMER}")
    page.evaluate("window.plaitMarker = 'no reload'")

    inbox_site.text_in("It is order 1234.")
    expect(thread.locator(".msg-inbound")).to_have_count(2, timeout=15000)
    expect(thread.locator(".msg-inbound").last).to_contain_text("order 1234")
    still_the_same_page(page)

    page.keyboard.press("r")
    reply = page.get_by_label("Message", exact=True)
    expect(reply).to_be_focused()
    reply.type("Thanks! /ship")
    expect(page.locator("#canned-suggestions")).to_contain_text("/shipping")
    page.keyboard.press("Enter")
    expect(reply).to_have_value(f"Thanks! {SHIPPING}")
    page.keyboard.press("Control+Enter")
    outbound = thread.locator(".msg-outbound")
    expect(outbound).to_have_count(1)
    expect(outbound).to_contain_text(SHIPPING)
    expect(reply).to_have_value("")

    sent = eventually(lambda: twilio_server.requests, timeout=15)
    assert sent[0].form == {"To": CUSTOMER, "From": SHOP_NUMBER, "Body": f"Thanks! {SHIPPING}"}
    expect(outbound.locator(".msg-status")).to_contain_text("Sent", timeout=15000)
    still_the_same_page(page)

    page.keyboard.press("Escape")  # leave the reply box: shortcuts never fire while typing
    page.keyboard.press("n")
    expect(page.get_by_role("button", name="Add note")).to_be_visible()
    reply.fill("Customer asked twice; keep an eye on 1234.")
    page.get_by_role("button", name="Add note").click()
    expect(thread.locator(".msg-note")).to_contain_text("keep an eye on 1234")
    expect(thread.locator(".msg-note")).to_contain_text("Note by")

    page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    screenshot(page, "inbox")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one pane at a time
    expect(page.locator(".ws-queue")).to_be_hidden()
    expect(page.get_by_role("link", name="Conversations")).to_be_visible()
    expect(reply).to_be_visible()
    expect(page.get_by_role("button", name="Add note")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 800})

    page.keyboard.press("e")
    expect(page.locator("#conv-head .status")).to_contain_text("Resolved")
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()
    still_the_same_page(page)

    page.keyboard.press("j")  # the next conversation in the queue: the voucher, nobody's yet
    page.wait_for_url(lambda url: conversation not in url)
    expect(page.get_by_role("region", name="Messages")).to_contain_text("voucher code")
    expect(page.locator("#conv-head .conv-assignee")).to_contain_text("Unassigned")
    page.keyboard.press("a")
    expect(page.locator("#conv-head .conv-assignee")).to_contain_text("You")
    expect(page.locator("#live-status")).to_contain_text("Saved")
    voucher = page.url
    page.keyboard.press("j")
    page.wait_for_url(lambda url: url != voucher)
    expect(page.get_by_role("region", name="Messages")).to_contain_text("deliver to Oslo")
    page.keyboard.press("k")
    page.wait_for_url(voucher)

    with read(engine) as conn:
        stored = conn.execute(
            sa.select(messages.c.direction, messages.c.status)
            .where(messages.c.conversation_id == UUID(conversation))
            .order_by(messages.c.created_at)
        ).all()
    # (resolving may queue the satisfaction survey after them)
    assert [row.direction for row in stored][:4] == ["in", "in", "out", "note"]
    assert stored[2].status in ("sent", "delivered")
    page.context.close()


def test_an_admin_connects_an_sms_inbox_and_sets_up_the_team(
    browser: Any,
    inbox_site: InboxSite,
    twilio_server: ProviderServer,
) -> None:
    page = sign_in(browser, inbox_site, "admin", "/inbox/settings")
    expect(page.get_by_role("heading", name="Inbox settings", level=1)).to_be_visible()
    form = page.locator("#inbox-form")
    form.get_by_label("Channel").select_option("sms")
    expect(form.get_by_label("Twilio auth token")).to_be_visible()
    expect(form.get_by_label("Bot token")).to_be_hidden()
    form.get_by_label("Name").fill("Store SMS")
    form.get_by_label("Team").fill("Stores")
    form.get_by_label("Twilio Account SID").fill(TWILIO_ACCOUNT)
    form.get_by_label("Twilio auth token").fill("another-auth-token")
    form.get_by_label("Sender phone number").fill("+15005550007")
    form.get_by_label("Provider API base URL").fill(twilio_server.url)
    form.get_by_role("button", name="Create inbox").click()
    page.wait_for_url("**/inbox/settings?created=*")
    created = page.get_by_role("status").filter(has_text="Store SMS")
    expect(created).to_contain_text("/webhooks/twilio/")
    webhook = created.locator("code").inner_text()
    assert webhook.startswith(f"{inbox_site.server.url}/webhooks/twilio/")
    row = page.locator("#inboxes tr").filter(has_text="Store SMS")
    expect(row).to_contain_text("Stores")
    expect(row).to_contain_text("auth_token")
    assert "another-auth-token" not in page.content()

    page.get_by_label("Shortcut").fill("thanks")
    page.get_by_label("Text").fill("Thank you for your message!")
    page.get_by_role("button", name="Save canned reply").click()
    expect(page.locator("#canned")).to_contain_text("/thanks")

    page.locator("#member-team").fill("Stores")
    page.get_by_label("Agent", exact=True).select_option(inbox_site.emails["agent"])
    page.get_by_role("button", name="Add to team").click()
    team = page.locator(".team-list > li").filter(has_text="Stores")
    expect(team).to_contain_text(inbox_site.emails["agent"])
    screenshot(page, "inbox-settings")

    params = twilio_sms("+14155550111", "Is the Oslo store open on Sunday?")
    signed = signature("another-auth-token", webhook, params)
    answer = httpx.post(webhook, data=params, headers={"X-Twilio-Signature": signed}, timeout=30)
    assert answer.status_code == 200
    page.goto("/inbox?queue=all&channel=sms")
    expect(page.locator("#queue-list")).to_contain_text("Oslo store")
    page.context.close()
