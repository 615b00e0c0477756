"""Tests for GA4-style channel attribution in plait.collect.channels."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest

from plait.collect.channels import (
    CHANNELS,
    DEFAULT_RULES,
    ChannelRule,
    ChannelRules,
    TrafficSource,
    default_channel,
    event_channel,
    traffic_source,
)

PAGE = "https://shop.example.com/products/blue-shirt"

GA4_ORDER = (
    "Direct",
    "Cross-network",
    "Paid Shopping",
    "Paid Search",
    "Paid Social",
    "Paid Video",
    "Display",
    "Paid Other",
    "Organic Shopping",
    "Organic Social",
    "Organic Video",
    "Organic Search",
    "Referral",
    "Email",
    "Affiliates",
    "Audio",
    "SMS",
    "Mobile Push Notifications",
    "Unassigned",
)


def test_channels_lists_ga4_rules_in_order_then_plait_channels() -> None:
    assert CHANNELS[: len(GA4_ORDER)] == GA4_ORDER
    assert CHANNELS[len(GA4_ORDER) :] == (
        "Store",
        "Phone",
        "Live Chat",
        "WhatsApp",
        "Messenger",
        "Instagram",
        "Telegram",
        "App",
    )


# (source, medium, campaign, expected channel)
GA4_CASES = {
    "Direct": [
        ("(direct)", "(none)", None, "Direct"),
        ("(direct)", "(not set)", None, "Direct"),
        ("(direct)", "(none)", "cross-network", "Direct"),
    ],
    "Cross-network": [
        ("google", "cpc", "Summer Cross-Network push", "Cross-network"),
        ("facebook", "organic", "pmax_cross-network", "Cross-network"),
        ("amazon", "cpc", "cross-network shopping", "Cross-network"),
    ],
    "Paid Shopping": [
        ("amazon", "cpc", None, "Paid Shopping"),
        ("google", "cpc", "summer-shop", "Paid Shopping"),
        ("igshopping", "paid_social", None, "Paid Shopping"),
        ("newsletter", "ppc", "Shopping spree", "Paid Shopping"),
        ("www.ebay.co.uk", "retargeting", None, "Paid Shopping"),
    ],
    "Paid Search": [
        ("google", "cpc", None, "Paid Search"),
        ("Google", "CPC", "brand", "Paid Search"),
        ("bing", "ppc", None, "Paid Search"),
        ("www.google.co.uk", "paidsearch", None, "Paid Search"),
        ("duckduckgo.com", "retargeting", None, "Paid Search"),
        ("google", "cpm", None, "Paid Search"),
    ],
    "Paid Social": [
        ("facebook", "cpc", None, "Paid Social"),
        ("m.facebook.com", "paid", None, "Paid Social"),
        ("linkedin", "paid_social", None, "Paid Social"),
        ("t.co", "cpc", None, "Paid Social"),
    ],
    "Paid Video": [
        ("youtube", "cpc", None, "Paid Video"),
        ("vimeo.com", "paid-video", None, "Paid Video"),
    ],
    "Display": [
        ("dv360", "display", None, "Display"),
        ("criteo", "banner", None, "Display"),
        ("adnetwork", "cpm", None, "Display"),
        ("publisher", "interstitial", None, "Display"),
    ],
    "Paid Other": [
        ("newsletter", "cpc", None, "Paid Other"),
        ("partner", "paid", None, "Paid Other"),
        ("(direct)", "cpc", None, "Paid Other"),
    ],
    "Organic Shopping": [
        ("amazon", "referral", None, "Organic Shopping"),
        ("partner", "referral", "black friday shop", "Organic Shopping"),
        ("etsy.com", "(none)", None, "Organic Shopping"),
        ("partner", "referral", "workshop", "Referral"),
    ],
    "Organic Social": [
        ("facebook", "referral", None, "Organic Social"),
        ("l.facebook.com", "referral", None, "Organic Social"),
        ("newsletter", "social", None, "Organic Social"),
        ("club", "social media", None, "Organic Social"),
        ("pinterest", "organic", None, "Organic Social"),
    ],
    "Organic Video": [
        ("youtube", "referral", None, "Organic Video"),
        ("youtube", "organic", None, "Organic Video"),
        ("publisher", "video_embed", None, "Organic Video"),
    ],
    "Organic Search": [
        ("google", "organic", None, "Organic Search"),
        ("bing", "referral", None, "Organic Search"),
        ("newsengine", "organic", None, "Organic Search"),
        ("google.com", "(none)", None, "Organic Search"),
    ],
    "Referral": [
        ("example.com", "referral", None, "Referral"),
        ("partner", "link", None, "Referral"),
        ("com.example.app", "app", None, "Referral"),
        ("email", "referral", None, "Referral"),
    ],
    "Email": [
        ("newsletter", "email", None, "Email"),
        ("email", "(not set)", None, "Email"),
        ("e-mail", "blast", None, "Email"),
        ("mailchimp", "e_mail", None, "Email"),
    ],
    "Affiliates": [
        ("awin", "affiliate", None, "Affiliates"),
        ("partner", "Affiliate", None, "Affiliates"),
    ],
    "Audio": [
        ("spotify", "audio", None, "Audio"),
        ("podcast", "audio", None, "Audio"),
    ],
    "SMS": [
        ("sms", "(not set)", None, "SMS"),
        ("twilio", "sms", None, "SMS"),
        ("sms", "email", None, "Email"),
    ],
    "Mobile Push Notifications": [
        ("firebase", "(not set)", None, "Mobile Push Notifications"),
        ("braze", "push", None, "Mobile Push Notifications"),
        ("onesignal", "web-push", None, "Mobile Push Notifications"),
        ("app", "mobile_message", None, "Mobile Push Notifications"),
        ("crm", "notification", None, "Mobile Push Notifications"),
    ],
    "Unassigned": [
        ("foo", "bar", None, "Unassigned"),
        ("(not set)", "(not set)", None, "Unassigned"),
        ("(direct)", "bar", None, "Unassigned"),
        ("", "", None, "Unassigned"),
    ],
}


def test_ga4_cases_cover_every_rule() -> None:
    assert set(GA4_CASES) == set(GA4_ORDER)


@pytest.mark.parametrize(
    ("source", "medium", "campaign", "expected"),
    [
        pytest.param(*case, id=f"{rule}:{case[0]}/{case[1]}/{case[2]}")
        for rule, cases in GA4_CASES.items()
        for case in cases
    ],
)
def test_default_channel_follows_ga4_rules_in_order(
    source: str, medium: str, campaign: str | None, expected: str
) -> None:
    assert default_channel(source, medium, campaign) == expected


# --- traffic_source ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("campaign", "page_url", "referrer", "expected"),
    [
        pytest.param(
            {"source": "Newsletter", "medium": "Email", "name": "Spring Sale"},
            PAGE,
            None,
            TrafficSource("newsletter", "email", "Spring Sale", None),
            id="utm-in-campaign-dict",
        ),
        pytest.param(
            None,
            f"{PAGE}?utm_source=google&utm_medium=cpc&utm_campaign=brand%20terms#top",
            None,
            TrafficSource("google", "cpc", "brand terms", None),
            id="utm-only-in-page-url",
        ),
        pytest.param(
            {"name": "spring"},
            f"{PAGE}?utm_source=facebook&utm_medium=paid_social",
            None,
            TrafficSource("facebook", "paid_social", "spring", None),
            id="campaign-without-source-falls-back-to-url",
        ),
        pytest.param(
            {"source": "partner"},
            PAGE,
            None,
            TrafficSource("partner", "(not set)", None, None),
            id="missing-medium-not-set",
        ),
        pytest.param(
            None,
            f"{PAGE}?utm_medium=cpc",
            None,
            TrafficSource("(not set)", "cpc", None, None),
            id="missing-source-not-set",
        ),
        pytest.param(
            {"source": "newsletter", "medium": "email"},
            f"{PAGE}?gclid=abc123",
            "https://www.google.com/",
            TrafficSource("newsletter", "email", None, "gclid"),
            id="utm-beats-click-id-and-referrer",
        ),
        pytest.param(
            None,
            f"{PAGE}?utm_source=partner&utm_medium=referral",
            "https://www.google.com/",
            TrafficSource("partner", "referral", None, None),
            id="utm-beats-referrer",
        ),
        pytest.param(
            None,
            f"{PAGE}?gclid=abc",
            "https://www.bing.com/",
            TrafficSource("google", "cpc", None, "gclid"),
            id="click-id-beats-referrer",
        ),
        pytest.param(
            None,
            PAGE,
            "https://www.google.co.uk/search?q=shirts",
            TrafficSource("google", "organic", None, None),
            id="google-co-uk",
        ),
        pytest.param(
            None,
            PAGE,
            "https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example.com",
            TrafficSource("facebook", "referral", None, None),
            id="l-facebook",
        ),
        pytest.param(
            None,
            PAGE,
            "https://t.co/AbCdEf",
            TrafficSource("twitter", "referral", None, None),
            id="t.co",
        ),
        pytest.param(
            None,
            PAGE,
            "https://lnkd.in/x",
            TrafficSource("linkedin", "referral", None, None),
            id="lnkd.in",
        ),
        pytest.param(
            None,
            PAGE,
            "https://youtu.be/x",
            TrafficSource("youtube", "referral", None, None),
            id="youtu.be",
        ),
        pytest.param(
            None,
            PAGE,
            "https://duckduckgo.com/",
            TrafficSource("duckduckgo", "organic", None, None),
            id="duckduckgo",
        ),
        pytest.param(
            None,
            PAGE,
            "https://uk.search.yahoo.com/search?p=x",
            TrafficSource("yahoo", "organic", None, None),
            id="yahoo-country-subdomain",
        ),
        pytest.param(
            None,
            PAGE,
            "https://www.theguardian.com/fashion/2024/shirts",
            TrafficSource("theguardian.com", "referral", None, None),
            id="news-site",
        ),
        pytest.param(
            None,
            PAGE,
            "https://docs.google.com/document/d/1",
            TrafficSource("docs.google.com", "referral", None, None),
            id="google-subdomain-is-not-search",
        ),
        pytest.param(
            None,
            PAGE,
            "https://www.shop.example.com/cart",
            TrafficSource("(direct)", "(none)", None, None),
            id="same-host-as-page",
        ),
        pytest.param(
            None, PAGE, None, TrafficSource("(direct)", "(none)", None, None), id="no-referrer"
        ),
        pytest.param(
            None, None, None, TrafficSource("(direct)", "(none)", None, None), id="nothing"
        ),
        pytest.param(
            None,
            PAGE,
            "https://mail.google.com/mail/u/0/",
            TrafficSource("gmail", "email", None, None),
            id="webmail",
        ),
        pytest.param(
            None,
            None,
            "android-app://com.google.android.gm",
            TrafficSource("gmail", "email", None, None),
            id="android-gmail-app",
        ),
        pytest.param(
            None,
            None,
            "android-app://com.google.android.googlequicksearchbox/https/www.google.com",
            TrafficSource("google", "organic", None, None),
            id="android-google-app",
        ),
        pytest.param(
            None,
            None,
            "android-app://com.example.reader",
            TrafficSource("com.example.reader", "app", None, None),
            id="android-unknown-app",
        ),
    ],
)
def test_traffic_source(
    campaign: dict[str, Any] | None, page_url: str | None, referrer: str | None, expected: Any
) -> None:
    assert traffic_source(campaign, page_url, referrer) == expected


@pytest.mark.parametrize(
    ("param", "source", "medium", "channel"),
    [
        ("gclid", "google", "cpc", "Paid Search"),
        ("gbraid", "google", "cpc", "Paid Search"),
        ("wbraid", "google", "cpc", "Paid Search"),
        ("dclid", "google", "cpc", "Paid Search"),
        ("msclkid", "bing", "cpc", "Paid Search"),
        ("fbclid", "facebook", "referral", "Organic Social"),
        ("ttclid", "tiktok", "cpc", "Paid Social"),
        ("li_fat_id", "linkedin", "cpc", "Paid Social"),
        ("twclid", "twitter", "cpc", "Paid Social"),
        ("ScCid", "snapchat", "cpc", "Paid Social"),
        ("epik", "pinterest", "cpc", "Paid Social"),
    ],
)
def test_click_ids(param: str, source: str, medium: str, channel: str) -> None:
    found = traffic_source(None, f"{PAGE}?ref=x&{param}=Cj0KCQ123&y=1", None)
    assert found == TrafficSource(source, medium, None, param.lower())
    assert default_channel(found.source, found.medium, found.campaign) == channel


def test_referrer_from_internal_host_is_direct() -> None:
    rules = ChannelRules.from_config({"internal_hosts": ["example.com", "checkout.payments.io"]})
    direct = TrafficSource("(direct)", "(none)", None, None)
    assert traffic_source(None, PAGE, "https://www.example.com/", rules) == direct
    assert traffic_source(None, PAGE, "https://blog.example.com/post", rules) == direct
    assert traffic_source(None, PAGE, "https://checkout.payments.io/done", rules) == direct
    assert traffic_source(None, PAGE, "https://example.org/", rules).medium == "referral"


def test_referral_channels_end_to_end() -> None:
    facebook = traffic_source(None, PAGE, "https://l.facebook.com/l.php")
    assert default_channel(facebook.source, facebook.medium, facebook.campaign) == "Organic Social"
    news = traffic_source(None, PAGE, "https://www.theguardian.com/x")
    assert default_channel(news.source, news.medium, news.campaign) == "Referral"
    gmail = traffic_source(None, None, "android-app://com.google.android.gm")
    assert default_channel(gmail.source, gmail.medium, gmail.campaign) == "Email"


JUNK_URLS = [
    "",
    "   ",
    "not a url",
    "http://",
    "https:///path",
    "://x",
    "http://[::1",
    "http://user:pw@",
    "https://exa mple.com/x",
    "https://%zz%zz/?utm_source=%zz&gclid=%",
    "?utm_source=&utm_medium=",
    "https://example.com/?&&=&utm_source",
    "javascript:alert(1)",
    "android-app://",
    "android-app:///https/",
    "ios-app://",
    "\x00\uffff\ud800",
    "https://" + "a." * 5000 + "com/",
    "https://example.com/?" + "utm_source=x&" * 5000,
]


@pytest.mark.parametrize("url", JUNK_URLS)
def test_malformed_urls_do_not_raise(url: str) -> None:
    found = traffic_source(None, url, url)
    assert isinstance(found, TrafficSource)
    assert isinstance(default_channel(found.source, found.medium, found.campaign), str)


# --- event_channel -------------------------------------------------------------------------------


def analytics_js_page(referrer: str = "", url: str = PAGE) -> tuple[dict, dict]:
    page = {"path": "/products/blue-shirt", "referrer": referrer, "search": "", "url": url}
    return (
        {"library": {"name": "analytics.js"}, "page": page, "userAgent": "Mozilla/5.0"},
        {"path": page["path"], "referrer": referrer, "url": url, "title": "Blue shirt"},
    )


def test_context_channel_overrides_everything() -> None:
    context, properties = analytics_js_page("https://www.google.com/")
    context["channel"] = "Phone"
    assert event_channel(context, properties, "page", "Store") == ("Phone", None)


def test_context_channel_is_canonicalised_and_custom_names_pass_through() -> None:
    assert event_channel({"channel": "whatsapp"}, None, "track", None) == ("WhatsApp", None)
    assert event_channel({"channel": "live_chat"}, None, "track", None) == ("Live Chat", None)
    assert event_channel({"channel": " Partners "}, None, "track", None) == ("Partners", None)


def test_segment_transport_channel_is_not_a_marketing_channel() -> None:
    assert event_channel({"channel": "server"}, {}, "track", None) == (None, None)
    assert event_channel({"channel": "browser"}, {}, "track", "Store") == ("Store", None)


def test_source_channel_overrides_web_context() -> None:
    context, properties = analytics_js_page("https://www.google.com/")
    assert event_channel(context, properties, "page", "Store") == ("Store", None)
    assert event_channel(None, None, "track", "Phone") == ("Phone", None)


def test_server_event_without_context_has_no_channel() -> None:
    assert event_channel(None, {"order_id": "1"}, "track", None) == (None, None)
    assert event_channel({}, {"order_id": "1"}, "track", None) == (None, None)
    server = {"library": {"name": "analytics-python"}, "ip": "10.0.0.1"}
    assert event_channel(server, {"revenue": 10}, "track", None) == (None, None)
    assert event_channel(server, {"revenue": 10}, "identify", None) == (None, None)


def test_page_event_without_referrer_is_direct() -> None:
    context, properties = analytics_js_page()
    assert event_channel(context, properties, "page", None) == (
        "Direct",
        TrafficSource("(direct)", "(none)", None, None),
    )
    assert event_channel({}, {}, "page", None)[0] == "Direct"


def test_page_event_from_google_is_organic_search() -> None:
    context, properties = analytics_js_page("https://www.google.com/")
    channel, found = event_channel(context, properties, "page", None)
    assert channel == "Organic Search"
    assert found == TrafficSource("google", "organic", None, None)


def test_track_event_with_web_context_and_campaign() -> None:
    context, _ = analytics_js_page("https://www.google.com/", f"{PAGE}?gclid=x")
    context["campaign"] = {"source": "google", "medium": "cpc", "name": "Brand"}
    channel, found = event_channel(context, {"product_id": "p1"}, "track", None)
    assert channel == "Paid Search"
    assert found == TrafficSource("google", "cpc", "Brand", "gclid")


def test_page_call_properties_supply_url_and_referrer() -> None:
    properties = {"url": f"{PAGE}?utm_source=newsletter&utm_medium=email", "referrer": ""}
    assert event_channel({"ip": "1.2.3.4"}, properties, "page", None)[0] == "Email"
    properties = {"url": PAGE, "referrer": "https://www.facebook.com/"}
    assert event_channel({}, properties, "page", None)[0] == "Organic Social"


def test_page_search_is_used_when_url_is_missing() -> None:
    context = {"page": {"path": "/", "search": "?utm_source=braze&utm_medium=push"}}
    assert event_channel(context, {}, "track", None)[0] == "Mobile Push Notifications"


def test_mobile_screen_event_uses_context_referrer() -> None:
    context = {
        "app": {"name": "Shop"},
        "referrer": {"type": "app", "url": "android-app://com.instagram.android"},
    }
    channel, found = event_channel(context, {"name": "Home"}, "screen", None)
    assert (channel, found) == (
        "Organic Social",
        TrafficSource("instagram", "referral", None, None),
    )
    deep_link = {"referrer": {"link": "shopapp://promo?utm_source=sms&utm_campaign=spring"}}
    assert event_channel(deep_link, {}, "screen", None)[0] == "SMS"
    assert event_channel({"app": {"name": "Shop"}}, {}, "screen", None)[0] == "Direct"


JUNK_VALUES: list[Any] = [
    None,
    "",
    "x",
    0,
    -1.5,
    True,
    [],
    ["page"],
    {},
    {"url": 3},
    {"url": ["x"], "referrer": {"a": 1}},
    b"bytes",
    object(),
    float("nan"),
]


@pytest.mark.parametrize("junk", JUNK_VALUES, ids=lambda value: type(value).__name__)
def test_event_channel_tolerates_junk(junk: Any) -> None:
    contexts = [
        junk,
        {"channel": junk},
        {"page": junk},
        {"page": {"url": junk, "referrer": junk, "search": junk, "path": junk}},
        {"campaign": junk},
        {"campaign": {"source": junk, "medium": junk, "name": junk}},
        {"referrer": junk},
        {"referrer": {"url": junk, "link": junk}},
    ]
    for context in contexts:
        for event_type in ("page", "screen", "track", junk):
            channel, found = event_channel(context, junk, event_type, None)
            assert channel is None or isinstance(channel, str)
            assert found is None or isinstance(found, TrafficSource)
        event_channel(context, {"url": junk, "referrer": junk}, "page", junk)
    traffic_source(junk, junk, junk)
    default_channel(junk, junk, junk)


def test_event_channel_tolerates_random_strings() -> None:
    rng = random.Random(20240601)
    alphabet = string.printable + "éß中\u200b/:?#&=%@[]."
    pieces = ["https://", "//", "android-app://", "?", "utm_source=", "gclid=", "www.", ".com"]
    for _ in range(500):
        text = "".join(
            rng.choice(pieces) if rng.random() < 0.2 else rng.choice(alphabet)
            for _ in range(rng.randint(0, 60))
        )
        context = {"page": {"url": text, "referrer": text[::-1]}, "campaign": {"name": text}}
        channel, _ = event_channel(context, {"url": text}, "page", None)
        assert isinstance(channel, str)


# --- custom rules --------------------------------------------------------------------------------


def test_custom_rule_is_evaluated_before_ga4_rules() -> None:
    rules = ChannelRules.from_config(
        {
            "rules": [
                {"channel": "Partners", "source": "awin|impact", "medium": "cpc"},
                {"channel": "Brand Search", "source": "google", "campaign": "^brand"},
                {"channel": "Paid Social", "medium": "boosted"},
            ]
        }
    )
    assert default_channel("awin", "cpc", None, rules) == "Partners"
    assert default_channel("AWIN", "CPC", None, rules) == "Partners"
    assert default_channel("awin.com", "cpc", None, rules) == "Paid Other"
    assert default_channel("google", "cpc", "Brand - UK", rules) == "Brand Search"
    assert default_channel("google", "cpc", "generic", rules) == "Paid Search"
    assert default_channel("google", "cpc", None, rules) == "Paid Search"
    assert default_channel("instagram", "boosted", None, rules) == "Paid Social"
    assert default_channel("google", "cpc", "brand") == "Paid Search"


def test_custom_rule_applies_through_event_channel() -> None:
    rules = ChannelRules.from_config({"rules": [{"channel": "Store", "medium": "qr"}]})
    context = {"page": {"url": f"{PAGE}?utm_source=poster&utm_medium=QR"}}
    channel, found = event_channel(context, {}, "page", None, rules)
    assert channel == "Store"
    assert found == TrafficSource("poster", "qr", None, None)


def test_added_sources_extend_the_builtin_lists() -> None:
    rules = ChannelRules.from_config(
        {
            "social_sources": ["Mastodon.Example", "forum"],
            "search_sources": ["kagi-ish"],
            "shopping_sources": ["bol.com"],
            "video_sources": ["peertube"],
        }
    )
    assert default_channel("mastodon.example", "referral", None, rules) == "Organic Social"
    assert default_channel("forum", "cpc", None, rules) == "Paid Social"
    assert default_channel("kagi-ish", "referral", None, rules) == "Organic Search"
    assert default_channel("bol.com", "referral", None, rules) == "Organic Shopping"
    assert default_channel("peertube", "referral", None, rules) == "Organic Video"
    assert default_channel("facebook", "referral", None, rules) == "Organic Social"
    assert default_channel("forum", "referral", None) == "Referral"
    found = traffic_source(None, PAGE, "https://mastodon.example/@brand", rules)
    assert found == TrafficSource("mastodon.example", "referral", None, None)
    assert default_channel(found.source, found.medium, found.campaign, rules) == "Organic Social"


def test_empty_config_is_the_default() -> None:
    assert ChannelRules.from_config({}) == DEFAULT_RULES


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"rules": [{"channel": "X", "source": "(unclosed"}]}, "regex", id="bad-regex"),
        pytest.param({"rules": [{"channel": "X", "campaign": "*"}]}, "regex", id="bad-campaign"),
        pytest.param({"rulez": []}, "rulez", id="unknown-key"),
        pytest.param({"rules": [{"channel": "X", "sauce": "a"}]}, "sauce", id="unknown-rule-key"),
        pytest.param({"rules": [{"source": "a"}]}, "channel", id="missing-channel"),
        pytest.param({"rules": [{"channel": ""}]}, "channel", id="empty-channel"),
        pytest.param({"rules": [{"channel": "X", "medium": 3}]}, "medium", id="non-string-regex"),
        pytest.param({"rules": {"channel": "X"}}, "rules", id="rules-not-a-list"),
        pytest.param({"rules": ["X"]}, "table", id="rule-not-a-table"),
        pytest.param({"social_sources": "forum"}, "social_sources", id="list-is-a-string"),
        pytest.param({"search_sources": [1]}, "search_sources", id="list-of-non-strings"),
        pytest.param({"internal_hosts": None}, "internal_hosts", id="hosts-not-a-list"),
    ],
)
def test_invalid_config_raises_value_error(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChannelRules.from_config(config)


def test_channel_rule_validates_on_construction() -> None:
    with pytest.raises(ValueError, match="regex"):
        ChannelRule("X", source="[")
    rule = ChannelRule("X", source="a.*")
    assert rule == ChannelRule("X", source="a.*")
    assert hash(rule) == hash(ChannelRule("X", source="a.*"))
