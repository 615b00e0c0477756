"""Dashboard speed: server-side render time of every dashboard page at demo scale.

What it measures
    ``plait demo --no-serve`` builds the demo world (``--customers``, default 1,000, over
    ``--days``, default 90: about 47,000 events) into a temporary ``PLAIT_HOME`` (SQLite and
    a local lake, the embedded default). Then, in this process, the application runs behind
    FastAPI's in-process ``TestClient`` (no network, no browser: what is timed is routing,
    the handler, its reports and queries, and template rendering), signed in as the demo
    admin, and each page of ``PAGES`` is requested:

    - first read: the first request for the page with every analytics cache emptied just
      before (report results and workspaces), as for the first page a freshly started
      server shows before its warm-up has read the lake: it pays for reading the lake's
      history (sessions, conversions and every conversion's journey) and for its reports
      (one warm-up request to ``/login`` comes first, so the very first page does not also
      pay for the application's start-up);
    - after sync: one more page view is sent through ``/v1/batch`` and replicated to the
      lake (a real sync), the report cache is emptied, and the page is requested: the
      dashboard answers from the state read before, then reads the new one in the
      background (waited for before the next figure, so it does not slow it);
    - cold: the first request for the page with the report cache emptied and the
      workspace holding only the lake's history, as once the server's warm-up (or any page)
      has read it since the lake changed: it pays for its reports for its range;
    - warm: ``--hits`` (default 20) more requests; median and 95th percentile.

    Every response must be 200. The target is < 300 ms server-side per page at demo scale.
    Results are printed as a table and written as JSON to ``--json-out`` (default
    bench/results/web.json). Run: ``python bench/web.py`` (``--customers 200 --days 30``
    for a quick run, ``--home DIR`` to reuse a demo built before).

Pages are listed in ``PAGES``; ``{customer}`` and ``{source}`` are filled in with the
busiest customer and the first source. Pages whose route is not mounted are skipped (and
listed as such), so pages still being built can be added to the list ahead of time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 300.0

ANALYTICS_PAGES = [
    ("Overview", "/overview"),
    ("Overview, last 90 days", "/overview?preset=last_90_days"),
    ("Channels", "/channels"),
    ("Channels, Markov chain", "/channels?model=markov"),
    ("Channels, first vs last touch", "/channels?model=first_touch&compare=last_touch"),
    ("Channels CSV", "/channels.csv"),
    ("Journeys", "/journeys"),
    ("Journeys, contacts", "/journeys?kind=contact"),
]
OTHER_PAGES = [
    ("Customers", "/customers"),
    ("Customers, search", "/customers?q=gmail"),
    ("Customer 360", "/customers/{customer}"),
    ("Sources", "/sources"),
    ("Source", "/sources/{source}"),
    ("Data quality", "/quality"),
    ("Users", "/users"),
]
"""The customers, sources, data-quality and users pages (built by others): extend freely."""
PAGES = ANALYTICS_PAGES + OTHER_PAGES


def build_demo(home: Path, customers: int, days: int) -> dict[str, Any]:
    """``plait demo`` into ``home``; its JSON summary (with the admin's password)."""
    env = {**os.environ, "PLAIT_HOME": str(home)}
    env.pop("PLAIT_DATABASE_URL", None)
    env.pop("PLAIT_LAKE", None)
    sizes = ["--customers", str(customers), "--days", str(days)]
    built = subprocess.run(
        [sys.executable, "-m", "plait", "demo", "--no-serve", "--json", *sizes],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(built.stdout)


def sign_in(client: Any, email: str, password: str) -> None:
    import re

    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def busiest_customer(engine: sa.Engine) -> str:
    """The customer with the most events: the heaviest 360 and timeline."""
    from plait.collect.event_store import events
    from plait.identity.graph import identities, profiles

    query = (
        sa.select(profiles.c.root_id, sa.func.count().label("n"))
        .select_from(
            events.join(
                identities,
                sa.and_(
                    identities.c.kind == events.c.identity_kind,
                    identities.c.value == events.c.identity_value,
                ),
            ).join(profiles, profiles.c.id == identities.c.profile_id)
        )
        .group_by(profiles.c.root_id)
        .order_by(sa.desc("n"))
        .limit(1)
    )
    with engine.connect() as conn:
        return str(conn.execute(query).scalar_one())


def first_source(engine: sa.Engine) -> str:
    from plait.core.sources import list_sources

    with engine.connect() as conn:
        return list_sources(conn)[0]["id"]


def mounted(app: Any, path: str) -> bool:
    """Whether a route of ``app`` answers ``path`` (its query string ignored)."""
    from starlette.routing import Match

    scope = {"type": "http", "path": path.split("?")[0], "method": "GET"}
    return any(route.matches(scope)[0] == Match.FULL for route in app.routes)


def time_page(client: Any, path: str, hits: int, write_key: str) -> dict[str, Any]:
    from plait.analytics.report_cache import REPORTS, WORKSPACES, snapshot

    app = client.app.state
    REPORTS.clear()
    WORKSPACES.clear()
    first_read = timed_get(client, path)[1]
    sync_one_more_event(client, write_key)
    REPORTS.clear()
    after_sync = timed_get(client, path)[1]
    wait_for_the_new_state(app.engine, app.settings)
    REPORTS.clear()
    snapshot(app.engine, app.settings).workspace.journeys()
    response, cold = timed_get(client, path)
    warm = []
    for _ in range(hits):
        start = time.perf_counter()
        again = client.get(path)
        warm.append((time.perf_counter() - start) * 1000)
        assert again.status_code == 200, path
    warm.sort()
    return {
        "bytes": len(response.content),
        "first_read_ms": first_read,
        "after_sync_ms": after_sync,
        "cold_ms": cold,
        "warm_median_ms": statistics.median(warm),
        "warm_p95_ms": warm[max(0, round(0.95 * len(warm)) - 1)],
        "warm_max_ms": warm[-1],
    }


def sync_one_more_event(client: Any, write_key: str) -> None:
    """A lake sync that changes the data: one page view, stored and replicated."""
    import base64
    import uuid

    from plait.core.clock import utcnow
    from plait.upkeep import upkeep_once

    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    view = {"type": "page", "anonymousId": str(uuid.uuid4()), "timestamp": utcnow().isoformat()}
    response = client.post(
        "/v1/batch", json={"batch": [view]}, headers={"authorization": f"Basic {auth}"}
    )
    assert response.status_code == 200, response.text
    upkeep_once(client.app.state.engine, client.app.state.settings)


def wait_for_the_new_state(engine: sa.Engine, settings: Any) -> None:
    """Until the dashboard's background read of the lake's new state is over."""
    from plait.analytics.report_cache import dashboard_snapshot, data_key

    deadline = time.monotonic() + 120
    while True:
        with dashboard_snapshot(engine, settings) as shown:
            if shown.data == data_key(engine, settings):
                break
        assert time.monotonic() < deadline, "the new state was never read"
        time.sleep(0.01)


def timed_get(client: Any, path: str) -> tuple[Any, float]:
    """The response to ``GET path`` (which must be a 200) and how long it took in ms."""
    start = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
    return response, elapsed


def measure(home: Path, summary: dict[str, Any], hits: int) -> list[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from plait.core.db import get_engine
    from plait.core.settings import Settings
    from plait.core.sources import create_source
    from plait.server import create_app

    settings = Settings(home=home, database_url=f"sqlite:///{home / 'plait.db'}")
    app = create_app(settings)
    engine = get_engine(settings)
    fill = {"customer": busiest_customer(engine), "source": first_source(engine)}
    with engine.begin() as conn:
        write_key = create_source(conn, f"bench-{time.time_ns()}")["write_key"]
    results = []
    with TestClient(app) as client:
        sign_in(client, summary["dashboard"]["email"], summary["dashboard"]["password"])
        client.get("/login")  # warm-up: templates and the first request's set-up
        for name, template in PAGES:
            path = template.format(**fill)
            if not mounted(app, path):
                results.append({"page": name, "path": path, "skipped": "not mounted"})
                continue
            results.append({"page": name, "path": path, **time_page(client, path, hits, write_key)})
            timed = results[-1]
            print(
                f"  {name:32} {timed['first_read_ms']:8.0f} ms first read"
                f" {timed['after_sync_ms']:8.0f} ms after sync"
                f" {timed['cold_ms']:8.0f} ms cold",
                flush=True,
            )
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        f"\n{'page':34} {'first ms':>8} {'sync ms':>8} {'cold ms':>8} {'warm p50':>9}"
        f" {'warm p95':>9} {'KB':>6}  < 300 ms"
    )
    for row in results:
        if "skipped" in row:
            print(f"{row['page']:34} {'skipped (' + row['skipped'] + ')':>54}")
            continue
        met = "yes" if row["warm_p95_ms"] < TARGET_MS else "no"
        met += "" if row["cold_ms"] < TARGET_MS else " (cold: no)"
        met += "" if row["after_sync_ms"] < TARGET_MS else " (after sync: no)"
        print(
            f"{row['page']:34} {row['first_read_ms']:8.0f} {row['after_sync_ms']:8.0f}"
            f" {row['cold_ms']:8.0f} {row['warm_median_ms']:9.1f} {row['warm_p95_ms']:9.1f}"
            f" {row['bytes'] / 1024:6.0f}  {met}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--hits", type=int, default=20, help="warm requests per page")
    parser.add_argument("--home", type=Path, help="a PLAIT_HOME with a demo built before")
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench/results/web.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="plait-bench-web-") as scratch:
        home = args.home or Path(scratch)
        summary_file = home / "bench-demo.json"
        start = time.perf_counter()
        if args.home and summary_file.exists():
            summary = json.loads(summary_file.read_text())
        else:
            print(f"building the demo world ({args.customers} customers, {args.days} days)")
            summary = build_demo(home, args.customers, args.days)
            summary_file.write_text(json.dumps(summary))
        build_seconds = time.perf_counter() - start
        pages = measure(home, summary, args.hits)

    print_table(pages)
    results = {
        "customers": args.customers,
        "days": args.days,
        "events": summary.get("accepted"),
        "hits": args.hits,
        "target_ms": TARGET_MS,
        "demo_build_seconds": build_seconds,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "pages": pages,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.json_out}")


if __name__ == "__main__":
    main()
