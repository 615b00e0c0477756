"""The ``plait`` command: sources, tokens, db, lake; JSON output; errors exit 2."""

from __future__ import annotations

import orjson

from plait.migrations import head_revision


def test_sources_create_and_list(cli) -> None:
    created = cli("sources", "create", "Store POS", "--channel", "store", "--json")
    assert created.returncode == 0, created.stderr
    source = orjson.loads(created.stdout)
    assert source["name"] == "Store POS"
    assert source["channel"] == "Store"
    assert len(source["write_key"]) == 32
    listed = orjson.loads(cli("sources", "list", "--json").stdout)
    assert [s["name"] for s in listed] == ["Store POS"]
    assert "write_key" not in listed[0]
    plain = cli("sources", "create", "Website")
    assert "Write key" in plain.stdout


def test_source_errors_exit_2_with_one_line(cli) -> None:
    cli("sources", "create", "Website")
    again = cli("sources", "create", "Website")
    assert again.returncode == 2
    assert again.stderr.strip() == "error: a source named 'Website' exists already (field: name)"
    bad_channel = cli("sources", "create", "X", "--channel", "pigeon")
    assert bad_channel.returncode == 2
    assert bad_channel.stderr.startswith("error: unknown channel 'pigeon'")
    assert len(bad_channel.stderr.strip().splitlines()) == 1


def test_tokens_create_list_revoke(cli) -> None:
    created = orjson.loads(
        cli("tokens", "create", "--role", "marketer", "--name", "M", "--json").stdout
    )
    assert created["role"] == "marketer"
    assert created["token"].startswith("plt_")
    listed = orjson.loads(cli("tokens", "list", "--json").stdout)
    assert [(t["name"], t["role"]) for t in listed] == [("M", "marketer")]
    assert "token" not in listed[0]
    assert cli("tokens", "revoke", created["id"]).returncode == 0
    assert orjson.loads(cli("tokens", "list", "--json").stdout)[0]["revoked_at"]
    bad_role = cli("tokens", "create", "--role", "superuser")
    assert bad_role.returncode == 2
    assert "unknown role 'superuser'" in bad_role.stderr


def test_db_upgrade_and_current(cli) -> None:
    upgraded = cli("db", "upgrade")
    assert upgraded.returncode == 0
    assert "revision" in upgraded.stdout
    current = cli("db", "current")
    head = head_revision()
    assert f"current: {head}; head: {head}" in current.stdout


def test_python_dash_m_and_version(cli) -> None:
    from plait import __version__

    assert cli("version").stdout.strip() == __version__
