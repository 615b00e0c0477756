"""Marketing-channel attribution for tracked events.

Each event is assigned a channel following Google Analytics 4's default channel grouping,
evaluated in GA4's documented rule order. The traffic source (source / medium / campaign) is
inferred from, in order of precedence, UTM parameters (Segment ``context.campaign`` or the page
URL), ad click ids, and the referrer. User-defined rules from ``plait.toml`` are evaluated before
the GA4 rules, and Plait adds channels for offline and messaging touchpoints (a store, a call
centre, WhatsApp...) that ingesting sources or the events themselves can name directly.

Everything here is a pure function over plain data and runs for every ingested event, so URL
handling is hand-rolled rather than going through ``urllib.parse.urlsplit``, patterns are
precompiled, and hostname / channel classification is memoised with ``functools.lru_cache``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "CHANNELS",
    "DEFAULT_RULES",
    "ChannelRule",
    "ChannelRules",
    "TrafficSource",
    "default_channel",
    "event_channel",
    "traffic_source",
]

GA4_CHANNELS: tuple[str, ...] = (
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
PLAIT_CHANNELS: tuple[str, ...] = (
    "Store",
    "Phone",
    "Live Chat",
    "WhatsApp",
    "Messenger",
    "Instagram",
    "Telegram",
    "App",
)
CHANNELS: tuple[str, ...] = GA4_CHANNELS + PLAIT_CHANNELS

DIRECT_SOURCE = "(direct)"
NONE_MEDIUM = "(none)"
NOT_SET = "(not set)"

# --- Source categories ---------------------------------------------------------------------------
# Curated from GA4's source-category list. Bare names also match their domain forms
# ("google" matches google.co.uk, "pinterest" matches br.pinterest.com); full hosts are listed
# where a sub-site belongs to a different category than its parent (blog.naver.com is social,
# naver is search). Generic words GA4 lists (cnn, globo, terra...) are left out because the
# domain-form matching would over-apply them.

_BUILTIN_SEARCH_SOURCES = frozenset(
    {
        "360.cn",
        "aol",
        "ask",
        "auone",
        "baidu",
        "biglobe",
        "bing",
        "brave",
        "centrum.cz",
        "cse.google.com",
        "daum",
        "dogpile",
        "duckduckgo",
        "ecosia",
        "eniro",
        "exalead",
        "excite",
        "firmy.cz",
        "go.mail.ru",
        "google",
        "google-play",
        "googlemybusiness",
        "kagi",
        "kvasir",
        "lite.qwant.com",
        "lycos",
        "mojeek",
        "msn",
        "najdi",
        "naver",
        "news.google.com",
        "ntp.msn.com",
        "onet",
        "perplexity",
        "petalsearch",
        "qwant",
        "rambler",
        "search-results",
        "search.google.com",
        "search.smt.docomo.ne.jp",
        "secureurl.ukr.net",
        "seznam",
        "so.com",
        "sogou",
        "startpage",
        "startsiden",
        "tut.by",
        "ukr",
        "virgilio",
        "wap.sogou.com",
        "websearch.rakuten.co.jp",
        "yahoo",
        "yandex",
        "you.com",
        "zen.yandex.ru",
    }
)

_BUILTIN_SOCIAL_SOURCES = frozenset(
    {
        "academia.edu",
        "ameblo.jp",
        "answers.yahoo.com",
        "ask.fm",
        "away.vk.com",
        "b.hatena.ne.jp",
        "badoo",
        "bit.ly",
        "blog.naver.com",
        "blog.yahoo.co.jp",
        "blogger",
        "blogspot",
        "bluesky",
        "bsky.app",
        "buzzfeed",
        "cafe.naver.com",
        "chat.zalo.me",
        "deviantart",
        "digg",
        "discord",
        "disqus",
        "douban",
        "facebook",
        "fb",
        "fb.me",
        "flickr",
        "flipboard",
        "foursquare",
        "getpocket.com",
        "glassdoor",
        "goo.gl",
        "goodreads",
        "gree.jp",
        "groups.google.com",
        "hatena",
        "hootsuite",
        "houzz",
        "ig",
        "instagram",
        "is.gd",
        "kakao",
        "kin.naver.com",
        "line",
        "linkedin",
        "livejournal",
        "lnkd.in",
        "mastodon",
        "mastodon.social",
        "medium.com",
        "meetup",
        "messages.google.com",
        "messenger",
        "mixi.jp",
        "myspace",
        "news.ycombinator.com",
        "nextdoor",
        "odnoklassniki",
        "ok.ru",
        "old.reddit.com",
        "out.reddit.com",
        "pin.it",
        "pinterest",
        "plus.google.com",
        "qzone.qq.com",
        "quora",
        "reddit",
        "redd.it",
        "renren",
        "scribd",
        "sites.google.com",
        "skype",
        "slideshare.net",
        "smartnews.com",
        "snapchat",
        "stackexchange",
        "stackoverflow",
        "t.co",
        "t.me",
        "telegram",
        "threads",
        "tiktok",
        "tinyurl",
        "tripadvisor",
        "tumblr",
        "twitter",
        "vk",
        "vkontakte",
        "wa.me",
        "wechat",
        "weibo",
        "whatsapp",
        "wordpress",
        "x",
        "xing",
        "yammer",
        "yelp",
        "zalo",
    }
)

_BUILTIN_SHOPPING_SOURCES = frozenset(
    {
        "alibaba",
        "aliexpress",
        "amazon",
        "apps.shopify.com",
        "checkout.shopify.com",
        "checkout.stripe.com",
        "ebay",
        "etsy",
        "google shopping",
        "igshopping",
        "mercadolibre",
        "one.walmart.com",
        "partners.shopify.com",
        "shein",
        "shop.app",
        "shopify",
        "shopping.google.com",
        "shopping.naver.com",
        "shopping.yahoo.co.jp",
        "shopping.yahoo.com",
        "shopzilla",
        "simplycodes.com",
        "store.shopping.yahoo.co.jp",
        "stripe",
        "temu",
        "walmart",
    }
)

_BUILTIN_VIDEO_SOURCES = frozenset(
    {
        "bilibili",
        "blog.twitch.tv",
        "crackle",
        "curiositystream",
        "d.tube",
        "dailymotion",
        "dashboard.twitch.tv",
        "disneyplus",
        "fast.wistia.net",
        "hulu",
        "iq.com",
        "iqiyi",
        "justin.tv",
        "music.youtube.com",
        "netflix",
        "player.twitch.tv",
        "player.vimeo.com",
        "rumble",
        "ted",
        "twitch",
        "utreon",
        "veoh",
        "vimeo",
        "wistia",
        "youku",
        "youtube",
    }
)

# Short-link and rebranded hosts whose canonical source name differs from their domain.
_HOST_ALIASES: Mapping[str, str] = {
    "bsky.app": "bluesky",
    "fb.com": "facebook",
    "fb.me": "facebook",
    "ig.me": "instagram",
    "lnkd.in": "linkedin",
    "m.me": "messenger",
    "pin.it": "pinterest",
    "redd.it": "reddit",
    "t.co": "twitter",
    "t.me": "telegram",
    "wa.me": "whatsapp",
    "x.com": "twitter",
    "ya.ru": "yandex",
    "youtu.be": "youtube",
}

# Webmail front-ends: a click from them is an email touch, not a referral or a search.
_WEBMAIL_HOSTS: Mapping[str, str] = {
    "inbox.google.com": "gmail",
    "mail.aol.com": "aol mail",
    "mail.google.com": "gmail",
    "mail.proton.me": "proton mail",
    "mail.yahoo.com": "yahoo mail",
    "mail.yandex.ru": "yandex mail",
    "mail.zoho.com": "zoho mail",
    "outlook.live.com": "outlook",
    "outlook.office.com": "outlook",
    "outlook.office365.com": "outlook",
}

# Android app referrers (android-app://<package>) of well-known apps -> (source, medium).
_APP_REFERRERS: Mapping[str, tuple[str, str]] = {
    "ch.protonmail.android": ("proton mail", "email"),
    "com.duckduckgo.mobile.android": ("duckduckgo", "organic"),
    "com.facebook.katana": ("facebook", "referral"),
    "com.facebook.lite": ("facebook", "referral"),
    "com.facebook.orca": ("messenger", "referral"),
    "com.google.android.apps.searchlite": ("google", "organic"),
    "com.google.android.gm": ("gmail", "email"),
    "com.google.android.googlequicksearchbox": ("google", "organic"),
    "com.google.android.youtube": ("youtube", "referral"),
    "com.instagram.android": ("instagram", "referral"),
    "com.linkedin.android": ("linkedin", "referral"),
    "com.microsoft.bing": ("bing", "organic"),
    "com.microsoft.office.outlook": ("outlook", "email"),
    "com.pinterest": ("pinterest", "referral"),
    "com.reddit.frontpage": ("reddit", "referral"),
    "com.snapchat.android": ("snapchat", "referral"),
    "com.ss.android.ugc.trill": ("tiktok", "referral"),
    "com.twitter.android": ("twitter", "referral"),
    "com.whatsapp": ("whatsapp", "referral"),
    "com.yahoo.mobile.client.android.mail": ("yahoo mail", "email"),
    "com.zhiliaoapp.musically": ("tiktok", "referral"),
    "jp.naver.line.android": ("line", "referral"),
    "org.telegram.messenger": ("telegram", "referral"),
}

# Ad click ids, in precedence order, -> (source, medium). fbclid rides on organic and paid
# Facebook links alike, so it only proves the visit came from Facebook.
_CLICK_IDS: tuple[tuple[str, str, str], ...] = (
    ("gclid", "google", "cpc"),
    ("gbraid", "google", "cpc"),
    ("wbraid", "google", "cpc"),
    ("dclid", "google", "cpc"),
    ("msclkid", "bing", "cpc"),
    ("fbclid", "facebook", "referral"),
    ("ttclid", "tiktok", "cpc"),
    ("li_fat_id", "linkedin", "cpc"),
    ("twclid", "twitter", "cpc"),
    ("sccid", "snapchat", "cpc"),
    ("epik", "pinterest", "cpc"),
)
_UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign")
_QUERY_KEYS = frozenset(_UTM_PARAMS) | {key for key, _, _ in _CLICK_IDS}

# --- GA4 rule constants --------------------------------------------------------------------------
_PAID_MEDIUM = re.compile(r".*cp.*|ppc|retargeting|paid.*", re.S)
_SHOP_CAMPAIGN = re.compile(r"^(.*(([^a-df-z]|^)shop|shopping).*)$", re.S)
_DISPLAY_MEDIA = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
_SOCIAL_MEDIA = frozenset(
    {"social", "social-network", "social-media", "sm", "social network", "social media"}
)
_REFERRAL_MEDIA = frozenset({"referral", "app", "link"})
_EMAIL_VALUES = frozenset({"email", "e-mail", "e_mail", "e mail"})
_DIRECT_MEDIA = frozenset({NOT_SET, NONE_MEDIUM})

_SEARCH, _SOCIAL, _SHOPPING, _VIDEO = 1, 2, 4, 8

# --- Host normalisation --------------------------------------------------------------------------
_DISPLAY_PREFIXES = frozenset({"www", "m", "l", "lm"})
_MATCH_PREFIXES = _DISPLAY_PREFIXES | {"mobile", "touch", "web", "amp", "mbasic", "search"}
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gob"})
_URL_RE = re.compile(r"\s*(?:([A-Za-z][A-Za-z0-9+.\-]*):)?//([^/?#\s\\]*)([^#]*)", re.S)
_BARE_HOST_RE = re.compile(r"\s*([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)(?=[/:?#]|\s*$)([^#]*)", re.S)
_APP_SCHEMES = frozenset({"android-app", "ios-app"})

_MAX_TEXT = 2048
_MAX_CHANNEL_NAME = 100
# Segment's top-level ``channel`` names the transport, not a marketing channel.
_TRANSPORT_CHANNELS = frozenset({"browser", "server", "mobile", "client"})


# --- Small, junk-tolerant helpers ----------------------------------------------------------------


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value[:_MAX_TEXT] if value else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _mapping(value: Any) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, (dict, Mapping)):
        return value
    return None


def _strip_prefixes(host: str, prefixes: frozenset[str]) -> str:
    while True:
        head, dot, rest = host.partition(".")
        if not dot or head not in prefixes or "." not in rest:
            return host
        host = rest


def _split_url(url: str) -> tuple[str, str, str] | None:
    """(scheme, host, path-and-query) of a URL, tolerating junk; None when there is no host."""
    match = _URL_RE.match(url)
    if match is not None:
        scheme, authority, rest = match.groups()
    else:
        match = _BARE_HOST_RE.match(url)
        if match is None:
            return None
        scheme, authority, rest = None, match.group(1), match.group(2)
    host = authority.rpartition("@")[2]
    host = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    return (scheme or "").lower(), host, rest


def _query_params(url: str) -> dict[str, str]:
    """The UTM and click-id parameters of a URL's query string (first occurrence wins)."""
    start = url.find("?")
    if start < 0:
        return {}
    end = url.find("#", start)
    query = url[start + 1 : end if end >= 0 else len(url)]
    params: dict[str, str] = {}
    for part in query.split("&"):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key in _QUERY_KEYS and key not in params:
            decoded = _text(unquote_plus(value)) if "%" in value or "+" in value else _text(value)
            if decoded is not None:
                params[key] = decoded
    return params


def _public_suffix_brand(host: str) -> str | None:
    """'google' for google.co.uk / google.com; None when the host has a further subdomain."""
    labels = host.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return None
    suffix = 2 if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2 else 1
    if len(labels) != suffix + 1 or not labels[0]:
        return None
    return labels[0]


def _strip_country(host: str) -> str:
    while True:
        head, dot, rest = host.partition(".")
        if not dot or "." not in rest or not (len(head) == 2 or head in _MATCH_PREFIXES):
            return host
        host = rest


def _forms(name: str) -> Iterator[str]:
    """Candidate spellings of a source or hostname, most specific first."""
    yield name
    if "." not in name or " " in name:
        return
    host = _strip_prefixes(name, _MATCH_PREFIXES)
    alias = _HOST_ALIASES.get(host)
    if alias is not None:
        yield alias
    if host != name:
        yield host
    bare = _strip_country(host)
    if bare != host:
        yield bare
    brand = _public_suffix_brand(bare)
    if brand is not None:
        yield brand


def _channel_key(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


_CHANNEL_BY_KEY: Mapping[str, str] = {_channel_key(name): name for name in CHANNELS}


@dataclass(frozen=True)
class ChannelRule:
    """A user-defined channel rule, evaluated before the GA4 rules; first match wins."""

    channel: str
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    _source_re: re.Pattern[str] | None = field(init=False, default=None, repr=False, compare=False)
    _medium_re: re.Pattern[str] | None = field(init=False, default=None, repr=False, compare=False)
    _campaign_re: re.Pattern[str] | None = field(
        init=False, default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Validate the rule and precompile its patterns so bad config fails at load time."""
        if not isinstance(self.channel, str) or not self.channel.strip():
            raise ValueError(f"channel rule needs a non-empty 'channel' name, got {self.channel!r}")
        for attr in ("source", "medium", "campaign"):
            pattern = getattr(self, attr)
            if pattern is None:
                continue
            if not isinstance(pattern, str):
                raise ValueError(
                    f"channel rule {self.channel!r}: {attr!r} must be a regex string, "
                    f"got {type(pattern).__name__}"
                )
            try:
                compiled = re.compile(pattern, re.IGNORECASE | re.S)
            except re.error as exc:
                raise ValueError(
                    f"channel rule {self.channel!r}: invalid {attr} regex {pattern!r}: {exc}"
                ) from None
            object.__setattr__(self, f"_{attr}_re", compiled)

    def matches(self, source: str, medium: str, campaign: str) -> bool:
        """Whether this rule applies to a (source, medium, campaign) triple."""
        return (
            (self._source_re is None or self._source_re.fullmatch(source) is not None)
            and (self._medium_re is None or self._medium_re.fullmatch(medium) is not None)
            and (self._campaign_re is None or self._campaign_re.search(campaign) is not None)
        )


_CONFIG_KEYS = frozenset(
    {
        "rules",
        "search_sources",
        "social_sources",
        "shopping_sources",
        "video_sources",
        "internal_hosts",
    }
)
_RULE_KEYS = frozenset({"channel", "source", "medium", "campaign"})


def _name_set(values: Any, what: str) -> frozenset[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple, set, frozenset)):
        raise ValueError(f"{what} must be a list of strings, got {type(values).__name__}")
    names = set()
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{what} must contain non-empty strings, got {value!r}")
        names.add(value.strip().lower())
    return frozenset(names)


def _host_set(values: Any, what: str) -> frozenset[str]:
    hosts = set()
    for value in _name_set(values, what):
        parsed = _split_url(value)
        host = parsed[1] if parsed is not None else value.strip("/")
        hosts.add(_strip_prefixes(host, _DISPLAY_PREFIXES) if host else value)
    return frozenset(hosts)


@dataclass(frozen=True)
class ChannelRules:
    """Channel configuration: custom rules plus the source lists the GA4 rules consult."""

    custom: tuple[ChannelRule, ...] = ()
    search_sources: frozenset[str] = _BUILTIN_SEARCH_SOURCES
    social_sources: frozenset[str] = _BUILTIN_SOCIAL_SOURCES
    shopping_sources: frozenset[str] = _BUILTIN_SHOPPING_SOURCES
    video_sources: frozenset[str] = _BUILTIN_VIDEO_SOURCES
    internal_hosts: frozenset[str] = frozenset()
    _categories: Mapping[str, int] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Normalise the lists to lower-cased frozensets and index them for fast lookup."""
        custom = tuple(self.custom)
        for rule in custom:
            if not isinstance(rule, ChannelRule):
                raise ValueError(f"custom rules must be ChannelRule objects, got {rule!r}")
        object.__setattr__(self, "custom", custom)
        categories: dict[str, int] = {}
        for attr, flag in (
            ("search_sources", _SEARCH),
            ("social_sources", _SOCIAL),
            ("shopping_sources", _SHOPPING),
            ("video_sources", _VIDEO),
        ):
            names = _name_set(getattr(self, attr), attr)
            object.__setattr__(self, attr, names)
            for name in names:
                categories[name] = categories.get(name, 0) | flag
        object.__setattr__(self, "internal_hosts", _host_set(self.internal_hosts, "internal_hosts"))
        object.__setattr__(self, "_categories", categories)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ChannelRules:
        """Build rules from the parsed ``[channels]`` table of plait.toml, rejecting bad config."""
        if not isinstance(config, Mapping):
            raise ValueError(f"channel config must be a table, got {type(config).__name__}")
        unknown = sorted(str(key) for key in config if key not in _CONFIG_KEYS)
        if unknown:
            raise ValueError(
                f"unknown channel config key(s): {', '.join(unknown)}; "
                f"expected any of: {', '.join(sorted(_CONFIG_KEYS))}"
            )
        raw_rules = config.get("rules", ())
        if isinstance(raw_rules, (str, Mapping)) or not isinstance(raw_rules, (list, tuple)):
            raise ValueError("channel config 'rules' must be a list of tables")
        custom = []
        for index, raw in enumerate(raw_rules):
            if not isinstance(raw, Mapping):
                raise ValueError(f"channel rule #{index + 1} must be a table, got {raw!r}")
            bad = sorted(str(key) for key in raw if key not in _RULE_KEYS)
            if bad:
                raise ValueError(
                    f"channel rule #{index + 1}: unknown key(s) {', '.join(bad)}; "
                    f"expected any of: channel, source, medium, campaign"
                )
            if "channel" not in raw:
                raise ValueError(f"channel rule #{index + 1} is missing 'channel'")
            try:
                custom.append(ChannelRule(**{str(key): value for key, value in raw.items()}))
            except ValueError as exc:
                raise ValueError(f"channel rule #{index + 1}: {exc}") from None
        extra = {
            attr: _name_set(config.get(attr, ()), attr)
            for attr in ("search_sources", "social_sources", "shopping_sources", "video_sources")
        }
        return cls(
            custom=tuple(custom),
            search_sources=_BUILTIN_SEARCH_SOURCES | extra["search_sources"],
            social_sources=_BUILTIN_SOCIAL_SOURCES | extra["social_sources"],
            shopping_sources=_BUILTIN_SHOPPING_SOURCES | extra["shopping_sources"],
            video_sources=_BUILTIN_VIDEO_SOURCES | extra["video_sources"],
            internal_hosts=_host_set(config.get("internal_hosts", ()), "internal_hosts"),
        )


DEFAULT_RULES = ChannelRules()


@dataclass(frozen=True, slots=True)
class TrafficSource:
    """Where a visit came from, in GA4's source / medium / campaign terms."""

    source: str
    medium: str
    campaign: str | None
    click_id: str | None


_DIRECT = TrafficSource(DIRECT_SOURCE, NONE_MEDIUM, None, None)


# --- Source resolution ---------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def _resolve(rules: ChannelRules, name: str) -> tuple[str, int]:
    """(canonical source name, category bit mask) for a source name or hostname."""
    categories = rules._categories
    for form in _forms(name):
        mask = categories.get(form)
        if mask:
            return _HOST_ALIASES.get(form, form), mask
    return name, 0


def _is_internal(rules: ChannelRules, host: str) -> bool:
    for internal in rules.internal_hosts:
        if host == internal or host.endswith("." + internal):
            return True
    return False


@lru_cache(maxsize=8192)
def _referrer_host_source(rules: ChannelRules, host: str) -> tuple[str, str] | None:
    """(source, medium) for a referring web host; None when the host is the brand's own."""
    display = _strip_prefixes(host, _DISPLAY_PREFIXES)
    if rules.internal_hosts and _is_internal(rules, display):
        return None
    webmail = _WEBMAIL_HOSTS.get(_strip_country(display)) or _WEBMAIL_HOSTS.get(display)
    if webmail is not None:
        return webmail, "email"
    canonical, mask = _resolve(rules, host)
    if not mask:
        return _HOST_ALIASES.get(display, display), "referral"
    return canonical, "organic" if mask & _SEARCH else "referral"


def _app_referrer_source(rules: ChannelRules, package: str, rest: str) -> tuple[str, str] | None:
    known = _APP_REFERRERS.get(package)
    if known is not None:
        return known
    if rules.internal_hosts and _is_internal(rules, package):
        return None
    parts = rest.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() in ("http", "https") and parts[1]:
        web = _split_url(f"//{parts[1]}")
        if web is not None:
            return _referrer_host_source(rules, web[1])
    return package, "app"


def _referrer_source(
    referrer: str, page_url: str | None, rules: ChannelRules
) -> tuple[str, str] | None:
    parsed = _split_url(referrer)
    if parsed is None:
        return None
    scheme, host, rest = parsed
    if scheme in _APP_SCHEMES:
        return _app_referrer_source(rules, host, rest)
    bare = _strip_prefixes(host, _DISPLAY_PREFIXES)
    if page_url and bare in page_url.lower():
        page = _split_url(page_url)
        if page is not None and _strip_prefixes(page[1], _DISPLAY_PREFIXES) == bare:
            return None
    return _referrer_host_source(rules, host)


# --- Public API ----------------------------------------------------------------------------------


def traffic_source(
    campaign: Mapping[str, Any] | None,
    page_url: str | None,
    referrer: str | None,
    rules: ChannelRules = DEFAULT_RULES,
) -> TrafficSource:
    """Infer source / medium / campaign from UTMs, then click ids, then the referrer."""
    return _infer_source(_mapping(campaign), _text(page_url), _text(referrer), rules)


def _infer_source(
    fields: Mapping[str, Any] | None,
    page_url: str | None,
    referrer: str | None,
    rules: ChannelRules,
) -> TrafficSource:
    source = medium = name = None
    if fields is not None:
        source = _text(fields.get("source"))
        medium = _text(fields.get("medium"))
        name = _text(fields.get("name")) or _text(fields.get("campaign"))
    params = _query_params(page_url) if page_url is not None else {}
    if params:
        source = source or params.get("utm_source")
        medium = medium or params.get("utm_medium")
        name = name or params.get("utm_campaign")
    click_id = next((key for key, _, _ in _CLICK_IDS if key in params), None) if params else None
    if source or medium:
        return TrafficSource(
            (source or NOT_SET).lower(), (medium or NOT_SET).lower(), name, click_id
        )
    if click_id is not None:
        _, click_source, click_medium = next(row for row in _CLICK_IDS if row[0] == click_id)
        return TrafficSource(click_source, click_medium, name, click_id)
    found = _referrer_source(referrer, page_url, rules) if referrer is not None else None
    if found is not None:
        return TrafficSource(found[0], found[1], name, None)
    if name is None:
        return _DIRECT
    return TrafficSource(DIRECT_SOURCE, NONE_MEDIUM, name, None)


@lru_cache(maxsize=8192)
def _channel_for(rules: ChannelRules, source: str, medium: str, campaign: str) -> str:
    for rule in rules.custom:
        if rule.matches(source, medium, campaign):
            return rule.channel
    if source == DIRECT_SOURCE and medium in _DIRECT_MEDIA:
        return "Direct"
    if "cross-network" in campaign:
        return "Cross-network"
    mask = _resolve(rules, source)[1] if source else 0
    paid = _PAID_MEDIUM.fullmatch(medium) is not None
    shop = bool(mask & _SHOPPING) or (bool(campaign) and _SHOP_CAMPAIGN.match(campaign) is not None)
    if paid:
        if shop:
            return "Paid Shopping"
        if mask & _SEARCH:
            return "Paid Search"
        if mask & _SOCIAL:
            return "Paid Social"
        if mask & _VIDEO:
            return "Paid Video"
    if medium in _DISPLAY_MEDIA:
        return "Display"
    if paid:
        return "Paid Other"
    if shop:
        return "Organic Shopping"
    if mask & _SOCIAL or medium in _SOCIAL_MEDIA:
        return "Organic Social"
    if mask & _VIDEO or "video" in medium:
        return "Organic Video"
    if mask & _SEARCH or medium == "organic":
        return "Organic Search"
    if medium in _REFERRAL_MEDIA:
        return "Referral"
    if source in _EMAIL_VALUES or medium in _EMAIL_VALUES:
        return "Email"
    if medium == "affiliate":
        return "Affiliates"
    if medium == "audio":
        return "Audio"
    if source == "sms" or medium == "sms":
        return "SMS"
    if (
        medium.endswith("push")
        or "mobile" in medium
        or "notification" in medium
        or source == "firebase"
    ):
        return "Mobile Push Notifications"
    return "Unassigned"


def default_channel(
    source: str,
    medium: str,
    campaign: str | None,
    rules: ChannelRules = DEFAULT_RULES,
) -> str:
    """Map a source / medium / campaign to a channel: custom rules, then GA4's default rules."""
    return _channel_for(
        rules,
        (_text(source) or "").lower(),
        (_text(medium) or "").lower(),
        (_text(campaign) or "").lower(),
    )


def _named_channel(value: Any) -> str | None:
    name = _text(value)
    if name is None or len(name) > _MAX_CHANNEL_NAME:
        return None
    key = _channel_key(name)
    if key in _TRANSPORT_CHANNELS:
        return None
    return _CHANNEL_BY_KEY.get(key, name)


def event_channel(
    context: Mapping[str, Any] | None,
    properties: Mapping[str, Any] | None,
    event_type: str,
    source_channel: str | None,
    rules: ChannelRules = DEFAULT_RULES,
) -> tuple[str | None, TrafficSource | None]:
    """The channel stored on an event and the traffic source it was derived from, if any."""
    ctx = _mapping(context)
    if ctx is not None:
        named = _named_channel(ctx.get("channel"))
        if named is not None:
            return named, None
    named = _named_channel(source_channel)
    if named is not None:
        return named, None
    if ctx is None:
        return None, None
    page = _mapping(ctx.get("page"))
    campaign = _mapping(ctx.get("campaign"))
    app_referrer = _mapping(ctx.get("referrer"))
    kind = event_type.lower() if isinstance(event_type, str) else ""
    page_url = page_referrer = page_search = None
    if page is not None:
        page_url = _text(page.get("url"))
        page_referrer = _text(page.get("referrer"))
        page_search = _text(page.get("search"))
    has_web_context = (
        page_url is not None
        or page_referrer is not None
        or page_search is not None
        or (page is not None and _text(page.get("path")) is not None)
        or bool(campaign)
        or bool(app_referrer)
        or kind in ("page", "screen")
    )
    if not has_web_context:
        return None, None
    props = _mapping(properties)
    if page_url is None and kind == "page" and props is not None:
        page_url = _text(props.get("url"))
    link = url = None
    if app_referrer is not None:
        url = _text(app_referrer.get("url"))
        link = _text(app_referrer.get("link"))
    if page_url is None:
        if page_search is not None:
            page_url = page_search if page_search.startswith("?") else f"?{page_search}"
        else:
            page_url = link
    referrer = page_referrer
    if referrer is None and props is not None:
        referrer = _text(props.get("referrer"))
    referrer = referrer or url or link
    found = _infer_source(campaign, page_url, referrer, rules)
    campaign_key = found.campaign.lower() if found.campaign else ""
    return _channel_for(rules, found.source, found.medium, campaign_key), found
