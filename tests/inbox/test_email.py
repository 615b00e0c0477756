"""Email: the SMTP listener and IMAP polling in, SMTP out, threading by headers and by the
reply address scoped to the sender, quoted-reply stripping, and a customer who texts then
emails being one customer in one conversation."""

from __future__ import annotations

import email
import imaplib
import os
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import Api, free_port
from tests.inbox.conftest import eventually, post_twilio, twilio_sms
from tests.inbox.email_servers import ImapServer, SmtpRecorder, smtp_server

from plait.core.errors import InvalidInput
from plait.core.settings import InboxSettings, Settings
from plait.inbox.connectors.email import poll_imap, smtp_controller
from plait.inbox.connectors.email_parsing import html_to_text, parse_email, strip_quoted
from plait.inbox.schema import conversations, messages, outbox

REPLY_DOMAIN = "replies.shop.example"
SUPPORT = "support@shop.example"
ANA = "ana@example.com"
IMAP_USER, IMAP_PASSWORD = "orders@shop.example", "imap-password-for-tests"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Quick outbox retries, and replies set up on the reply domain."""
    inbox = InboxSettings(
        retry_seconds=0.2, max_attempts=3, provider_timeout_seconds=3, reply_domain=REPLY_DOMAIN
    )
    return Settings(home=tmp_path / "home", database_url=database_url, inbox=inbox)


@pytest.fixture
def smtp_out() -> Iterator[tuple[SmtpRecorder, int]]:
    """The SMTP server replies are delivered to."""
    recorder, port = SmtpRecorder(), free_port()
    controller = smtp_server(recorder, port)
    yield recorder, port
    controller.stop()


@pytest.fixture
def email_inbox(admin_api: Api, smtp_out: tuple[SmtpRecorder, int]) -> dict[str, Any]:
    return admin_api.post(
        "/api/inbox/inboxes",
        {
            "channel": "email",
            "name": "Shop Support",
            "team": "Support",
            "options": {
                "addresses": f"{SUPPORT}, help@shop.example",
                "smtp_host": "127.0.0.1",
                "smtp_port": str(smtp_out[1]),
            },
        },
        status=201,
    )


@pytest.fixture
def mailserver(client: TestClient, settings: Settings) -> Iterator[int]:
    """Plait's SMTP listener on a loopback port, against the test's database."""
    state = client.app.state
    port = free_port()
    controller = smtp_controller(state.engine, settings, state.rules, "127.0.0.1", port)
    controller.start()
    yield port
    controller.stop()


def mail(
    sender: str,
    subject: str,
    body: str,
    *,
    to: str = SUPPORT,
    message_id: str | None = "new",
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    html: str | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> EmailMessage:
    """An email as a customer's client writes it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
    if message_id:
        message["Message-ID"] = (
            make_msgid(domain="mail.example.com") if message_id == "new" else message_id
        )
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = " ".join(references)
    message.set_content(body)
    if html:
        message.add_alternative(html, subtype="html")
    if attachment:
        name, data = attachment
        message.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return message


def smtp_send(port: int, message: EmailMessage, to: list[str] | None = None) -> dict[str, Any]:
    """Deliver ``message`` to the listener as an MTA would; returns the refused recipients."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        return smtp.send_message(message, to_addrs=to)


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def conversation_of(engine: sa.Engine, email_message_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(messages.c.conversation_id).where(
                messages.c.email_message_id == email_message_id
            )
        ).scalar_one()


def resolve(admin_api: Api, conversation_id: Any) -> None:
    admin_api.client.patch(
        f"/api/inbox/conversations/{conversation_id}",
        json={"status": "resolved"},
        headers=admin_api.headers,
    ).raise_for_status()


def agent_reply(
    admin_api: Api, recorder: SmtpRecorder, conversation_id: Any, body: str
) -> EmailMessage:
    """Reply as an agent; returns the email the SMTP server received."""
    before = len(recorder.messages)
    admin_api.post(f"/api/inbox/conversations/{conversation_id}/messages", {"body": body}, 201)
    eventually(lambda: len(recorder.messages) > before)
    parsed = email.message_from_bytes(recorder.messages[-1].content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


# --- parsing and quoted-reply stripping (no server) ------------------------------------

QUOTED = {
    "gmail": (
        "Thanks, that works!\n\nOn Mon, Jan 1, 2024 at 10:00 AM Shop Support <\n"
        "support@shop.example> wrote:\n\n> Your order shipped.\n>\n> Regards\n",
        "Thanks, that works!",
    ),
    "apple mail": (
        "Great, thank you.\n\nSent from my iPhone\n\n> On 1 Jan 2024, at 10:00, Shop Support "
        "<support@shop.example> wrote:\n>\n> Your order shipped.\n",
        "Great, thank you.\n\nSent from my iPhone",
    ),
    "outlook": (
        "Still broken.\n\nAna\n\n-----Original Message-----\nFrom: Shop Support "
        "<support@shop.example>\nSent: Monday, January 1, 2024 10:00 AM\nTo: Ana\n"
        "Subject: RE: Order\n\nYour order shipped.",
        "Still broken.\n\nAna",
    ),
    "outlook web": (
        "Yes please.\n\n________________________________\nFrom: Shop Support "
        "<support@shop.example>\nSent: Monday, 1 January 2024 10:00\nTo: ana@example.com\n"
        "Subject: Re: Order\n\nShall we refund you?",
        "Yes please.",
    ),
    "outlook german": (
        "Passt.\n\nVon: Shop Support <support@shop.example>\nGesendet: Montag, 1. Januar "
        "2024 10:00\nAn: ana@example.com\nBetreff: AW: Bestellung\n\nHallo",
        "Passt.",
    ),
    "gmail french": (
        "Merci !\n\nLe lun. 1 janv. 2024 à 10:00, Shop Support <support@shop.example> a "
        "écrit :\n\n> Bonjour\n",
        "Merci !",
    ),
    "thunderbird german": (
        "Danke.\n\nAm 01.01.2024 um 10:00 schrieb Shop Support:\n> Hallo\n",
        "Danke.",
    ),
    "gmail spanish": (
        "Gracias.\n\nEl lun, 1 ene 2024 a las 10:00, Shop (<support@shop.example>) "
        "escribió:\n> Hola\n",
        "Gracias.",
    ),
    "bottom posted": (
        "On 1/1/24 10:00, Shop Support wrote:\n> Do you want a refund?\n\nYes, a refund.",
        "Yes, a refund.",
    ),
    "interleaved": ("> Which size?\nM\n> Which colour?\nBlue", "M\nBlue"),
    "nothing quoted": ("Hello,\n\nwhere is my order?\n\n-- \nAna", None),
    "prose": ("My colleague wrote: it's fine.\nThanks", None),
    "only a quote": ("> the whole message is a quote", None),
}


@pytest.mark.parametrize("client_name", QUOTED)
def test_quoted_history_is_stripped(client_name: str) -> None:
    text, expected = QUOTED[client_name]
    assert strip_quoted(text) == (text.strip("\n") if expected is None else expected)


def test_an_email_is_parsed_into_an_inbound_message() -> None:
    message = mail(
        "Ana Lima <Ana@Example.COM>",
        "Re: Order #1042",
        "It arrived broken.\n\nOn Mon, Jan 1, 2024 at 10:00 AM Shop <support@shop.example> "
        "wrote:\n> Your order shipped.",
        to=f"Shop <{SUPPORT}>, reply+abcdefghijklmnopqrstuvwx@{REPLY_DOMAIN}",
        message_id="<m-2@mail.example.com>",
        in_reply_to="<out-1@shop.example>",
        references=["<m-1@mail.example.com>", "<out-1@shop.example>"],
        html="<p>It arrived <b>broken</b>.</p>",
        attachment=("photo.pdf", b"%PDF-1.4 " + b"x" * 991),
    )
    inbound = parse_email(bytes(message), reply_domains=[REPLY_DOMAIN])
    assert inbound.provider_id == inbound.email_message_id == "<m-2@mail.example.com>"
    assert inbound.contact == ANA
    assert inbound.traits == {"email": ANA, "name": "Ana Lima"}
    assert inbound.subject == "Re: Order #1042"
    assert inbound.body == "It arrived broken."
    assert inbound.properties["full_body"].endswith("> Your order shipped.")
    assert inbound.in_reply_to == "<out-1@shop.example>"
    assert list(inbound.references) == ["<m-1@mail.example.com>", "<out-1@shop.example>"]
    assert inbound.token == "abcdefghijklmnopqrstuvwx"
    assert inbound.attachments == [
        {"filename": "photo.pdf", "content_type": "application/pdf", "size": 1000}
    ]
    # a reply address on a domain that is not ours carries no token
    assert parse_email(bytes(message), reply_domains=["other.example"]).token is None


def test_html_only_mail_becomes_text_without_its_quote() -> None:
    message = EmailMessage()
    message["From"] = ANA
    message["To"] = SUPPORT
    message["Subject"] = "Re: Order"
    message.set_content(
        '<html><head><style>p{color:red}</style></head><body><div dir="ltr">Works&nbsp;now, '
        'thanks!<br></div><div class="gmail_quote"><div class="gmail_attr">On Mon, Jan 1, 2024 '
        "at 10:00 AM Shop &lt;support@shop.example&gt; wrote:<br></div><blockquote "
        'class="gmail_quote"><p>Try again?</p><ul><li>one</li></ul></blockquote></div>'
        "</body></html>",
        subtype="html",
    )
    inbound = parse_email(bytes(message))
    assert inbound.body == "Works now, thanks!"
    assert "> Try again?" in inbound.properties["full_body"]
    assert html_to_text("<ul><li>a</li><li>b &amp; c</li></ul>") == "- a\n- b & c"


def test_a_message_without_message_id_gets_a_stable_content_id() -> None:
    message = mail(ANA, "No id", "Hello", message_id=None)
    first, second = parse_email(bytes(message)), parse_email(bytes(message))
    assert first.provider_id.startswith("digest:")
    assert first.provider_id == second.provider_id
    assert first.email_message_id is None
    other = parse_email(bytes(mail(ANA, "No id", "Hello again", message_id=None)))
    assert other.provider_id != first.provider_id


@pytest.mark.parametrize("sender", ["not an address", "", "Ana <ana@>", "<@example.com>"])
def test_mail_without_a_valid_sender_is_refused(sender: str) -> None:
    message = mail(ANA, "Hi", "Hello")
    message.replace_header("From", sender) if sender else message.__delitem__("From")
    with pytest.raises(InvalidInput) as error:
        parse_email(bytes(message))
    assert error.value.field == "from"


# --- inbound over SMTP ---------------------------------------------------------------


def test_mail_to_an_inbox_address_opens_a_conversation_on_the_timeline(
    admin_api: Api, email_inbox: dict[str, Any], mailserver: int
) -> None:
    message = mail("Ana Lima <ANA@example.com>", "Order #1042", "Where is my order?")
    assert smtp_send(mailserver, message) == {}

    conversation = admin_api.get("/api/inbox/conversations?queue=all")["conversations"][0]
    assert conversation["channel"] == "email"
    assert conversation["subject"] == "Order #1042"
    detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
    (received,) = detail["messages"]
    assert received["contact"] == ANA
    assert received["sender_name"] == "Ana Lima"
    assert received["body"] == "Where is my order?"

    profile = admin_api.get(f"/api/profiles/lookup?kind=email&value={ANA}")
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    (event,) = [e for e in timeline if e["event"] == "Message Received"]
    assert event["channel"] == "Email"
    assert event["properties"]["subject"] == "Order #1042"


def test_bad_recipients_are_refused_with_550_and_nothing_is_stored(
    engine: sa.Engine, admin_api: Api, email_inbox: dict[str, Any], mailserver: int
) -> None:
    smtp_send(mailserver, mail(ANA, "First", "hello"))
    with engine.connect() as conn:
        real_token = conn.execute(sa.select(conversations.c.token)).scalar_one()
    for recipient in (
        "nobody@shop.example",
        f"reply+{'x' * 24}@{REPLY_DOMAIN}",  # no such conversation
        f"reply+{real_token}@elsewhere.example",  # not our reply domain
        "support@other.example",
    ):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp_send(mailserver, mail(ANA, "Spam", "x", to=recipient))
        assert refused.value.recipients[recipient][0] == 550
    assert count(engine, messages) == 1

    # one good recipient among bad ones: accepted for the good one, refused for the rest
    refused = smtp_send(mailserver, mail(ANA, "Both", "y", to=f"nobody@shop.example, {SUPPORT}"))
    assert list(refused) == ["nobody@shop.example"]
    assert count(engine, messages) == 2


def test_unreadable_mail_is_refused_and_nothing_is_stored(
    engine: sa.Engine, email_inbox: dict[str, Any], mailserver: int
) -> None:
    message = mail(ANA, "Hi", "Hello")
    message.replace_header("From", "not an address")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        smtp_send(mailserver, message)
    assert refused.value.smtp_code == 550
    assert b"From" in refused.value.smtp_error
    assert count(engine, messages) == 0


def test_a_replayed_message_is_stored_once(
    engine: sa.Engine, admin_api: Api, email_inbox: dict[str, Any], mailserver: int
) -> None:
    message = mail(ANA, "Twice", "Sent by a retrying MTA", message_id="<dup-1@mail.example.com>")
    for _ in range(3):
        assert smtp_send(mailserver, message) == {}
    no_id = mail(ANA, "No id", "A client that sets no Message-ID", message_id=None)
    for _ in range(2):
        smtp_send(mailserver, no_id)
    assert count(engine, messages) == 2
    profile = admin_api.get(f"/api/profiles/lookup?kind=email&value={ANA}")
    timeline = admin_api.get(f"/api/profiles/{profile['id']}/timeline")["events"]
    assert len([e for e in timeline if e["event"] == "Message Received"]) == 2


def test_mail_from_the_inbox_itself_is_not_a_customer_message(
    engine: sa.Engine, email_inbox: dict[str, Any], mailserver: int
) -> None:
    smtp_send(mailserver, mail(f"Shop <{SUPPORT}>", "Loop", "our own auto-reply"))
    assert count(engine, messages) == 0


# --- outbound SMTP -------------------------------------------------------------------


def test_an_agent_reply_reaches_the_smtp_server_threaded(
    engine: sa.Engine,
    admin_api: Api,
    email_inbox: dict[str, Any],
    mailserver: int,
    smtp_out: tuple[SmtpRecorder, int],
) -> None:
    first = "<m-1@mail.example.com>"
    smtp_send(
        mailserver, mail(f"Ana Lima <{ANA}>", "Order #1042", "Where is it?", message_id=first)
    )
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    sent = agent_reply(admin_api, smtp_out[0], conversation["id"], "It ships today.")

    delivered = smtp_out[0].messages[-1]
    assert delivered.mail_from == SUPPORT
    assert delivered.rcpt_tos == [ANA]
    assert sent["From"] == f"Shop Support <{SUPPORT}>"
    assert sent["To"] == ANA
    assert sent["Subject"] == "Re: Order #1042"
    assert sent["In-Reply-To"] == first
    assert sent["References"] == first
    assert sent.get_content().strip() == "It ships today."
    assert sent["Date"]

    def outbound() -> Any:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(
                    messages.c.email_message_id, messages.c.provider_id, messages.c.status
                ).where(messages.c.direction == "out")
            ).one()

    eventually(lambda: outbound().status == "sent")
    assert sent["Message-ID"] == outbound().email_message_id == outbound().provider_id
    with engine.connect() as conn:
        token = conn.execute(sa.select(conversations.c.token)).scalar_one()
    assert sent["Reply-To"] == f"reply+{token}@{REPLY_DOMAIN}"

    # the customer's answer to it, quoting it, threads by its headers
    answer = mail(
        ANA,
        "Re: Order #1042",
        "Thanks!\n\nOn Mon, Jan 1, 2024 at 10:00 AM Shop Support <support@shop.example> wrote:"
        "\n> It ships today.",
        in_reply_to=sent["Message-ID"],
        references=[first, sent["Message-ID"]],
    )
    smtp_send(mailserver, answer)
    detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
    assert [m["body"] for m in detail["messages"]] == ["Where is it?", "It ships today.", "Thanks!"]
    second = agent_reply(admin_api, smtp_out[0], conversation["id"], "You're welcome.")
    assert second["In-Reply-To"] == answer["Message-ID"]
    assert second["References"].split() == [first, sent["Message-ID"], answer["Message-ID"]]


def test_a_refused_recipient_fails_at_once(
    engine: sa.Engine,
    admin_api: Api,
    email_inbox: dict[str, Any],
    mailserver: int,
    smtp_out: tuple[SmtpRecorder, int],
) -> None:
    smtp_send(mailserver, mail("gone@example.org", "Hello", "Bye"))
    smtp_out[0].refuse.add("gone@example.org")
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    sent = admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages", {"body": "Hi"}, status=201
    )

    def state() -> Any:
        with engine.connect() as conn:
            return conn.execute(sa.select(outbox.c.state, outbox.c.attempts)).one()

    eventually(lambda: state().state == "failed")
    assert state().attempts == 1  # permanent: not retried
    detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
    failed = next(m for m in detail["messages"] if m["id"] == sent["id"])
    assert failed["status"] == "failed"
    assert "550" in failed["error"]
    assert smtp_out[0].messages == []


def test_replies_wait_in_the_outbox_while_the_smtp_server_is_down(
    engine: sa.Engine, admin_api: Api, mailserver: int
) -> None:
    port = free_port()  # nothing listens there yet
    admin_api.post(
        "/api/inbox/inboxes",
        {
            "channel": "email",
            "name": "Shop Support",
            "options": {"addresses": SUPPORT, "smtp_host": "127.0.0.1", "smtp_port": str(port)},
        },
        status=201,
    )
    smtp_send(mailserver, mail(ANA, "Anyone?", "Hello?"))
    conversation = admin_api.get("/api/inbox/conversations")["conversations"][0]
    sent = admin_api.post(
        f"/api/inbox/conversations/{conversation['id']}/messages", {"body": "Yes!"}, status=201
    )

    def state() -> tuple[str, int]:
        with engine.connect() as conn:
            row = conn.execute(sa.select(outbox.c.state, outbox.c.attempts)).one()
            return row.state, row.attempts

    eventually(lambda: state() == ("failed", 3))
    detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
    failed = next(m for m in detail["messages"] if m["id"] == sent["id"])
    assert failed["status"] == "failed"
    assert "ConnectionRefusedError" in failed["error"]

    recorder = SmtpRecorder()
    controller = smtp_server(recorder, port)
    try:
        admin_api.post(f"/api/inbox/messages/{sent['id']}/retry")
        eventually(lambda: state()[0] == "done")
        (delivered,) = recorder.messages
        assert delivered.rcpt_tos == [ANA]
        assert b"Yes!" in delivered.content
    finally:
        controller.stop()


# --- threading -----------------------------------------------------------------------


def test_a_reply_from_a_client_that_rewrites_headers_stays_in_its_conversation(
    engine: sa.Engine,
    admin_api: Api,
    email_inbox: dict[str, Any],
    mailserver: int,
    smtp_out: tuple[SmtpRecorder, int],
) -> None:
    smtp_send(
        mailserver, mail(ANA, "Refund", "I want a refund", message_id="<r-1@mail.example.com>")
    )
    refund = conversation_of(engine, "<r-1@mail.example.com>")
    sent = agent_reply(admin_api, smtp_out[0], refund, "Refund issued.")
    resolve(admin_api, refund)
    smtp_send(
        mailserver, mail(ANA, "Newsletter", "Unsubscribe me", message_id="<n-1@mail.example.com>")
    )
    newsletter = conversation_of(engine, "<n-1@mail.example.com>")
    assert newsletter != refund  # the refund was resolved: a new subject starts a new one

    # a client that drops In-Reply-To/References but answers the reply-to address
    rewritten = mail(
        ANA, "AW: Refund", "Not received yet", to=sent["Reply-To"], message_id="<r-2@x>"
    )
    smtp_send(mailserver, rewritten)
    assert conversation_of(engine, "<r-2@x>") == refund  # not the open newsletter conversation
    resolve(admin_api, refund)

    # a client that ignores Reply-To (writes to the inbox address) but keeps the headers
    headers_only = mail(
        ANA, "Refund?", "Still nothing", message_id="<r-3@x>", in_reply_to=sent["Message-ID"]
    )
    smtp_send(mailserver, headers_only)
    assert conversation_of(engine, "<r-3@x>") == refund
    detail = admin_api.get(f"/api/inbox/conversations/{refund}")
    assert detail["status"] == "open"  # the reply reopened it
    inbound = [m["body"] for m in detail["messages"] if m["direction"] == "in"]
    assert inbound == ["I want a refund", "Not received yet", "Still nothing"]


def test_a_new_subject_after_resolution_starts_a_new_conversation_not_threaded_by_subject(
    engine: sa.Engine, admin_api: Api, email_inbox: dict[str, Any], mailserver: int
) -> None:
    smtp_send(mailserver, mail(ANA, "Order #1", "Where is order 1?", message_id="<a-1@x>"))
    first = conversation_of(engine, "<a-1@x>")
    resolve(admin_api, first)
    smtp_send(mailserver, mail(ANA, "Order #2", "Where is order 2?", message_id="<a-2@x>"))
    second = conversation_of(engine, "<a-2@x>")
    assert second != first
    resolve(admin_api, second)
    # the same subject as the first, with no threading headers: not joined to it by subject
    smtp_send(mailserver, mail(ANA, "Re: Order #1", "Me again", message_id="<a-3@x>"))
    third = conversation_of(engine, "<a-3@x>")
    assert third not in (first, second)
    assert admin_api.get(f"/api/inbox/conversations/{first}")["status"] == "resolved"


def test_two_senders_replying_to_the_same_newsletter_get_two_conversations(
    engine: sa.Engine, admin_api: Api, email_inbox: dict[str, Any], mailserver: int
) -> None:
    newsletter = "<spring-sale@news.shop.example>"
    smtp_send(
        mailserver,
        mail(
            ANA,
            "Re: Spring sale",
            "Is it on shoes too?",
            message_id="<ana-1@x>",
            in_reply_to=newsletter,
            references=[newsletter],
        ),
    )
    # Bruno's reply references the newsletter and even Ana's message (she had cc'd him)
    smtp_send(
        mailserver,
        mail(
            "bruno@example.net",
            "Re: Spring sale",
            "Until when?",
            message_id="<bruno-1@x>",
            in_reply_to=newsletter,
            references=[newsletter, "<ana-1@x>"],
        ),
    )
    ana, bruno = conversation_of(engine, "<ana-1@x>"), conversation_of(engine, "<bruno-1@x>")
    assert ana != bruno
    for conversation_id, body in ((ana, "Is it on shoes too?"), (bruno, "Until when?")):
        detail = admin_api.get(f"/api/inbox/conversations/{conversation_id}")
        assert [m["body"] for m in detail["messages"]] == [body]


def test_a_customer_who_texts_then_emails_is_one_profile_in_one_conversation(
    client: TestClient,
    admin_api: Api,
    sms_inbox: dict[str, Any],
    email_inbox: dict[str, Any],
    mailserver: int,
    send_events: Callable[..., dict],
) -> None:
    phone = "+14155550123"
    assert post_twilio(client, sms_inbox, twilio_sms(phone, "My parcel is late")).status_code == 200
    send_events(
        {
            "type": "identify",
            "userId": "customer-77",
            "traits": {"email": ANA, "phone": phone, "name": "Ana Lima"},
            "timestamp": "2024-01-01T10:00:00Z",
        }
    )
    smtp_send(mailserver, mail(f"Ana Lima <{ANA}>", "My parcel", "Here is the tracking number"))

    by_phone = admin_api.get(f"/api/profiles/lookup?kind=phone&value={phone}")
    by_email = admin_api.get(f"/api/profiles/lookup?kind=email&value={ANA}")
    assert by_phone["id"] == by_email["id"]
    (conversation,) = admin_api.get("/api/inbox/conversations?queue=all")["conversations"]
    detail = admin_api.get(f"/api/inbox/conversations/{conversation['id']}")
    assert [(m["channel"], m["body"]) for m in detail["messages"]] == [
        ("sms", "My parcel is late"),
        ("email", "Here is the tracking number"),
    ]


# --- IMAP ----------------------------------------------------------------------------


@pytest.fixture
def imap() -> Iterator[ImapServer]:
    server = ImapServer(IMAP_USER, IMAP_PASSWORD)
    yield server
    server.close()


@pytest.fixture
def imap_inbox(admin_api: Api, imap: ImapServer) -> dict[str, Any]:
    return admin_api.post(
        "/api/inbox/inboxes",
        {
            "channel": "email",
            "name": "Orders mailbox",
            "options": {
                "addresses": IMAP_USER,
                "imap_host": "127.0.0.1",
                "imap_port": str(imap.port),
                "imap_user": IMAP_USER,
                "imap_ssl": "false",
            },
            "secrets": {"imap_password": IMAP_PASSWORD},
        },
        status=201,
    )


def poll(client: TestClient, settings: Settings, inbox_id: str) -> Any:
    from plait.inbox.inboxes import get_inbox

    state = client.app.state
    with state.engine.connect() as conn:
        inbox = get_inbox(conn, inbox_id)
    return poll_imap(state.engine, settings, state.rules, inbox)


def test_imap_polling_receives_unseen_mail_and_marks_it_seen(
    client: TestClient,
    engine: sa.Engine,
    settings: Settings,
    admin_api: Api,
    imap: ImapServer,
    imap_inbox: dict[str, Any],
) -> None:
    old = imap.add(bytes(mail(ANA, "Old", "already read", to=IMAP_USER)), flags=["\\Seen"])
    first = imap.add(bytes(mail(ANA, "Order #7", "Can I change the address?", to=IMAP_USER)))
    second = imap.add(bytes(mail("bruno@example.net", "Invoice", "Please send it", to=IMAP_USER)))

    report = poll(client, settings, imap_inbox["id"])
    assert (report.received, report.duplicates, report.rejected, report.error) == (2, 0, 0, None)
    assert imap.flags(first) == imap.flags(second) == {"\\Seen"}
    fetches = [c for c in imap.commands if c.startswith("UID FETCH")]
    assert fetches
    assert all("BODY.PEEK[]" in c for c in fetches)  # fetching sets no flag
    assert count(engine, messages) == 2
    subjects = {c["subject"] for c in admin_api.get("/api/inbox/conversations")["conversations"]}
    assert subjects == {"Order #7", "Invoice"}
    assert old not in (first, second)

    assert poll(client, settings, imap_inbox["id"]).received == 0  # nothing unseen left
    assert count(engine, messages) == 2


def test_imap_mail_is_marked_seen_only_once_stored_and_never_stored_twice(
    client: TestClient,
    engine: sa.Engine,
    settings: Settings,
    imap: ImapServer,
    imap_inbox: dict[str, Any],
) -> None:
    uid = imap.add(bytes(mail(ANA, "Order #8", "Cancel it please", to=IMAP_USER)))
    imap.drop_after_fetch = True  # the connection fails after the fetch, before the STORE
    with pytest.raises((imaplib.IMAP4.error, OSError)):
        poll(client, settings, imap_inbox["id"])
    assert "\\Seen" not in imap.flags(uid)
    assert count(engine, messages) == 1

    imap.drop_after_fetch = False
    report = poll(client, settings, imap_inbox["id"])
    assert (report.received, report.duplicates) == (0, 1)
    assert imap.flags(uid) == {"\\Seen"}
    assert count(engine, messages) == 1


def test_unreadable_imap_mail_is_flagged_and_not_stored(
    client: TestClient,
    engine: sa.Engine,
    settings: Settings,
    imap: ImapServer,
    imap_inbox: dict[str, Any],
) -> None:
    broken = mail(ANA, "x", "y", to=IMAP_USER)
    broken.replace_header("From", "undisclosed")
    uid = imap.add(bytes(broken))
    report = poll(client, settings, imap_inbox["id"])
    assert (report.received, report.rejected) == (0, 1)
    assert imap.flags(uid) == {"\\Seen", "\\Flagged"}
    assert count(engine, messages) == 0


def test_plait_inboxes_imap_poll(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    engine: sa.Engine,
    imap: ImapServer,
    imap_inbox: dict[str, Any],
    admin_api: Api,
) -> None:
    imap.add(bytes(mail(ANA, "By CLI", "Hello from IMAP", to=IMAP_USER)))
    done = cli("inboxes", "imap-poll", "--json")
    assert done.returncode == 0, done.stderr
    assert '"received": 1' in done.stdout
    assert count(engine, messages) == 1

    admin_api.post(
        "/api/inbox/inboxes",
        {
            "channel": "email",
            "name": "Wrong password",
            "options": {
                "addresses": "other@shop.example",
                "imap_host": "127.0.0.1",
                "imap_port": str(imap.port),
                "imap_user": IMAP_USER,
                "imap_ssl": "false",
            },
            "secrets": {"imap_password": "not-it"},
        },
        status=201,
    )
    failed = cli("inboxes", "imap-poll", "--inbox", "Wrong password")
    assert failed.returncode == 2
    assert "AUTHENTICATIONFAILED" in failed.stderr
    assert "Traceback" not in failed.stderr


# --- plait smtp ----------------------------------------------------------------------


def test_plait_smtp_receives_mail_until_stopped(
    settings: Settings, engine: sa.Engine, admin_api: Api, email_inbox: dict[str, Any]
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PLAIT_HOME": str(settings.home),
        "PLAIT_DATABASE_URL": settings.database_url,
        "PLAIT_INBOX__REPLY_DOMAIN": REPLY_DOMAIN,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "plait", "smtp", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "plait smtp did not start"
                time.sleep(0.1)
        smtp_send(port, mail(ANA, "Via plait smtp", "Hello"))
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp_send(port, mail(ANA, "Nobody", "x", to="nobody@shop.example"))
        assert count(engine, messages) == 1
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
