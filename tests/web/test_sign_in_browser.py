"""Signing in, out and being refused, in real headless Chromium against ``plait serve``."""

from __future__ import annotations

from tests.conftest import screenshot


def test_sign_in_with_the_demo_admin_and_sign_out(browser, demo_site) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=demo_site.url)
    page = context.new_page()
    page.goto("/users")
    assert "/login" in page.url
    page.get_by_label("Email").fill(demo_site.emails["admin"])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong email or password."
    screenshot(page, "sign-in")
    page.get_by_label("Password").fill(demo_site.summary["passwords"]["admin"])
    page.get_by_label("Password").press("Enter")  # the form works from the keyboard
    page.wait_for_url("**/users")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.goto("/users")
    assert "/login" in page.url
    context.close()


def test_a_request_without_the_csrf_token_fails(page_as, demo_site) -> None:
    page = page_as("admin")
    form = {"email": "mallory@example.com", "role": "admin", "password": "a long password"}
    refused = page.request.post("/users", form=form)  # the session cookie goes along
    assert refused.status == 403
    assert "did not come from Plait" in refused.text()
    page.goto("/users")
    assert "mallory@example.com" not in page.content()


def test_an_agent_cannot_open_admin_pages(page_as) -> None:
    page = page_as("agent")
    response = page.goto("/users")
    assert response.status == 403
    assert page.get_by_role("heading", name="Not allowed").is_visible()
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Customers").is_visible()
    assert nav.get_by_role("link", name="Users").count() == 0
    assert nav.get_by_role("link", name="Channels").count() == 0


def test_the_skip_link_is_the_first_stop_for_the_keyboard(page_as) -> None:
    page = page_as("admin")
    page.goto("/users")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    screenshot(page, "users")
