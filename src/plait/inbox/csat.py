"""CSAT: when a conversation is resolved the customer gets, on its channel, a link to a public
page where they rate it from 1 to 5 (and may comment). The first answer is kept, on the
conversation and as a ``Survey Answered`` event on the customer's timeline.

The page needs no sign-in: the survey token in its URL is the capability. It is random (192
bits), made for the survey alone (never the conversation's reply token) and names one
conversation. The answer form carries no CSRF nonce on purpose: CSRF abuses credentials a
browser sends by itself (cookies), and this form relies on none; a forged request would need
the token, which only the customer has. Answering is also once-only, so a replayed post
changes nothing. Opening the page (link scanners and previews do) records nothing.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection, Engine

from plait.collect.event_store import events, store
from plait.collect.messages import Envelope, Rules, normalize
from plait.core.clock import isoformat, utcnow
from plait.core.db import read, write
from plait.core.errors import NotFound
from plait.core.settings import Settings
from plait.core.sources import Source
from plait.inbox.inboxes import get_inbox
from plait.inbox.outbox import reply
from plait.inbox.schema import conversations, inboxes, messages
from plait.web.templating import render

log = logging.getLogger("plait.inbox.csat")

router = APIRouter(include_in_schema=False)

SURVEY_PATH = "/csat/{token}"
SCORES = (1, 2, 3, 4, 5)
LABELS = {1: "Very poor", 2: "Poor", 3: "Okay", 4: "Good", 5: "Excellent"}
MAX_COMMENT = 2000
NO_SURVEY = ("phone",)
"""Channels a survey link cannot reach (a call)."""
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,40}$")


def survey_text(url: str) -> str:
    """The survey message the customer receives."""
    return f"Thanks for getting in touch! How did we do? Rate this conversation from 1 to 5: {url}"


def send_survey(
    engine: Engine, settings: Settings, rules: Rules, conversation_id: UUID, base_url: str
) -> dict[str, Any] | None:
    """Queue the survey on a resolved conversation's channel, through the outbox; None when
    CSAT is off, the conversation is not resolved or was rated already, or its channel
    cannot carry a link. Resolving again before an answer sends the same link again."""
    if not settings.inbox.csat:
        return None
    with write(engine) as conn:
        row = conn.execute(
            sa.select(
                conversations.c.status,
                conversations.c.csat_token,
                conversations.c.csat_answered_at,
                inboxes.c.channel,
            )
            .join(inboxes, inboxes.c.id == conversations.c.inbox_id)
            .where(conversations.c.id == conversation_id)
        ).first()
        if row is None or row.status != "resolved" or row.csat_answered_at is not None:
            return None
        if row.channel in NO_SURVEY:
            return None
        token = row.csat_token or secrets.token_urlsafe(24)
        conn.execute(
            conversations.update()
            .where(conversations.c.id == conversation_id)
            .values(csat_token=token)
        )
    url = base_url.rstrip("/") + SURVEY_PATH.format(token=token)
    return reply(
        engine, settings, rules, conversation_id, survey_text(url), author_id=None, answers=False
    )


def on_resolved(state: Any) -> Callable[..., None]:
    """The application's ``on_resolved`` hook: send the survey, never failing the change that
    resolved the conversation (a customer without an address simply gets none)."""

    def hook(conversation_id: UUID, base_url: str | None = None) -> None:
        settings: Settings = state.settings
        server = settings.server
        base = server.public_url or base_url or f"http://{server.host}:{server.port}"
        try:
            sent = send_survey(state.engine, settings, state.rules, conversation_id, base)
        except Exception:
            log.exception("no CSAT survey for conversation %s", conversation_id)
            return
        worker = getattr(state, "delivery", None)
        if sent is not None and worker is not None:
            worker.wake()

    return hook


def find_survey(conn: Connection, token: str) -> Any:
    """The conversation a survey token names (its score, comment and when answered)."""
    if not TOKEN.match(token):
        raise NotFound("no such survey", field="token")
    row = conn.execute(
        sa.select(
            conversations.c.id,
            conversations.c.csat_score,
            conversations.c.csat_comment,
            conversations.c.csat_answered_at,
        ).where(conversations.c.csat_token == token)
    ).first()
    if row is None:
        raise NotFound("no such survey", field="token")
    return row


def record_answer(
    engine: Engine, rules: Rules, token: str, score: int, comment: str | None
) -> bool:
    """Keep the rating if the survey was not answered yet (True), else change nothing
    (False); the answer also goes on the customer's timeline."""
    now = utcnow()
    with write(engine) as conn:
        survey = find_survey(conn, token)
        if survey.csat_answered_at is not None:
            return False
        done = conn.execute(
            conversations.update()
            .where(conversations.c.id == survey.id, conversations.c.csat_answered_at.is_(None))
            .values(csat_score=score, csat_comment=comment, csat_answered_at=now)
        )
        if done.rowcount != 1:
            return False
        event = survey_event(conn, rules, survey.id, token, score, comment, now)
        if event is not None:
            store(conn, [event], [])
    return True


def survey_event(
    conn: Connection,
    rules: Rules,
    conversation_id: UUID,
    token: str,
    score: int,
    comment: str | None,
    at: Any,
) -> dict[str, Any] | None:
    """``Survey Answered``, from the customer as their last message identified them (so it
    joins their profile), in that message's inbox; None if they never wrote."""
    last = conn.execute(
        sa.select(messages.c.inbox_id, events.c.user_id, events.c.anonymous_id)
        .join(events, events.c.id == messages.c.event_id)
        .where(messages.c.conversation_id == conversation_id, messages.c.direction == "in")
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(1)
    ).first()
    if last is None or not (last.user_id or last.anonymous_id):
        return None
    inbox = get_inbox(conn, last.inbox_id)
    message: dict[str, Any] = {
        "type": "track",
        "event": "Survey Answered",
        "messageId": f"csat-{token}",
        "timestamp": isoformat(at),
        "properties": {
            "survey": "csat",
            "score": score,
            "comment": comment,
            "conversation_id": str(conversation_id),
        },
        "context": {"channel": inbox.event_channel},
    }
    if last.user_id:
        message["userId"] = last.user_id
    if last.anonymous_id:
        message["anonymousId"] = last.anonymous_id
    source = Source(inbox.source_id, f"inbox: {inbox.name}", inbox.event_channel)
    return normalize(message, Envelope(source, at), rules, check_size=False)


# --- the public page ---------------------------------------------------------------------


@router.get(SURVEY_PATH)
def survey_page(request: Request, token: str) -> Response:
    """The survey: five choices and a comment, or the answer already given."""
    with read(request.app.state.engine) as conn:
        try:
            survey = find_survey(conn, token)
        except NotFound:
            return _page(request, "missing", status=404)
    if survey.csat_answered_at is not None:
        return _page(request, "answered", score=survey.csat_score)
    return _page(request, "form", token=token)


@router.post(SURVEY_PATH)
def survey_answer(
    request: Request, token: str, score: str = Form(""), comment: str = Form("")
) -> Response:
    """Record the rating once; a second answer is refused, the first one stands."""
    app = request.app.state
    comment = comment.strip()
    chosen = int(score) if score.strip() in {str(n) for n in SCORES} else None
    with read(app.engine) as conn:
        try:
            survey = find_survey(conn, token)
        except NotFound:
            return _page(request, "missing", status=404)
    if survey.csat_answered_at is None:
        error = None
        if chosen is None:
            error = "Please choose a rating from 1 to 5."
        elif len(comment) > MAX_COMMENT or "\x00" in comment:
            error = f"Please keep the comment under {MAX_COMMENT} characters."
        if error:
            return _page(
                request, "form", token=token, error=error, comment=comment[:MAX_COMMENT],
                score=chosen, status=400,
            )  # fmt: skip
        assert chosen is not None
        if record_answer(app.engine, app.rules, token, chosen, comment or None):
            return _page(request, "thanks", score=chosen)
    return _page(request, "answered", score=survey.csat_score, refused=True, status=409)


def _page(request: Request, state: str, *, status: int = 200, **context: Any) -> Response:
    values = {"state": state, "scores": SCORES, "labels": LABELS, "max_comment": MAX_COMMENT}
    return render(request, "csat.html", {**values, **context}, status)
