"""Tokens and roles on the management API; secrets are stored only as digests."""

from __future__ import annotations

import sqlalchemy as sa

from plait.core.auth import api_tokens, create_token, revoke_token
from plait.core.db import write
from plait.core.secrets import digest
from plait.core.sources import sources


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_secrets_are_stored_hashed(engine, source, admin_token) -> None:
    with engine.connect() as conn:
        token_row = conn.execute(sa.select(api_tokens)).one()._mapping
        source_row = conn.execute(sa.select(sources)).one()._mapping
    assert admin_token not in str(dict(token_row).values())
    assert token_row["token_hash"] == digest(admin_token)
    assert source["write_key"] not in str(dict(source_row).values())
    assert source_row["write_key_hash"] == digest(source["write_key"])


def test_no_token_or_bad_token_is_401(client) -> None:
    assert client.get("/api/events").status_code == 401
    response = client.get("/api/events", headers=bearer("plt_nope"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    basic = client.get("/api/events", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401


def test_roles_are_enforced(client, engine) -> None:
    with write(engine) as conn:
        agent = create_token(conn, "agent")["token"]
        marketer = create_token(conn, "marketer")["token"]
        admin = create_token(conn, "admin")["token"]
    assert client.get("/api/events", headers=bearer(agent)).status_code == 403
    assert client.get("/api/events", headers=bearer(marketer)).status_code == 200
    assert client.get("/api/sources", headers=bearer(marketer)).status_code == 403
    assert client.get("/api/sources", headers=bearer(admin)).status_code == 200
    forbidden = client.post("/api/sources", json={"name": "X"}, headers=bearer(marketer))
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"


def test_revoked_token_is_refused(client, engine) -> None:
    with write(engine) as conn:
        token = create_token(conn, "admin")
    assert client.get("/api/events", headers=bearer(token["token"])).status_code == 200
    with write(engine) as conn:
        from uuid import UUID

        revoke_token(conn, UUID(token["id"]))
    assert client.get("/api/events", headers=bearer(token["token"])).status_code == 401


def test_sources_api_creates_and_validates(client, admin_token) -> None:
    created = client.post(
        "/api/sources",
        json={"name": "Call Centre", "channel": "phone"},
        headers=bearer(admin_token),
    )
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["channel"]) == ("Call Centre", "Phone")
    assert len(body["write_key"]) == 32
    listed = client.get("/api/sources", headers=bearer(admin_token)).json()["sources"]
    assert [s["name"] for s in listed] == ["Call Centre"]
    assert "write_key" not in listed[0]
    duplicate = client.post(
        "/api/sources", json={"name": "Call Centre"}, headers=bearer(admin_token)
    )
    assert duplicate.status_code == 409
    unknown = client.post(
        "/api/sources", json={"name": "X", "channel": "Carrier Pigeon"}, headers=bearer(admin_token)
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["field"] == "channel"
    missing = client.post("/api/sources", json={}, headers=bearer(admin_token))
    assert missing.status_code == 400
    assert missing.json()["error"]["field"] == "name"
    assert len(client.get("/api/sources", headers=bearer(admin_token)).json()["sources"]) == 1


def test_a_new_write_key_replaces_the_old(client, engine, source) -> None:
    from plait.core.sources import rotate_write_key

    with write(engine) as conn:
        rotated = rotate_write_key(conn, "Website")
    body = {"userId": "u", "event": "E"}
    old = client.post("/v1/track", json=body, auth=(source["write_key"], ""))
    new = client.post("/v1/track", json=body, auth=(rotated["write_key"], ""))
    assert new.status_code == 200
    assert old.status_code == 401
