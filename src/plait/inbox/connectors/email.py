"""Email. Inbound: an SMTP listener (``plait smtp``, aiosmtpd) that takes mail for the email
inboxes' addresses and for ``reply+<conversation token>@<reply domain>`` (any other
recipient is refused with 550), and IMAP polling (``plait inboxes imap-poll``) of a
mailbox's unseen messages, marked seen only once stored. Outbound: a MIME message through
SMTP, threaded with ``In-Reply-To``/``References`` and a reply-to address carrying the
conversation token.

Inbox options: ``addresses`` (a list, or comma-separated), ``reply_domain`` (default
``inbox.reply_domain``), ``smtp_host``/``smtp_port``/``smtp_username``/``smtp_starttls``/
``smtp_ssl`` (default the ``inbox.smtp_*`` settings), ``imap_host``, ``imap_port``,
``imap_user``, ``imap_ssl`` (default true), ``imap_starttls``, ``imap_mailbox`` (default
``INBOX``); secrets: ``smtp_password``, ``imap_password``.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import smtplib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plait.collect.messages import Rules
from plait.core.clock import utcnow
from plait.core.db import read
from plait.core.errors import InvalidInput
from plait.core.settings import InboxSettings, Settings
from plait.inbox.connectors import DeliveryFailed, Outgoing
from plait.inbox.connectors.email_parsing import REPLY_LOCAL, parse_email
from plait.inbox.inboxes import Inbox, inbox_of
from plait.inbox.receiving import Received, receive
from plait.inbox.schema import conversations, inboxes, messages

log = logging.getLogger("plait.inbox.email")

TRUE = ("1", "true", "yes", "on")


# --- inboxes and their addresses --------------------------------------------------------


def addresses(inbox: Inbox) -> list[str]:
    """The inbox's own addresses, lower-case (the first one sends its replies)."""
    value = inbox.option("addresses", [])
    items = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    return [str(item).strip().lower() for item in items if str(item).strip()]


def reply_domain(inbox: Inbox, settings: InboxSettings) -> str | None:
    """The domain of the inbox's ``reply+<token>@`` addresses, if replies are set up."""
    return inbox.option("reply_domain") or settings.reply_domain


def email_inboxes(conn: Connection) -> list[Inbox]:
    """Every enabled email inbox."""
    rows = conn.execute(
        sa.select(inboxes)
        .where(inboxes.c.channel == "email", inboxes.c.disabled_at.is_(None))
        .order_by(inboxes.c.created_at)
    )
    return [inbox_of(row) for row in rows]


def reply_domains(all_inboxes: Iterable[Inbox], settings: InboxSettings) -> set[str]:
    return {domain.lower() for inbox in all_inboxes if (domain := reply_domain(inbox, settings))}


def inbox_for(conn: Connection, settings: InboxSettings, recipient: str) -> Inbox | None:
    """The inbox mail to ``recipient`` belongs to: the one with that address, or, for a
    ``reply+<token>@<reply domain>`` address, the email inbox of that conversation."""
    local, _, domain = recipient.strip().strip("<>").rpartition("@")
    address = f"{local}@{domain}".lower()
    candidates = email_inboxes(conn)
    for inbox in candidates:
        if address in addresses(inbox):
            return inbox
    found = REPLY_LOCAL.match(local)
    if not found or domain.lower() not in reply_domains(candidates, settings):
        return None
    conversation = conn.execute(
        sa.select(conversations.c.id, conversations.c.inbox_id).where(
            conversations.c.token == found.group(1)
        )
    ).first()
    if conversation is None or not candidates:
        return None
    by_id = {inbox.id: inbox for inbox in candidates}
    latest = conn.execute(
        sa.select(messages.c.inbox_id)
        .where(
            messages.c.conversation_id == conversation.id,
            messages.c.channel == "email",
        )
        .order_by(messages.c.created_at.desc())
        .limit(1)
    ).scalar()
    return by_id.get(conversation.inbox_id) or by_id.get(latest) or candidates[0]


def receive_email(
    engine: Engine,
    settings: Settings,
    rules: Rules,
    inbox: Inbox,
    raw: bytes,
    recipients: Sequence[str] = (),
) -> Received | None:
    """Parse and receive one email for ``inbox``; None if it came from one of the inboxes'
    own addresses (a loop). Raises InvalidInput for mail that cannot be read."""
    with read(engine) as conn:
        domains = reply_domains(email_inboxes(conn), settings.inbox)
    inbound = parse_email(raw, recipients=recipients, reply_domains=domains)
    if inbound.contact in addresses(inbox):
        log.info("ignored mail to inbox %s from its own address %s", inbox.id, inbound.contact)
        return None
    return receive(engine, settings, rules, inbox, inbound)


# --- inbound SMTP -----------------------------------------------------------------------


class InboundSmtp:
    """The aiosmtpd handler: recipients are checked against the inboxes at ``RCPT``, and a
    message is acknowledged only once it is stored."""

    def __init__(self, engine: Engine, settings: Settings, rules: Rules) -> None:
        self.engine, self.settings, self.rules = engine, settings, rules

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        inbox = await asyncio.get_running_loop().run_in_executor(None, self._inbox, address)
        if inbox is None:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        recipients = list(envelope.rcpt_tos)
        try:
            taken = await asyncio.get_running_loop().run_in_executor(
                None, self._receive, raw, recipients
            )
        except InvalidInput as exc:
            return f"550 5.6.0 {exc.message}"
        except Exception:
            log.exception("could not store a message for %s", recipients)
            return "451 4.3.0 could not store the message; try again later"
        if not taken:  # the inbox went away between RCPT and DATA
            return "550 5.1.1 no such mailbox here"
        return "250 2.0.0 OK: queued"

    def _inbox(self, address: str) -> Inbox | None:
        with read(self.engine) as conn:
            return inbox_for(conn, self.settings.inbox, address)

    def _receive(self, raw: bytes, recipients: list[str]) -> bool:
        """Receive the message once, for the first recipient's inbox (a reply address
        names its conversation's inbox, so it comes first)."""
        ordered = sorted(recipients, key=lambda a: not a.lower().startswith("reply+"))
        for address in ordered:
            inbox = self._inbox(address)
            if inbox is not None:
                receive_email(self.engine, self.settings, self.rules, inbox, raw, recipients)
                return True
        return False


def smtp_controller(engine: Engine, settings: Settings, rules: Rules, host: str, port: int) -> Any:
    """An aiosmtpd controller (not yet started) receiving mail for the email inboxes."""
    from aiosmtpd.controller import Controller

    return Controller(
        InboundSmtp(engine, settings, rules),
        hostname=host,
        port=port,
        server_hostname=settings.inbox.reply_domain or None,
        ident="Plait",
    )


# --- IMAP polling -----------------------------------------------------------------------


@dataclass
class ImapReport:
    inbox: str
    received: int = 0
    duplicates: int = 0
    rejected: int = 0
    error: str | None = None


def poll_imap(
    engine: Engine, settings: Settings, rules: Rules, inbox: Inbox, *, limit: int = 500
) -> ImapReport:
    """Receive the mailbox's unseen messages (up to ``limit``); each is marked seen once it
    is stored, so a crash in between only means it is fetched (and de-duplicated) again.
    Mail that cannot be read is marked seen and flagged, to stop it coming back."""
    report = ImapReport(inbox.name)
    host = inbox.option("imap_host")
    if not host:
        raise InvalidInput(f"inbox {inbox.name!r} has no imap_host", field="imap_host")
    use_ssl = str(inbox.option("imap_ssl", "true")).lower() in TRUE
    port = int(inbox.option("imap_port", 993 if use_ssl else 143))
    timeout = settings.inbox.provider_timeout_seconds
    if use_ssl:
        imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            host, port, ssl_context=ssl.create_default_context(), timeout=timeout
        )
    else:
        imap = imaplib.IMAP4(host, port, timeout=timeout)
    with imap:
        if not use_ssl and str(inbox.option("imap_starttls", "")).lower() in TRUE:
            imap.starttls(ssl.create_default_context())
        imap.login(inbox.option("imap_user", ""), str(inbox.secrets.get("imap_password", "")))
        _ok(imap.select(_quoted(inbox.option("imap_mailbox", "INBOX"))), "SELECT")
        found = _ok(imap.uid("SEARCH", "UNSEEN"), "SEARCH")
        for uid in (found[0] or b"").split()[:limit]:
            raw = _fetched(_ok(imap.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH"))
            flags = "(\\Seen)"
            try:
                received = receive_email(engine, settings, rules, inbox, raw or b"")
            except InvalidInput as exc:
                log.warning("unreadable mail %s in inbox %s: %s", uid, inbox.id, exc.message)
                report.rejected += 1
                flags = "(\\Seen \\Flagged)"
            else:
                if received is None or received.duplicate:
                    report.duplicates += 1
                else:
                    report.received += 1
            _ok(imap.uid("STORE", uid, "+FLAGS", flags), "STORE")
    return report


def _ok(answer: tuple[str, list[Any]], command: str) -> list[Any]:
    status, data = answer
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise imaplib.IMAP4.error(f"{command} failed: {detail}")
    return data


def _fetched(data: list[Any]) -> bytes | None:
    """The message bytes in a FETCH answer."""
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return item[1]
    return None


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- outbound SMTP ----------------------------------------------------------------------


def build_message(inbox: Inbox, outgoing: Outgoing, settings: InboxSettings) -> EmailMessage:
    """The reply as a MIME message: from the inbox's first address under the inbox's name,
    threaded to the conversation, with its reply-to address when replies are set up."""
    own = addresses(inbox)
    if not own:
        raise DeliveryFailed(f"inbox {inbox.name!r} has no address to send from", permanent=True)
    sender_local, _, sender_domain = own[0].rpartition("@")
    message = EmailMessage()
    message["From"] = Address(inbox.name, sender_local, sender_domain)
    message["To"] = outgoing.contact
    message["Subject"] = outgoing.subject or "Your message"
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = outgoing.email_message_id or make_msgid(domain=sender_domain)
    if outgoing.in_reply_to:
        message["In-Reply-To"] = outgoing.in_reply_to
    references = [ref for ref in outgoing.references if ref]
    if references:
        message["References"] = " ".join(references)
    domain = reply_domain(inbox, settings)
    if domain:
        message["Reply-To"] = f"reply+{outgoing.conversation_token}@{domain}"
    message.set_content(outgoing.body)
    return message


def send(inbox: Inbox, outgoing: Outgoing, settings: InboxSettings, client: httpx.Client) -> str:
    """Deliver the reply to the SMTP server; returns its Message-ID. A refused connection,
    a timeout or a 4xx answer is retried; a 5xx answer (a refused recipient) is not."""
    message = build_message(inbox, outgoing, settings)
    host = inbox.option("smtp_host", settings.smtp_host)
    port = int(inbox.option("smtp_port", settings.smtp_port))
    username = inbox.option("smtp_username", settings.smtp_username)
    password = inbox.secrets.get("smtp_password") or settings.smtp_password
    starttls = str(inbox.option("smtp_starttls", settings.smtp_starttls)).lower() in TRUE
    use_ssl = str(inbox.option("smtp_ssl", "")).lower() in TRUE
    timeout = settings.provider_timeout_seconds
    try:
        smtp = (
            smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
            if use_ssl
            else smtplib.SMTP(host, port, timeout=timeout)
        )
        with smtp:
            if starttls and not use_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if username:
                smtp.login(username, password or "")
            smtp.send_message(message, from_addr=addresses(inbox)[0], to_addrs=[outgoing.contact])
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()), (550, b"refused"))
        raise _failed("refused the recipient", code, reply) from None
    except smtplib.SMTPResponseException as exc:
        raise _failed("refused the message", exc.smtp_code, exc.smtp_error) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"SMTP server {host}:{port}: {type(exc).__name__}: {exc}") from None
    return str(message["Message-ID"])


def _failed(what: str, code: int, reply: bytes | str) -> DeliveryFailed:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return DeliveryFailed(f"the SMTP server {what}: {code} {text}"[:500], permanent=code >= 500)
