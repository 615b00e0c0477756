"""The Sources and Data quality pages in real headless Chromium against ``plait serve``: an
agent is refused, an admin creates a source, sees its write key once and watches an event
sent with it arrive in the live debugger without reloading; rejected events are listed."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect
from tests.conftest import PASSWORD, LiveServer, add_user, screenshot

from plait.collect.sources import add_source
from plait.core.db import get_engine, read, write
from plait.core.settings import Settings
from plait.identity.graph import identities
from plait.migrations import upgrade
from plait.profiles.pipeline import resolve
from plait.profiles.privacy import erase_person

OLD = "2001-01-01T00:00:00Z"
"""Test events are dated long before the demo world, so no report of it changes."""


def send(demo_site, write_key: str, body: dict, path: str = "/v1/track") -> dict:
    """Post to the live server's tracking API with the write key (HTTP Basic)."""
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    response = httpx.post(
        demo_site.url + path, json=body, headers={"authorization": f"Basic {auth}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_an_agent_cannot_open_sources_or_data_quality(page_as) -> None:
    page = page_as("agent")
    for path in ("/sources", "/quality"):
        response = page.goto(path)
        assert response.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Sources").count() == 0
    assert nav.get_by_role("link", name="Data quality").count() == 0


def test_admin_creates_a_source_and_watches_its_events_arrive(page_as, demo_site) -> None:
    page = page_as("admin")
    page.goto("/sources")
    expect(page.get_by_role("link", name="Website", exact=True)).to_be_visible()
    screenshot(page, "sources")

    page.get_by_label("Name").fill("Browser kiosk")
    page.get_by_label("Default channel").select_option("Store")
    page.get_by_role("button", name="Create source").click()
    key_box = page.locator("#write-key")
    expect(key_box).to_be_visible()
    write_key = key_box.inner_text()
    assert len(write_key) == 32
    assert write_key in page.locator("#snippet-python").inner_text()
    page.wait_for_url("**/sources/*")  # the address is the source's own, without the key
    assert write_key not in page.url
    screenshot(page, "source-created")

    page.reload()
    expect(page.get_by_role("heading", name="Browser kiosk", exact=True)).to_be_visible()
    expect(page.locator("#write-key")).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)  # not posted again
    assert write_key not in page.content()
    expect(page.locator("#debugger-empty")).to_be_visible()
    expect(page.locator("#debugger-status")).to_contain_text("Live")

    page.evaluate("window.notReloaded = true")
    sent = send(
        demo_site,
        write_key,
        {"event": "Kiosk Opened", "anonymousId": "kiosk-debugger-test", "timestamp": OLD},
    )
    assert sent["accepted"] == 1
    row = page.locator("#debugger-events li", has_text="Kiosk Opened")
    expect(row).to_be_visible(timeout=10_000)
    assert page.evaluate("window.notReloaded") is True
    expect(row).to_contain_text("anon kiosk-debugger-test")
    expect(row).to_contain_text("Store")
    row.locator("summary").click()
    expect(row.locator("pre")).to_contain_text('"anonymousId": "kiosk-debugger-test"')

    toggle = page.locator("#debugger-toggle")
    expect(toggle).to_have_accessible_name("Pause")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    send(demo_site, write_key, {"event": "While Paused", "anonymousId": "k2", "timestamp": OLD})
    page.wait_for_timeout(4500)
    expect(page.locator("#debugger-events li", has_text="While Paused")).to_have_count(0)
    expect(toggle).to_have_accessible_name("Resume")
    toggle.click()
    expect(page.locator("#debugger-events li", has_text="While Paused")).to_be_visible()
    expect(page.locator("#debugger-events li")).to_have_count(2)
    assert page.evaluate("window.notReloaded") is True


def test_a_busy_source_page_and_its_debugger(page_as) -> None:
    page = page_as("admin")
    page.goto("/sources")
    page.get_by_role("link", name="Website", exact=True).click()
    expect(page.get_by_role("heading", name="Website", exact=True)).to_be_visible()
    rows = page.locator("#debugger-events li")
    expect(rows).to_have_count(25)
    rows.first.locator("summary").focus()
    page.keyboard.press("Enter")  # a row opens from the keyboard
    expect(rows.first.locator("pre")).to_be_visible()
    screenshot(page, "source")


def test_data_quality_lists_a_rejected_event(page_as, demo_site) -> None:
    write_key = demo_site.summary["new_write_keys"]["Website"]
    message = {"type": "track", "anonymousId": "quality-test", "timestamp": OLD}  # no event name
    [refused] = send(demo_site, write_key, {"batch": [message]}, "/v1/batch")["rejected"]
    code = refused["code"]
    page = page_as("admin")
    page.goto("/quality")
    rejected = page.locator("#rejected")
    row = rejected.locator("tbody tr", has_text="quality-test").first
    expect(row).to_contain_text(code)
    expect(row).to_contain_text("Website")
    row.locator("summary").click()
    expect(row.locator("pre")).to_contain_text('"anonymousId": "quality-test"')
    page.get_by_label("Source").select_option("Website")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/quality?source=Website")
    expect(rejected.locator("tbody tr", has_text="quality-test").first).to_be_visible()
    screenshot(page, "quality")


@pytest.fixture
def troubled_site(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    """A small world (SQLite) with every kind of data-quality finding, behind ``plait serve``:
    rejected events, a refused merge on a shared device and an erased customer."""
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'q.db'}")
    engine = get_engine(settings)
    upgrade(engine)
    with write(engine) as conn:
        key = add_source(conn, settings, "Website")["write_key"]
    email = add_user(engine, "admin")
    server = LiveServer(settings).start()

    def batch(*messages: dict) -> None:
        auth = base64.b64encode(f"{key}:".encode()).decode()
        body = {"batch": [{"timestamp": OLD, **message} for message in messages]}
        headers = {"authorization": f"Basic {auth}"}
        assert httpx.post(f"{server.url}/v1/batch", json=body, headers=headers).status_code == 200

    def identify(device: str, user: str, **traits: str) -> dict:
        return {"type": "identify", "anonymousId": device, "userId": user, "traits": traits}

    try:
        batch(identify("family-ipad", "cus_mum"), identify("ana-laptop", "cus_ana", email="a@x.io"))
        resolve(engine, settings)
        batch(identify("family-ipad", "cus_kid"))
        resolve(engine, settings)
        with read(engine) as conn:
            ana = conn.execute(
                sa.select(identities.c.profile_id).where(identities.c.value == "cus_ana")
            ).scalar_one()
        erase_person(engine, settings, ana)
        batch(
            {"type": "track", "anonymousId": "d1"},
            {"type": "track", "event": "Visit", "anonymousId": "d2", "timestamp": "yesterday"},
            {"type": "teleport", "anonymousId": "d3"},
            {"type": "track", "event": "Back Again", "userId": "cus_ana"},
        )
        yield server, email
    finally:
        server.stop()


def test_data_quality_with_refusals_and_an_erasure(browser, troubled_site) -> None:
    server, email = troubled_site
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url)
    page = context.new_page()
    page.goto("/quality")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/quality")
    expect(page.locator("#rejected tbody tr")).to_have_count(4)
    expect(page.locator("#rejected")).to_contain_text("suppressed")
    expect(page.locator("#refusals tbody tr")).to_have_count(1)
    expect(page.locator("#refusals")).to_contain_text("family-ipad")
    expect(page.locator("#suppressed tbody tr")).to_have_count(3)
    assert "a@x.io" not in page.content()
    expect(page.locator("#refusals tbody tr").get_by_role("link")).to_have_count(1)
    page.locator("#rejected summary").first.click()
    screenshot(page, "quality-findings")
    context.close()
