"""The Sources and Data quality pages, in-process on SQLite and PostgreSQL: who may open them,
creating a source (its write key shown once, CSRF, bad input), the snippets, the live
debugger's feed, and rejected events, merge refusals and suppressed identifiers listed."""

from __future__ import annotations

import base64
import html
import re
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import LiveServer, WebSession, add_user

from plait.core.db import read
from plait.core.settings import Settings
from plait.core.sources import sources
from plait.profiles.pipeline import resolve
from plait.profiles.privacy import erase_person
from plait.server import create_app

WRITE_KEY = re.compile(r'<code class="secret" id="write-key">([^<]+)</code>')


def source_count(engine: sa.Engine) -> int:
    with read(engine) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(sources)).scalar_one()


def basic(write_key: str) -> dict[str, str]:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"authorization": f"Basic {auth}", "content-type": "application/json"}


def snippet(page: str, snippet_id: str) -> str:
    found = re.search(rf'<code id="{snippet_id}">(.*?)</code>', page, re.S)
    assert found, f"no {snippet_id} on the page"
    return html.unescape(found.group(1))


def feed(web: WebSession, source_id: str, after: int | None = None) -> dict:
    query = "" if after is None else f"?after={after}"
    response = web.get(f"/sources/{source_id}/events.json{query}")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()


@pytest.mark.parametrize("role", ["marketer", "agent"])
def test_only_admins_open_sources_and_data_quality(web_as, source: dict, engine, role) -> None:
    web = web_as(role)
    for path in ("/sources", f"/sources/{source['id']}", "/quality"):
        response = web.get(path)
        assert response.status_code == 403, path
        assert "Not allowed" in response.text
    assert web.get(f"/sources/{source['id']}/events.json").status_code == 403
    assert web.get(f"/sources/{source['id']}/events.json?after=0").status_code == 403
    assert web.post("/sources", {"name": "Sneaky"}).status_code == 403
    assert source_count(engine) == 1
    admin = web_as("admin")
    for path in ("/sources", f"/sources/{source['id']}", "/quality"):
        assert admin.get(path).status_code == 200, path


def test_strangers_are_sent_to_sign_in(client: TestClient, source: dict) -> None:
    for path in ("/sources", "/quality", f"/sources/{source['id']}/events.json?after=0"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    assert client.post("/sources", data={"name": "X"}).status_code == 401


def test_the_write_key_is_shown_once_at_creation(web_as, client: TestClient, engine) -> None:
    admin = web_as("admin")
    created = admin.post("/sources", {"name": "  Shop tills ", "channel": "store"})
    assert created.status_code == 201
    assert "location" not in created.headers
    assert created.headers["cache-control"] == "no-store"
    write_key = WRITE_KEY.search(created.text).group(1)
    assert len(write_key) == 32
    assert "Shop tills" in created.text
    source_id = re.search(r'data-forget-post="/sources/([0-9a-f-]{36})"', created.text).group(1)
    for snippet_id, server in (
        ("snippet-js", "apiHost: 'testserver/v1'"),
        ("snippet-python", "analytics.host = 'http://testserver'"),
        ("snippet-http", "'http://testserver/v1/batch'"),
    ):
        assert write_key in snippet(created.text, snippet_id)
        assert server in snippet(created.text, snippet_id)

    sent = client.post(
        "/v1/track",
        content=orjson.dumps({"userId": "u1", "event": "Till Opened"}),
        headers=basic(write_key),
    )
    assert sent.status_code == 200, sent.text
    for path in ("/sources", f"/sources/{source_id}", "/sources/Shop tills", "/quality"):
        page = admin.get(path)
        assert page.status_code == 200, path
        assert write_key not in page.text, path
    page = admin.get(f"/sources/{source_id}").text
    assert "YOUR_WRITE_KEY" in snippet(page, "snippet-python")
    assert "Till Opened" in page  # the debugger's first rows are rendered on the server
    listing = admin.get("/sources").text
    row = re.search(r"Shop tills</a></td>(.*?)</tr>", listing, re.S).group(1)
    assert '<td class="num">1</td>' in row
    assert "Store</td>" in row


def test_a_post_without_the_csrf_token_is_refused(web_as, engine) -> None:
    admin = web_as("admin")
    refused = admin.client.post("/sources", data={"name": "No token"}, follow_redirects=False)
    assert refused.status_code == 403
    assert "expired or did not come from Plait" in refused.text
    forged = admin.client.post(
        "/sources", data={"name": "Forged", "csrf_token": "0" * 64}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert source_count(engine) == 0


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"name": ""}, 400, "a source name is 1 to 100 characters"),
        ({"name": "   "}, 400, "a source name is 1 to 100 characters"),
        ({"name": "x" * 101}, 400, "a source name is 1 to 100 characters"),
        ({"name": "Website"}, 409, "a source named &#39;Website&#39; exists already"),
        ({"name": "Kiosk", "channel": "Carrier Pigeon"}, 400, "unknown channel"),
        ({"name": "Bad\x00name"}, 400, "cannot contain control characters"),
        ({"name": "Tab\tname"}, 400, "cannot contain control characters"),
    ],
)
def test_bad_source_input_reshows_the_form(
    web_as, source: dict, engine, form: dict, status: int, message: str
) -> None:
    response = web_as("admin").post("/sources", form)
    assert response.status_code == status
    assert 'role="alert"' in response.text
    assert message in response.text
    assert 'id="write-key"' not in response.text
    assert 'action="/sources"' in response.text  # the form again
    assert source_count(engine) == 1


def test_unknown_sources_and_bad_cursors_are_clear_errors(web_as, source: dict) -> None:
    admin = web_as("admin")
    assert admin.get("/sources/nope").status_code == 404
    assert admin.get("/sources/nope/events.json").status_code == 404
    for after in ("x", "-1", "1.5", str(2**64)):
        response = admin.get(f"/sources/{source['id']}/events.json?after={after}")
        assert response.status_code == 400, after
    for query in (
        "source=Nowhere",
        "rejected_cursor=garbage",
        "refusals_cursor=garbage",
        "suppressed_cursor=garbage",
    ):
        response = admin.get(f"/quality?{query}")
        assert response.status_code == 400, query
        assert "That did not work" in response.text


def test_the_debugger_feed_returns_only_newer_events(web_as, send_events, source: dict) -> None:
    admin = web_as("admin")
    empty = feed(admin, source["id"])
    assert empty == {"events": [], "after": 0}
    send_events(
        {"type": "track", "event": "First", "userId": "u1"},
        {"type": "page", "name": "Second", "anonymousId": "a1"},
        {"type": "track", "event": "Third", "userId": "u1", "properties": {"n": 3}},
    )
    everything = feed(admin, source["id"])
    assert [row["label"] for row in everything["events"]] == ["Third", "Second", "First"]
    third = everything["events"][0]
    assert third["type"] == "track"
    assert third["who"] == "user u1"
    assert everything["events"][1]["who"] == "anon a1"
    assert orjson.loads(third["raw"])["properties"] == {"n": 3}
    seqs = [row["seq"] for row in everything["events"]]
    # Just received: the cursor stays behind them, in case an earlier one commits late.
    assert everything["after"] < min(seqs)

    newer = feed(admin, source["id"], after=seqs[2])
    assert [row["label"] for row in newer["events"]] == ["Third", "Second"]
    assert all(row["seq"] > seqs[2] for row in newer["events"])
    assert feed(admin, source["id"], after=seqs[0])["events"] == []
    send_events({"type": "track", "event": "Fourth", "userId": "u2"})
    latest = feed(admin, source["id"], after=seqs[0])
    assert [row["label"] for row in latest["events"]] == ["Fourth"]


def test_data_quality_lists_rejected_events_with_reasons(web_as, send_events) -> None:
    reply = send_events(
        {"type": "track", "userId": "u1", "properties": {"note": "<b>no event name</b>"}},
        {"type": "track", "event": "Fine", "userId": "u1"},
        expect_rejected=True,
    )
    [rejection] = reply["rejected"]
    admin = web_as("admin")
    page = admin.get("/quality").text
    assert 'Rejected events <span class="muted">(1)</span>' in page
    assert (
        f'<span class="badge">{rejection["code"]}</span> {html.escape(rejection["message"])}'
        in (page.replace("&#39;", "'").replace("&#x27;", "'"))
    )
    assert "&lt;b&gt;no event name&lt;/b&gt;" in page  # the payload, escaped
    assert "<b>no event name</b>" not in page
    assert ">Website</td>" in page
    assert admin.get("/quality?source=Website").text.count('class="payload"') == 1


def test_data_quality_pages_through_rejected_events(web_as, send_events) -> None:
    bad = [{"type": "track", "userId": f"u{n}"} for n in range(30)]
    send_events(*bad, expect_rejected=True)
    admin = web_as("admin")
    first = admin.get("/quality").text
    assert first.count('class="payload"') == 25
    older = re.search(r'<a href="(/quality\?rejected_cursor=[^"]+)">Older</a>', first)
    assert older, "no Older link"
    second = admin.get(html.unescape(older.group(1))).text
    assert second.count('class="payload"') == 5
    assert ">Newest</a>" in second
    assert ">Older</a>" not in second


def test_data_quality_lists_refusals_and_suppressed_identifiers(
    web_as, send_events, admin_api, engine, settings: Settings
) -> None:
    def identify(device: str, user: str, at: str, **traits: str) -> dict:
        return {
            "type": "identify",
            "anonymousId": device,
            "userId": user,
            "timestamp": at,
            "traits": traits,
        }

    send_events(identify("family-ipad", "cus_mum", "2026-03-01T10:00:00Z"))
    resolve(engine, settings)
    send_events(identify("family-ipad", "cus_kid", "2026-03-01T18:00:00Z"))
    send_events(identify("ana-laptop", "cus_ana", "2026-03-02T10:00:00Z", email="ana@example.com"))
    resolve(engine, settings)
    ana = admin_api.get("/api/profiles/lookup?kind=user_id&value=cus_ana")["id"]
    mum = admin_api.get("/api/profiles/lookup?kind=user_id&value=cus_mum")["id"]
    assert erase_person(engine, settings, UUID(ana)).suppressed == 3

    page = web_as("admin").get("/quality").text
    assert 'Merge refusals <span class="muted">(1)</span>' in page
    assert '<span class="badge">left_out</span>' in page
    assert '<span class="muted">anonymous_id</span> family-ipad' in page
    assert f'href="/customers/{mum}"' in page
    assert 'Suppressed identifiers <span class="muted">(3)</span>' in page
    for kind in ("email", "user_id", "anonymous_id"):
        assert f'<span class="badge">{kind}</span>' in page
    assert f'Customer <code class="id">{ana}</code> was erased' in page
    assert "ana@example.com" not in page
    assert "cus_ana" not in page


def test_the_snippets_work_against_a_live_server(
    settings: Settings, engine: sa.Engine, tmp_path: Path
) -> None:
    server = LiveServer(settings).start()
    try:
        public = settings.model_copy(
            update={"server": settings.server.model_copy(update={"public_url": server.url + "/"})}
        )
        with TestClient(create_app(public)) as client:
            admin = WebSession(client, add_user(engine, "admin"))
            created = admin.post("/sources", {"name": "Snippets"})
            assert created.status_code == 201
            source_id = re.search(r'data-forget-post="/sources/([^"]+)"', created.text).group(1)
            python_code = snippet(created.text, "snippet-python")
            assert f"analytics.host = '{server.url}'" in python_code
            ran = subprocess.run(
                [sys.executable, "-c", python_code], capture_output=True, text=True, timeout=60
            )
            assert ran.returncode == 0, ran.stderr
            curl = subprocess.run(
                ["sh", "-c", snippet(created.text, "snippet-http")],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert curl.returncode == 0, curl.stderr
            assert curl.stdout.count('"success":true') == 2, curl.stdout
            js = tmp_path / "snippet.mjs"
            js.write_text(snippet(created.text, "snippet-js"))
            assert "apiHost: '127.0.0.1:" in js.read_text()
            assert "protocol: 'http'" in js.read_text()
            checked = subprocess.run(["node", "--check", str(js)], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr
            labels = [row["label"] for row in feed(admin, source_id)["events"]]
        assert sorted(labels) == ["", "", "Order Completed", "Signed Up", "Signed Up"]
    finally:
        server.stop()
