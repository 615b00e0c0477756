"""The inbox under load: inbound messages per second through the Twilio webhook, and the agent
queue and conversation latency with 100,000 conversations, on SQLite and PostgreSQL.

What it measures
    Part ``inbound``: a fresh ``python -m plait serve`` per database (throw-away PLAIT_HOME, and
    for PostgreSQL a throw-away ``plait_bench_*`` database) with one SMS inbox (team Support,
    ten available agents, so auto-assignment runs). ``--clients`` concurrent keep-alive
    connections (raw HTTP/1.1 over asyncio streams, in this process) post Twilio's
    inbound-message webhook back to back (closed loop; a list of client counts runs once
    each, 16 and 64 by default: with few in flight, throughput is bounded by the latency of
    one group commit, with more it is the server's capacity), each form signed with
    ``X-Twilio-Signature`` exactly as Twilio signs it, from ``--customers`` different phone
    numbers (so messages both open conversations and join open ones). A 200 means the message,
    its event and its routing to a conversation are committed. Reported: messages/s in the
    window after ``--warmup``, request latency p50/p99, errors, whether every acknowledged
    message is stored once and routed (counted in the database after the run), conversations
    opened, and CPU ms per message of the server and of PostgreSQL. Target: >= 500 messages/s on
    each database (met when one of the client counts sustains it, every message routed).

    Part ``pages``: ``--conversations`` (100,000) conversations are generated set-wise in the
    database (``INSERT … SELECT`` over a number series: one customer profile and phone
    identity each, three messages each, 3 inboxes, 20 agents, 60% resolved, 40% open,
    pending or snoozed, SLA deadlines, some CSAT), then a fresh server is started and each
    endpoint is requested ``--samples`` times one after the other (after ``--warmup-hits``):
    the queue API (all, mine for one agent, unassigned, SLA at risk, one channel, a page deep
    down the list by cursor), one conversation with its messages (a random one each time),
    the reports API (30 days, no target, 10 samples), and the web pages ``/inbox`` and
    ``/inbox/{id}`` signed in as an admin when they exist (skipped with a note otherwise).
    Latency is the client's (loopback HTTP included); p50/p95/p99/max. Target: p99 < 200 ms.

How to run
    python bench/inbox.py                                     # both parts, both databases
    python bench/inbox.py --part inbound --seconds 10 --clients 16,32,64
    python bench/inbox.py --part pages --conversations 20000 --databases sqlite

    Results are printed as tables and written as JSON to ``--json-out`` (default
    bench/results/inbox.json; bench/results/ is git-ignored). The server helpers (start,
    health, CPU accounting, PostgreSQL databases) are those of bench/ingest.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from ingest import (
    DEFAULT_PG_ADMIN_URL,
    TRANSPORT_ERRORS,
    cpu_seconds,
    cpu_used,
    create_pg_database,
    drop_pg_database,
    exchange,
    free_port,
    machine_info,
    percentile,
    postgres_processes,
    process_tree,
    server_env,
    start_server,
    stop_server,
    wait_for_quiet,
    wait_healthy,
)

ROOT = Path(__file__).resolve().parent.parent
TARGET_MESSAGES_PER_SECOND = 500
TARGET_P99_MS = 200.0
ACCOUNT = "AC" + "b" * 32
AUTH_TOKEN = "bench-twilio-auth-token"
SHOP_NUMBER = "+15005550006"
PASSWORD = "bench password, not a secret"
AGENTS = 20
BODIES = (
    "Hi, where is my order? It was supposed to arrive yesterday.",
    "Can I change the delivery address for order 48213?",
    "The grinder I bought makes a strange noise, what should I do?",
    "Do you have the gooseneck kettle back in stock?",
    "Thanks, that worked!",
    "I'd like to return the espresso machine, how do I start?",
)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def settings_for(home: Path, database_url: str | None) -> Any:
    from plait.core.settings import Settings

    return Settings(home=home, database_url=database_url or "")


# --------------------------------------------------------------------------------------------
# Part 1: inbound messages through the Twilio webhook
# --------------------------------------------------------------------------------------------


@dataclass
class InboundResult:
    database: str
    clients: int
    seconds: float
    warmup: float
    customers: int
    messages_per_second: float = 0.0
    window_messages: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    stored: int = 0
    routed: int = 0
    conversations: int = 0
    stored_once_and_routed: bool = False
    server_cpu_ms_per_message: float | None = None
    postgres_cpu_ms_per_message: float | None = None
    timeline: list[int] = field(default_factory=list)
    background_busy_percent: float = 0.0
    failure: str | None = None


def prepare_inbox(settings: Any) -> str:
    """Schema, one SMS inbox for team Support and ten available agents; the inbox id."""
    from plait.core.db import dispose_engines, get_engine, write
    from plait.core.users import create_user
    from plait.inbox.assignment import add_to_team, set_availability
    from plait.inbox.inboxes import create_inbox, ensure_team
    from plait.migrations import upgrade

    engine = get_engine(settings)
    upgrade(engine)
    with write(engine) as conn:
        inbox = create_inbox(
            conn,
            "sms",
            "Bench SMS",
            team="Support",
            options={
                "account_sid": ACCOUNT,
                "phone_number": SHOP_NUMBER,
                "api_url": "http://127.0.0.1:9",
            },
            secrets={"auth_token": AUTH_TOKEN},
        )
        team = ensure_team(conn, "Support")
        for number in range(10):
            user = create_user(conn, f"agent{number}@bench.example", "agent", PASSWORD)
            user_id = uuid.UUID(str(user["id"]))
            set_availability(conn, user_id, available=True, capacity=1000)
            add_to_team(conn, team, user_id)
    dispose_engines()
    return str(inbox["id"])


def signed_requests(url: str, count: int, customers: int, seed: int) -> list[tuple[bytes, str]]:
    """``count`` inbound-SMS webhook bodies with their Twilio signatures."""
    from plait.inbox.connectors.twilio_sms import signature

    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        sid = "SM" + uuid.UUID(int=rng.getrandbits(128)).hex
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": SHOP_NUMBER,
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": ACCOUNT,
            "From": f"+1415{rng.randrange(customers):07d}",
            "ApiVersion": "2010-04-01",
            "Body": rng.choice(BODIES),
        }
        requests.append((urlencode(params).encode(), signature(AUTH_TOKEN, url, params)))
    return requests


async def send_load(
    url: str,
    requests: list[tuple[bytes, str]],
    clients: int,
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    """Closed loop: each client posts the next signed webhook as soon as the last returned.

    Each client is one keep-alive HTTP/1.1 connection speaking the protocol over a plain
    asyncio stream, with every request's bytes built before the run: a general-purpose
    client (httpx) spends more CPU per request than the server does, and on a small machine
    it, not the server, would set the rate."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    wire = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {sig}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body, sig in requests
    ]
    records: list[tuple[float, float, int, str | None]] = []
    position = 0

    async def client_loop(end_at: float) -> None:
        nonlocal position
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < end_at and position < len(wire):
                request = wire[position]
                position += 1
                began = time.perf_counter()
                status, error = 0, None
                try:
                    status, body = await exchange(reader, writer, request)
                    if status != 200:
                        error = f"HTTP {status}: {body[:200].decode(errors='replace')}"
                except TRANSPORT_ERRORS as exc:
                    error = f"{type(exc).__name__}: {exc}"[:200]
                    records.append((began, time.perf_counter(), status, error))
                    return
                records.append((began, time.perf_counter(), status, error))
        finally:
            writer.close()

    start_at = time.perf_counter()
    end_at = start_at + warmup + seconds
    await asyncio.gather(*(client_loop(end_at) for _ in range(clients)))
    return {"records": records, "window_start": start_at + warmup, "window_end": end_at}


def count_inbound(settings: Any) -> tuple[int, int, int]:
    """Inbound messages stored, those routed to a conversation, and conversations."""
    import sqlalchemy as sa

    from plait.core.db import create_engine
    from plait.inbox.schema import conversations, messages

    engine = create_engine(settings)
    try:
        with engine.connect() as conn:
            inbound = messages.c.direction == "in"
            stored = conn.execute(sa.select(sa.func.count()).where(inbound)).scalar_one()
            routed = conn.execute(
                sa.select(sa.func.count()).where(inbound, messages.c.conversation_id.is_not(None))
            ).scalar_one()
            opened = conn.execute(
                sa.select(sa.func.count()).select_from(conversations)
            ).scalar_one()
            return int(stored), int(routed), int(opened)
    finally:
        engine.dispose()


def run_inbound(args: argparse.Namespace, database: str, clients: int, log: Any) -> InboundResult:
    result = InboundResult(database, clients, args.seconds, args.warmup, args.customers)
    home = Path(tempfile.mkdtemp(prefix=f"plait-bench-inbox-{database}-"))
    pg_name = database_url = None
    server = None
    try:
        if database == "postgresql":
            pg_name, database_url = create_pg_database(args.pg_admin_url)
        settings = settings_for(home, database_url)
        inbox_id = prepare_inbox(settings)
        port = free_port()
        url = f"http://127.0.0.1:{port}/webhooks/twilio/{inbox_id}"
        count = int(args.max_rate * (args.warmup + args.seconds)) + 1
        requests = signed_requests(url, count, args.customers, args.seed)
        log_path = home / "server.log"
        server = start_server(server_env(home, database_url, args.server_env), port, 1, log_path)
        wait_healthy(f"http://127.0.0.1:{port}", server, log_path, timeout=120)
        log(f"  server up on :{port} (pid {server.pid}); {count} signed webhooks ready")
        result.background_busy_percent = wait_for_quiet(args.quiet_wait, log)

        async def measured() -> dict[str, Any]:
            load = asyncio.create_task(send_load(url, requests, clients, args.warmup, args.seconds))
            await asyncio.sleep(args.warmup + 0.2)
            before = cpu_seconds(process_tree(server.pid))
            db_before = cpu_seconds(postgres_processes(pg_name)) if pg_name else {}
            await asyncio.sleep(args.seconds - 0.2)
            after = cpu_seconds([*before, *process_tree(server.pid)])
            db_after = cpu_seconds([*db_before, *postgres_processes(pg_name)]) if pg_name else {}
            outcome = await load
            outcome["server_cpu"] = cpu_used(before, after)
            outcome["postgres_cpu"] = cpu_used(db_before, db_after) if pg_name else None
            return outcome

        outcome = asyncio.run(measured())
        records = outcome["records"]
        start, end = outcome["window_start"], outcome["window_end"]
        window = [r for r in records if start <= r[1] <= end]
        latencies = sorted((r[1] - r[0]) * 1000 for r in window)
        ok = sum(1 for r in window if r[2] == 200)
        result.window_messages = ok
        result.messages_per_second = ok / (end - start)
        result.p50_ms = percentile(latencies, 0.50)
        result.p95_ms = percentile(latencies, 0.95)
        result.p99_ms = percentile(latencies, 0.99)
        result.max_ms = latencies[-1] if latencies else 0.0
        kinds: dict[str, int] = {}
        for record in records:
            if record[3]:
                kind = record[3].split(":")[0]
                kinds[kind] = kinds.get(kind, 0) + 1
        result.errors, result.error_kinds = sum(kinds.values()), kinds
        result.acked = sum(1 for r in records if r[2] == 200)
        buckets = [0] * max(1, round(end - start))
        for record in window:
            if record[2] == 200:
                buckets[min(len(buckets) - 1, int(record[1] - start))] += 1
        result.timeline = buckets
        if ok:
            result.server_cpu_ms_per_message = 1000 * outcome["server_cpu"] / ok
            if outcome["postgres_cpu"] is not None:
                result.postgres_cpu_ms_per_message = 1000 * outcome["postgres_cpu"] / ok
        stop_server(server)
        result.stored, result.routed, result.conversations = count_inbound(settings)
        result.stored_once_and_routed = result.stored == result.acked == result.routed
    except Exception as exc:
        result.failure = f"{type(exc).__name__}: {exc}"
        if (home / "server.log").exists():
            tail = (home / "server.log").read_text(errors="replace")[-2000:]
            result.failure += f"\nserver log tail:\n{tail}"
    finally:
        if server is not None:
            stop_server(server)
        if pg_name is not None:
            with contextlib.suppress(Exception):
                drop_pg_database(args.pg_admin_url, pg_name)
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
    return result


# --------------------------------------------------------------------------------------------
# Part 2: queue and conversation latency over 100,000 conversations
# --------------------------------------------------------------------------------------------


@dataclass
class Sql:
    """The few expressions the two databases spell differently."""

    dialect: str

    def series(self, name: str, count: int) -> str:
        if self.dialect == "postgresql":
            return f"{name}(n) AS (SELECT generate_series(CAST(1 AS bigint), {count}))"
        return f"{name}(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM {name} WHERE n < {count})"

    def uid(self, prefix: str, expression: str) -> str:
        """A UUID made from a letter and a number (so rows can point at each other)."""
        if self.dialect == "postgresql":
            return f"CAST('{prefix}' || lpad(to_hex({expression}), 31, '0') AS uuid)"
        return f"printf('{prefix}%031x', {expression})"

    def at(self, seconds: str) -> str:
        """``:base`` plus a number of seconds, as the timestamp column stores it."""
        if self.dialect == "postgresql":
            return f"(CAST(:base AS timestamptz) + ({seconds}) * interval '1 second')"
        return f"(datetime(:base, '+' || ({seconds}) || ' seconds') || '.000000')"

    def json(self, literal: str) -> str:
        return f"CAST('{literal}' AS jsonb)" if self.dialect == "postgresql" else f"'{literal}'"

    def text(self, expression: str) -> str:
        return f"CAST({expression} AS text)" if self.dialect == "postgresql" else expression

    @property
    def recursive(self) -> str:
        return "WITH RECURSIVE" if self.dialect == "sqlite" else "WITH"


def generate_conversations(settings: Any, count: int, log: Any) -> dict[str, Any]:
    """Customers, conversations and their messages, written set-wise; what the reads need."""
    import sqlalchemy as sa

    from plait.core.auth import create_token
    from plait.core.clock import isoformat
    from plait.core.db import dispose_engines, get_engine, write
    from plait.core.users import create_user
    from plait.inbox.inboxes import create_inbox, ensure_team
    from plait.inbox.schema import conversations
    from plait.migrations import upgrade

    engine = get_engine(settings)
    upgrade(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    base = now - timedelta(days=90)
    spread = 90 * 86400 - 2 * 86400  # every conversation begins at least two days ago
    with write(engine) as conn:
        sql = Sql(conn.dialect.name)
        team = ensure_team(conn, "Support")
        inboxes = [
            create_inbox(conn, channel, f"Bench {channel}", team="Support")
            for channel in ("sms", "email", "whatsapp")
        ]
        agents = [
            uuid.UUID(str(create_user(conn, f"agent{k}@bench.example", "agent", PASSWORD)["id"]))
            for k in range(AGENTS)
        ]
        create_user(conn, "admin@bench.example", "admin", PASSWORD)
        token = create_token(conn, "admin", "bench")["token"]
    params: dict[str, Any] = {"base": base.strftime("%Y-%m-%d %H:%M:%S"), "team": team}
    types = {"team": sa.Uuid}
    for k, inbox in enumerate(inboxes):
        params[f"inbox{k}"], types[f"inbox{k}"] = uuid.UUID(inbox["id"]), sa.Uuid
    for k, agent in enumerate(agents):
        params[f"agent{k}"], types[f"agent{k}"] = agent, sa.Uuid

    def run(statement: str, label: str) -> None:
        started = time.perf_counter()
        used = {name for name in params if re.search(rf":{name}\b", statement)}
        query = sa.text(statement).bindparams(
            *(sa.bindparam(name, type_=kind) for name, kind in types.items() if name in used)
        )
        with write(engine) as conn:
            conn.execute(query, {name: params[name] for name in used})
        log(f"    {label}: {time.perf_counter() - started:.1f}s")

    created = f"(n * {spread} / {count})"
    last = f"({created} + (n * 7919) % 86400)"
    agent_of = "CASE WHEN n % 9 = 0 THEN NULL ELSE (SELECT id FROM a WHERE a.k = n / 20 % {0}) END"
    agents_cte = "a(k, id) AS (VALUES " + ", ".join(
        f"({k}, :agent{k})" for k in range(AGENTS)
    ) + ")"  # fmt: skip
    inbox_cte = "i(k, id, channel) AS (VALUES " + ", ".join(
        f"({k}, :inbox{k}, '{inbox['channel']}')" for k, inbox in enumerate(inboxes)
    ) + ")"  # fmt: skip
    status = (
        "CASE WHEN n % 20 < 12 THEN 'resolved' WHEN n % 20 < 17 THEN 'open' "
        "WHEN n % 20 < 19 THEN 'pending' ELSE 'snoozed' END"
    )
    resolved = "n % 20 < 12"
    breached = sql.json(orjson.dumps(["resolution_due"]).decode())
    log(f"  generating {count:,} conversations…")
    run(
        f"{sql.recursive} {sql.series('s', count)} "
        "INSERT INTO profiles (id, root_id, created_at, first_seen, last_seen, name, search_name) "
        f"SELECT {sql.uid('b', 'n')}, {sql.uid('b', 'n')}, {sql.at(created)}, {sql.at(created)}, "
        f"{sql.at(last)}, 'Customer ' || {sql.text('n')}, 'customer ' || {sql.text('n')} FROM s",
        "profiles",
    )
    run(
        f"{sql.recursive} {sql.series('s', count)} "
        "INSERT INTO identities (kind, value, profile_id, first_seen) "
        f"SELECT 'phone', '+1555' || {sql.text('n')}, {sql.uid('b', 'n')}, {sql.at(created)} "
        "FROM s",
        "identities",
    )
    run(
        f"{sql.recursive} {sql.series('s', count)}, {agents_cte}, {inbox_cte} "
        "INSERT INTO conversations (id, number, profile_id, inbox_id, status, priority, "
        "assignee_id, team_id, subject, labels, token, snoozed_until, created_at, updated_at, "
        "last_message_at, waiting_since, first_response_at, resolved_at, next_response_due, "
        "resolution_due, first_response_seconds, first_response_business_seconds, "
        "resolution_seconds, resolution_business_seconds, sla_breaches, csat_score, "
        "csat_answered_at) "
        f"SELECT {sql.uid('c', 'n')}, n, {sql.uid('b', 'n')}, "
        "(SELECT id FROM i WHERE i.k = n % 3), "
        f"{status}, CASE WHEN n % 17 = 0 THEN 'high' ELSE 'normal' END, "
        f"{agent_of.format(AGENTS)}, :team, 'Order ' || {sql.text('n')}, "
        f"{sql.json('[]')}, 't' || {sql.text('n')}, "
        f"CASE WHEN n % 20 = 19 THEN {sql.at(str(spread + 3 * 86400))} END, "
        f"{sql.at(created)}, {sql.at(last)}, {sql.at(last)}, "
        f"CASE WHEN {resolved} THEN NULL ELSE {sql.at(last)} END, "
        f"{sql.at(created + ' + 300 + n % 600')}, "
        f"CASE WHEN {resolved} THEN {sql.at(last + ' + 3600')} END, "
        f"CASE WHEN {resolved} THEN NULL ELSE {sql.at(last + ' + 14400')} END, "
        f"CASE WHEN {resolved} THEN NULL ELSE {sql.at(created + ' + 86400')} END, "
        "300 + n % 600, 300 + n % 600, "
        f"CASE WHEN {resolved} THEN {last} - {created} + 3600 END, "
        f"CASE WHEN {resolved} THEN ({last} - {created} + 3600) / 3 END, "
        f"CASE WHEN n % 7 = 0 THEN {breached} ELSE {sql.json('[]')} END, "
        f"CASE WHEN {resolved} AND n % 3 = 0 THEN 1 + n % 5 END, "
        f"CASE WHEN {resolved} AND n % 3 = 0 THEN {sql.at(last + ' + 7200')} END "
        "FROM s",
        "conversations",
    )
    run(
        f"{sql.recursive} {sql.series('s', count)}, {inbox_cte}, "
        "m(k) AS (SELECT 0 UNION ALL SELECT 1 UNION ALL SELECT 2) "
        "INSERT INTO messages (id, conversation_id, inbox_id, direction, channel, contact, "
        "body, status, created_at, updated_at) "
        f"SELECT {sql.uid('e', '3 * n + m.k')}, {sql.uid('c', 'n')}, i.id, "
        "CASE WHEN m.k = 1 THEN 'out' ELSE 'in' END, i.channel, "
        f"'+1555' || {sql.text('n')}, "
        f"'Message ' || {sql.text('m.k')} || ' about order ' || {sql.text('n')} || "
        "': could you tell me where my parcel is? It was due yesterday and the tracking page "
        "has not changed since Monday.', "
        "CASE WHEN m.k = 1 THEN 'sent' ELSE 'received' END, "
        f"{sql.at(f'CASE m.k WHEN 0 THEN {created} WHEN 1 THEN {created} + 300 + n % 600 ELSE {last} + 1 END')}, "  # noqa: E501
        f"{sql.at(last)} "
        "FROM s CROSS JOIN m JOIN i ON i.k = s.n % 3",
        "messages",
    )
    with write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(conversations.c.id, conversations.c.last_message_at).where(
                conversations.c.id.in_([uuid_of("c", n) for n in range(499, count + 1, 499)])
            )
        ).all()
    dispose_engines()
    return {
        "token": token,
        "agent": str(agents[1]),
        "ids": [str(row.id) for row in rows],
        "cursors": [f"{isoformat(row.last_message_at)}|{row.id}" for row in rows],
    }


def uuid_of(prefix: str, number: int) -> uuid.UUID:
    return uuid.UUID(f"{prefix}{number:031x}")


@dataclass
class PageResult:
    database: str
    name: str
    path: str
    samples: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    kilobytes: float = 0.0
    target: bool = True
    skipped: str | None = None


def endpoints(prepared: dict[str, Any], rng: random.Random) -> list[tuple[str, Any, bool, bool]]:
    """(name, path or path maker, needs the web session, has a target)."""
    ids, cursors = prepared["ids"], prepared["cursors"]
    api = "/api/inbox/conversations"
    return [
        ("queue API: all", f"{api}?queue=all", False, True),
        ("queue API: mine (one agent)", f"{api}?queue=mine&assignee_id={prepared['agent']}",
         False, True),
        ("queue API: unassigned", f"{api}?queue=unassigned", False, True),
        ("queue API: SLA at risk", f"{api}?queue=at_risk", False, True),
        ("queue API: one channel", f"{api}?queue=all&channel=email", False, True),
        ("queue API: deep page (cursor)", lambda: f"{api}?queue=all&before={rng.choice(cursors)}",
         False, True),
        ("conversation API", lambda: f"{api}/{rng.choice(ids)}", False, True),
        ("reports API (30 days, by agent)", "/api/inbox/reports?by=agent", False, False),
        ("page /inbox", "/inbox", True, True),
        ("page /inbox/{id}", lambda: f"/inbox/{rng.choice(ids)}", True, True),
    ]  # fmt: skip


def sign_in(client: Any) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = client.post(
        "/login",
        data={"email": "admin@bench.example", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    if response.status_code != 303:
        raise RuntimeError(f"sign-in failed: {response.status_code}")


def time_endpoint(
    client: Any, database: str, name: str, path: Any, target: bool, args: argparse.Namespace
) -> PageResult:
    result = PageResult(database, name, path if isinstance(path, str) else path(), target=target)
    first = client.get(result.path)
    if first.status_code == 404 and name.startswith("page"):
        result.skipped = "not built yet (404)"
        return result
    if first.status_code != 200:
        raise RuntimeError(f"{result.path}: {first.status_code} {first.text[:300]}")
    samples = args.samples if target else min(args.samples, 10)
    for _ in range(args.warmup_hits if target else 1):
        client.get(path if isinstance(path, str) else path())
    latencies, sizes = [], []
    for _ in range(samples):
        began = time.perf_counter()
        response = client.get(path if isinstance(path, str) else path())
        latencies.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
        sizes.append(len(response.content))
    latencies.sort()
    result.samples = len(latencies)
    result.p50_ms = percentile(latencies, 0.50)
    result.p95_ms = percentile(latencies, 0.95)
    result.p99_ms = percentile(latencies, 0.99)
    result.max_ms = latencies[-1]
    result.kilobytes = sum(sizes) / len(sizes) / 1024
    return result


def run_pages(args: argparse.Namespace, database: str, log: Any) -> tuple[list[PageResult], dict]:
    import httpx

    home = Path(tempfile.mkdtemp(prefix=f"plait-bench-pages-{database}-"))
    pg_name = database_url = None
    server = None
    info: dict[str, Any] = {"database": database, "conversations": args.conversations}
    results: list[PageResult] = []
    try:
        if database == "postgresql":
            pg_name, database_url = create_pg_database(args.pg_admin_url)
        settings = settings_for(home, database_url)
        started = time.perf_counter()
        prepared = generate_conversations(settings, args.conversations, log)
        info["generate_seconds"] = time.perf_counter() - started
        if database == "sqlite":
            info["database_mb"] = sum(
                p.stat().st_size for p in home.glob("plait.db*")
            ) / 1e6  # fmt: skip
        port = free_port()
        log_path = home / "server.log"
        server = start_server(server_env(home, database_url, args.server_env), port, 1, log_path)
        wait_healthy(f"http://127.0.0.1:{port}", server, log_path, timeout=120)
        log(f"  server up on :{port} (pid {server.pid})")
        info["background_busy_percent"] = wait_for_quiet(args.quiet_wait, log)
        rng = random.Random(args.seed)
        headers = {"authorization": f"Bearer {prepared['token']}"}
        base = f"http://127.0.0.1:{port}"
        with (
            httpx.Client(base_url=base, headers=headers, timeout=60) as api,
            httpx.Client(base_url=base, timeout=60) as web,
        ):
            sign_in(web)
            for name, path, page, target in endpoints(prepared, rng):
                client = web if page else api
                result = time_endpoint(client, database, name, path, target, args)
                results.append(result)
                if result.skipped:
                    log(f"    {name}: skipped, {result.skipped}")
                else:
                    log(f"    {name}: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms")
    except Exception as exc:
        info["failure"] = f"{type(exc).__name__}: {exc}"
        if (home / "server.log").exists():
            tail = (home / "server.log").read_text(errors="replace")[-2000:]
            info["failure"] += f"\nserver log tail:\n{tail}"
    finally:
        if server is not None:
            stop_server(server)
        if pg_name is not None:
            with contextlib.suppress(Exception):
                drop_pg_database(args.pg_admin_url, pg_name)
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
    return results, info


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def print_inbound(console: Any, results: list[InboundResult]) -> None:
    from rich.table import Table

    table = Table(
        title=f"Inbound SMS through the Twilio webhook (target ≥ {TARGET_MESSAGES_PER_SECOND}/s)"
    )
    for column in ("database", "clients", "messages/s", "p50 ms", "p99 ms", "errors",
                   "stored = acked = routed", "conversations", "server CPU ms/msg",
                   "PG CPU ms/msg", "busy before %", "target"):  # fmt: skip
        table.add_column(column, justify="left" if column == "database" else "right")
    for r in results:
        if r.failure:
            table.add_row(r.database, str(r.clients), f"[red]failed: {r.failure[:80]}[/]")
            continue
        table.add_row(
            r.database,
            str(r.clients),
            f"{r.messages_per_second:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            str(r.errors),
            f"{'yes' if r.stored_once_and_routed else 'NO'} ({r.stored:,})",
            f"{r.conversations:,}",
            _fmt(r.server_cpu_ms_per_message),
            _fmt(r.postgres_cpu_ms_per_message),
            f"{r.background_busy_percent:.0f}",
            "met" if r.messages_per_second >= TARGET_MESSAGES_PER_SECOND else "[red]missed[/]",
        )
    console.print(table)


def print_pages(console: Any, results: list[PageResult], count: int) -> None:
    from rich.table import Table

    table = Table(
        title=f"Queue and conversation latency, {count:,} conversations (target p99 < 200 ms)"
    )
    for column in ("database", "endpoint", "p50 ms", "p95 ms", "p99 ms", "max ms", "KB", "target"):
        table.add_column(column, justify="left" if column in ("database", "endpoint") else "right")
    for r in results:
        if r.skipped:
            table.add_row(r.database, r.name, f"skipped: {r.skipped}")
            continue
        verdict = "-" if not r.target else "met" if r.p99_ms < TARGET_P99_MS else "[red]missed[/]"
        table.add_row(
            r.database, r.name, f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}", f"{r.p99_ms:.1f}",
            f"{r.max_ms:.1f}", f"{r.kilobytes:.1f}", verdict,
        )  # fmt: skip
    console.print(table)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("inbound", "pages", "both"), default="both")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--clients", default="16,64",
        help="concurrent webhook senders; a comma-separated list runs each (fresh server each)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=20.0, help="inbound measurement window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out of stats")
    parser.add_argument("--customers", type=int, default=5000, help="distinct senders")
    parser.add_argument(
        "--max-rate", type=float, default=3000, help="messages/s the signed bodies must last for"
    )
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300, help="timed requests per endpoint")
    parser.add_argument("--warmup-hits", type=int, default=20)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment for the server, e.g. PLAIT_SQLITE_SYNCHRONOUS=NORMAL",
    )  # fmt: skip
    parser.add_argument(
        "--quiet-wait", type=float, default=120.0,
        help="wait up to this many seconds for other processes to leave the CPU idle",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--keep-home", action="store_true", help="keep the data directories")
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "results" / "inbox.json")
    args = parser.parse_args(argv)
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    try:
        args.clients = [int(n) for n in args.clients.split(",") if n.strip()]
    except ValueError:
        parser.error("--clients is a comma-separated list of numbers")
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients needs at least one positive number")
    if set(args.databases) - {"sqlite", "postgresql"}:
        parser.error("--databases is a list of sqlite and postgresql")
    return args


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    inbound: list[InboundResult] = []
    pages: list[PageResult] = []
    generation: list[dict[str, Any]] = []
    for database in args.databases:
        for clients in args.clients if args.part in ("inbound", "both") else []:
            console.print(f"[bold]{database}[/]: inbound SMS, {clients} clients")
            result = run_inbound(args, database, clients, console.print)
            inbound.append(result)
            if result.failure:
                console.print(f"  [red]{result.failure}[/]")
            else:
                console.print(
                    f"  {result.messages_per_second:,.0f} messages/s, p99 {result.p99_ms:.1f} ms"
                )
        if args.part in ("pages", "both"):
            console.print(f"[bold]{database}[/]: {args.conversations:,} conversations")
            measured, info = run_pages(args, database, console.print)
            pages.extend(measured)
            generation.append(info)
            if "failure" in info:
                console.print(f"  [red]{info['failure']}[/]")
            else:
                console.print(
                    f"  generated in {info['generate_seconds']:.0f}s; machine "
                    f"{info['background_busy_percent']:.0f}% busy before the requests"
                )
    if inbound:
        print_inbound(console, inbound)
    if pages:
        print_pages(console, pages, args.conversations)
    report = {
        "benchmark": "inbox",
        "created_at": _iso(datetime.now(UTC)),
        "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
        "target": {
            "messages_per_second": TARGET_MESSAGES_PER_SECOND,
            "p99_ms": TARGET_P99_MS,
        },
        "machine": machine_info(args, args.databases),
        "inbound": [asdict(r) for r in inbound],
        "pages": [asdict(r) for r in pages],
        "generation": generation,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    console.print(f"results written to {args.json_out}")
    failed = any(r.failure for r in inbound) or any("failure" in g for g in generation)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
