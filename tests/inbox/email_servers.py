"""Real mail servers on loopback for the email connector's tests: an SMTP server (aiosmtpd)
that records what it is sent and can refuse recipients, and a small IMAP4rev1 server
speaking enough of the protocol for imaplib (CAPABILITY, LOGIN, SELECT, SEARCH, FETCH,
STORE, NOOP, LOGOUT, plain or with the UID prefix)."""

from __future__ import annotations

import re
import socketserver
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class SmtpRecorder:
    """An aiosmtpd handler keeping every message; recipients in ``refuse`` get a 550."""

    refuse: set[str] = field(default_factory=set)
    messages: list[Delivered] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(
            Delivered(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 OK: queued"


def smtp_server(handler: Any, port: int) -> Controller:
    """A started aiosmtpd server on 127.0.0.1:``port``."""
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


@dataclass
class Mail:
    uid: int
    raw: bytes
    flags: set[str] = field(default_factory=set)


TOKEN = re.compile(rb'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+')


def _args(line: bytes) -> list[str]:
    """Atoms, quoted strings (unquoted) and parentheses of an IMAP command line."""
    out = []
    for token in TOKEN.findall(line):
        text = token.decode()
        if text.startswith('"'):
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        out.append(text)
    return out


class ImapServer:
    """One mailbox (INBOX) for one user. ``commands`` records every command received;
    ``drop_after_fetch`` closes the connection right after answering a FETCH (a client
    crashing, or the network failing, before it marks the message seen)."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.mails: list[Mail] = []
        self.commands: list[str] = []
        self.drop_after_fetch = False
        self.lock = threading.Lock()
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                owner._session(self.rfile, self.wfile)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, raw: bytes, flags: Iterable[str] = ()) -> int:
        with self.lock:
            uid = (self.mails[-1].uid if self.mails else 100) + 1
            self.mails.append(Mail(uid, raw, set(flags)))
            return uid

    def flags(self, uid: int) -> set[str]:
        return next(mail.flags for mail in self.mails if mail.uid == uid)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _session(self, rfile: Any, wfile: Any) -> None:
        def send(*lines: bytes | str) -> None:
            for line in lines:
                wfile.write(line if isinstance(line, bytes) else line.encode() + b"\r\n")
            wfile.flush()

        send("* OK [CAPABILITY IMAP4rev1] test IMAP server ready")
        authenticated = False
        while True:
            line = rfile.readline()
            if not line:
                return
            parts = _args(line.rstrip(b"\r\n"))
            if len(parts) < 2:
                send("* BAD empty command")
                continue
            tag, command, args = parts[0], parts[1].upper(), parts[2:]
            uid_mode = command == "UID"
            if uid_mode:
                command, args = args[0].upper(), args[1:]
            with self.lock:
                self.commands.append(" ".join([("UID " if uid_mode else "") + command, *args]))
            if command == "CAPABILITY":
                send("* CAPABILITY IMAP4rev1", f"{tag} OK CAPABILITY completed")
            elif command == "NOOP":
                send(f"{tag} OK NOOP completed")
            elif command == "LOGOUT":
                send("* BYE logging out", f"{tag} OK LOGOUT completed")
                return
            elif command == "LOGIN":
                authenticated = args[:2] == [self.user, self.password]
                if authenticated:
                    send(f"{tag} OK LOGIN completed")
                else:
                    send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials")
            elif not authenticated:
                send(f"{tag} BAD log in first")
            elif command == "SELECT":
                if args[:1] != ["INBOX"]:
                    send(f"{tag} NO no such mailbox")
                    continue
                send(
                    f"* {len(self.mails)} EXISTS",
                    "* 0 RECENT",
                    "* FLAGS (\\Seen \\Flagged \\Answered \\Deleted \\Draft)",
                    "* OK [UIDVALIDITY 1] UIDs valid",
                    f"{tag} OK [READ-WRITE] SELECT completed",
                )
            elif command == "SEARCH":
                if [a.upper() for a in args] != ["UNSEEN"]:
                    send(f"{tag} BAD only SEARCH UNSEEN here")
                    continue
                with self.lock:
                    found = [
                        str(mail.uid if uid_mode else number)
                        for number, mail in enumerate(self.mails, 1)
                        if "\\Seen" not in mail.flags
                    ]
                send(" ".join(["* SEARCH", *found]), f"{tag} OK SEARCH completed")
            elif command == "FETCH":
                number, mail = self._find(args[0], uid_mode)
                what = " ".join(args[1:]).upper()
                if mail is None:
                    send(f"{tag} OK FETCH completed")
                    continue
                if "BODY.PEEK[]" not in what:
                    if "RFC822" not in what and "BODY[]" not in what:
                        send(f"{tag} BAD only FETCH of the whole message here")
                        continue
                    mail.flags.add("\\Seen")
                send(
                    f"* {number} FETCH (UID {mail.uid} BODY[] {{{len(mail.raw)}}}\r\n".encode(),
                    mail.raw,
                    b")\r\n",
                    f"{tag} OK FETCH completed",
                )
                if self.drop_after_fetch:
                    return
            elif command == "STORE":
                number, mail = self._find(args[0], uid_mode)
                if mail is None or args[1].upper() != "+FLAGS":
                    send(f"{tag} NO no such message or not +FLAGS")
                    continue
                mail.flags.update(a for a in args[2:] if a not in ("(", ")"))
                flags = " ".join(sorted(mail.flags))
                send(f"* {number} FETCH (UID {mail.uid} FLAGS ({flags}))", f"{tag} OK STORE done")
            else:
                send(f"{tag} BAD unknown command {command}")

    def _find(self, key: str, uid_mode: bool) -> tuple[int, Mail | None]:
        with self.lock:
            for number, mail in enumerate(self.mails, 1):
                if (mail.uid if uid_mode else number) == int(key):
                    return number, mail
        return 0, None
