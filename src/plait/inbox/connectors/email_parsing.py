"""Reading an email (RFC 5322 bytes, as SMTP or IMAP hand it over) into an
:class:`~plait.inbox.receiving.Inbound`: sender, threading headers, the conversation token
of a ``reply+<token>@…`` recipient, the text (HTML converted when there is no plain part),
attachments listed, and the quoted history stripped from the reply.

Quoted-reply stripping knows the common clients: an attribution line ("On … wrote:", in
several languages, possibly wrapped over lines) followed by ``>`` lines (Gmail, Apple Mail,
Thunderbird), and Outlook's "-----Original Message-----" or "From: … Sent: …" header block
followed by the unquoted history. The full text stays in the event's ``full_body``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any

from plait.core.clock import utcnow
from plait.core.errors import InvalidInput
from plait.identity.identifiers import normalize_email
from plait.inbox.receiving import MAX_BODY, Inbound

MAX_REFERENCES = 50
MESSAGE_ID = re.compile(r"<[^<>\s]{1,490}>")
REPLY_LOCAL = re.compile(r"^reply\+([A-Za-z0-9_-]{8,40})$")

_VERBS = (
    r"wrote|a écrit|schrieb|escribió|escreveu|ha scritto|schreef|skrev|skreiv|kirjoitti"
    r"|napisał|napisała|napisal|napsal|napsala|написал|написала|yazd\u0131|写道|寫道"
)
_OPENERS = r"On|Le|Am|El|Em|No dia|Il|Op|Den|På|W dniu|Dne|在|于"
ATTRIBUTION = re.compile(
    rf"(?:^|\s|>)(?:{_VERBS})(?:\s[^:\uff1a]{{0,80}})?\s?[:\uff1a]$", re.IGNORECASE
)
OPENER = re.compile(rf"^(?:{_OPENERS})(?:\s|$)|^(?:在|于)", re.IGNORECASE)
ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine"
    r"|Mensaje original|Messaggio originale|Oorspronkelijk bericht|Mensagem original"
    r"|Originalmeddelande|Oprindelig meddelelse|Opprinnelig melding|Alkuperäinen viesti"
    r"|Wiadomość oryginalna|Исходное сообщение)\s*-{2,}\s*$",
    re.IGNORECASE,
)
HEADER_FROM = re.compile(r"^\s*\*?(?:From|De|Von|Da|Van|Från|Fra|Od|От|Lähettäjä)\s?:\*?\s")
HEADER_SENT = re.compile(
    r"^\s*\*?(?:Sent|Date|Envoyé|Gesendet|Enviado|Enviada|Inviato|Verzonden|Skickat|Sendt"
    r"|Wysłano|Отправлено|Datum|Fecha|Data|Lähetetty)\s?:"
)
SEPARATOR = re.compile(r"^\s*(?:_{8,}|-{8,})\s*$")
FORWARDED = re.compile(
    r"^\s*(?:-{2,}\s*Forwarded message\s*-{2,}|Begin forwarded message:"
    r"|-{2,}\s*Weitergeleitete Nachricht\s*-{2,}|-{2,}\s*Message transféré\s*-{2,})\s*$",
    re.IGNORECASE,
)


def parse_email(
    raw: bytes, *, recipients: Sequence[str] = (), reply_domains: Iterable[str] = ()
) -> Inbound:
    """An inbound message from an email's bytes; ``recipients`` are the envelope's (SMTP),
    and a ``reply+<token>@<reply domain>`` one among them or the headers threads the reply."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    name, contact = sender_of(message)
    subject = " ".join(_header(message, "Subject").split()) or None
    full = _clean(body_text(message))
    body = strip_quoted(full)
    own_id = first_message_id(_header(message, "Message-ID"))
    references = message_ids(_header(message, "References"))[-MAX_REFERENCES:]
    addressed = [*recipients, *_addresses(message, "To", "Cc", "Delivered-To", "X-Original-To")]
    properties: dict[str, Any] = {
        "from": contact,
        "to": _addresses(message, "To")[:20],
        "date": _header(message, "Date") or None,
    }
    if body != full:
        properties["full_body"] = full[:MAX_BODY]
    if _header(message, "Auto-Submitted").lower() not in ("", "no"):
        properties["auto_submitted"] = _header(message, "Auto-Submitted")
    traits = {"email": contact, **({"name": name} if name else {})}
    return Inbound(
        provider_id=own_id or digest_id(message, full),
        contact=contact,
        body=body[:MAX_BODY],
        traits=traits,
        sent_at=utcnow(),
        subject=subject[:500] if subject else None,
        attachments=attachments_of(message),
        email_message_id=own_id,
        in_reply_to=first_message_id(_header(message, "In-Reply-To")),
        references=references,
        token=reply_token(addressed, reply_domains),
        properties=properties,
    )


def sender_of(message: EmailMessage) -> tuple[str | None, str]:
    """The sender's display name and address (lower-case, validated), from ``From``."""
    for name, address in getaddresses([_header(message, "From")]):
        checked = normalize_email(address) if address else None
        if checked:
            return (" ".join(name.split()) or None), checked
    raise InvalidInput("the message has no valid From address", code="bad_sender", field="from")


def message_ids(value: str) -> list[str]:
    """Every ``<id>`` in a Message-ID / In-Reply-To / References header, in order, once."""
    return list(dict.fromkeys(MESSAGE_ID.findall(value or "")))


def first_message_id(value: str) -> str | None:
    found = message_ids(value)
    return found[0] if found else None


def reply_token(addresses: Iterable[str], reply_domains: Iterable[str]) -> str | None:
    """The conversation token of the first ``reply+<token>@<reply domain>`` address."""
    domains = {domain.lower() for domain in reply_domains if domain}
    for address in addresses:
        local, _, domain = address.strip().strip("<>").rpartition("@")
        found = REPLY_LOCAL.match(local)
        if found and domain.lower() in domains:
            return found.group(1)
    return None


def digest_id(message: EmailMessage, text: str) -> str:
    """A stand-in message id for an email without ``Message-ID``, from its content, so
    the same email delivered twice is still stored once."""
    parts = [_header(message, name) for name in ("From", "To", "Date", "Subject")]
    hashed = hashlib.sha256("\x00".join([*parts, text]).encode()).hexdigest()
    return f"digest:{hashed[:40]}"


def body_text(message: EmailMessage) -> str:
    """The message's text: its text/plain body, else its HTML converted to text."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = _content(part)
    return html_to_text(content) if part.get_content_subtype() == "html" else content


def attachments_of(message: EmailMessage) -> list[dict[str, Any]]:
    """Each attachment's file name, content type and size (the content itself is not kept)."""
    listed = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else len(part.as_bytes())
        filename = part.get_filename()
        listed.append(
            {
                "filename": filename[:255] if filename else None,
                "content_type": part.get_content_type(),
                "size": size,
            }
        )
    return listed[:100]


def strip_quoted(text: str) -> str:
    """The reply without the history it quotes; the whole text if nothing else is left.
    A forwarded message is content, not history: it is kept."""
    lines = text.split("\n")
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if FORWARDED.match(line):
            kept.extend(lines[index:])
            break
        if ORIGINAL_MESSAGE.match(line) or _outlook_block(lines, index):
            break
        span = _attribution(lines, index)
        if span:
            following = next((ln for ln in lines[index + span :] if ln.strip()), "")
            if not following.lstrip().startswith(">"):
                break
            index += span
            continue
        if not line.lstrip().startswith(">"):
            kept.append(line)
        index += 1
    while kept and (not kept[-1].strip() or SEPARATOR.match(kept[-1])):
        kept.pop()
    reply = "\n".join(kept).strip("\n")
    return reply if reply.strip() else text.strip("\n")


def html_to_text(html: str) -> str:
    """Readable text from HTML: blocks become lines, ``<blockquote>`` lines get ``> ``."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt"),
        *("footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main"),
        *("nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead"),
        *("tr", "ul"),
    }
)
SKIPPED = frozenset({"script", "style", "head", "title", "template"})


class _TextParser(HTMLParser):
    """Collects text, with line breaks at blocks and a ``> `` prefix inside blockquotes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.quote = 0
        self.skip = 0
        self.pre = 0
        self.at_line_start = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self.skip += 1
        elif tag == "br":
            self._newline()
        elif tag in BLOCKS:
            self._newline()
            if tag == "blockquote":
                self.quote += 1
            elif tag == "li":
                self._write("- ")
            elif tag == "pre":
                self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self.skip = max(0, self.skip - 1)
        elif tag in BLOCKS:
            self._newline()
            if tag == "blockquote":
                self.quote = max(0, self.quote - 1)
            elif tag == "pre":
                self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            for number, chunk in enumerate(data.split("\n")):
                if number:
                    self._newline(force=True)
                self._write(chunk)
            return
        text = re.sub(r"\s+", " ", data)
        if self.at_line_start:
            text = text.lstrip()
        if text:
            self._write(text)

    def _write(self, text: str) -> None:
        if self.at_line_start and self.quote:
            self.out.append("> " * self.quote)
        self.out.append(text)
        self.at_line_start = False

    def _newline(self, force: bool = False) -> None:
        if force or not self.at_line_start:
            self.out.append("\n")
        self.at_line_start = True


def _attribution(lines: Sequence[str], index: int) -> int:
    """How many lines (1 to 3) an attribution line starting at ``index`` spans, else 0."""
    first = lines[index].strip()
    if not first or first.startswith(">"):
        return 0
    joined = first
    for span in range(1, 4):
        if span > 1:
            if index + span - 1 >= len(lines) or not lines[index + span - 1].strip():
                return 0
            joined = f"{joined} {lines[index + span - 1].strip()}"
        if len(joined) > 400:
            return 0
        if ATTRIBUTION.search(joined):
            looks_like = OPENER.search(joined) or re.search(r"[\d@]", joined)
            following = next((ln for ln in lines[index + span :] if ln.strip()), "")
            if looks_like or following.lstrip().startswith(">"):
                return span
            return 0
        if span == 1 and not OPENER.search(first):
            return 0
    return 0


def _outlook_block(lines: Sequence[str], index: int) -> bool:
    """Whether an Outlook-style header block (From: … then Sent:/Date: …) starts here,
    possibly after a separator line."""
    start = index + 1 if SEPARATOR.match(lines[index]) else index
    if start >= len(lines) or not HEADER_FROM.match(lines[start]):
        return False
    return any(HEADER_SENT.match(line) for line in lines[start + 1 : start + 4])


def _content(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace")
    return content if isinstance(content, str) else ""


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (IndexError, ValueError, TypeError):
        value = None
    return str(value).strip() if value is not None else ""


def _addresses(message: EmailMessage, *names: str) -> list[str]:
    values = [_header(message, name) for name in names]
    return [address for _, address in getaddresses([v for v in values if v]) if address]
