"""Merge suggestions end to end: customers who share no identifier are suggested, never
merged automatically; accepting merges them, rejecting keeps them apart for good."""

from __future__ import annotations

import sqlalchemy as sa

from plait.core.settings import Settings
from plait.profiles.pipeline import resolve

PEOPLE = [
    ("a1", "Margaret", "Thornbury", "m.thornbury@example.com", "SW1A 1AA"),
    ("a2", "Margret", "Thornbury", "maggie.t@example.org", "SW1A 1AA"),
    ("a3", "Oluwaseun", "Adebayo-Smith", "seun@example.com", "M1 1AE"),
    ("a4", "Oluwaseun", "Adebayo Smith", "oadebayo@example.net", "M1 1AE"),
    ("a5", "Jan", "Kowalski", "jan.k@example.com", "00-001"),
]


def named(send_events) -> None:  # type: ignore[no-untyped-def]
    send_events(
        *(
            {
                "type": "identify",
                "anonymousId": anonymous,
                "timestamp": "2026-03-01T10:00:00Z",
                "traits": {
                    "first_name": first,
                    "last_name": last,
                    "email": email,
                    "postcode": postcode,
                    "city": "London",
                },
            }
            for anonymous, first, last, email, postcode in PEOPLE
        )
    )


def test_suggestions_are_reviewed_not_applied(
    send_events, admin_api, token_api, engine: sa.Engine, settings: Settings
) -> None:
    named(send_events)
    resolve(engine, settings)
    run = admin_api.post("/api/identity/suggestions/run", {"threshold": 0.5})
    assert run["customers"] == 5
    assert run["new"] == 2
    pending = admin_api.get("/api/identity/suggestions")["suggestions"]
    pairs = {frozenset((s["left"]["emails"][0], s["right"]["emails"][0])) for s in pending}
    assert pairs == {
        frozenset(("m.thornbury@example.com", "maggie.t@example.org")),
        frozenset(("seun@example.com", "oadebayo@example.net")),
    }
    assert all(0.5 <= s["probability"] <= 1 for s in pending)
    assert len(admin_api.get("/api/profiles?q=thornbury")["profiles"]) == 2  # not merged yet

    token_api("marketer").post(f"/api/identity/suggestions/{pending[0]['id']}/accept", None, 403)
    accepted, rejected = pending
    result = admin_api.post(f"/api/identity/suggestions/{accepted['id']}/accept")
    assert result["status"] == "accepted"
    merged = admin_api.get(f"/api/profiles/{result['customer_id']}")
    assert len(merged["identifiers"]["email"]) == 2
    [merge] = admin_api.get(f"/api/profiles/{result['customer_id']}/identities")["merges"]
    assert merge["reason"] == "suggestion"
    admin_api.post(f"/api/identity/suggestions/{rejected['id']}/reject")
    admin_api.post(f"/api/identity/suggestions/{rejected['id']}/accept", None, 409)
    admin_api.post(
        "/api/identity/suggestions/01900000-0000-7000-8000-000000000000/reject", None, 404
    )

    again = admin_api.post("/api/identity/suggestions/run", {"threshold": 0.5})
    assert again["new"] == 0  # the rejected pair is not suggested again
    assert admin_api.get("/api/identity/suggestions")["suggestions"] == []
    assert len(admin_api.get("/api/identity/suggestions?status=rejected")["suggestions"]) == 1
    admin_api.get("/api/identity/suggestions?status=maybe", 400)
    admin_api.post("/api/identity/suggestions/run", {"threshold": 2}, 400)


def test_profiles_and_identity_commands(send_events, cli, engine, settings) -> None:  # type: ignore[no-untyped-def]
    import orjson

    named(send_events)
    resolved = orjson.loads(cli("identity", "resolve", "--json").stdout)
    assert resolved["events"] == 5
    assert resolved["profiles"] == 5
    shown = orjson.loads(cli("profiles", "show", "SEUN@example.com", "--json").stdout)
    assert shown["traits"]["first_name"] == "Oluwaseun"
    by_kind = orjson.loads(cli("profiles", "show", "anonymous_id:a5", "--json").stdout)
    assert by_kind["name"] == "Jan Kowalski"
    found = orjson.loads(cli("profiles", "search", "oluwa", "--json").stdout)
    assert len(found) == 2
    timeline = orjson.loads(cli("profiles", "timeline", shown["id"], "--json").stdout)
    assert [event["type"] for event in timeline["events"]] == ["identify"]
    merged = orjson.loads(
        cli("profiles", "merge", "seun@example.com", "oadebayo@example.net", "--json").stdout
    )
    identities = orjson.loads(cli("profiles", "show", merged["customer_id"], "--json").stdout)
    assert len(identities["merged_profiles"]) == 1
    exported = orjson.loads(cli("profiles", "export", "jan.k@example.com").stdout)
    assert exported["profile"]["name"] == "Jan Kowalski"
    erased = orjson.loads(cli("profiles", "erase", "jan.k@example.com", "--yes", "--json").stdout)
    assert erased["events"] == 1
    missing = cli("profiles", "show", "jan.k@example.com")
    assert missing.returncode == 2
    assert "no customer" in missing.stderr
    assert cli("profiles", "show", "Margaret").returncode == 0
    several = cli("profiles", "show", "Thornbury")
    assert several.returncode == 2
    assert "several customers" in several.stderr
    refusals = orjson.loads(cli("identity", "refusals", "--json").stdout)
    assert refusals["refusals"] == []
    suggested = orjson.loads(cli("identity", "suggest", "--threshold", "0.5", "--json").stdout)
    assert suggested["new"] == 1
    assert cli("identity", "accept", "not-an-id").returncode == 2
