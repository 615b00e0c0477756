"""The web chat widget in headless Chromium, embedded in a site on another origin and served
by a real ``plait serve``: the visitor writes, an agent's reply appears without a reload."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect
from tests.conftest import SCREENSHOTS, LiveServer
from tests.inbox.conftest import eventually

from plait.collect.sources import add_source
from plait.core.auth import create_token
from plait.core.db import write

VISITOR = "5d0c1e7a-3b2f-4c6d-9e8f-7a6b5c4d3e2f"
WAIT = 20_000
"""Milliseconds Playwright waits for something to appear (a loaded machine is slow)."""


class Site:
    """A brand's website on its own origin: ``/`` has analytics.js's anonymous id already,
    ``/fresh`` has none; both embed the widget from Plait."""

    def __init__(self, plait_url: str) -> None:
        self.inbox_id = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                embed = (
                    f'<script src="{plait_url}/chat/widget.js" data-inbox="{owner.inbox_id}"'
                    " async></script>"
                )
                known = (
                    "<script>localStorage.setItem('ajs_anonymous_id', "
                    f"JSON.stringify('{VISITOR}'));</script>"
                )
                head = {"/": known + embed, "/fresh": embed}.get(self.path)
                if head is None:
                    self.send_error(404)
                    return
                html = (
                    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
                    '<meta name="viewport" content="width=device-width, initial-scale=1">'
                    f"<title>Shop</title>{head}</head>"
                    "<body><h1>The shop</h1><p>Blue and red bikes.</p></body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(html)))
                self.end_headers()
                self.wfile.write(html)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # "localhost", not Plait's "127.0.0.1": another origin, as a real site would be.
        self.url = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def shop(live_server: LiveServer, engine: sa.Engine) -> Iterator[dict[str, Any]]:
    """Plait with a web chat inbox that allows the site, an admin token and a write key."""
    with write(engine) as conn:
        token = create_token(conn, "admin", "chat test")["token"]
        source = add_source(conn, live_server.settings, "Website")
    admin = httpx.Client(
        base_url=live_server.url, headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    site = Site(live_server.url)
    try:
        created = admin.post(
            "/api/inbox/inboxes",
            json={
                "channel": "web_chat",
                "name": "Shop chat",
                "options": {"allowed_origins": site.url, "title": "Shop help"},
            },
        )
        assert created.status_code == 201, created.text
        site.inbox_id = created.json()["id"]
        yield {"admin": admin, "site": site, "source": source, "server": live_server}
    finally:
        site.close()
        admin.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context
    context.close()


def conversation_of(admin: httpx.Client, contact: str) -> dict[str, Any]:
    """The web chat conversation whose messages come from ``contact``, once it exists."""

    def find() -> dict[str, Any] | None:
        for row in admin.get("/api/inbox/conversations?channel=web_chat").json()["conversations"]:
            detail = admin.get(f"/api/inbox/conversations/{row['id']}").json()
            if any(m["contact"] == contact for m in detail["messages"]):
                return detail
        return None

    return eventually(find, timeout=30)


def test_a_visitor_chats_and_sees_the_agents_reply_without_reload(
    shop: dict[str, Any], context: Any
) -> None:
    admin, site, server = shop["admin"], shop["site"], shop["server"]
    auth = base64.b64encode(f"{shop['source']['write_key']}:".encode()).decode()
    tracked = httpx.post(
        f"{server.url}/v1/page",
        content=orjson.dumps({"anonymousId": VISITOR, "name": "Bikes"}),
        headers={"authorization": f"Basic {auth}", "content-type": "application/json"},
    )
    assert tracked.status_code == 200, tracked.text

    page = context.new_page()
    page.goto(site.url + "/")
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_visible(timeout=WAIT)
    launcher.click()
    panel = page.get_by_role("dialog", name="Shop help")
    expect(panel).to_be_visible(timeout=WAIT)
    message = panel.get_by_label("Message")
    expect(message).to_be_focused()
    message.fill("Do you ship to Norway?")
    message.press("Enter")
    log = panel.get_by_role("log")
    expect(log.get_by_text("Do you ship to Norway?")).to_be_visible()

    conversation = conversation_of(admin, VISITOR)
    assert [m["body"] for m in conversation["messages"]] == ["Do you ship to Norway?"]
    reply = admin.post(
        f"/api/inbox/conversations/{conversation['id']}/messages",
        json={"body": "Yes, in 3 to 5 days."},
    )
    assert reply.status_code == 201, reply.text
    expect(log.get_by_text("Yes, in 3 to 5 days.")).to_be_visible(timeout=WAIT)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "web-chat-desktop.png"))

    # The open panel showed it: read.
    def status() -> str:
        detail = admin.get(f"/api/inbox/conversations/{conversation['id']}").json()
        return next(m["status"] for m in detail["messages"] if m["id"] == reply.json()["id"])

    eventually(lambda: status() == "read", timeout=30)

    # Chat and browsing are one customer.
    profile = admin.get(f"/api/profiles/lookup?kind=anonymous_id&value={VISITOR}").json()
    timeline = admin.get(f"/api/profiles/{profile['id']}/timeline").json()["events"]
    assert {"page", "track"} <= {event["type"] for event in timeline}
    assert conversation["customer_id"] == profile["id"]

    # Keyboard: Escape closes the panel and gives focus back to the launcher.
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(launcher).to_be_focused()

    # A phone: the panel fills the screen and still shows the chat.
    page.set_viewport_size({"width": 390, "height": 844})
    page.keyboard.press("Enter")
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    assert box is not None
    assert (box["x"], box["y"]) >= (0, 0)
    assert box["x"] + box["width"] <= 390
    assert box["y"] + box["height"] <= 844
    expect(log.get_by_text("Yes, in 3 to 5 days.")).to_be_visible()
    expect(panel.get_by_role("button", name="Send")).to_be_in_viewport()
    page.screenshot(path=str(SCREENSHOTS / "web-chat-phone.png"))
    panel.get_by_role("button", name="Close chat").click()
    expect(panel).to_be_hidden()


def test_a_new_visitor_gets_an_anonymous_id_that_analytics_js_will_reuse(
    shop: dict[str, Any], context: Any
) -> None:
    admin, site = shop["admin"], shop["site"]
    page = context.new_page()
    page.goto(site.url + "/fresh")
    page.get_by_role("button", name="Open chat").click(timeout=WAIT)
    message = page.get_by_label("Message")
    message.fill("Hello from a first visit")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("log").get_by_text("Hello from a first visit")).to_be_visible()

    stored = page.evaluate("localStorage.getItem('ajs_anonymous_id')")
    anonymous_id = orjson.loads(stored)  # JSON-encoded, as analytics.js stores it
    assert len(anonymous_id) == 36
    cookies = {c["name"]: c["value"] for c in context.cookies(site.url)}
    assert cookies["ajs_anonymous_id"] == anonymous_id

    conversation = conversation_of(admin, anonymous_id)
    assert conversation["messages"][0]["body"] == "Hello from a first visit"

    # The next page view keeps the same id (the widget reuses what it stored).
    page.reload()
    expect(page.get_by_role("button", name="Open chat")).to_be_visible(timeout=WAIT)
    assert orjson.loads(page.evaluate("localStorage.getItem('ajs_anonymous_id')")) == anonymous_id
