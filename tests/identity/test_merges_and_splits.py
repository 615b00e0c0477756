"""Merges from events, refused merges, manual merges, splits, roles and bad input through the
API — on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from plait.core.settings import Settings
from plait.profiles.pipeline import resolve


def page(anonymous_id: str, at: str) -> dict:
    return {"type": "page", "anonymousId": anonymous_id, "timestamp": at}


def identify(anonymous_id: str, user_id: str, at: str, **traits: str) -> dict:
    return {
        "type": "identify",
        "anonymousId": anonymous_id,
        "userId": user_id,
        "timestamp": at,
        "traits": traits,
    }


def two_devices_merged(send_events, engine: sa.Engine, settings: Settings, admin_api) -> dict:
    send_events(
        page("phone", "2026-03-01T10:00:00Z"),
        page("phone", "2026-03-01T10:01:00Z"),
        page("laptop", "2026-03-02T10:00:00Z"),
        identify("laptop", "cus_1", "2026-03-02T10:05:00Z", email="ana@example.com"),
    )
    resolve(engine, settings)
    send_events(
        {
            "type": "track",
            "event": "Email Clicked",
            "anonymousId": "phone",
            "timestamp": "2026-03-03T09:00:00Z",
            "context": {"traits": {"email": "ana@example.com"}},
        }
    )
    assert resolve(engine, settings).merges == 1
    phone = admin_api.get("/api/profiles/lookup?kind=anonymous_id&value=phone")
    return admin_api.get(f"/api/profiles/{phone['id']}/identities")


def test_split_restores_the_profiles_and_their_events(
    send_events, admin_api, engine: sa.Engine, settings: Settings
) -> None:
    merged = two_devices_merged(send_events, engine, settings, admin_api)
    customer = merged["customer_id"]
    [merge] = merged["merges"]
    assert merge["into_id"] == customer
    assert merge["reason"] == "event"
    assert merge["identifiers"] == [["email", "ana@example.com"]]
    assert admin_api.get(f"/api/profiles/{customer}")["events"] == 5

    split = admin_api.post(f"/api/profiles/{customer}/split", {"merge_id": merge["id"]})
    restored = split["restored_id"]
    assert restored == merge["from_id"]

    phone = admin_api.get(f"/api/profiles/{customer}")
    laptop = admin_api.get(f"/api/profiles/{restored}")
    assert phone["identifiers"] == {"anonymous_id": ["phone"]}
    assert phone["events"] == 2
    assert laptop["identifiers"] == {
        "anonymous_id": ["laptop"],
        "email": ["ana@example.com"],
        "user_id": ["cus_1"],
    }
    assert laptop["events"] == 3  # its page, the identify and the click anchored on the email
    log = admin_api.get(f"/api/profiles/{customer}/identities")["merges"]
    assert log[0]["split_at"] is not None

    again = admin_api.post(f"/api/profiles/{customer}/split", {"merge_id": merge["id"]}, 409)
    assert "already split" in again["error"]["message"]
    admin_api.post(
        f"/api/profiles/{customer}/split",
        {"merge_id": "01900000-0000-7000-8000-000000000000"},
        404,
    )


def test_manual_merge_checks_limits_unless_forced(
    send_events, admin_api, engine: sa.Engine, settings: Settings
) -> None:
    send_events(
        identify("a1", "cus_1", "2026-03-01T10:00:00Z", email="one@example.com"),
        identify("a2", "cus_2", "2026-03-01T11:00:00Z", email="two@example.com"),
        page("a3", "2026-03-01T12:00:00Z"),
    )
    resolve(engine, settings)
    ids = {
        name: admin_api.get(f"/api/profiles/lookup?kind=anonymous_id&value={name}")["id"]
        for name in ("a1", "a2", "a3")
    }
    refused = admin_api.post("/api/profiles/merge", {"profile_ids": [ids["a1"], ids["a2"]]}, 409)
    assert "2 user_id (limit 1)" in refused["error"]["message"]
    assert admin_api.get(f"/api/profiles/{ids['a2']}")["id"] == ids["a2"]  # nothing written

    merged = admin_api.post("/api/profiles/merge", {"profile_ids": [ids["a3"], ids["a1"]]})
    assert merged["customer_id"] == min(ids["a1"], ids["a3"])
    forced = admin_api.post(
        "/api/profiles/merge", {"profile_ids": [ids["a1"], ids["a2"]], "force": True}
    )
    customer = admin_api.get(f"/api/profiles/{forced['customer_id']}")
    assert customer["identifiers"]["user_id"] == ["cus_1", "cus_2"]
    assert sorted(customer["merged_profiles"]) == sorted(set(ids.values()) - {customer["id"]})
    log = admin_api.get(f"/api/profiles/{customer['id']}/identities")["merges"]
    assert {entry["reason"] for entry in log} == {"manual"}
    assert {entry["created_by"] for entry in log} == {"test admin"}


def test_a_second_user_on_a_shared_device_is_refused_and_logged(
    send_events, admin_api, engine: sa.Engine, settings: Settings
) -> None:
    send_events(identify("family-ipad", "cus_mum", "2026-03-01T10:00:00Z"))
    resolve(engine, settings)
    send_events(identify("family-ipad", "cus_kid", "2026-03-01T18:00:00Z"))
    report = resolve(engine, settings)
    assert report.merges == 0
    assert report.refusals == 1
    mum = admin_api.get("/api/profiles/lookup?kind=user_id&value=cus_mum")
    kid = admin_api.get("/api/profiles/lookup?kind=user_id&value=cus_kid")
    assert mum["id"] != kid["id"]
    assert mum["identifiers"]["anonymous_id"] == ["family-ipad"]
    assert "anonymous_id" not in kid["identifiers"]
    assert kid["events"] == 1  # the refused event still belongs to its strongest identifier
    [refusal] = admin_api.get("/api/identity/refusals")["refusals"]
    assert refusal["code"] == "left_out"
    assert refusal["identifiers"] == [["anonymous_id", "family-ipad"]]
    assert "1 user_id" not in refusal["message"]
    assert "2 user_id (limit 1)" in refusal["message"]
    assert refusal["profile_ids"] == [mum["id"]]
    event = admin_api.get(f"/api/profiles/{kid['id']}/timeline")["events"][0]
    assert refusal["event_id"] == event["id"]


def test_roles_and_bad_input(send_events, admin_api, token_api, engine, settings) -> None:
    send_events(identify("a1", "cus_1", "2026-03-01T10:00:00Z", email="one@example.com"))
    resolve(engine, settings)
    customer = admin_api.get("/api/profiles?q=one@example.com")["profiles"][0]["id"]
    marketer, agent = token_api("marketer"), token_api("agent")
    assert agent.get(f"/api/profiles/{customer}")["id"] == customer
    assert marketer.get(f"/api/profiles/{customer}/timeline")["events"]
    marketer.post("/api/profiles/merge", {"profile_ids": [customer, customer]}, 403)
    agent.delete(f"/api/profiles/{customer}", 403)
    marketer.get(f"/api/profiles/{customer}/export", 403)
    assert admin_api.client.get(f"/api/profiles/{customer}").status_code == 401

    admin_api.post("/api/profiles/merge", {"profile_ids": [customer]}, 400)
    same = admin_api.post("/api/profiles/merge", {"profile_ids": [customer, customer]}, 400)
    assert same["error"]["field"] == "profile_ids"
    admin_api.post("/api/profiles/merge", {"profile_ids": ["nope", customer]}, 400)
    admin_api.get("/api/profiles/not-a-uuid", 404)
    admin_api.get("/api/profiles/01900000-0000-7000-8000-000000000000", 404)
    bad_email = admin_api.get("/api/profiles/lookup?kind=email&value=not-an-email", 400)
    assert bad_email["error"]["field"] == "value"
    admin_api.get("/api/profiles/lookup?kind=email&value=nobody@example.com", 404)
    admin_api.get("/api/profiles/lookup?kind=Bad Kind&value=x", 400)
    assert admin_api.get("/api/profiles?q=%20", 400)["error"]["field"] == "q"
    admin_api.get(f"/api/profiles/{customer}/timeline?type=click", 400)
    admin_api.get(f"/api/profiles/{customer}/timeline?since=yesterday", 400)
    admin_api.get(f"/api/profiles/{customer}/timeline?limit=0", 400)
    admin_api.delete("/api/profiles/not-a-uuid", 400)
    assert admin_api.get(f"/api/profiles/{customer}")["events"] == 1  # nothing changed
