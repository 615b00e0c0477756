"""``plait inboxes``: connect channel accounts and see the webhook URLs to give providers."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from plait.core.console import JsonFlag, console, open_database, print_json, print_table
from plait.core.db import read, write
from plait.core.errors import InvalidInput
from plait.core.settings import get_settings
from plait.inbox.inboxes import EVENT_CHANNELS, create_inbox, list_inboxes

inboxes_app = typer.Typer(help="Inboxes: the channel accounts conversations come through.")

Option = Annotated[str | None, typer.Option()]


def webhook_url(inbox: dict[str, Any]) -> dict[str, Any]:
    """The inbox with the full webhook URL, from ``server.public_url`` (or loopback)."""
    server = get_settings().server
    base = server.public_url or f"http://{server.host}:{server.port}"
    path = inbox["webhook_path"]
    return {**inbox, "webhook_url": base.rstrip("/") + path if path else None}


@inboxes_app.command("create")
def inboxes_create(
    channel: Annotated[str, typer.Argument(help=", ".join(EVENT_CHANNELS))],
    name: Annotated[str, typer.Argument(help="e.g. 'Support SMS', 'help@shop.example'")],
    team: Annotated[
        str | None, typer.Option(help="team whose agents get its conversations")
    ] = None,
    twilio_account_sid: Option = None,
    twilio_auth_token: Option = None,
    phone_number: Annotated[str | None, typer.Option(help="SMS/WhatsApp sender number")] = None,
    meta_app_secret: Option = None,
    meta_verify_token: Option = None,
    meta_access_token: Option = None,
    phone_number_id: Annotated[
        str | None, typer.Option(help="WhatsApp Cloud API number id")
    ] = None,
    page_id: Annotated[
        str | None, typer.Option(help="Messenger page / Instagram account id")
    ] = None,
    telegram_bot_token: Option = None,
    telegram_secret_token: Option = None,
    address: Annotated[
        list[str] | None, typer.Option(help="email address the inbox receives (repeatable)")
    ] = None,
    api_url: Annotated[str | None, typer.Option(help="provider API base URL override")] = None,
    callback_url: Annotated[str | None, typer.Option(help="api channel: where replies go")] = None,
    allowed_origin: Annotated[
        list[str] | None, typer.Option(help="web chat: a site that may embed it (repeatable)")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="any other option, KEY=VALUE (e.g. imap_host=...)")
    ] = None,
    secret: Annotated[
        list[str] | None, typer.Option(help="any other secret, KEY=VALUE (e.g. imap_password=...)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an inbox and print its id and the webhook URL to give the provider."""
    options = {
        "account_sid": twilio_account_sid,
        "phone_number": phone_number,
        "phone_number_id": phone_number_id,
        "page_id": page_id,
        "addresses": list(address or []) or None,
        "api_url": api_url,
        "callback_url": callback_url,
        "allowed_origins": " ".join(allowed_origin or []) or None,
    }
    secrets = {
        "auth_token": twilio_auth_token,
        "app_secret": meta_app_secret,
        "verify_token": meta_verify_token,
        "access_token": meta_access_token,
        "bot_token": telegram_bot_token,
        "secret_token": telegram_secret_token,
    }
    options.update(key_values(option, "--option"))
    secrets.update(key_values(secret, "--secret"))
    with write(open_database()) as conn:
        inbox = webhook_url(
            create_inbox(conn, channel, name, options=options, secrets=secrets, team=team)
        )
    if as_json:
        print_json(inbox)
        return
    console.print(f"Created {inbox['channel']} inbox [bold]{inbox['name']}[/] ({inbox['id']})")
    if inbox["webhook_url"]:
        console.print("Webhook URL:", highlight=False)
        console.print(inbox["webhook_url"], soft_wrap=True, highlight=False)
    if inbox["channel"] == "web_chat":
        console.print("Add this to your site's pages:", highlight=False)
        console.print(embed_snippet(inbox), soft_wrap=True, highlight=False, markup=False)


def embed_snippet(inbox: dict[str, Any]) -> str:
    """The script tag that puts a web chat inbox's widget on a site."""
    server = get_settings().server
    base = (server.public_url or f"http://{server.host}:{server.port}").rstrip("/")
    return f'<script src="{base}/chat/widget.js" data-inbox="{inbox["id"]}" async></script>'


def key_values(pairs: list[str] | None, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a mapping, or a clear error naming the flag."""
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{flag} takes KEY=VALUE, not {pair!r}", field=flag)
        found[key.strip()] = value
    return found


@inboxes_app.command("list")
def inboxes_list(as_json: JsonFlag = False) -> None:
    """List inboxes (secrets are never shown, only which are set)."""
    with read(open_database()) as conn:
        rows = [webhook_url(inbox) for inbox in list_inboxes(conn)]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["name", "channel", "team", "webhook_url", "id"])
