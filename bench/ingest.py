"""Sustained ingestion throughput and latency of Plait's Segment-compatible ``POST /v1/batch``.

What it measures
    For each database (SQLite, PostgreSQL) a fresh Plait server is started with
    ``python -m plait serve`` in a throw-away data directory (and, for PostgreSQL, a throw-away
    database). A *separate* load-generator process (multiprocessing, spawn) opens
    ``--connections`` HTTP/1.1 keep-alive connections on loopback (plain asyncio streams, see
    :func:`exchange`); each connection sends ``/v1/batch`` requests of ``--batch-size``
    analytics.js-shaped events back to back (a closed loop: the next request leaves when the
    previous answer arrives). Request bodies are generated and serialised with orjson before
    the clock starts, so the generator's CPU goes to sending. Requests completed during the
    first ``--warmup`` seconds are left out of the statistics; the following ``--seconds``
    seconds are the measurement window.

    Reported per run: events/s and requests/s (acknowledged events and requests completed in
    the window, divided by its length), p50/p95/p99/max request latency (time.perf_counter
    around each request), errors (non-200 answers, transport errors, ``accepted`` != batch
    size), whether the number of rows in ``events`` equals the number of events the server
    acknowledged over the whole run (warm-up and tail included), and where the CPU went: CPU
    milliseconds per 1,000 events of the server (all its processes), of PostgreSQL (the run's
    backends and the shared auxiliary processes) and of the generator, and how busy the whole
    machine was, with the share used by other processes in brackets.

    Note the machine: the server, the database and the generator share its cores, so the
    generator's CPU lowers the server's throughput (it is reported to make that visible), and
    so does anything else running. Before each run the script waits (``--quiet-wait``) for
    other processes to leave the CPU idle; a run where they did not is flagged.

How to run
    python bench/ingest.py                                   # both databases, 20 s each
    python bench/ingest.py --databases sqlite --seconds 15 --workers 2
    python bench/ingest.py --server-env PLAIT_SQLITE_SYNCHRONOUS=NORMAL   # an experiment

    PostgreSQL: ``--pg-admin-url`` (default ``$PLAIT_BENCH_PG_URL`` or
    postgresql+psycopg://postgres@127.0.0.1:5432/postgres) must be allowed to
    ``CREATE DATABASE``; a database named ``plait_bench_<random>`` is created and dropped.
    Results are printed as a table and written as JSON to ``--json-out``
    (bench/results/ingest.json by default; bench/results/ is git-ignored).
    Target on a 2-core machine: >= 10,000 events/s on each database with p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_ADMIN_URL = os.environ.get(
    "PLAIT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TARGET_EVENTS_PER_SECOND = 10_000
TARGET_P99_MS = 100.0

# --------------------------------------------------------------------------------------------
# Realistic analytics.js traffic
# --------------------------------------------------------------------------------------------

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
)
SITE = "https://www.brewhaus.example"
PAGES = (
    ("/", "Brewhaus — Specialty Coffee Gear"),
    ("/products/conical-burr-grinder", "Conical Burr Grinder | Brewhaus"),
    ("/products/gooseneck-kettle", "Gooseneck Kettle | Brewhaus"),
    ("/collections/espresso", "Espresso Machines | Brewhaus"),
    ("/blog/how-to-dial-in-espresso", "How to Dial In Espresso | Brewhaus Blog"),
    ("/cart", "Your Cart | Brewhaus"),
    ("/checkout", "Checkout | Brewhaus"),
    ("/account/orders", "Your Orders | Brewhaus"),
)
REFERRERS = (
    "",
    "",
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://www.facebook.com/",
    "https://t.co/",
    "https://news.ycombinator.com/",
    "https://www.reddit.com/r/Coffee/",
)
CAMPAIGNS = (
    {"source": "google", "medium": "cpc", "name": "spring_sale", "term": "burr grinder"},
    {"source": "newsletter", "medium": "email", "name": "weekly_2024_47", "content": "hero"},
    {"source": "facebook", "medium": "paid_social", "name": "retargeting_q2"},
    {"source": "partner-blog", "medium": "affiliate", "name": "gear_guide"},
)
PRODUCTS = (
    ("SKU-GR-001", "Conical Burr Grinder", "Grinders", 189.0),
    ("SKU-KT-014", "Gooseneck Kettle", "Kettles", 79.5),
    ("SKU-ES-200", "Dual Boiler Espresso Machine", "Espresso", 1499.0),
    ("SKU-BN-042", "Ethiopia Yirgacheffe 250g", "Beans", 16.9),
)
LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "nl-NL")
LIBRARY = {"name": "analytics.js", "version": "next-1.70.0"}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TrafficMaker:
    """Builds analytics.js-shaped messages for a pool of visitors (deterministic per seed)."""

    def __init__(self, seed: int, visitors: int = 20_000) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.visitors = [
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                f"user_{rng.randrange(10**8):08d}" if rng.random() < 0.35 else None,
                f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                rng.choice(USER_AGENTS),
                rng.choice(LOCALES),
            )
            for _ in range(visitors)
        ]

    def message(self, now: datetime) -> dict[str, Any]:
        rng = self.rng
        anonymous_id, user_id, ip, user_agent, locale = rng.choice(self.visitors)
        path, title = rng.choice(PAGES)
        campaign = rng.choice(CAMPAIGNS) if rng.random() < 0.3 else None
        url = SITE + path
        search = ""
        if campaign is not None:
            search = (
                f"?utm_source={campaign['source']}&utm_medium={campaign['medium']}"
                f"&utm_campaign={campaign['name']}"
            )
            url += search
        referrer = rng.choice(REFERRERS)
        context: dict[str, Any] = {
            "library": LIBRARY,
            "userAgent": user_agent,
            "locale": locale,
            "ip": ip,
            "page": {
                "path": path,
                "referrer": referrer,
                "search": search,
                "title": title,
                "url": url,
            },
            "screen": {"width": 1440, "height": 900},
        }
        if campaign is not None:
            context["campaign"] = campaign
        sent = now - timedelta(milliseconds=rng.randrange(5, 900))
        message: dict[str, Any] = {
            "messageId": str(uuid.uuid4()),
            "anonymousId": anonymous_id,
            "timestamp": _iso(sent),
            "context": context,
        }
        if user_id is not None:
            message["userId"] = user_id
        roll = rng.random()
        if roll < 0.5:
            message["type"] = "page"
            message["name"] = title.split(" | ")[0]
            message["properties"] = {
                "path": path,
                "referrer": referrer,
                "title": title,
                "url": url,
                "search": search,
            }
        elif roll < 0.9:
            sku, name, category, price = rng.choice(PRODUCTS)
            event = rng.choice(
                ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")
            )
            properties: dict[str, Any] = {
                "product_id": sku,
                "name": name,
                "category": category,
                "price": price,
                "currency": "EUR",
                "quantity": rng.randint(1, 3),
            }
            if event == "Order Completed":
                properties["order_id"] = f"ORD-{rng.randrange(10**7):07d}"
                properties["revenue"] = round(price * properties["quantity"], 2)
            message["type"] = "track"
            message["event"] = event
            message["properties"] = properties
        else:
            message["type"] = "identify"
            message["userId"] = user_id or f"user_{rng.randrange(10**8):08d}"
            message["traits"] = {
                "email": f"{message['userId']}@mail.example",
                "first_name": rng.choice(("Ana", "Ben", "Chloé", "Dev", "Emeka", "Fatima")),
                "plan": rng.choice(("free", "member", "pro")),
                "newsletter": rng.random() < 0.5,
            }
        return message

    def body(self, batch_size: int) -> bytes:
        now = datetime.now(UTC)
        batch = [self.message(now) for _ in range(batch_size)]
        return orjson.dumps({"batch": batch, "sentAt": _iso(now)})


# --------------------------------------------------------------------------------------------
# Load generator (runs in its own process)
# --------------------------------------------------------------------------------------------


@dataclass
class LoadPlan:
    url: str
    connections: int
    batch_size: int
    warmup: float
    seconds: float
    bodies: int
    seed: int
    rate: float = 0.0


def generator_main(plan: LoadPlan, pipe: Any) -> None:
    """Entry point of the generator process: build bodies, report ready, run on 'go'."""
    try:
        started = time.perf_counter()
        maker = TrafficMaker(plan.seed)
        bodies = [maker.body(plan.batch_size) for _ in range(plan.bodies)]
        sizes = [len(b) for b in bodies[: min(len(bodies), 50)]]
        pipe.send(
            {
                "ready": True,
                "build_seconds": time.perf_counter() - started,
                "mean_body_bytes": sum(sizes) / len(sizes),
            }
        )
        command = pipe.recv()
        if command.get("stop"):
            return
        runner = _run_load
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
            result = _asyncio_run(runner(plan, bodies, maker, command))
        else:
            result = uvloop.run(runner(plan, bodies, maker, command))
        pipe.send(result)
    except BaseException as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})
        raise


def _asyncio_run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


async def exchange(reader: Any, writer: Any, request: bytes) -> tuple[int, bytes]:
    """Send one pre-built HTTP/1.1 request on a keep-alive connection (asyncio streams) and
    read the answer: status and body. A general-purpose client (httpx) spent 9-13 ms of CPU
    per 1,000 events here, taken from the cores the server and its database share."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = _CONTENT_LENGTH.search(head)
    return status, await reader.readexactly(int(length.group(1)) if length else 0)


_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
TRANSPORT_ERRORS = (OSError, EOFError, ValueError, TimeoutError)
"""What a broken or misbehaving connection raises in :func:`exchange` (``EOFError``: the
stream ended mid-answer)."""


async def _run_load(
    plan: LoadPlan, bodies: list[bytes], maker: TrafficMaker, command: dict[str, Any]
) -> dict[str, Any]:
    import asyncio

    address = urlsplit(plan.url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    auth = base64.b64encode(f"{command['write_key']}:".encode()).decode()
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n"
    )
    start_at: float = command["start_at"]
    window_start = start_at + plan.warmup
    end_at = window_start + plan.seconds
    next_body = 0
    built_during_run = 0
    # One row per finished request: (started, finished, status, accepted, error)
    records: list[tuple[float, float, int, int, str | None]] = []
    idle: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()

    def take_body() -> bytes:
        nonlocal next_body, built_during_run
        if next_body < len(bodies):
            body = bodies[next_body]
            bodies[next_body] = b""  # let memory go as we go
            next_body += 1
            return body
        built_during_run += 1
        return maker.body(plan.batch_size)

    async def connect() -> tuple[Any, Any]:
        """A new keep-alive connection, checked with a health request."""
        stream = await asyncio.open_connection(host, port)
        health = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        status, _ = await exchange(*stream, health)
        if status != 200:
            raise OSError(f"/health answered {status}")
        return stream

    async def connection() -> None:
        while time.perf_counter() < end_at:
            await send(take_body(), time.perf_counter())

    async def paced() -> None:
        """Open loop: request k is due at start + k·interval, whether or not earlier ones
        have finished; latency counts from when it was due (no coordinated omission)."""
        interval = plan.batch_size / plan.rate
        in_flight = []
        due = start_at
        while due < end_at:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            in_flight.append(asyncio.create_task(send(take_body(), due)))
            due += interval
        await asyncio.gather(*in_flight)

    async def send(body: bytes, began: float) -> None:
        """Post on an idle connection (waiting for one, as a pool does); a connection that
        fails is replaced."""
        status, accepted, error = 0, 0, None
        stream = await idle.get()
        try:
            async with asyncio.timeout(60):
                request = head.format(len(body)).encode() + body
                status, answer = await exchange(*stream, request)
            if status == 200:
                accepted = int(orjson.loads(answer).get("accepted", 0))
                if accepted != plan.batch_size:
                    error = f"accepted {accepted} of {plan.batch_size}"
            else:
                error = f"HTTP {status}: {answer[:200].decode(errors='replace')}"
        except TRANSPORT_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
            stream[1].close()
            with contextlib.suppress(*TRANSPORT_ERRORS):
                stream = await connect()
        records.append((began, time.perf_counter(), status, accepted, error))
        idle.put_nowait(stream)

    cpu: dict[str, float] = {}

    async def cpu_sampler() -> None:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        cpu["window_start"] = time.process_time()
        await asyncio.sleep(max(0.0, end_at - time.perf_counter()))
        cpu["window_end"] = time.process_time()

    # Every connection is open before the clock starts.
    for stream in await asyncio.gather(*(connect() for _ in range(plan.connections))):
        idle.put_nowait(stream)
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    sampler = asyncio.create_task(cpu_sampler())
    if plan.rate > 0:
        await paced()
    else:
        await asyncio.gather(*(connection() for _ in range(plan.connections)))
    await sampler
    while not idle.empty():
        idle.get_nowait()[1].close()
    return {
        "records": records,
        "window_start": window_start,
        "window_end": end_at,
        "bodies_prebuilt": len(bodies),
        "bodies_built_during_run": built_during_run,
        "generator_cpu_seconds": cpu.get("window_end", 0.0) - cpu.get("window_start", 0.0),
    }


# --------------------------------------------------------------------------------------------
# Server management
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path, database_url: str | None, extra: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env["PLAIT_HOME"] = str(home)
    env["PLAIT_LAKE"] = str(home / "lake")
    env["PLAIT_CONFIG"] = str(home / "plait.toml")  # absent: built-in defaults only
    if database_url:
        env["PLAIT_DATABASE_URL"] = database_url
    for item in extra:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def create_source(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "plait", "sources", "create", "Bench", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"plait sources create failed: {done.stderr.strip()}")
    return str(orjson.loads(done.stdout)["write_key"])


def start_server(
    env: dict[str, str], port: int, workers: int, log_path: Path
) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plait",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_healthy(url: str, server: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server was not healthy in {timeout:.0f}s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)
    # uvicorn's worker processes share the server's session (start_new_session); make sure
    # none outlives it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.pid, signal.SIGKILL)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def upkeep_processes(pids: Iterable[int]) -> list[int]:
    """The server's upkeep process among ``pids``: it names itself (``/proc/<pid>/comm``)."""
    from plait.upkeep import UPKEEP_PROCESS_NAME

    found = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name == UPKEEP_PROCESS_NAME:
            found.append(pid)
    return found


def postgres_processes(database: str) -> list[int]:
    """PostgreSQL processes working for ``database``: its backends (and autovacuum workers),
    plus the shared auxiliaries (WAL writer, checkpointer...), found by process title."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not title.startswith("postgres:"):
            continue
        words = title.split()
        client = "(" in title or "[local]" in title
        auxiliary = not client and not any(w.startswith("plait_") for w in words)
        if database in words or auxiliary:
            found.append(int(entry.name))
    return found


def machine_cpu() -> tuple[float, float, float]:
    """Busy, iowait and total jiffies of the whole machine so far (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    total = sum(fields[:8])
    return total - idle - iowait, iowait, total


def wait_for_quiet(limit: float, log: Any, threshold: float = 15.0) -> float:
    """Wait (at most ``limit`` s) until other processes leave the CPU mostly idle, sampling
    once a second; returns the last sample's busy percentage (the machine may be shared)."""
    deadline = time.monotonic() + limit
    warned = False
    while True:
        before = machine_cpu()
        time.sleep(1.0)
        busy, _iowait, total = (a - b for a, b in zip(machine_cpu(), before, strict=True))
        percent = 100 * busy / total if total else 0.0
        if percent < threshold or time.monotonic() >= deadline:
            return percent
        if not warned:
            log(f"  machine {percent:.0f}% busy before the run; waiting for it to settle…")
            warned = True


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds used so far by each of ``pids`` (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return used


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two snapshots (a process new in ``after`` counts from zero)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


# --------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------


def pg_admin_engine(admin_url: str) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def postgres_backends_of(admin_url: str, database: str, application: str) -> list[int]:
    """Process ids of ``database``'s backends serving connections named ``application``."""
    import sqlalchemy as sa

    engine = pg_admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = :database AND application_name = :application"
                    ),
                    {"database": database, "application": application},
                ).scalars()
            )
    finally:
        engine.dispose()


def create_pg_database(admin_url: str) -> tuple[str, str]:
    import sqlalchemy as sa

    name = f"plait_bench_{uuid.uuid4().hex[:10]}"
    engine = pg_admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    url = sa.make_url(admin_url).set(database=name)
    return name, url.render_as_string(hide_password=False)


def drop_pg_database(admin_url: str, name: str) -> None:
    import sqlalchemy as sa

    engine = pg_admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def stored_events(home: Path, database_url: str | None) -> tuple[int, int]:
    """Events stored, and how many of them identity resolution had not reached."""
    import sqlalchemy as sa

    from plait.collect.event_store import events
    from plait.core.db import create_engine
    from plait.core.settings import Settings
    from plait.identity.graph import identity_progress

    settings = Settings(home=home, database_url=database_url or "")
    engine = create_engine(settings)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
            resolved = conn.execute(sa.select(identity_progress.c.resolved_seq)).scalar() or 0
            unresolved = conn.execute(
                sa.select(sa.func.count()).select_from(events).where(events.c.seq > resolved)
            ).scalar_one()
            return int(stored), int(unresolved)
    finally:
        engine.dispose()


def wait_resolved(
    home: Path, database_url: str | None, load_ended: float, limit: float = 180.0
) -> float | None:
    """Seconds from the end of the load until identity resolution had every stored event
    (None if it had not within ``limit``): the server resolves behind a burst. Each poll is
    two index reads (the resolver's mark, the newest ``seq``), so polling does not load the
    database whose catch-up it times."""
    import sqlalchemy as sa

    from plait.collect.event_store import newest_seq
    from plait.core.db import create_engine
    from plait.core.settings import Settings
    from plait.identity.graph import identity_progress

    engine = create_engine(Settings(home=home, database_url=database_url or ""))
    try:
        while time.perf_counter() - load_ended < limit:
            with engine.connect() as conn:
                resolved = conn.execute(sa.select(identity_progress.c.resolved_seq)).scalar()
                if (resolved or 0) >= newest_seq(conn):
                    return max(0.0, time.perf_counter() - load_ended)
            time.sleep(0.5)
        return None
    finally:
        engine.dispose()


def postgres_version(admin_url: str) -> str | None:
    import sqlalchemy as sa

    try:
        engine = pg_admin_engine(admin_url)
        try:
            with engine.connect() as conn:
                return str(conn.execute(sa.text("SHOW server_version")).scalar_one())
        finally:
            engine.dispose()
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})"


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    database: str
    workers: int
    connections: int
    batch_size: int
    seconds: float
    warmup: float
    offered_rate: float = 0.0
    events_per_second: float = 0.0
    requests_per_second: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0
    window_requests: int = 0
    window_events: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    total_requests: int = 0
    acked_events: int = 0
    stored_events: int | None = None
    unresolved_events: int | None = None
    resolved_after_load_seconds: float | None = None
    stored_equals_acked: bool | None = None
    server_cpu_seconds: float = 0.0
    server_cpu_ms_per_1000_events: float | None = None
    upkeep_cpu_seconds: float = 0.0
    upkeep_cpu_ms_per_1000_events: float | None = None
    postgres_cpu_seconds: float | None = None
    postgres_cpu_ms_per_1000_events: float | None = None
    postgres_upkeep_cpu_seconds: float | None = None
    postgres_upkeep_cpu_ms_per_1000_events: float | None = None
    generator_cpu_seconds: float = 0.0
    generator_cpu_ms_per_1000_events: float | None = None
    machine_busy_percent: float = 0.0
    machine_iowait_percent: float = 0.0
    other_processes_busy_percent: float = 0.0
    background_busy_percent: float = 0.0
    events_per_second_timeline: list[int] = field(default_factory=list)
    mean_body_bytes: float = 0.0
    mean_event_bytes: float = 0.0
    body_build_seconds: float = 0.0
    bodies_built_during_run: int = 0
    server_env: list[str] = field(default_factory=list)
    failure: str | None = None


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarise(result: RunResult, load: dict[str, Any]) -> None:
    records = load["records"]
    start, end = load["window_start"], load["window_end"]
    window = [r for r in records if start <= r[1] <= end]
    latencies = sorted((r[1] - r[0]) * 1000 for r in window)
    ok_events = sum(r[3] for r in window if r[2] == 200)
    ok_requests = sum(1 for r in window if r[2] == 200 and r[4] is None)
    duration = end - start
    result.window_requests = len(window)
    result.window_events = ok_events
    result.events_per_second = ok_events / duration
    result.requests_per_second = ok_requests / duration
    result.p50_ms = percentile(latencies, 0.50)
    result.p95_ms = percentile(latencies, 0.95)
    result.p99_ms = percentile(latencies, 0.99)
    result.max_ms = latencies[-1] if latencies else 0.0
    result.mean_ms = sum(latencies) / len(latencies) if latencies else 0.0
    buckets = [0] * max(1, int(duration + 0.999))
    for r in window:
        if r[2] == 200:
            buckets[min(len(buckets) - 1, int(r[1] - start))] += r[3]
    result.events_per_second_timeline = buckets
    kinds = Counter(r[4].split(":")[0] if r[4] else "" for r in records if r[4])
    result.errors = sum(kinds.values())
    result.error_kinds = dict(kinds)
    result.total_requests = len(records)
    result.acked_events = sum(r[3] for r in records if r[2] == 200)
    result.generator_cpu_seconds = load["generator_cpu_seconds"]
    result.bodies_built_during_run = load["bodies_built_during_run"]
    if ok_events:
        result.generator_cpu_ms_per_1000_events = 1e6 * result.generator_cpu_seconds / ok_events
        result.server_cpu_ms_per_1000_events = 1e6 * result.server_cpu_seconds / ok_events
        result.upkeep_cpu_ms_per_1000_events = 1e6 * result.upkeep_cpu_seconds / ok_events
        if result.postgres_cpu_seconds is not None:
            result.postgres_cpu_ms_per_1000_events = 1e6 * result.postgres_cpu_seconds / ok_events
            result.postgres_upkeep_cpu_ms_per_1000_events = (
                1e6 * (result.postgres_upkeep_cpu_seconds or 0.0) / ok_events
            )


def run_once(
    args: argparse.Namespace, database: str, workers: int, connections: int, log: Any
) -> RunResult:
    result = RunResult(
        database=database,
        workers=workers,
        connections=connections,
        batch_size=args.batch_size,
        seconds=args.seconds,
        warmup=args.warmup,
        offered_rate=args.rate,
        server_env=list(args.server_env),
    )
    home = Path(tempfile.mkdtemp(prefix=f"plait-bench-{database}-"))
    pg_name: str | None = None
    database_url: str | None = None
    server: subprocess.Popen[bytes] | None = None
    generator: Any = None
    parent_pipe: Any = None
    try:
        if database == "postgresql":
            pg_name, database_url = create_pg_database(args.pg_admin_url)
        env = server_env(home, database_url, args.server_env)

        # Bodies are built in the generator process while the server starts.
        rate_ceiling = max(args.max_rate, args.rate)
        bodies = int(rate_ceiling * (args.warmup + args.seconds) / args.batch_size) + 1
        plan = LoadPlan(
            url="",
            connections=connections,
            batch_size=args.batch_size,
            warmup=args.warmup,
            seconds=args.seconds,
            bodies=bodies,
            seed=args.seed,
            rate=args.rate,
        )
        port = free_port()
        plan.url = f"http://127.0.0.1:{port}"
        ctx = mp.get_context("spawn")
        parent_pipe, child_pipe = ctx.Pipe()
        generator = ctx.Process(target=generator_main, args=(plan, child_pipe), daemon=True)
        generator.start()

        write_key = create_source(env)
        log_path = home / "server.log"
        server = start_server(env, port, workers, log_path)
        wait_healthy(plan.url, server, log_path, timeout=120)
        log(f"  server up on :{port} (pid {server.pid}, {workers} worker(s)); building bodies…")

        ready = parent_pipe.recv()
        if "error" in ready:
            raise RuntimeError(f"generator failed: {ready['error']}")
        result.mean_body_bytes = ready["mean_body_bytes"]
        result.mean_event_bytes = ready["mean_body_bytes"] / args.batch_size
        result.body_build_seconds = ready["build_seconds"]
        log(
            f"  {bodies} bodies ready ({ready['build_seconds']:.1f}s, "
            f"~{result.mean_event_bytes:.0f} B/event); running "
            f"{args.warmup:g}s warm-up + {args.seconds:g}s…"
        )

        result.background_busy_percent = wait_for_quiet(args.quiet_wait, log)
        start_at = time.perf_counter() + 0.5
        parent_pipe.send({"write_key": write_key, "start_at": start_at})
        # Server CPU over the measurement window (both processes use CLOCK_MONOTONIC).
        time.sleep(max(0.0, start_at + args.warmup - time.perf_counter()))
        server_before = cpu_seconds(process_tree(server.pid))
        db_before = cpu_seconds(postgres_processes(pg_name)) if pg_name else {}
        machine_before = machine_cpu()
        time.sleep(max(0.0, start_at + args.warmup + args.seconds - time.perf_counter()))
        server_after = cpu_seconds([*server_before, *process_tree(server.pid)])
        result.server_cpu_seconds = cpu_used(server_before, server_after)
        upkeep = upkeep_processes(server_after)
        result.upkeep_cpu_seconds = cpu_used(
            {pid: server_before.get(pid, 0.0) for pid in upkeep},
            {pid: server_after[pid] for pid in upkeep},
        )
        if pg_name:
            db_after = cpu_seconds([*db_before, *postgres_processes(pg_name)])
            result.postgres_cpu_seconds = cpu_used(db_before, db_after)
            from plait.upkeep import UPKEEP_PROCESS_NAME  # its connections' application_name

            upkeep_backends = postgres_backends_of(args.pg_admin_url, pg_name, UPKEEP_PROCESS_NAME)
            result.postgres_upkeep_cpu_seconds = cpu_used(
                {pid: db_before.get(pid, 0.0) for pid in upkeep_backends if pid in db_after},
                {pid: db_after[pid] for pid in upkeep_backends if pid in db_after},
            )
        busy, iowait, total = (a - b for a, b in zip(machine_cpu(), machine_before, strict=True))
        result.machine_busy_percent = 100 * busy / total if total else 0.0
        result.machine_iowait_percent = 100 * iowait / total if total else 0.0
        machine_busy_seconds = busy / os.sysconf("SC_CLK_TCK")

        if not parent_pipe.poll(args.seconds + args.warmup + 120):
            raise RuntimeError("the generator did not report back")
        load = parent_pipe.recv()
        if "error" in load:
            raise RuntimeError(f"generator failed: {load['error']}")
        generator.join(timeout=30)
        summarise(result, load)
        load_ended = start_at + args.warmup + args.seconds
        result.resolved_after_load_seconds = wait_resolved(home, database_url, load_ended)
        ours = (
            result.server_cpu_seconds
            + (result.postgres_cpu_seconds or 0.0)
            + result.generator_cpu_seconds
        )
        capacity = args.seconds * (os.cpu_count() or 1)
        result.other_processes_busy_percent = max(
            0.0, 100 * (machine_busy_seconds - ours) / capacity
        )

        stop_server(server)
        result.stored_events, result.unresolved_events = stored_events(home, database_url)
        result.stored_equals_acked = result.stored_events == result.acked_events
    except Exception as exc:
        result.failure = f"{type(exc).__name__}: {exc}"
        if server is not None and (home / "server.log").exists():
            tail = (home / "server.log").read_text(errors="replace")[-2000:]
            result.failure += f"\nserver log tail:\n{tail}"
    finally:
        if server is not None:
            stop_server(server)
        if generator is not None and generator.is_alive():
            with contextlib.suppress(Exception):
                parent_pipe.send({"stop": True})
            generator.join(timeout=5)
            if generator.is_alive():
                generator.terminate()
                generator.join(timeout=5)
        if pg_name is not None:
            try:
                drop_pg_database(args.pg_admin_url, pg_name)
            except Exception as exc:
                log(f"  [red]could not drop database {pg_name}: {exc}[/]")
        if args.keep_home:
            log(f"  data kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return result


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def machine_info(args: argparse.Namespace, databases: list[str]) -> dict[str, Any]:
    from importlib.metadata import version

    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    packages = {}
    for name in ("plait", "uvicorn", "fastapi", "sqlalchemy", "psycopg", "httpx", "orjson"):
        with contextlib.suppress(Exception):
            packages[name] = version(name)
    git = {}
    with contextlib.suppress(Exception):
        for key, command in (
            ("commit", ["git", "rev-parse", "HEAD"]),
            ("uncommitted", ["git", "status", "--porcelain", "--", "src"]),
        ):
            git[key] = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
    return {
        "git": git,
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": postgres_version(args.pg_admin_url) if "postgresql" in databases else None,
        "packages": packages,
    }


def print_table(console: Any, results: list[RunResult]) -> None:
    from rich.table import Table

    table = Table(title="Plait POST /v1/batch ingestion", header_style="bold")
    for column in (
        "database",
        "workers",
        "conns",
        "offered ev/s",
        "events/s",
        "requests/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "stored==acked",
        "CPU ms/1k srv(upk)/pg(upk)/gen",
        "machine busy (others)",
    ):
        table.add_column(
            column,
            justify="left" if column == "database" else "right",
            no_wrap=column.startswith("CPU"),
        )
    for r in results:
        if r.failure:
            table.add_row(r.database, str(r.workers), str(r.connections), "", "[red]failed[/]")
            continue
        fast = r.events_per_second >= TARGET_EVENTS_PER_SECOND
        quick = r.p99_ms < TARGET_P99_MS
        stored = (
            "n/a"
            if r.stored_equals_acked is None
            else (
                "[green]yes[/]"
                if r.stored_equals_acked
                else f"[red]no ({r.stored_events} vs {r.acked_events})[/]"
            )
        )
        table.add_row(
            r.database,
            str(r.workers),
            str(r.connections),
            f"{r.offered_rate:,.0f}" if r.offered_rate else "max",
            f"[{'green' if fast else 'red'}]{r.events_per_second:,.0f}[/]",
            f"{r.requests_per_second:,.1f}",
            f"{r.p50_ms:.1f}",
            f"{r.p95_ms:.1f}",
            f"[{'green' if quick else 'red'}]{r.p99_ms:.1f}[/]",
            f"{r.max_ms:.1f}",
            f"[{'red' if r.errors else 'green'}]{r.errors}[/]",
            stored,
            f"{_fmt(r.server_cpu_ms_per_1000_events)}"
            f"({_fmt(r.upkeep_cpu_ms_per_1000_events)})/"
            f"{_fmt(r.postgres_cpu_ms_per_1000_events)}"
            + (
                f"({_fmt(r.postgres_upkeep_cpu_ms_per_1000_events)})"
                if r.postgres_upkeep_cpu_ms_per_1000_events is not None
                else ""
            )
            + f"/{_fmt(r.generator_cpu_ms_per_1000_events)}",
            f"{r.machine_busy_percent:.0f}% ({r.other_processes_busy_percent:.0f}%)",
        )
    console.print(table)
    console.print(
        f"target: >= {TARGET_EVENTS_PER_SECOND:,} events/s and p99 < {TARGET_P99_MS:.0f} ms "
        "per database"
    )
    if any(r.other_processes_busy_percent > 10 for r in results):
        console.print(
            "[yellow]other processes used a noticeable share of the CPU during some runs "
            "(figure in brackets): those results understate Plait[/]"
        )
    for r in results:
        if r.failure:
            console.print(f"[red]{r.database} (workers={r.workers}) failed:[/] {r.failure}")
        elif r.error_kinds:
            console.print(f"{r.database} (workers={r.workers}) errors: {r.error_kinds}")
        if r.bodies_built_during_run:
            console.print(
                f"[yellow]{r.database}: {r.bodies_built_during_run} bodies were built during "
                "the run (raise --max-rate)[/]"
            )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Sustained POST /v1/batch throughput and latency on SQLite and PostgreSQL."
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument(
        "--connections", default="8", help="concurrent connections; a comma list runs each"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered load in events/s, sent on a fixed schedule (open loop); latency then "
        "counts from when each request was due. 0: each connection sends back to back",
    )
    parser.add_argument(
        "--workers", default="1", help="server worker processes; a comma list runs each"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out of stats")
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument(
        "--max-rate",
        type=float,
        default=20_000,
        help="events/s the pre-built bodies must last for (more are built on the fly)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the server, e.g. PLAIT_SQLITE_SYNCHRONOUS=NORMAL",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="wait up to this many seconds for other processes to leave the CPU idle",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--keep-home", action="store_true", help="keep the data directories")
    args = parser.parse_args(argv)
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = set(args.databases) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")
    args.workers = [int(w) for w in str(args.workers).split(",")]
    args.connections = [int(c) for c in str(args.connections).split(",")]
    for item in args.server_env:
        if "=" not in item:
            parser.error(f"--server-env wants KEY=VALUE, not {item!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    results: list[RunResult] = []
    for workers in args.workers:
        for connections in args.connections:
            for database in args.databases:
                console.print(
                    f"[bold]{database}[/], {workers} worker(s), {connections} connections, "
                    f"batches of {args.batch_size}"
                )
                result = run_once(args, database, workers, connections, console.print)
                results.append(result)
                if not result.failure:
                    caught_up = result.resolved_after_load_seconds
                    console.print(
                        f"  {result.events_per_second:,.0f} events/s, "
                        f"p99 {result.p99_ms:.1f} ms, errors {result.errors}; identity "
                        + (
                            f"resolution had every event {caught_up:.1f} s after the load ended"
                            if caught_up is not None
                            else "resolution had not caught up 180 s after the load ended"
                        )
                    )
    print_table(console, results)
    report = {
        "benchmark": "ingest",
        "created_at": _iso(datetime.now(UTC)),
        "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
        "target": {"events_per_second": TARGET_EVENTS_PER_SECOND, "p99_ms": TARGET_P99_MS},
        "machine": machine_info(args, args.databases),
        "results": [asdict(r) for r in results],
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    console.print(f"results written to {args.json_out}")
    return 1 if any(r.failure for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
