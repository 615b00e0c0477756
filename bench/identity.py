"""Identity resolution throughput and customer-360 / timeline read latency.

What it measures
    1. Resolution throughput. A synthetic population of ``--persons`` people (default:
       ``--events`` / 10) browses a shop on 1 to 3 devices each (50% / 35% / 15%). Every
       device first browses anonymously (page and track calls under its own anonymousId).
       70% of people then identify on their first device (userId + email, name, a phone for
       35% of them, in ``traits``) and keep browsing logged in; on a second device they click
       a newsletter link (a track carrying ``context.traits.email``, still anonymous); on a
       third device they click an SMS link (``context.traits.phone``) or log in (identify
       with userId). 2% of identified people use a device another person already identified
       on (a shared family computer), which the default limit of one user_id per customer
       refuses. So each identified person should end as exactly one customer, and each
       device of a never-identified person as one (nothing links those devices); the script
       reports that expected number next to the customers it found.

       ``--events`` events (default 1,000,000) are generated in timestamp order, turned into
       ``events`` rows by the ingestion code itself (``plait.collect.messages.normalize``,
       with the settings' rules, so anchors ``identity_kind``/``identity_value`` and
       ``suppression_keys`` are exactly what the API would store) and written with the event
       store's ``store()`` in transactions of ``--load-batch`` rows: no HTTP, but the same
       rows, indexes and de-duplication table. Then ``plait.profiles.pipeline.resolve(engine,
       settings)`` — resolver plus trait folding, what ``plait serve`` runs — is run alone,
       in a fresh process, on the whole backlog and timed: events/s into the graph, profiles,
       identifiers, merges and refusals it reports, customers (root profiles) afterwards,
       wall time, CPU seconds of the resolver process and of PostgreSQL, and the resolver
       process's peak RSS.

    2. Read latency. Then ``--samples`` random customers (root profiles, uniformly) are read
       back the way ``GET /v1/profiles/{id}`` and ``GET /v1/profiles/{id}/timeline`` do it —
       ``read(engine)`` transaction, ``root_of`` (``require_customer``), then ``profile_360``
       or the first page of ``timeline`` (50 events) — without HTTP and JSON. The first
       ``--warmup-samples`` calls (other customers) are not counted; by then the database
       files are in the OS cache (they were just written), so these are warm-cache figures.
       Reported: p50, p99 and max in milliseconds, and the mean and max number of events of
       the sampled customers.

    3. ``--read-scale``: instead of the above, a large graph is bulk-loaded directly with SQL
       (``INSERT … SELECT`` from a generated series; the events table's secondary indexes are
       dropped first and re-created with their own DDL afterwards): ``--scale-profiles``
       profiles (every fourth merged into its neighbour), an anonymous_id per profile, a
       user_id and an email per customer, and ``--scale-events`` events spread uniformly over
       the profiles, each anchored on its profile's anonymous_id or its customer's user_id
       (2% are ``Order Completed`` with revenue). Then only the read latencies are measured.
       The issue's target scale is 1,000,000 profiles and 20,000,000 events.

How to run
    python bench/identity.py                                  # 1M events, both databases
    python bench/identity.py --events 200000 --databases sqlite
    python bench/identity.py --read-scale --scale-profiles 1000000 --scale-events 20000000

    PostgreSQL: ``--pg-admin-url`` (default ``$PLAIT_BENCH_PG_URL`` or
    postgresql+psycopg://postgres@127.0.0.1:5432/postgres) must be allowed to
    ``CREATE DATABASE``; a database ``plait_bench_identity_<random>`` is created and dropped
    (kept with ``--keep-home``).
    SQLite: a fresh file database in a temporary directory (``--keep-home`` keeps it).
    Results are printed as a table and written as JSON to ``--json-out``
    (bench/results/identity.json by default; bench/results/ is git-ignored).
    Targets: resolution >= 20,000 events/s on each database; p99 < 50 ms for the customer
    360 and the first timeline page at 1M profiles and 20M events.

    Where the time goes: the resolver runs in its own process, whose pid is printed;
    ``py-spy record --pid <pid> --duration 30 -o /tmp/resolve.svg``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ingest.py: shared machine and PostgreSQL helpers
from ingest import (
    DEFAULT_PG_ADMIN_URL,
    ROOT,
    cpu_seconds,
    cpu_used,
    drop_pg_database,
    machine_info,
    pg_admin_engine,
    postgres_processes,
)

TARGET_EVENTS_PER_SECOND = 20_000
TARGET_P99_MS = 50.0

# --------------------------------------------------------------------------------------------
# The population: people, their devices, and what they do
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
)
SITE = "https://www.brewhaus.example"
PAGES = (
    ("/", "Brewhaus — Specialty Coffee Gear"),
    ("/products/conical-burr-grinder", "Conical Burr Grinder | Brewhaus"),
    ("/products/gooseneck-kettle", "Gooseneck Kettle | Brewhaus"),
    ("/collections/espresso", "Espresso Machines | Brewhaus"),
    ("/cart", "Your Cart | Brewhaus"),
)
PRODUCTS = (
    ("SKU-GR-001", "Conical Burr Grinder", 189.0),
    ("SKU-KT-014", "Gooseneck Kettle", 79.5),
    ("SKU-BN-042", "Ethiopia Yirgacheffe 250g", 16.9),
)
FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dev", "Emeka", "Fatima", "Gus", "Hana", "Ivo", "Jun")
LAST_NAMES = ("Okafor", "Martin", "Silva", "Novak", "Schmidt", "Rossi", "Kim", "Dubois")
LIBRARY = {"name": "analytics.js", "version": "next-1.70.0"}
SPAN_SECONDS = 30 * 86_400

# What one event of a person does (codes in the schedule).
ANON, IDENTIFY, EMAIL_CLICK, SMS_CLICK, LOGIN, LOGGED_IN = range(6)


@dataclass
class Person:
    user_id: str | None
    email: str | None
    phone: str | None
    first_name: str
    last_name: str
    devices: list[tuple[str, str]]  # (anonymousId, user agent)


def build_population(
    events: int, persons: int, seed: int
) -> tuple[list[Person], list[tuple[float, int, int, int]]]:
    """People and, in time order, their events as (time, person, device, action)."""
    rng = random.Random(seed)
    mean = max(2.0, events / persons)
    people: list[Person] = []
    schedule: list[tuple[float, int, int, int]] = []
    identified: list[int] = []
    while len(schedule) < events:
        index = len(people)
        devices = rng.choices((1, 2, 3), weights=(50, 35, 15))[0]
        is_known = rng.random() < 0.7
        person = Person(
            user_id=f"user_{index:08d}" if is_known else None,
            email=f"shopper.{index}@mail.example" if is_known else None,
            phone=f"+1 415 55{index % 100000:05d}"[:15]
            if is_known and rng.random() < 0.35
            else None,
            first_name=rng.choice(FIRST_NAMES),
            last_name=rng.choice(LAST_NAMES),
            devices=[
                (str(uuid.UUID(int=rng.getrandbits(128), version=4)), rng.choice(USER_AGENTS))
                for _ in range(devices)
            ],
        )
        if is_known and identified and rng.random() < 0.02:  # a shared family computer
            person.devices[0] = people[rng.choice(identified)].devices[0]
        budget = max(devices if not is_known else 2 * devices, round(rng.expovariate(1 / mean)))
        at = rng.uniform(0, SPAN_SECONDS)
        plan: list[tuple[int, int]] = []
        per_device = [
            budget // devices + (1 if d < budget % devices else 0) for d in range(devices)
        ]
        for device, count in enumerate(per_device):
            if not is_known:
                plan += [(device, ANON)] * count
                continue
            link = (IDENTIFY, EMAIL_CLICK, SMS_CLICK if person.phone else LOGIN)[device]
            before = max(0, (count - 1) // 2)
            after = count - 1 - before
            plan += [(device, ANON)] * before + [(device, link)]
            plan += [(device, LOGGED_IN if link in (IDENTIFY, LOGIN) else ANON)] * after
        for device, action in plan:
            at += rng.expovariate(1 / 900)  # ~15 minutes between a person's events
            schedule.append((at, index, device, action))
        if is_known:
            identified.append(index)
        people.append(person)
    schedule.sort()
    return people, schedule[:events]


def expected_customers(people: list[Person], schedule: list[tuple[float, int, int, int]]) -> int:
    """Customers a perfect resolver finds: one per identified person, and one per device of
    a person who never identifies (nothing links their devices)."""
    used: dict[int, set[int]] = {}
    for _at, index, device, _action in schedule:
        used.setdefault(index, set()).add(device)
    return sum(1 if people[i].user_id else len(devices) for i, devices in used.items())


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_message(
    rng: random.Random, people: list[Person], item: tuple[float, int, int, int], start: datetime
) -> dict[str, Any]:
    """One analytics.js-shaped message for a schedule item."""
    at, index, device, action = item
    person = people[index]
    anonymous_id, user_agent = person.devices[device]
    path, title = rng.choice(PAGES)
    context: dict[str, Any] = {
        "library": LIBRARY,
        "userAgent": user_agent,
        "locale": "en-US",
        "ip": f"203.0.{index % 256}.{device + 1}",
        "page": {"path": path, "title": title, "url": SITE + path, "referrer": ""},
    }
    message: dict[str, Any] = {
        "messageId": f"bench-{index}-{device}-{at:.6f}",
        "anonymousId": anonymous_id,
        "timestamp": _iso(start + timedelta(seconds=at)),
        "context": context,
    }
    if action in (IDENTIFY, LOGIN):
        message["type"] = "identify"
        message["userId"] = person.user_id
        if action == IDENTIFY:
            traits: dict[str, Any] = {
                "email": person.email,
                "first_name": person.first_name,
                "last_name": person.last_name,
            }
            if person.phone:
                traits["phone"] = person.phone
            message["traits"] = traits
        return message
    if action in (EMAIL_CLICK, SMS_CLICK):
        message["type"] = "track"
        if action == EMAIL_CLICK:
            message["event"] = "Email Link Clicked"
            context["traits"] = {"email": person.email}
            context["campaign"] = {"source": "newsletter", "medium": "email", "name": "weekly"}
            message["properties"] = {"campaign": "weekly", "link": SITE + path}
        else:
            message["event"] = "SMS Link Clicked"
            context["traits"] = {"phone": person.phone}
            context["campaign"] = {"source": "sms", "medium": "sms", "name": "flash_sale"}
            message["properties"] = {"campaign": "flash_sale", "link": SITE + path}
        return message
    if action == LOGGED_IN:
        message["userId"] = person.user_id
    roll = rng.random()
    if roll < 0.55:
        message["type"] = "page"
        message["name"] = title.split(" | ")[0]
        message["properties"] = {"path": path, "title": title, "url": SITE + path}
    else:
        sku, name, price = rng.choice(PRODUCTS)
        event = "Order Completed" if action == LOGGED_IN and roll > 0.93 else "Product Viewed"
        properties: dict[str, Any] = {"product_id": sku, "name": name, "price": price}
        if event == "Order Completed":
            properties.update(order_id=f"ORD-{rng.randrange(10**8):08d}", revenue=price)
        message["type"] = "track"
        message["event"] = event
        message["properties"] = properties
    return message


# --------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------


def create_database(args: argparse.Namespace, database: str, home: Path) -> tuple[str, str | None]:
    """The database URL of a fresh database (and, for PostgreSQL, its name)."""
    import sqlalchemy as sa

    if database == "sqlite":
        return f"sqlite:///{home / 'plait.db'}", None
    name = f"plait_bench_identity_{uuid.uuid4().hex[:10]}"
    engine = pg_admin_engine(args.pg_admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return sa.make_url(args.pg_admin_url).set(database=name).render_as_string(False), name


def open_database(home: Path, url: str) -> tuple[Any, Any]:
    """Settings and a new engine for ``url`` (a new engine: each process opens its own)."""
    from plait.core.db import create_engine
    from plait.core.settings import Settings

    settings = Settings(home=home, database_url=url)
    return settings, create_engine(settings)


def analyze(engine: Any) -> None:
    """PostgreSQL: refresh planner statistics, as autovacuum does soon after a bulk load.
    (Plait does not run ANALYZE on SQLite, so neither does the benchmark.)"""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")


def table_counts(engine: Any) -> dict[str, int]:
    import sqlalchemy as sa

    queries = {
        "events": "SELECT count(*) FROM events",
        "profiles": "SELECT count(*) FROM profiles",
        "customers": "SELECT count(*) FROM profiles WHERE root_id = id",
        "identifiers": "SELECT count(*) FROM identities",
        "merges": "SELECT count(*) FROM identity_merges",
        "refusals": "SELECT count(*) FROM identity_refusals",
    }
    with engine.connect() as conn:
        return {name: int(conn.execute(sa.text(sql)).scalar_one()) for name, sql in queries.items()}


def database_bytes(engine: Any, home: Path) -> int:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())
    return sum(p.stat().st_size for p in home.glob("plait.db*"))


# --------------------------------------------------------------------------------------------
# Phase 1: load events, then resolve them in a process of their own
# --------------------------------------------------------------------------------------------


def load_events(
    engine: Any,
    settings: Any,
    people: list[Person],
    schedule: list[tuple[float, int, int, int]],
    batch: int,
    seed: int,
    log: Any,
) -> tuple[float, float]:
    """Normalise and store the schedule's events; returns (seconds, seconds in normalize)."""
    from plait.collect.event_store import store
    from plait.collect.ingest import rules_from_settings
    from plait.collect.messages import Envelope, normalize
    from plait.core.db import write
    from plait.core.sources import Source, create_source

    rules = rules_from_settings(settings)
    with write(engine) as conn:
        made = create_source(conn, "bench-web", "web")
    source = Source(id=uuid.UUID(made["id"]), name=made["name"], channel=made["channel"])
    rng = random.Random(seed + 1)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=SPAN_SECONDS + 86_400)
    began = time.perf_counter()
    normalizing = 0.0
    stored = 0
    next_report = began + 10
    for offset in range(0, len(schedule), batch):
        envelope = Envelope(source=source, received_at=datetime.now(UTC))
        t0 = time.perf_counter()
        rows = [
            normalize(make_message(rng, people, item, start), envelope, rules)
            for item in schedule[offset : offset + batch]
        ]
        normalizing += time.perf_counter() - t0
        with write(engine) as conn:
            result = store(conn, rows, [])
        if result.accepted != len(rows):
            raise RuntimeError(f"stored {result.accepted} of {len(rows)} events")
        stored += len(rows)
        if time.perf_counter() >= next_report:
            elapsed = time.perf_counter() - began
            log(f"    loaded {stored:,} events ({stored / elapsed:,.0f}/s)")
            next_report += 10
    return time.perf_counter() - began, normalizing


def resolve_main(home: str, url: str, _unused: Any = None) -> dict[str, Any]:
    """Resolver process: resolve the whole backlog with ``pipeline.resolve`` and report."""
    from plait.profiles.pipeline import resolve

    settings, engine = open_database(Path(home), url)
    done = 0
    began = time.perf_counter()
    last = [began]

    def progress(count: int) -> None:
        nonlocal done
        done += count
        now = time.perf_counter()
        if now - last[0] >= 10:
            print(f"    resolved {done:,} events ({done / (now - began):,.0f}/s)", flush=True)
            last[0] = now

    cpu_before = os.times()
    report = resolve(engine, settings, on_progress=progress)
    seconds = time.perf_counter() - began
    cpu_after = os.times()
    return {
        "seconds": seconds,
        "report": asdict(report),
        "cpu_seconds": (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def reads_main(home: str, url: str, samples: int, warmup: int, seed: int) -> dict[str, Any]:
    """Reader process (a process of its own, like a server's: no benchmark data in its heap)."""
    settings, engine = open_database(Path(home), url)
    try:
        return measure_reads(
            engine, settings, samples, warmup, seed, lambda text: print(text, flush=True)
        )
    finally:
        engine.dispose()


def child_main(target: str, args: tuple[Any, ...], pipe: Any) -> None:
    try:
        pipe.send({"pid": os.getpid()})
        pipe.send(globals()[target](*args))
        pipe.poll(60)  # keep the database connections open until the parent has measured
    except Exception as exc:  # reported to the parent
        import traceback

        pipe.send({"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"})


def in_child(target: str, args: tuple[Any, ...], pg_name: str | None, log: Any) -> dict[str, Any]:
    """Run ``target(*args)`` in a fresh (spawned) process; adds PostgreSQL's CPU seconds."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=child_main, args=(target, args, child))
    process.start()
    try:
        hello = parent.recv()
        log(f"    {target} pid {hello['pid']} (py-spy record --pid {hello['pid']})")
        pg_before = cpu_seconds(postgres_processes(pg_name)) if pg_name else {}
        answer = parent.recv()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        if pg_name:
            answer["postgres_cpu_seconds"] = cpu_used(
                pg_before, cpu_seconds([*pg_before, *postgres_processes(pg_name)])
            )
        parent.send("measured")
        return answer
    finally:
        process.join(timeout=60)
        if process.is_alive():
            process.terminate()


# --------------------------------------------------------------------------------------------
# Phase 2: read latency
# --------------------------------------------------------------------------------------------


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_reads(
    engine: Any, settings: Any, samples: int, warmup: int, seed: int, log: Any
) -> dict[str, Any]:
    """p50/p99/max of the customer 360 and the first timeline page for random customers."""
    import sqlalchemy as sa

    from plait.collect.event_store import EventFilter
    from plait.core.db import read
    from plait.identity.graph import profiles, root_of
    from plait.profiles.customer360 import profile_360
    from plait.profiles.search import timeline

    with engine.connect() as conn:
        roots = list(
            conn.execute(
                sa.select(profiles.c.id).where(profiles.c.root_id == profiles.c.id)
            ).scalars()
        )
    rng = random.Random(seed + 2)
    chosen = rng.sample(roots, min(len(roots), samples + warmup))
    warm, measured = chosen[:warmup], chosen[warmup:]
    del roots

    def call_360(profile_id: uuid.UUID) -> int:
        with read(engine) as conn:
            return profile_360(conn, root_of(conn, profile_id), settings.profiles)["events"]

    def call_timeline(profile_id: uuid.UUID) -> int:
        with read(engine) as conn:
            page, _ = timeline(conn, root_of(conn, profile_id), EventFilter(), limit=50)
            return len(page)

    result: dict[str, Any] = {"customers_sampled": len(measured), "warmup_samples": len(warm)}
    for name, call in (("profile_360", call_360), ("timeline", call_timeline)):
        for profile_id in warm:
            call(profile_id)
        order = measured[:]
        rng.shuffle(order)
        times, sizes, slowest = [], [], []
        for profile_id in order:
            t0 = time.perf_counter()
            size = call(profile_id)
            times.append((time.perf_counter() - t0) * 1000)
            sizes.append(size)
            slowest.append((times[-1], size, str(profile_id)))
        times.sort()
        slowest.sort(reverse=True)
        result[name] = {
            "p50_ms": percentile(times, 0.50),
            "p99_ms": percentile(times, 0.99),
            "max_ms": times[-1] if times else 0.0,
            "mean_ms": sum(times) / len(times) if times else 0.0,
            "mean_events": sum(sizes) / len(sizes) if sizes else 0.0,
            "max_events": max(sizes, default=0),
            "slowest": [
                {"ms": ms, "events": size, "customer": customer}
                for ms, size, customer in slowest[:5]
            ],
        }
        log(
            f"    {name}: p50 {result[name]['p50_ms']:.2f} ms, p99 {result[name]['p99_ms']:.2f} "
            f"ms, max {result[name]['max_ms']:.1f} ms ({len(times)} customers)"
        )
    return result


# --------------------------------------------------------------------------------------------
# --read-scale: a large graph loaded directly with SQL
# --------------------------------------------------------------------------------------------


def bulk_graph(engine: Any, profiles_n: int, events_n: int, log: Any) -> float:
    """Load ``profiles_n`` profiles and ``events_n`` anchored events in SQL; returns seconds.

    Profile ``i`` (1-based) has id ``1…i`` in hex; profiles with ``i % 4 == 0`` are merged
    into profile ``i - 1``; every profile has anonymous_id ``a<i>``, every customer (root)
    user_id ``u<i>`` and email ``u<i>@mail.example``. Event ``j`` belongs to profile
    ``1 + (j * 7919) % profiles_n`` and is anchored on its user_id one time in three (if a
    root), otherwise on its anonymous_id.
    """
    import sqlalchemy as sa

    from plait.core.db import write
    from plait.core.sources import create_source

    began = time.perf_counter()
    with write(engine) as conn:
        source_id = uuid.UUID(create_source(conn, "bench-scale", "web")["id"])
    pg = engine.dialect.name == "postgresql"
    if pg:
        uid = lambda prefix, expr: f"('{prefix}' || lpad(to_hex({expr}), 31, '0'))::uuid"  # noqa: E731
        ts = lambda expr: f"(timestamptz '2026-08-01 00:00:00+00' + ({expr}) * interval '1 second')"  # noqa: E731
        src = f"'{source_id}'::uuid"
        series = lambda n: f"generate_series(1::bigint, {n}) AS s(i)"  # noqa: E731
        now = "now()"
        json = lambda text: f"'{text}'::jsonb"  # noqa: E731
        rev = "jsonb_build_object('order_id', 'ORD-' || i, 'revenue', (i % 200) + 0.5)"
    else:
        uid = lambda prefix, expr: f"printf('{prefix}%031x', {expr})"  # noqa: E731
        ts = lambda expr: (  # noqa: E731
            f"strftime('%Y-%m-%d %H:%M:%S', 1785542400 + ({expr}), 'unixepoch') || '.000000'"
        )
        src = f"'{source_id.hex}'"
        series = lambda n: "s"  # noqa: E731
        prefix_of = lambda n: (  # noqa: E731
            f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
        )
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
        json = lambda text: f"'{text}'"  # noqa: E731
        rev = "json_object('order_id', 'ORD-' || i, 'revenue', (i % 200) + 0.5)"
    root = "(CASE WHEN i % 4 = 0 THEN i - 1 ELSE i END)"
    parent = "(CASE WHEN i % 4 = 0 THEN i - 1 END)"
    # Event j's profile p, and whether it is anchored on the customer's user_id.
    p = f"(1 + (i * 7919) % {profiles_n})"
    p_root = f"(CASE WHEN {p} % 4 = 0 THEN {p} - 1 ELSE {p} END)"
    on_user = f"(i % 3 = 0 AND {p} % 4 <> 0)"
    context = (
        '{"library": {"name": "analytics.js", "version": "next-1.70.0"}, "userAgent": '
        '"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0.0.0 Safari/537.36", '
        '"page": {"path": "/products/conical-burr-grinder", "url": '
        '"https://www.brewhaus.example/products/conical-burr-grinder"}}'
    )
    page_props = '{"path": "/products/conical-burr-grinder", "title": "Conical Burr Grinder"}'
    statements = []

    def with_series(n: int, body: str) -> str:
        return (prefix_of(n) if not pg else "") + body.replace("{series}", series(n))

    statements.append(
        (
            "profiles",
            with_series(
                profiles_n,
                "INSERT INTO profiles (id, root_id, parent_id, created_at, first_seen, last_seen, "
                "name, search_name, traits) SELECT "
                f"{uid('1', 'i')}, {uid('1', root)}, "
                f"CASE WHEN i % 4 = 0 THEN {uid('1', parent)} END, {now}, {ts('i % 86400')}, "
                f"{ts('7776000 - i % 86400')}, 'Shopper ' || i, 'shopper ' || i, "
                + json('{"plan": {"last": ["member", 1785542400000000]}}')
                + " FROM {series}",
            ),
        )
    )
    identities_sql = (
        "INSERT INTO identities (kind, value, profile_id, first_seen) SELECT {kind}, {value}, "
        f"{uid('1', 'i')}, {ts('i % 86400')} FROM {{series}}{{where}}"
    )
    for kind, value, where in (
        ("'anonymous_id'", "'a' || i", ""),
        ("'user_id'", "'u' || i", " WHERE i % 4 <> 0"),
        ("'email'", "'u' || i || '@mail.example'", " WHERE i % 4 <> 0"),
    ):
        body = identities_sql.replace("{kind}", kind).replace("{value}", value)
        statements.append(
            (f"identities ({kind})", with_series(profiles_n, body.replace("{where}", where)))
        )
    statements.append(
        (
            "events",
            with_series(
                events_n,
                "INSERT INTO events (seq, id, message_id, source_id, type, event, name, user_id, "
                "anonymous_id, channel, device_type, os, browser, timestamp, received_at, "
                "properties, context, identity_kind, identity_value) SELECT i, "
                f"{uid('2', 'i')}, 'scale-' || i, {src}, "
                "CASE WHEN i % 2 = 0 THEN 'page' ELSE 'track' END, "
                "CASE WHEN i % 2 = 0 THEN NULL WHEN i % 50 = 1 THEN 'Order Completed' "
                "ELSE 'Product Viewed' END, "
                "CASE WHEN i % 2 = 0 THEN 'Conical Burr Grinder' END, "
                f"CASE WHEN {on_user} THEN 'u' || {p_root} END, 'a' || {p}, "
                "CASE WHEN i % 7 = 0 THEN 'email' ELSE 'web' END, 'desktop', 'Windows', "
                f"'Chrome', {ts('(i * 104729) % 7776000')}, {ts('7776000')}, "
                f"CASE WHEN i % 50 = 1 THEN {rev} ELSE {json(page_props)} END, "
                f"{json(context)}, "
                f"CASE WHEN {on_user} THEN 'user_id' ELSE 'anonymous_id' END, "
                f"CASE WHEN {on_user} THEN 'u' || {p_root} ELSE 'a' || {p} END FROM {{series}}",
            ),
        )
    )

    def run(conn: Any, sql: str) -> Any:  # psycopg reads % as a placeholder even without any
        return conn.exec_driver_sql(sql.replace("%", "%%") if pg else sql)

    # Secondary indexes of events: dropped for the load, re-created with their own DDL.
    with engine.connect() as conn:
        if pg:
            ddl = run(
                conn,
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' AND "
                "indexname LIKE 'ix_%'",
            ).all()
        else:
            ddl = run(
                conn,
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                "tbl_name = 'events' AND sql IS NOT NULL AND name LIKE 'ix_%'",
            ).all()
    with write(engine) as conn:
        for name, _ in ddl:
            run(conn, f"DROP INDEX {name}")
    for label, sql in statements:
        t0 = time.perf_counter()
        with write(engine) as conn:
            run(conn, sql)
        log(f"    {label}: {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    with write(engine) as conn:
        for _, sql in ddl:
            run(conn, sql)
        conn.execute(
            sa.text(
                "INSERT INTO identity_progress (id, resolved_seq, version, exported_version) "
                "VALUES (1, :seq, 1, 0)"
            ),
            {"seq": events_n},
        )
    log(f"    events indexes: {time.perf_counter() - t0:.1f}s")
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return time.perf_counter() - began


# --------------------------------------------------------------------------------------------
# One database
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    database: str
    mode: str
    events: int = 0
    persons: int = 0
    expected_customers: int = 0
    load_seconds: float = 0.0
    load_events_per_second: float = 0.0
    normalize_seconds: float = 0.0
    resolve_seconds: float = 0.0
    resolve_events_per_second: float = 0.0
    resolver_cpu_seconds: float = 0.0
    postgres_cpu_seconds: float | None = None
    resolver_peak_rss_mb: float = 0.0
    report: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    database_mb: float = 0.0
    reads: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


def run_once(args: argparse.Namespace, database: str, population: Any, log: Any) -> RunResult:
    from plait.migrations import upgrade

    result = RunResult(database=database, mode="read-scale" if args.read_scale else "resolve")
    home = Path(tempfile.mkdtemp(prefix=f"plait-bench-identity-{database}-"))
    pg_name: str | None = None
    engine = None
    try:
        url, pg_name = create_database(args, database, home)
        settings, engine = open_database(home, url)
        upgrade(engine)
        if args.read_scale:
            log(
                f"  bulk-loading {args.scale_profiles:,} profiles and {args.scale_events:,} events…"
            )
            result.load_seconds = bulk_graph(engine, args.scale_profiles, args.scale_events, log)
        else:
            people, schedule = population
            result.events, result.persons = len(schedule), len(people)
            result.expected_customers = expected_customers(people, schedule)
            log(f"  loading {len(schedule):,} events of {len(people):,} people…")
            result.load_seconds, result.normalize_seconds = load_events(
                engine, settings, people, schedule, args.load_batch, args.seed, log
            )
            result.load_events_per_second = len(schedule) / result.load_seconds
            log(
                f"    {len(schedule):,} events in {result.load_seconds:.1f}s "
                f"({result.load_events_per_second:,.0f}/s, "
                f"normalize {result.normalize_seconds:.1f}s)"
            )
            analyze(engine)
            engine.dispose()
            log("  resolving…")
            answer = in_child("resolve_main", (str(home), url, None), pg_name, log)
            result.resolve_seconds = answer["seconds"]
            result.report = answer["report"]
            result.resolve_events_per_second = answer["report"]["events"] / answer["seconds"]
            result.resolver_cpu_seconds = answer["cpu_seconds"]
            result.postgres_cpu_seconds = answer.get("postgres_cpu_seconds")
            result.resolver_peak_rss_mb = answer["peak_rss_mb"]
            log(
                f"    {result.report['events']:,} events in {result.resolve_seconds:.1f}s: "
                f"{result.resolve_events_per_second:,.0f} events/s"
            )
            analyze(engine)
        result.counts = table_counts(engine)
        result.database_mb = database_bytes(engine, home) / 2**20
        log(f"  reading {args.samples:,} random customers…")
        engine.dispose()
        result.reads = in_child(
            "reads_main",
            (str(home), url, args.samples, args.warmup_samples, args.seed),
            None,
            log,
        )
    except Exception as exc:
        import traceback

        result.failure = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
    finally:
        if engine is not None:
            engine.dispose()
        if pg_name is not None and args.keep_home:
            log(f"  PostgreSQL database {pg_name} kept")
        elif pg_name is not None:
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


def print_tables(console: Any, results: list[RunResult]) -> None:
    from rich.table import Table

    resolved = [r for r in results if r.mode == "resolve" and not r.failure]
    if resolved:
        table = Table(title="Plait identity resolution (pipeline.resolve)", header_style="bold")
        for column in (
            "database", "events", "persons", "load ev/s", "resolve s", "events/s",
            "profiles", "customers (expected)", "identifiers", "merges", "refusals",
            "CPU s res/pg", "peak RSS MB",
        ):  # fmt: skip
            table.add_column(column, justify="left" if column == "database" else "right")
        for r in resolved:
            fast = r.resolve_events_per_second >= TARGET_EVENTS_PER_SECOND
            pg_cpu = "-" if r.postgres_cpu_seconds is None else f"{r.postgres_cpu_seconds:.0f}"
            table.add_row(
                r.database,
                f"{r.events:,}",
                f"{r.persons:,}",
                f"{r.load_events_per_second:,.0f}",
                f"{r.resolve_seconds:.1f}",
                f"[{'green' if fast else 'red'}]{r.resolve_events_per_second:,.0f}[/]",
                f"{r.report['profiles']:,}",
                f"{r.counts.get('customers', 0):,} ({r.expected_customers:,})",
                f"{r.report['identifiers']:,}",
                f"{r.report['merges']:,}",
                f"{r.report['refusals']:,}",
                f"{r.resolver_cpu_seconds:.0f}/{pg_cpu}",
                f"{r.resolver_peak_rss_mb:,.0f}",
            )
        console.print(table)
        console.print(f"target: >= {TARGET_EVENTS_PER_SECOND:,} events/s per database")
    read = [r for r in results if r.reads]
    if read:
        table = Table(title="Customer reads (warm cache)", header_style="bold")
        for column in (
            "database", "mode", "events", "customers", "DB MB", "360 p50", "360 p99", "360 max",
            "timeline p50", "timeline p99", "timeline max", "events/customer mean/max",
        ):  # fmt: skip
            table.add_column(column, justify="left" if column in ("database", "mode") else "right")
        for r in read:
            a, b = r.reads["profile_360"], r.reads["timeline"]
            cells = []
            for stats in (a, b):
                ok = stats["p99_ms"] < TARGET_P99_MS
                cells += [
                    f"{stats['p50_ms']:.1f}",
                    f"[{'green' if ok else 'red'}]{stats['p99_ms']:.1f}[/]",
                    f"{stats['max_ms']:.1f}",
                ]
            table.add_row(
                r.database,
                r.mode,
                f"{r.counts.get('events', 0):,}",
                f"{r.counts.get('customers', 0):,}",
                f"{r.database_mb:,.0f}",
                *cells,
                f"{a['mean_events']:.1f}/{a['max_events']:,}",
            )
        console.print(table)
        console.print(f"target: p99 < {TARGET_P99_MS:.0f} ms (milliseconds per call)")
    for r in results:
        if r.failure:
            console.print(f"[red]{r.database} ({r.mode}) failed:[/] {r.failure}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Identity resolution throughput and customer read latency."
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--persons", type=int, default=0, help="default: events / 10")
    parser.add_argument(
        "--load-batch", type=int, default=20_000, help="events per store() transaction"
    )
    parser.add_argument("--samples", type=int, default=2000, help="customers read per call")
    parser.add_argument("--warmup-samples", type=int, default=200)
    parser.add_argument(
        "--read-scale",
        action="store_true",
        help="bulk-load a synthetic graph in SQL and measure reads only",
    )
    parser.add_argument("--scale-profiles", type=int, default=1_000_000)
    parser.add_argument("--scale-events", type=int, default=20_000_000)
    parser.add_argument(
        "--json-out", type=Path, default=ROOT / "bench" / "results" / "identity.json"
    )
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--keep-home",
        action="store_true",
        help="keep the data directory and the PostgreSQL database (to measure them again)",
    )
    args = parser.parse_args(argv)
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = set(args.databases) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")
    if not args.persons:
        args.persons = max(1, args.events // 10)
    return args


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    population = None
    if not args.read_scale:
        t0 = time.perf_counter()
        population = build_population(args.events, args.persons, args.seed)
        console.print(
            f"population: {len(population[0]):,} people, {len(population[1]):,} events "
            f"({time.perf_counter() - t0:.1f}s)"
        )
    results = []
    for database in args.databases:
        console.print(f"[bold]{database}[/]")
        results.append(run_once(args, database, population, console.print))
    print_tables(console, results)
    report = {
        "benchmark": "identity",
        "created_at": _iso(datetime.now(UTC)),
        "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
        "target": {
            "resolve_events_per_second": TARGET_EVENTS_PER_SECOND,
            "read_p99_ms": TARGET_P99_MS,
        },
        "parameters": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "machine": machine_info(args, args.databases),
        "results": [asdict(r) for r in results],
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    console.print(f"results written to {args.json_out}")
    return 1 if any(r.failure for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
