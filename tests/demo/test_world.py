"""Tests for the synthetic demo world generator."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from urllib.parse import parse_qs, urlsplit

import pytest

from plait.demo.world import DEMO_SOURCES, SITE, DemoSource, generate

END = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 90
CUSTOMERS = 500
TYPES = {"identify", "track", "page", "screen", "group", "alias"}
SOURCE_NAMES = {s.name for s in DEMO_SOURCES}


@pytest.fixture(scope="module")
def world() -> list[tuple[str, dict]]:
    """A 500-customer world, generated once for the module."""
    return list(generate(customers=CUSTOMERS, days=DAYS, seed=7, end=END))


def ts(msg: dict) -> datetime:
    """Parse a message's timestamp."""
    return datetime.fromisoformat(msg["timestamp"])


def customer(msg: dict) -> int:
    """Return the customer index encoded in a demo messageId."""
    return int(msg["messageId"].split("-")[2])


def events(world: list[tuple[str, dict]], name: str) -> list[tuple[str, dict]]:
    """Return the track calls named ``name``."""
    return [(s, m) for s, m in world if m.get("event") == name]


def test_sources_are_declared() -> None:
    assert len(SOURCE_NAMES) == len(DEMO_SOURCES) == 9
    assert DemoSource("Store POS", "Store") in DEMO_SOURCES
    assert {s.name: s.channel for s in DEMO_SOURCES}["Website"] is None


def test_same_arguments_give_identical_output() -> None:
    first = list(generate(customers=40, days=30, seed=3, end=END))
    assert first == list(generate(customers=40, days=30, seed=3, end=END))
    assert first != list(generate(customers=40, days=30, seed=4, end=END))


def test_prefix_is_stable_when_the_world_grows() -> None:
    small = list(generate(customers=20, seed=5, end=END))
    big = list(generate(customers=30, seed=5, end=END))
    assert big[: len(small)] == small


def test_every_message_is_a_valid_segment_message(world: list[tuple[str, dict]]) -> None:
    start = END - timedelta(days=DAYS)
    ids = set()
    for source, msg in world:
        assert source in SOURCE_NAMES
        assert msg["type"] in TYPES
        assert msg.get("userId") or msg.get("anonymousId")
        assert start <= ts(msg) < END
        assert msg["timestamp"].endswith("Z")
        ids.add(msg["messageId"])
        if msg["type"] == "track":
            assert msg["event"]
            assert isinstance(msg["properties"], dict)
        if msg["type"] == "identify":
            assert isinstance(msg["traits"], dict)
    assert len(ids) == len(world)
    assert {s for s, _ in world} == SOURCE_NAMES
    json.dumps([m for _, m in world])


def test_messages_are_time_ordered_per_customer(world: list[tuple[str, dict]]) -> None:
    last: dict[int, datetime] = {}
    for _, msg in world:
        c = customer(msg)
        assert ts(msg) >= last.get(c, ts(msg))
        last[c] = ts(msg)


def test_messages_are_independent_objects(world: list[tuple[str, dict]]) -> None:
    contexts = [m["context"] for _, m in world[:2000] if "context" in m]
    assert len({id(c) for c in contexts}) == len(contexts)
    libraries = [c["library"] for c in contexts if "library" in c]
    assert len({id(lib) for lib in libraries}) == len(libraries)


def test_website_messages_have_the_analytics_js_shape(world: list[tuple[str, dict]]) -> None:
    pages = [m for s, m in world if s == "Website" and m["type"] == "page"]
    assert len(pages) > 1000
    agents = set()
    for msg in pages:
        page, props = msg["context"]["page"], msg["properties"]
        assert {"url", "path", "referrer", "title", "search"} <= page.keys()
        assert {"url", "path", "referrer", "title"} <= props.keys()
        assert props["url"] == page["url"] == SITE + page["path"] + page["search"]
        assert msg["anonymousId"]
        assert msg["context"]["ip"]
        assert msg["context"]["locale"]
        agents.add(msg["context"]["userAgent"])
        if "utm_" in page["search"]:
            query = parse_qs(page["search"][1:])
            campaign = msg["context"]["campaign"]
            assert campaign["source"] == query["utm_source"][0]
            assert campaign["medium"] == query["utm_medium"][0]
            assert campaign["name"] == query["utm_campaign"][0]
        else:
            assert "campaign" not in msg["context"]
    for platform in ("iPhone", "Android", "Windows NT", "Macintosh", "iPad"):
        assert any(platform in agent for agent in agents), platform


def landing_channel(page: dict) -> str | None:
    """Classify a website landing page the way an analyst would, or None for internal pages."""
    referrer, search = page["referrer"], page["search"]
    if urlsplit(referrer).hostname == "www.lindwood.example":
        return None
    query = parse_qs(search[1:])
    if "utm_medium" in query:
        return (
            query["utm_medium"][0]
            + ("+gclid" if "gclid" in query else "")
            + ("+fbclid" if "fbclid" in query else "")
        )
    host = urlsplit(referrer).hostname or ""
    if not host:
        return "direct"
    if re.search(r"google\.|bing\.com|duckduckgo", host):
        return "organic_search"
    if re.search(r"facebook|instagram|linkedin|pinterest", host):
        return "organic_social"
    return "referral"


def test_acquisition_mix_is_realistic(world: list[tuple[str, dict]]) -> None:
    channels: dict[str, int] = defaultdict(int)
    for source, msg in world:
        if source == "Website" and msg["type"] == "page":
            channel = landing_channel(msg["context"]["page"])
            if channel:
                channels[channel] += 1
    total = sum(channels.values())
    for channel in (
        "direct",
        "organic_search",
        "organic_social",
        "referral",
        "cpc+gclid",
        "cpc+fbclid",
        "email",
        "display",
        "affiliate",
    ):
        assert channels[channel] > 0, channel
    assert 0.1 < channels["organic_search"] / total < 0.45
    assert 0.1 < channels["direct"] / total < 0.45
    assert channels["cpc+gclid"] + channels["cpc+fbclid"] > 0.08 * total


def test_some_people_identify_on_several_devices(world: list[tuple[str, dict]]) -> None:
    identifies = [(s, m) for s, m in world if m["type"] == "identify"]
    assert len(identifies) > 100
    for _, msg in identifies:
        if "userId" in msg:
            assert re.fullmatch(r"cus_\d{6,}", msg["userId"])
        if "phone" in msg["traits"]:
            assert re.fullmatch(r"\+[1-9]\d{7,14}", msg["traits"]["phone"])
        if "email" in msg["traits"]:
            assert re.fullmatch(r"[a-z0-9.]+@example\.(com|net|org)", msg["traits"]["email"])
    devices: dict[str, set[str]] = defaultdict(set)
    for source, msg in world:
        if source == "Website" and msg.get("userId"):
            devices[msg["userId"]].add(msg["anonymousId"])
    assert sum(len(ids) > 1 for ids in devices.values()) >= 10
    anonymous_only = {customer(m) for s, m in world if s == "Website"} - {
        customer(m) for _, m in world if m.get("userId")
    }
    assert len(anonymous_only) > CUSTOMERS // 3


def test_identities_are_unique_per_customer(world: list[tuple[str, dict]]) -> None:
    owners: dict[tuple[str, str], set[int]] = defaultdict(set)
    for _, msg in world:
        traits = msg.get("traits") or msg.get("context", {}).get("traits") or {}
        for key in ("email", "phone"):
            if key in traits:
                owners[key, traits[key]].add(customer(msg))
        for key in ("userId", "anonymousId"):
            if key in msg:
                owners[key, msg[key]].add(customer(msg))
    shared = {k: v for k, v in owners.items() if len(v) > 1}
    assert not shared


def test_orders_have_revenue_and_products(world: list[tuple[str, dict]]) -> None:
    orders = events(world, "Order Completed")
    assert {s for s, _ in orders} >= {"Website", "Store POS"}
    for source, msg in orders:
        props = msg["properties"]
        assert isinstance(props["revenue"], float)
        assert props["revenue"] > 0
        assert props["currency"] in {"EUR", "USD"}
        assert props["order_id"]
        assert props["products"]
        for item in props["products"]:
            assert {"product_id", "name", "price", "quantity"} <= item.keys()
        total = sum(i["price"] * i["quantity"] for i in props["products"])
        assert props["revenue"] == pytest.approx(total)
        if source == "Store POS":
            assert props["store_id"].startswith("store-")
    assert len({m["properties"]["order_id"] for _, m in orders}) == len(orders)


def test_abandoned_forms_get_a_call_back(world: list[tuple[str, dict]]) -> None:
    abandoned = {}
    for _, msg in events(world, "Form Abandoned"):
        phone = msg["context"].get("traits", {}).get("phone")
        if phone:
            abandoned[phone] = ts(msg)
    assert abandoned
    callbacks = 0
    for _, msg in events(world, "Call Completed"):
        props = msg["properties"]
        assert props["direction"] in {"inbound", "outbound"}
        assert props["duration_seconds"] > 0
        assert props["summary"]
        assert props["agent"]
        phone = msg["context"]["traits"]["phone"]
        delay = ts(msg) - abandoned.get(phone, END)
        if props["direction"] == "outbound" and timedelta(0) < delay <= timedelta(days=2):
            callbacks += 1
    assert callbacks >= len(abandoned) // 2


def test_email_clicks_land_on_the_website(world: list[tuple[str, dict]]) -> None:
    landings = defaultdict(list)
    for source, msg in world:
        page = msg.get("context", {}).get("page", {})
        if source == "Website" and msg["type"] == "page" and "utm_medium=email" in page["search"]:
            assert "utm_source=newsletter" in page["search"]
            landings[customer(msg)].append(ts(msg))
    clicks = events(world, "Email Clicked")
    assert clicks
    for _, msg in clicks:
        assert msg["userId"]
        assert msg["context"]["traits"]["email"]
        assert msg["properties"]["campaign_name"]
        assert msg["properties"]["email_subject"]
        if ts(msg) > END - timedelta(hours=1):
            continue
        assert any(
            timedelta(0) <= t - ts(msg) < timedelta(hours=1) for t in landings[customer(msg)]
        )


def test_offline_channels_carry_their_identifiers(world: list[tuple[str, dict]]) -> None:
    web_anonymous = {m["anonymousId"] for s, m in world if s == "Website"}
    seen = defaultdict(int)
    for source, msg in world:
        ctx = msg.get("context", {})
        seen[source, msg.get("event") or msg["type"]] += 1
        if source == "Live Chat":
            assert msg["anonymousId"] in web_anonymous
        elif source == "WhatsApp":
            (ext,) = ctx["externalIds"]
            assert ext == {
                "id": ext["id"],
                "type": "whatsapp_id",
                "collection": "users",
                "encoding": "none",
            }
            assert ext["id"].isdigit()
            assert msg["properties"]["direction"] in {"inbound", "outbound"}
        elif source == "SMS Gateway":
            assert ctx["traits"]["phone"].startswith("+")
        elif source == "Store POS" and msg.get("event") == "Store Visited":
            assert ctx["externalIds"][0]["type"] == "loyalty_card"
            assert msg["properties"]["store_id"]
    for key in [
        ("Live Chat", "Chat Started"),
        ("Live Chat", "Chat Message Received"),
        ("WhatsApp", "Message Received"),
        ("WhatsApp", "Message Sent"),
        ("SMS Gateway", "SMS Sent"),
        ("Email Platform", "Email Sent"),
        ("Email Platform", "Email Opened"),
        ("CRM", "Lead Created"),
        ("CRM", "Lead Qualified"),
        ("Store POS", "Store Visited"),
        ("Mobile App", "Application Opened"),
        ("Mobile App", "screen"),
    ]:
        assert seen[key] > 0, key


def test_app_messages_have_the_mobile_sdk_shape(world: list[tuple[str, dict]]) -> None:
    app = [m for s, m in world if s == "Mobile App"]
    assert any(m["type"] == "screen" and m["name"] for m in app)
    for msg in app:
        ctx = msg["context"]
        assert ctx["device"]["type"] in {"ios", "android"}
        assert {"id", "model", "manufacturer"} <= ctx["device"].keys()
        assert ctx["os"]["name"] in {"iOS", "Android"}
        assert ctx["os"]["version"]
        assert {"name", "version", "build"} <= ctx["app"].keys()
        assert ctx["library"]["name"] in {"analytics-ios", "analytics-android"}


def test_lifecycle_only_moves_forward(world: list[tuple[str, dict]]) -> None:
    order = ["lead", "mql", "sql", "customer"]
    stages: dict[str, list[str]] = defaultdict(list)
    for source, msg in world:
        if source == "CRM" and msg["type"] == "identify":
            stages[msg["userId"]].append(msg["traits"]["lifecycle_stage"])
    assert {s for seq in stages.values() for s in seq} == set(order)
    for seq in stages.values():
        ranks = [order.index(s) for s in seq]
        assert ranks == sorted(ranks)
        assert ranks[0] == 0


def test_journeys_span_sessions_and_days(world: list[tuple[str, dict]]) -> None:
    times: dict[str, list[datetime]] = defaultdict(list)
    for source, msg in world:
        if source == "Website" and msg["type"] == "page":
            times[msg["anonymousId"]].append(ts(msg))
    gaps = [b - a for seq in times.values() for a, b in pairwise(seq)]
    short = sum(g < timedelta(minutes=10) for g in gaps)
    long = sum(g >= timedelta(minutes=30) for g in gaps)
    assert short > 0.6 * len(gaps)
    assert long > 0.05 * len(gaps)
    multi_day = sum(len({t.date() for t in seq}) > 1 for seq in times.values())
    assert multi_day > 50


def test_funnel_ratios_are_roughly_right(world: list[tuple[str, dict]]) -> None:
    contacts, qualified, buyers = set(), set(), set()
    orders: dict[int, int] = defaultdict(int)
    for _, msg in world:
        traits = msg.get("traits", {})
        if msg["type"] == "identify" and ("email" in traits or "phone" in traits):
            contacts.add(customer(msg))
        if msg.get("event") == "Lead Qualified":
            qualified.add(customer(msg))
        if msg.get("event") == "Order Completed":
            buyers.add(customer(msg))
            orders[customer(msg)] += 1
    assert 0.25 < len(contacts) / CUSTOMERS < 0.5
    assert 0.06 < len(qualified) / CUSTOMERS < 0.2
    assert 0.03 < len(buyers) / CUSTOMERS < 0.13
    assert any(n > 1 for n in orders.values())
    assert 25 < len(world) / CUSTOMERS < 80


def test_default_end_is_todays_midnight_utc() -> None:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    msgs = list(generate(customers=30, days=3))
    assert msgs
    for _, msg in msgs:
        assert midnight - timedelta(days=3) <= ts(msg) < midnight + timedelta(days=1)


def test_short_windows_and_naive_end() -> None:
    naive = datetime(2025, 1, 1)
    msgs = list(generate(customers=100, days=1, seed=1, end=naive))
    assert msgs
    end = naive.replace(tzinfo=UTC)
    assert all(end - timedelta(days=1) <= ts(m) < end for _, m in msgs)
    assert list(generate(customers=0, end=END)) == []


def test_invalid_arguments_fail_early() -> None:
    with pytest.raises(ValueError, match="days"):
        generate(customers=10, days=0)


def test_generation_is_lazy() -> None:
    source, msg = next(generate(customers=10**9, end=END))
    assert source in SOURCE_NAMES
    assert msg["messageId"] == "demo-7-0-0"
