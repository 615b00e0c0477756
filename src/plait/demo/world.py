"""Synthetic omnichannel world for ``plait demo``.

The world is a fictional home-furnishing retailer, *Lindwood Home*, with a website, a mobile app,
stores, a call centre, live chat, WhatsApp, e-mail and SMS marketing and a CRM. Every customer is
simulated on their own, as a small discrete-event simulation over a time-ordered agenda, and their
messages are yielded as ``(source name, Segment message)`` pairs shaped exactly as the Segment /
RudderStack SDKs (analytics.js, analytics-ios/android, server libraries) would send them. Messages
are time-ordered per customer, not globally; only one customer is held in memory at a time.

Identity: each customer has 1-3 devices, each with its own stable ``anonymousId`` (and a separate
one for the app), browses anonymously first and gets a ``userId`` (``cus_000123``) only on becoming
a contact. Offline sources identify people the way they really can: the POS by loyalty card (and
often an e-mail), the call centre and SMS by phone, WhatsApp by ``wa_id``, live chat by the website
``anonymousId`` of the visitor, the e-mail platform by ``userId`` and e-mail. E-mail addresses use
reserved ``example.*`` domains; phone numbers are E.164 and unique per customer.

Acquisition mix of first web sessions (returning sessions lean to direct and organic): organic
search ~28 %, direct ~12 %, paid search ~16 %, paid social ~14 %, organic social ~8 %, referral
~8 %, display ~7 %, affiliates ~7 %; e-mail and SMS clicks come on top for contacts. About 80 % of
customers start on the website, the rest in the app, a store, with a phone call or as a CRM lead.

Funnel (at ``days=90``; journeys near the end of the window are cut short, as in real data):
about 35 % of customers become contacts (identify with e-mail and/or phone), about 12 % are
qualified by sales (``Lead Qualified``), about 7 % buy online or in a store and some of them buy
again; the rest browse and give up. Customers who abandon a form after giving their phone number
are called back (outbound ``Call Completed``) within a day or two.

Volume: about 50 messages per customer on average at ``days=90`` (heavily skewed: most visitors
leave a handful, engaged contacts a few hundred); ``customers=200_000`` gives about 10 million
messages. Generation runs at 150k-190k messages/s on one core (CPython 3.11) in constant memory.
"""

from __future__ import annotations

import random
import unicodedata
from base64 import urlsafe_b64encode
from bisect import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from heapq import heappop, heappush
from itertools import accumulate
from operator import itemgetter


@dataclass(frozen=True)
class DemoSource:
    """A Plait source that the demo world sends messages through."""

    name: str
    channel: str | None


DEMO_SOURCES: tuple[DemoSource, ...] = (
    DemoSource("Website", None),
    DemoSource("Mobile App", None),
    DemoSource("Store POS", "Store"),
    DemoSource("Call Centre", "Phone"),
    DemoSource("Email Platform", "Email"),
    DemoSource("SMS Gateway", "SMS"),
    DemoSource("Live Chat", "Live Chat"),
    DemoSource("WhatsApp", "WhatsApp"),
    DemoSource("CRM", None),
)

WEB, APP, POS, CALLS, EMAIL, SMS, CHAT, WHATSAPP, CRM = (s.name for s in DEMO_SOURCES)

SITE = "https://www.lindwood.example"
BRAND = "Lindwood Home"

_MINUTE = 60.0
_HOUR = 3600.0
_DAY = 86400.0
_WEEK = 7 * _DAY
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STAGES = ("lead", "mql", "sql", "customer")
_LEAD, _MQL, _SQL, _CUSTOMER = range(4)


def _weighted(pairs: tuple[tuple[object, float], ...]) -> Callable[[random.Random], object]:
    """Return a fast sampler over ``(value, weight)`` pairs."""
    values = [v for v, _ in pairs]
    cum = list(accumulate(w for _, w in pairs))
    total = cum[-1]

    def pick(rng: random.Random) -> object:
        return values[bisect(cum, rng.random() * total)]

    return pick


# --- static world data -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Product:
    product_id: str
    name: str
    price: float
    category: str
    slug: str


def _products() -> tuple[_Product, ...]:
    """Return the catalogue."""
    rows = (
        ("sofas", "Oslo 3-Seater Sofa", 1299.0),
        ("sofas", "Bergen Corner Sofa", 1899.0),
        ("sofas", "Lund Bouclé Armchair", 549.0),
        ("sofas", "Fjord Footstool", 189.0),
        ("kitchens", "Nordic Oak Kitchen", 7490.0),
        ("kitchens", "Sage Matte Kitchen Island", 3450.0),
        ("kitchens", "Terrazzo Worktop (per metre)", 690.0),
        ("dining", "Ash Extending Dining Table", 899.0),
        ("dining", "Woven Dining Chair", 149.0),
        ("dining", "Walnut Sideboard", 1149.0),
        ("lighting", "Arc Floor Lamp", 229.0),
        ("lighting", "Paper Pendant Shade", 59.0),
        ("lighting", "Brass Table Lamp", 119.0),
        ("textiles", "Washed Linen Duvet Cover", 129.0),
        ("textiles", "Merino Wool Throw", 89.0),
        ("textiles", "Jute Rug 160x230", 199.0),
        ("textiles", "Velvet Cushion Cover", 29.0),
        ("decor", "Stoneware Vase", 39.0),
        ("decor", "Round Oak Mirror", 179.0),
        ("decor", "Fig & Cedar Scented Candle", 24.0),
        ("tableware", "Glazed Dinner Plate Set", 69.0),
        ("tableware", "Linen Napkins, Set of 4", 34.0),
        ("tableware", "Hand-blown Wine Glasses", 49.0),
    )
    out = []
    for i, (category, name, price) in enumerate(rows):
        slug = "".join(c if c.isalnum() else "-" for c in name.lower().replace("é", "e"))
        slug = "-".join(part for part in slug.split("-") if part)
        out.append(_Product(f"SKU-{1001 + i}", name, price, category, slug))
    return tuple(out)


PRODUCTS = _products()
CATEGORIES = tuple(dict.fromkeys(p.category for p in PRODUCTS))
_BY_CATEGORY = {c: tuple(p for p in PRODUCTS if p.category == c) for c in CATEGORIES}
_BIG_TICKET = tuple(p for p in PRODUCTS if p.price >= 500)
_SMALL = tuple(p for p in PRODUCTS if p.price < 300)

_BLOG = (
    ("how-to-style-a-small-living-room", "How to Style a Small Living Room"),
    ("choosing-the-right-sofa", "Choosing the Right Sofa: A Buyer's Guide"),
    ("kitchen-planning-checklist", "The Kitchen Planning Checklist"),
    ("linen-care-guide", "Caring for Linen Bedding"),
    ("lighting-layers", "Layered Lighting for Cosy Evenings"),
    ("scandi-dining-ideas", "Scandi Dining Room Ideas"),
)
_FIXED_PAGES = {
    "home": ("/", f"{BRAND} | Furniture, Kitchens & Homeware", "Home"),
    "stores": ("/stores", f"Find a Store | {BRAND}", "Store Locator"),
    "faq": ("/help/faq", f"Help & FAQ | {BRAND}", "FAQ"),
    "delivery": ("/help/delivery", f"Delivery & Returns | {BRAND}", "Delivery"),
    "cart": ("/cart", f"Your Basket | {BRAND}", "Cart"),
    "checkout": ("/checkout", f"Checkout | {BRAND}", "Checkout"),
    "confirmation": ("/checkout/confirmation", f"Thank You | {BRAND}", "Order Confirmation"),
    "signup": ("/account/register", f"Create an Account | {BRAND}", "Sign Up"),
    "consultation": (
        "/book-a-consultation",
        f"Book a Free Design Consultation | {BRAND}",
        "Consultation",
    ),
    "newsletter": ("/newsletter", f"Get Inspired: Our Newsletter | {BRAND}", "Newsletter"),
    "contact": ("/contact", f"Contact Us | {BRAND}", "Contact"),
}
_FORMS = {
    "newsletter": ("newsletter-signup", "Newsletter Signup", 0.8),
    "consultation": ("design-consultation", "Book a Design Consultation", 0.45),
    "contact": ("contact-us", "Contact Us", 0.55),
}
_pick_form = _weighted((("newsletter", 0.45), ("consultation", 0.4), ("contact", 0.15)))
_pick_next_page = _weighted(
    (
        ("product", 0.5),
        ("collection", 0.22),
        ("home", 0.06),
        ("blog", 0.07),
        ("stores", 0.05),
        ("faq", 0.04),
        ("delivery", 0.04),
        ("contact", 0.02),
    )
)

_NEW_CHANNELS = _weighted(
    (
        ("organic_search", 28),
        ("direct", 12),
        ("paid_search", 16),
        ("paid_social", 14),
        ("organic_social", 8),
        ("referral", 8),
        ("display", 7),
        ("affiliate", 7),
    )
)
_RETURN_CHANNELS = _weighted(
    (
        ("organic_search", 24),
        ("direct", 34),
        ("paid_search", 10),
        ("paid_social", 7),
        ("organic_social", 6),
        ("referral", 4),
        ("display", 10),
        ("affiliate", 5),
    )
)
_LANDING = {
    "organic_search": _weighted((("blog", 35), ("product", 30), ("collection", 20), ("home", 15))),
    "direct": _weighted((("home", 80), ("product", 10), ("stores", 10))),
    "paid_search": _weighted((("product", 50), ("collection", 35), ("home", 15))),
    "paid_social": _weighted((("product", 70), ("collection", 30))),
    "organic_social": _weighted((("blog", 50), ("product", 35), ("home", 15))),
    "referral": _weighted((("blog", 30), ("product", 50), ("collection", 20))),
    "display": _weighted((("collection", 60), ("product", 25), ("home", 15))),
    "affiliate": _weighted((("product", 75), ("collection", 25))),
    "email": _weighted((("collection", 55), ("product", 35), ("home", 10))),
    "sms": _weighted((("collection", 70), ("product", 30))),
}
_PAID_SEARCH_CAMPAIGNS = (
    ("brand_exact", "lindwood+home"),
    ("generic_sofas", "grey+corner+sofa"),
    ("generic_kitchens", "oak+kitchen+design"),
    ("generic_lighting", "floor+lamp"),
    ("shopping_textiles", "linen+duvet+cover"),
    ("generic_dining", "extending+dining+table"),
)
_SOCIAL_CAMPAIGNS = (
    "spring_living_carousel",
    "kitchen_ugc_video",
    "cosy_nights_reels",
    "retarget_viewed_products",
    "lookalike_buyers",
)
_DISPLAY = (
    ("google", "gdn_prospecting"),
    ("criteo", "dynamic_retargeting"),
    ("taboola", "native_inspiration"),
)
_AFFILIATES = (
    ("awin", "https://www.vouchercodes.example/home-and-garden"),
    ("rakuten", "https://www.topcashback.example/furniture-cashback/"),
    ("awin", "https://www.idealhome-deals.example/best-sofas"),
)
_REFERRERS = (
    "https://www.theguardian.com/lifeandstyle/homes",
    "https://www.apartmenttherapy.com/small-living-room-ideas",
    "https://www.dezeen.com/interiors/",
    "https://www.houzz.com/ideabooks/",
    "https://www.designmilk.com/",
    "https://www.dwell.com/collection/living-rooms",
)
_SOCIAL_REFERRERS = (
    "https://l.facebook.com/",
    "https://www.instagram.com/",
    "https://www.linkedin.com/",
    "https://lm.facebook.com/",
    "https://www.pinterest.com/",
)

_EMAIL_CAMPAIGNS = (
    ("weekly-inspiration", "Fresh ideas for your living room"),
    ("new-arrivals-linen", "Just landed: our washed linen collection"),
    ("sale-teaser", "Up to 30% off starts tomorrow"),
    ("kitchen-showroom-event", "You're invited: kitchen showroom evening"),
    ("sale-last-chance", "Last chance: sale ends at midnight"),
    ("lighting-guide", "5 lighting tricks for darker evenings"),
    ("members-early-access", "Early access for you, before everyone else"),
    ("dining-edit", "The dining edit: tables, chairs & more"),
)
_SMS_CAMPAIGNS = (
    ("flash-sale-sms", "Lindwood: 48h flash sale, 25% off textiles. Shop: {url} STOP to opt out"),
    ("store-event-sms", "Lindwood: late opening Thursday with 15% off in store. STOP to opt out"),
    ("free-delivery-sms", "Lindwood: free delivery this weekend on all orders. {url}"),
)
_AGENTS = (
    "Amira Haddad",
    "Jonas Weber",
    "Claire Dubois",
    "Sean Murphy",
    "Lucía Romero",
    "Maya Patel",
    "Tom Visser",
    "Grace Kim",
)
_CALL_TOPICS = (
    ("Delivery time question", "Customer asked about delivery lead times; explained 2-4 weeks."),
    ("Product availability", "Customer asked about stock of a sofa colour; offered store check."),
    ("Consultation booking", "Customer wants a kitchen design consultation; explained process."),
    ("Returns question", "Customer asked about the return policy for large items."),
    ("Order status", "Customer asked about an order; confirmed dispatch details."),
)
_CHAT_LINES = (
    "Hi, is the Oslo sofa available in green?",
    "How long does delivery take to my area?",
    "Can I see the kitchen samples in a store?",
    "Do you offer assembly?",
    "Is there a discount for newsletter subscribers?",
    "What are your store opening hours?",
)
_WA_LINES = (
    ("Hello! Is my order on its way?", "Hi! Yes, it ships tomorrow. You'll get a tracking link."),
    ("Do you have the Arc lamp in black?", "It's back in stock next week, shall we reserve one?"),
    ("Can I change my delivery date?", "Of course, which day suits you best?"),
    ("Thanks for the quick help!", "You're welcome, enjoy your new furniture!"),
)


@dataclass(frozen=True, slots=True)
class _Country:
    code: str
    locale: str
    timezone: str
    utc_offset: int
    currency: str
    google: str
    ip_prefixes: tuple[int, ...]
    stores: tuple[str, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]


# code weight locale timezone utc-offset currency google-domain ip-prefixes store-cities
_COUNTRY_TABLE = """
DE 0.25 de-DE Europe/Berlin    1 EUR google.de  84,87,91,93     ber,ham,muc
NL 0.15 nl-NL Europe/Amsterdam 1 EUR google.nl  77,83,145       ams,utr
FR 0.15 fr-FR Europe/Paris     1 EUR google.fr  82,86,90,92     par,lyo
IE 0.10 en-IE Europe/Dublin    0 EUR google.ie  37,79,86        dub
ES 0.10 es-ES Europe/Madrid    1 EUR google.es  79,83,88        mad,bcn
US 0.25 en-US America/New_York -5 USD google.com 24,67,73,98,108 nyc,chi,sfo
"""
# first names / last names ("_" stands for a space)
_NAMES = {
    "DE": (
        "Anna Lukas Sophie Felix Marie Jonas Lena Paul Hannah Leon Emilia Finn",
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Hoffmann Koch Richter Klein",
    ),
    "NL": (
        "Daan Emma Sem Julia Lucas Tess Milan Sara Levi Anouk",
        "de_Jong Jansen de_Vries van_den_Berg Bakker Visser Smit Meijer de_Boer Mulder",
    ),
    "FR": (
        "Camille Louis Léa Gabriel Chloé Hugo Manon Arthur Inès Jules",
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau",
    ),
    "IE": (
        "Jack Emily Conor Aoife Seán Ciara Oisín Niamh Darragh Saoirse",
        "Murphy Kelly O'Sullivan Walsh Byrne Ryan O'Brien Doyle McCarthy Kennedy",
    ),
    "ES": (
        "Lucía Hugo Martina Mateo Sofía Leo Valeria Daniel Paula Pablo",
        "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Ruiz",
    ),
    "US": (
        "Olivia Liam Ava Noah Mia Ethan Harper James Ella Benjamin Chloe Lucas",
        "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Moore Clark",
    ),
}


def _countries() -> tuple[tuple[_Country, float], ...]:
    """Parse the country table into (country, weight) pairs."""
    out = []
    for line in _COUNTRY_TABLE.strip().splitlines():
        code, weight, locale, tz, offset, currency, google, ips, cities = line.split()
        first, last = (tuple(n.replace("_", " ") for n in names.split()) for names in _NAMES[code])
        stores = tuple(f"store-{city}-{i:02d}" for i, city in enumerate(cities.split(","), 1))
        ip_prefixes = tuple(int(p) for p in ips.split(","))
        country = _Country(
            code, locale, tz, int(offset), currency, google, ip_prefixes, stores, first, last
        )
        out.append((country, float(weight)))
    return tuple(out)


_COUNTRIES = _countries()
_pick_country = _weighted(_COUNTRIES)
_US_AREAS = (("212", "646"), ("415", "628"), ("312", "773"), ("617", "857"), ("305", "786"))

_WEBKIT = "AppleWebKit/537.36 (KHTML, like Gecko)"
_SAFARI = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
_UA = {
    "win-chrome": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/124.0.0.0 "
    "Safari/537.36",
    "win-edge": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/124.0.0.0 "
    "Safari/537.36 Edg/124.0.2478.80",
    "win-firefox": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 "
    "Firefox/125.0",
    "mac-safari": f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_SAFARI} Version/17.4.1 "
    "Safari/605.1.15",
    "mac-chrome": f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_WEBKIT} Chrome/124.0.0.0 "
    "Safari/537.36",
    "iphone-17": f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) {_SAFARI} "
    "Version/17.4.1 Mobile/15E148 Safari/604.1",
    "iphone-16": f"Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_8 like Mac OS X) {_SAFARI} "
    "Version/16.6 Mobile/15E148 Safari/604.1",
    "pixel": f"Mozilla/5.0 (Linux; Android 10; K) {_WEBKIT} Chrome/124.0.0.0 Mobile Safari/537.36",
    "galaxy": f"Mozilla/5.0 (Linux; Android 14; SM-S911B) {_WEBKIT} SamsungBrowser/24.0 "
    "Chrome/117.0.0.0 Mobile Safari/537.36",
    "ipad": f"Mozilla/5.0 (iPad; CPU OS 17_4_1 like Mac OS X) {_SAFARI} Version/17.4.1 "
    "Mobile/15E148 Safari/604.1",
    "galaxy-tab": f"Mozilla/5.0 (Linux; Android 13; SM-X700) {_WEBKIT} Chrome/124.0.0.0 "
    "Safari/537.36",
}
# kind: (user agent, platform, app model "model/manufacturer/os version" or "", weight)
_DEVICE_TABLE = {
    "desktop": (
        ("win-chrome", None, "", 40),
        ("win-edge", None, "", 12),
        ("win-firefox", None, "", 8),
        ("mac-safari", None, "", 25),
        ("mac-chrome", None, "", 15),
    ),
    "mobile": (
        ("iphone-17", "ios", "iPhone15,2/Apple/17.4.1", 45),
        ("iphone-16", "ios", "iPhone13,2/Apple/16.7.8", 10),
        ("pixel", "android", "Pixel 8/Google/14", 25),
        ("galaxy", "android", "SM-S911B/samsung/14", 20),
    ),
    "tablet": (
        ("ipad", "ios", "iPad13,18/Apple/17.4.1", 70),
        ("galaxy-tab", "android", "SM-X700/samsung/13", 30),
    ),
}
_DEVICES = {
    kind: _weighted(
        tuple(
            ((kind, platform, _UA[ua], tuple(model.split("/")) if model else None), weight)
            for ua, platform, model, weight in rows
        )
    )
    for kind, rows in _DEVICE_TABLE.items()
}
_pick_device_kind = _weighted((("desktop", 0.42), ("mobile", 0.48), ("tablet", 0.10)))

_AJS = {"name": "analytics.js", "version": "next-1.70.0"}
_LIBRARIES = {
    "ios": {"name": "analytics-ios", "version": "4.1.8"},
    "android": {"name": "analytics-android", "version": "4.11.3"},
    POS: {"name": "analytics-java", "version": "3.5.1"},
    CALLS: {"name": "analytics-python", "version": "2.3.3"},
    EMAIL: {"name": "analytics-node", "version": "2.1.2"},
    SMS: {"name": "analytics-node", "version": "2.1.2"},
    CHAT: {"name": "analytics-node", "version": "2.1.2"},
    WHATSAPP: {"name": "analytics-go", "version": "3.3.0"},
    CRM: {"name": "analytics-python", "version": "2.3.3"},
}
_APP = {"name": BRAND, "version": "3.14.0", "build": "3140", "namespace": "example.lindwood.app"}
_pick_entry = _weighted(
    (("web", 0.80), ("app", 0.06), ("store", 0.05), ("call", 0.05), ("crm", 0.04))
)


# --- the customer --------------------------------------------------------------------------------


@dataclass(slots=True)
class _App:
    anonymous_id: str
    device: dict
    os: dict
    library: dict
    user_id: str | None = None
    installed: bool = False


@dataclass(slots=True)
class _Device:
    anonymous_id: str
    kind: str
    user_agent: str
    ip: str
    app: _App | None = None
    user_id: str | None = None


@dataclass(slots=True)
class _Person:
    user_id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    wa_id: str
    card: str
    country: _Country
    store: str
    category: str


def _uuid(rng: random.Random) -> str:
    """Return a random (version 4 shaped) UUID string drawn from ``rng``."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _token(rng: random.Random, n: int) -> str:
    """Return an opaque, URL-safe click-id-like token of ``n`` characters."""
    return urlsafe_b64encode(rng.randbytes(n)).decode()[:n]


def _phone(rng: random.Random, country: _Country, unique: int) -> str:
    """Return an E.164 mobile number whose subscriber part is unique per ``unique`` (< 10**7)."""
    sub = f"{unique:07d}"
    code = country.code
    if code == "DE":
        prefix = rng.choice(("151", "152", "160", "170", "171", "176"))
        return f"+49{prefix}{rng.randrange(10)}{sub}"
    if code == "NL":
        return f"+316{rng.randrange(10)}{sub}"
    if code == "FR":
        return f"+33{rng.choice('67')}{rng.randrange(10)}{sub}"
    if code == "IE":
        return f"+353{rng.choice(('83', '85', '86', '87', '89'))}{sub}"
    if code == "ES":
        return f"+346{rng.randrange(10)}{sub}"
    first = int(sub[0])
    area = rng.choice(_US_AREAS)[first // 8]
    return f"+1{area}{2 + first % 8}{sub[1:4]}{sub[4:]}"


def _ascii(name: str) -> str:
    """Return ``name`` as lower-case ASCII letters, as used in e-mail addresses."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(c for c in plain.lower() if c.isalnum())


def _person(rng: random.Random, seed: int, index: int) -> _Person:
    """Draw a customer's identity; e-mail, phone and loyalty card are unique per index."""
    country: _Country = _pick_country(rng)  # type: ignore[assignment]
    first = rng.choice(country.first_names)
    last = rng.choice(country.last_names)
    a_first, a_last = _ascii(first), _ascii(last)
    local = rng.choice(
        (
            f"{a_first}.{a_last}{index}",
            f"{a_first[0]}{a_last}{index}",
            f"{a_first}{index}",
            f"{a_last}.{a_first}{index}",
        )
    )
    email = f"{local}@{rng.choice(('example.com', 'example.net', 'example.org'))}"
    unique = (index * 7_654_321 + seed * 1_234_567) % 10**7
    phone = _phone(rng, country, unique)
    card = f"6{(index * 9_876_543 + seed * 7_777_777) % 10**11:011d}{rng.randrange(10)}"
    return _Person(
        user_id=f"cus_{index:06d}",
        first_name=first,
        last_name=last,
        email=email,
        phone=phone,
        wa_id=phone[1:],
        card=card,
        country=country,
        store=rng.choice(country.stores),
        category=rng.choice(CATEGORIES),
    )


def _ip(rng: random.Random, country: _Country) -> str:
    """Return a public-looking IPv4 address for ``country``."""
    bits = rng.getrandbits(24)
    return (
        f"{rng.choice(country.ip_prefixes)}.{bits >> 16}.{(bits >> 8) & 255}."
        f"{1 + (bits & 255) % 254}"
    )


def _devices(rng: random.Random, person: _Person, entry: str) -> list[_Device]:
    """Draw 1-3 devices; mobile ones may carry the app (always when the app is the entry)."""
    count = 1 + (rng.random() < 0.5) + (rng.random() < 0.3)
    kinds = [_pick_device_kind(rng) for _ in range(count)]
    if entry == "app" and "mobile" not in kinds:
        kinds[0] = "mobile"
    out = []
    for kind in kinds:
        _, platform, ua, model = _DEVICES[kind](rng)  # type: ignore[misc]
        device = _Device(_uuid(rng), kind, ua, _ip(rng, person.country))
        wants_app = entry == "app" or rng.random() < 0.25
        if platform and model and wants_app and not any(d.app for d in out):
            device.app = _new_app(rng, platform, model)
        out.append(device)
    return out


def _new_app(rng: random.Random, platform: str, model: tuple[str, str, str]) -> _App:
    """Return the app installation on a phone or tablet."""
    name, manufacturer, version = model
    device_id = _uuid(rng).upper() if platform == "ios" else f"{rng.getrandbits(64):016x}"
    return _App(
        anonymous_id=_uuid(rng),
        device={"id": device_id, "type": platform, "model": name, "manufacturer": manufacturer},
        os={"name": "iOS" if platform == "ios" else "Android", "version": version},
        library=_LIBRARIES[platform],
    )


# --- the journey ---------------------------------------------------------------------------------


class _Journey:
    """One customer's journey: handlers on a time-ordered agenda append timed messages."""

    __slots__ = (
        "agenda",
        "called_back",
        "card_anon",
        "devices",
        "email_known",
        "email_optin",
        "end",
        "entry",
        "index",
        "interest",
        "lead_id",
        "member",
        "orders",
        "out",
        "person",
        "phone_anon",
        "phone_known",
        "rng",
        "sales_called",
        "score",
        "seq",
        "sms_optin",
        "stage",
        "stage_at",
        "touches",
        "tz",
        "visits",
        "wa_anon",
    )

    def __init__(self, seed: int, index: int, start: float, end: float) -> None:
        rng = random.Random(f"plait-demo:{seed}:{index}")
        self.rng = rng
        self.index = index
        self.end = end
        self.person = _person(rng, seed, index)
        self.tz = self.person.country.utc_offset * _HOUR
        self.interest = rng.random()
        self.entry: str = _pick_entry(rng)  # type: ignore[assignment]
        self.devices = _devices(rng, self.person, self.entry)
        self.card_anon = _uuid(rng)
        self.phone_anon = _uuid(rng)
        self.wa_anon = _uuid(rng)
        self.out: list[tuple[float, str, dict]] = []
        self.agenda: list[tuple[float, int, Callable[..., None], tuple]] = []
        self.seq = 0
        self.stage = -1
        self.stage_at = 0.0
        self.score = 0
        self.orders = 0
        self.visits = 0
        self.touches = 0
        self.member = False
        self.email_known = False
        self.phone_known = False
        self.email_optin = False
        self.sms_optin = False
        self.called_back = False
        self.sales_called = False
        self.lead_id = f"LEAD-{seed}-{index}"
        first = start + (end - start) * rng.random() ** 1.3
        entries = {
            "web": self._start_web,
            "app": self._start_app,
            "store": self._start_store,
            "call": self._start_call,
            "crm": self._start_crm,
        }
        self._at(first, entries[self.entry])

    # -- plumbing --

    def run(self) -> list[tuple[float, str, dict]]:
        """Play the agenda until the world's end and return the timed messages."""
        agenda, end = self.agenda, self.end
        steps = 0
        while agenda and steps < 2000:
            t, _, handler, args = heappop(agenda)
            if t >= end:
                break
            handler(t, *args)
            steps += 1
        return self.out

    def _at(self, t: float, handler: Callable[..., None], *args: object) -> None:
        self.seq += 1
        heappush(self.agenda, (t, self.seq, handler, args))

    def _emit(self, t: float, source: str, msg: dict) -> None:
        if t < self.end:
            self.out.append((t, source, msg))

    def _ids(self, msg: dict, anonymous_id: str | None) -> dict:
        if self.stage >= 0:
            msg["userId"] = self.person.user_id
        if anonymous_id:
            msg["anonymousId"] = anonymous_id
        return msg

    def _server(
        self,
        t: float,
        source: str,
        event: str,
        props: dict,
        anonymous_id: str | None,
        traits: dict | None = None,
        **context: object,
    ) -> None:
        ctx: dict = {"library": dict(_LIBRARIES[source])}
        if traits:
            ctx["traits"] = traits
        ctx.update(context)
        msg = {"type": "track", "event": event, "properties": props, "context": ctx}
        self._emit(t, source, self._ids(msg, anonymous_id))

    def _awake(self, t: float) -> float:
        """Move a night-time moment (local 0-7h) to the morning, mostly."""
        hour = ((t + self.tz) % _DAY) / _HOUR
        if hour < 7 and self.rng.random() < 0.9:
            t += (7 - hour) * _HOUR + self.rng.random() * 3 * _HOUR
        return t

    def _open(self, t: float, opens: float, closes: float) -> float:
        """Move ``t`` into local opening hours [opens, closes)."""
        local = t + self.tz
        hour = (local % _DAY) / _HOUR
        if opens <= hour < closes - 0.5:
            return t
        day = local - local % _DAY + (_DAY if hour >= opens else 0)
        return day + (opens + self.rng.random() * (closes - opens - 0.5)) * _HOUR - self.tz

    def _gap(self) -> float:
        """Time to the next session: 30 min at least, usually hours to days."""
        mean = (0.6 + 3.5 * (1 - self.interest)) * _DAY
        return 31 * _MINUTE + self.rng.random() * _HOUR + self.rng.expovariate(1 / mean)

    # -- entry points --

    def _start_web(self, t: float) -> None:
        self._visit(t, self.devices[0], _NEW_CHANNELS(self.rng))

    def _start_app(self, t: float) -> None:
        device = next(d for d in self.devices if d.app)
        self._app_session(t, device)

    def _start_store(self, t: float) -> None:
        self._store_visit(t, "walk-in")

    def _start_call(self, t: float) -> None:
        self._inbound_call(t)

    def _start_crm(self, t: float) -> None:
        self.email_known = self.phone_known = True
        self._contact(t, "trade_show" if self.rng.random() < 0.5 else "partner_referral")
        self._next_touch(t + self.rng.uniform(1, 10) * _DAY, force=True)

    # -- what happens next --

    def _next_touch(self, t: float, force: bool = False) -> None:
        """Schedule the customer's next self-initiated touch, or let them give up."""
        rng = self.rng
        self.touches += 1
        keep = 0.3 + 0.6 * self.interest if self.stage < 0 else 0.55 + 0.4 * self.interest
        if self.orders:
            keep = min(keep + 0.05, 0.95)
        if self.touches > 80 or (not force and rng.random() >= keep):
            return
        t += self._gap()
        r = rng.random()
        app_device = next((d for d in self.devices if d.app), None)
        if app_device and r < 0.4:
            self._at(t, self._app_session, app_device)
        elif r < 0.01 + (0.02 if self.stage >= _MQL else 0):
            self._at(t, self._store_visit, "walk-in")
        elif r < 0.045 + (0.04 if self.stage >= _MQL else 0):
            self._at(t, self._inbound_call)
        elif r < 0.065 + (0.05 if self.stage >= _MQL else 0):
            self._at(t, self._whatsapp)
        else:
            self._at(t, self._visit, self._pick_device(), _RETURN_CHANNELS(rng))

    def _pick_device(self, prefer_mobile: bool = False) -> _Device:
        devices = self.devices
        if prefer_mobile:
            for d in devices:
                if d.kind == "mobile" and self.rng.random() < 0.8:
                    return d
        return devices[0] if self.rng.random() < 0.6 else self.rng.choice(devices)

    def _engage(self, t: float, points: int) -> None:
        """Add lead-scoring points; contacts crossing the threshold become MQLs and get a call."""
        self.score += points
        if 0 <= self.stage < _MQL and self.score >= 4:
            t += self.rng.uniform(0.2, 3) * _HOUR
            self._stage(t, _MQL)
            if not self.sales_called and self.rng.random() < 0.85:
                self.sales_called = True
                self._at(
                    self._open(t + self.rng.uniform(2, 40) * _HOUR, 9, 18), self._sales_call, 1
                )

    # -- the website --

    def _page_for(self, kind: str) -> tuple[str, str, str, _Product | None]:
        """Return (path, title, name, product) for a page of ``kind``."""
        rng = self.rng
        if kind == "product":
            pool = _BY_CATEGORY[self.person.category] if rng.random() < 0.6 else PRODUCTS
            p = rng.choice(pool)
            return f"/products/{p.slug}", f"{p.name} | {BRAND}", "Product", p
        if kind == "collection":
            c = self.person.category if rng.random() < 0.6 else rng.choice(CATEGORIES)
            return f"/collections/{c}", f"{c.title()} | {BRAND}", "Collection", None
        if kind == "blog":
            slug, title = rng.choice(_BLOG)
            return f"/blog/{slug}", f"{title} | {BRAND} Journal", "Blog Post", None
        path, title, name = _FIXED_PAGES[kind]
        return path, title, name, None

    def _web(self, t: float, device: _Device, page: tuple, utm: dict | None, msg: dict) -> dict:
        """Complete ``msg`` with analytics.js context and ids and emit it from the Website."""
        url, path, referrer, title, search = page
        ctx = {
            "page": {
                "path": path,
                "referrer": referrer,
                "search": search,
                "title": title,
                "url": url,
            },
            "userAgent": device.user_agent,
            "ip": device.ip,
            "locale": self.person.country.locale,
            "timezone": self.person.country.timezone,
            "library": dict(_AJS),
        }
        if utm:
            ctx["campaign"] = dict(utm)
        msg["context"] = ctx
        msg["anonymousId"] = device.anonymous_id
        if device.user_id:
            msg["userId"] = device.user_id
        self._emit(t, WEB, msg)
        return msg

    def _pageview(
        self, t: float, device: _Device, page: tuple, name: str, utm: dict | None
    ) -> None:
        url, path, referrer, title, _ = page
        props = {"url": url, "path": path, "referrer": referrer, "title": title, "search": page[4]}
        self._web(t, device, page, utm, {"type": "page", "name": name, "properties": props})

    def _web_track(
        self,
        t: float,
        device: _Device,
        page: tuple,
        event: str,
        props: dict,
        utm: dict | None = None,
    ) -> dict:
        return self._web(
            t, device, page, utm, {"type": "track", "event": event, "properties": props}
        )

    def _web_identify(self, t: float, device: _Device, page: tuple, traits: dict) -> None:
        device.user_id = self.person.user_id
        self._web(
            t, device, page, None, {"type": "identify", "userId": device.user_id, "traits": traits}
        )

    def _traits(self, phone: bool = True) -> dict:
        p = self.person
        traits = {"email": p.email, "first_name": p.first_name, "last_name": p.last_name}
        if phone:
            traits["phone"] = p.phone
        return traits

    def _visit(
        self,
        t: float,
        device: _Device,
        channel: str,
        chained: bool = True,
        campaign: str | None = None,
    ) -> None:
        """A website session: landing page, browsing, and maybe cart, form, signup or chat."""
        rng = self.rng
        if chained:
            t = self._awake(t)
        self.visits += 1
        interest = self.interest
        referrer, search, utm = _acquisition(rng, channel, self.person.country, campaign)
        kind = _LANDING[channel](rng)
        bounce = 0.5 - 0.35 * interest if self.visits == 1 else 0.35 - 0.25 * interest
        pages = 1 if rng.random() < bounce else 2 + int(rng.expovariate(1 / (1.5 + 5.5 * interest)))
        adds = rng.random() < (0.006 + 0.04 * interest) * (0.3 if self.orders else 1.0)
        cart: list[_Product] = []
        page: tuple = ()
        for i in range(min(pages, 25)):
            if i:
                kind = _pick_next_page(rng)
                referrer, search, utm = page[0], "", None
            path, title, name, product = self._page_for(kind)  # type: ignore[arg-type]
            page = (f"{SITE}{path}{search}", path, referrer, title, search)
            self._pageview(t, device, page, name, utm)
            if product:
                t += 1 + rng.random() * 3
                self._web_track(t, device, page, "Product Viewed", self._product(product), utm)
                if adds and not cart and rng.random() < 0.6:
                    t += 5 + rng.expovariate(1 / 40)
                    cart.append(product)
                    self._web_track(
                        t, device, page, "Product Added", self._product(product, 1), utm
                    )
                    self._engage(t, 1)
            t += 4 + rng.expovariate(1 / (25 + 50 * interest))
        if self.stage >= 0 and device.user_id is None and rng.random() < 0.4:
            self._web_identify(t, device, page, {"email": self.person.email})
        if self.stage >= 0 and self.visits > 1:
            self._engage(t, 1)
        if cart:
            t = self._checkout(t, device, page, cart)
        elif self.stage < 0 and rng.random() < 0.05 + 0.14 * interest:
            t = self._form(t, device, page, _pick_form(rng))  # type: ignore[arg-type]
        elif self.stage < 0 and rng.random() < 0.02 + 0.06 * interest:
            t = self._signup(t, device, page)
        if pages > 1 and rng.random() < 0.03 + 0.03 * interest:
            self._chat(t - rng.uniform(10, 60), device, page)
        if chained:
            self._next_touch(t)

    def _product(self, p: _Product, quantity: int | None = None) -> dict:
        props = {
            "product_id": p.product_id,
            "name": p.name,
            "category": p.category,
            "price": p.price,
            "currency": self.person.country.currency,
            "url": f"{SITE}/products/{p.slug}",
        }
        if quantity:
            props["quantity"] = quantity
        return props

    def _order(self, prefix: str, products: list[_Product]) -> dict:
        """Return Order Completed properties for ``products`` and count the order."""
        self.orders += 1
        rng = self.rng
        items = [
            {
                "product_id": p.product_id,
                "name": p.name,
                "price": p.price,
                "quantity": 1 if p.price > 300 else 1 + (rng.random() < 0.25),
            }
            for p in products
        ]
        revenue = round(sum(i["price"] * i["quantity"] for i in items), 2)
        return {
            "order_id": f"{prefix}{self.index:07d}-{self.orders}",
            "revenue": revenue,
            "currency": self.person.country.currency,
            "products": items,
        }

    def _basket(self, first: _Product | None, big: bool) -> list[_Product]:
        rng = self.rng
        items = [first] if first else [rng.choice(_BIG_TICKET if big else _SMALL)]
        while rng.random() < 0.3 and len(items) < 4:
            extra = rng.choice(_SMALL)
            if extra not in items:
                items.append(extra)
        return items

    def _checkout(self, t: float, device: _Device, page: tuple, cart: list[_Product]) -> float:
        """Cart and checkout; guests give their e-mail; some complete the order."""
        rng = self.rng
        cart = self._basket(cart[0], False)
        for kind in ("cart", "checkout"):
            path, title, name, _ = self._page_for(kind)
            page = (f"{SITE}{path}", path, page[0], title, "")
            self._pageview(t, device, page, name, None)
            t += 5 + rng.expovariate(1 / 30)
            if kind == "cart" and rng.random() < 0.4:
                return t
        value = round(sum(p.price for p in cart), 2)
        self._web_track(
            t,
            device,
            page,
            "Checkout Started",
            {
                "value": value,
                "currency": self.person.country.currency,
                "products": [self._product(p, 1) for p in cart],
            },
        )
        completes = rng.random() < 0.4 + 0.35 * self.interest
        if device.user_id is None and (completes or rng.random() < 0.35):
            t += 20 + rng.expovariate(1 / 40)
            phone = rng.random() < 0.7
            self.email_known = True
            self.phone_known |= phone
            if self._contact(t + 300, "checkout"):
                self._web_identify(t, device, page, self._traits(phone))
            else:
                self._web_identify(t, device, page, {"email": self.person.email})
        if not completes:
            if self.stage >= 0 and self.email_known:
                self._at(
                    t + rng.uniform(2, 24) * _HOUR,
                    self._triggered_email,
                    ("abandoned-cart", "You left something in your basket"),
                )
            return t
        t += 60 + rng.expovariate(1 / 90)
        path, title, name, _ = self._page_for("confirmation")
        page = (f"{SITE}{path}", path, page[0], title, "")
        self._pageview(t, device, page, name, None)
        self._web_track(t + 1, device, page, "Order Completed", self._order("W", cart))
        self._ordered(t + 1)
        return t

    def _form(self, t: float, device: _Device, page: tuple, kind: str) -> float:
        """A lead form: submitted (identify) or abandoned (maybe with a phone: call-back)."""
        rng = self.rng
        form_id, form_name, submit_rate = _FORMS[kind]
        path, title, name, _ = self._page_for(kind)
        page = (f"{SITE}{path}", path, page[0], title, "")
        self._pageview(t, device, page, name, None)
        t += 5 + rng.expovariate(1 / 20)
        props = {"form_id": form_id, "form_name": form_name}
        self._web_track(t, device, page, "Form Started", dict(props))
        t += 20 + rng.expovariate(1 / 60)
        if rng.random() < submit_rate + 0.15 * self.interest:
            self._web_track(t, device, page, "Form Submitted", dict(props))
            phone = kind != "newsletter"
            self.email_known = True
            self.phone_known |= phone
            self._contact(t + 120, f"web_form_{kind}", marketing=True)
            traits = (
                self._traits()
                if phone
                else {"email": self.person.email, "first_name": self.person.first_name}
            )
            self._web_identify(t + 1, device, page, traits)
            self._engage(t, 3 if kind == "consultation" else 1)
            return t
        has_phone = kind != "newsletter" and rng.random() < 0.65
        fields = ["first_name", "last_name", "phone"] if has_phone else ["first_name"]
        msg = self._web_track(
            t,
            device,
            page,
            "Form Abandoned",
            {**props, "fields_completed": fields, "last_field": fields[-1]},
        )
        if has_phone:
            msg["context"]["traits"] = {"phone": self.person.phone}
            if not self.called_back and rng.random() < 0.9:
                self.called_back = True
                self.phone_known = True
                when = self._open(t + rng.uniform(1, 36) * _HOUR, 9, 18)
                self._at(when, self._callback, form_name)
        return t

    def _signup(self, t: float, device: _Device, page: tuple) -> float:
        """Account registration on the website."""
        rng = self.rng
        path, title, name, _ = self._page_for("signup")
        page = (f"{SITE}{path}", path, page[0], title, "")
        self._pageview(t, device, page, name, None)
        t += 30 + rng.expovariate(1 / 40)
        phone = rng.random() < 0.5
        self.email_known = True
        self.phone_known |= phone
        self._contact(t + 60, "web_signup", marketing=rng.random() < 0.7)
        self._web_identify(t, device, page, self._traits(phone))
        self._web_track(t + 1, device, page, "Signed Up", {"method": "email"})
        return t

    # -- live chat --

    def _chat(self, t: float, device: _Device, page: tuple) -> None:
        """A live chat from the website; the widget reports the visitor's anonymousId."""
        rng = self.rng
        chat_id = f"chat_{_token(rng, 12)}"
        agent = rng.choice(_AGENTS)

        def send(when: float, event: str, props: dict, traits: dict | None = None) -> None:
            ctx: dict = {
                "library": dict(_LIBRARIES[CHAT]),
                "userAgent": device.user_agent,
                "page": {"url": page[0], "path": page[1], "title": page[3]},
            }
            if traits:
                ctx["traits"] = traits
            msg = {
                "type": "track",
                "event": event,
                "properties": props,
                "context": ctx,
                "anonymousId": device.anonymous_id,
            }
            if device.user_id:
                msg["userId"] = device.user_id
            self._emit(when, CHAT, msg)

        send(t, "Chat Started", {"chat_id": chat_id, "page_url": page[0], "agent": agent})
        for _ in range(1 + int(rng.expovariate(0.6))):
            t += 10 + rng.expovariate(1 / 40)
            send(
                t,
                "Chat Message Received",
                {"chat_id": chat_id, "text": rng.choice(_CHAT_LINES), "direction": "inbound"},
            )
            t += 15 + rng.expovariate(1 / 45)
            send(
                t,
                "Chat Message Sent",
                {
                    "chat_id": chat_id,
                    "agent": agent,
                    "direction": "outbound",
                    "text": "Happy to help!",
                },
            )
        if self.stage < 0 and rng.random() < 0.4:
            t += 30
            self.email_known = True
            send(
                t,
                "Chat Message Received",
                {
                    "chat_id": chat_id,
                    "direction": "inbound",
                    "text": f"Sure, my email is {self.person.email}",
                },
                {"email": self.person.email},
            )
            self._contact(t + 60, "live_chat")
        self._engage(t, 1)
        send(
            t + 20,
            "Chat Ended",
            {"chat_id": chat_id, "agent": agent, "rating": rng.choice((3, 4, 5, 5, 5))},
        )

    # -- the app --

    def _app_session(self, t: float, device: _Device) -> None:
        """An app session (analytics-ios/android shape): screens, maybe login, maybe an order."""
        rng = self.rng
        app = device.app
        assert app is not None
        t = self._awake(t)
        if not app.installed:
            app.installed = True
            version = {"version": _APP["version"], "build": _APP["build"]}
            self._app_track(t, app, "Application Installed", version)
            t += 2
        opened = {"from_background": False, "version": _APP["version"], "build": _APP["build"]}
        self._app_track(t, app, "Application Opened", opened)
        if self.stage >= 0 and app.user_id is None and rng.random() < 0.6:
            app.user_id = self.person.user_id
            self._app(
                t + 5,
                app,
                {"type": "identify", "userId": app.user_id, "traits": {"email": self.person.email}},
            )
        screens = 1 + int(rng.expovariate(1 / (1 + 6 * self.interest)))
        viewed: _Product | None = None
        for _ in range(min(screens, 30)):
            t += 3 + rng.expovariate(1 / 30)
            r = rng.random()
            if r < 0.5:
                viewed = rng.choice(
                    _BY_CATEGORY[self.person.category] if rng.random() < 0.6 else PRODUCTS
                )
                self._screen(t, app, "Product Detail", product_id=viewed.product_id)
                self._app_track(t + 1, app, "Product Viewed", self._product(viewed))
            else:
                self._screen(t, app, ("Home", "Search", "Category", "Inspiration")[int(r * 8) - 4])
        if self.stage < 0 and rng.random() < 0.03 + 0.06 * self.interest:
            t += 40
            self.email_known = True
            self._contact(t + 60, "app_signup", marketing=rng.random() < 0.6)
            app.user_id = self.person.user_id
            self._app(
                t, app, {"type": "identify", "userId": app.user_id, "traits": self._traits(False)}
            )
            method = "apple" if app.os["name"] == "iOS" else "google"
            self._app_track(t + 1, app, "Signed Up", {"method": method})
        buys = (0.02 + 0.05 * self.interest) / (1 + 2 * self.orders)
        if viewed and app.user_id and rng.random() < buys:
            t += 60 + rng.expovariate(1 / 60)
            self._screen(t, app, "Checkout")
            order = self._order("A", self._basket(viewed, False))
            self._app_track(t + 30, app, "Order Completed", order)
            self._ordered(t + 30)
        self._app_track(t + 5, app, "Application Backgrounded", {})
        self._next_touch(t)

    def _screen(self, t: float, app: _App, name: str, **props: object) -> None:
        self._app(t, app, {"type": "screen", "name": name, "properties": {"name": name, **props}})

    def _app_track(self, t: float, app: _App, event: str, props: dict) -> None:
        self._app(t, app, {"type": "track", "event": event, "properties": props})

    def _app(self, t: float, app: _App, msg: dict) -> None:
        """Complete ``msg`` with the mobile SDK context and ids and emit it from the app."""
        country = self.person.country
        msg["context"] = {
            "app": dict(_APP),
            "device": dict(app.device),
            "os": dict(app.os),
            "library": dict(app.library),
            "locale": country.locale,
            "timezone": country.timezone,
        }
        msg["anonymousId"] = app.anonymous_id
        if app.user_id:
            msg["userId"] = app.user_id
        self._emit(t, APP, msg)

    # -- CRM and lifecycle --

    def _contact(self, t: float, origin: str, marketing: bool | None = None) -> bool:
        """Make the customer a contact (CRM lead); return False if they already were one."""
        if self.stage >= 0:
            return False
        rng = self.rng
        self.stage = _LEAD
        self.stage_at = t + 1
        p = self.person
        traits = {"first_name": p.first_name, "last_name": p.last_name, "country": p.country.code}
        if self.email_known:
            traits["email"] = p.email
        if self.phone_known:
            traits["phone"] = p.phone
        self._server(
            t,
            CRM,
            "Lead Created",
            {"lead_id": self.lead_id, "lead_source": origin, "product_interest": p.category},
            None,
        )
        self._emit(
            t + 1,
            CRM,
            {
                "type": "identify",
                "userId": p.user_id,
                "traits": {**traits, "lifecycle_stage": "lead"},
                "context": {"library": dict(_LIBRARIES[CRM])},
            },
        )
        if self.email_known:
            self.email_optin = rng.random() < 0.8 if marketing is None else marketing
            self._at(
                t + rng.uniform(2, 15) * _MINUTE,
                self._triggered_email,
                ("welcome", f"Welcome to {BRAND}"),
            )
            if self.email_optin:
                self._at(_next_slot(t, 1 * _DAY + 8 * _HOUR, _WEEK), self._newsletter)
        if self.phone_known and rng.random() < 0.35:
            self.sms_optin = True
            self._at(_next_slot(t, 3 * _DAY + 16 * _HOUR, 2 * _WEEK), self._sms_campaign)
        return True

    def _stage(self, t: float, stage: int) -> None:
        """Move the CRM lifecycle stage forward (never back) with an identify."""
        if stage <= self.stage or self.stage < 0:
            return
        self.stage = stage
        t = self.stage_at = max(t, self.stage_at + 1)
        traits = {"lifecycle_stage": _STAGES[stage]}
        if self.email_known:
            traits["email"] = self.person.email
        self._emit(
            t,
            CRM,
            {
                "type": "identify",
                "userId": self.person.user_id,
                "traits": traits,
                "context": {"library": dict(_LIBRARIES[CRM])},
            },
        )

    def _ordered(self, t: float) -> None:
        """After any order: lifecycle 'customer', confirmation e-mail and shipping SMS."""
        rng = self.rng
        self._stage(t + rng.uniform(5, 60) * _MINUTE, _CUSTOMER)
        if self.stage >= 0 and self.email_known:
            self._at(
                t + rng.uniform(1, 5) * _MINUTE,
                self._triggered_email,
                ("order-confirmation", f"Your {BRAND} order is confirmed"),
            )
            self._at(
                self._open(t + rng.uniform(6, 9) * _DAY, 9, 19),
                self._triggered_email,
                ("review-request", "How do you like your new piece?"),
            )
        if self.stage >= 0 and self.phone_known:
            self._at(
                self._open(t + rng.uniform(1, 3) * _DAY, 8, 20),
                self._sms,
                (
                    "order-shipped",
                    f"Lindwood: your order is on its way! Track it here: {SITE}/track",
                ),
                False,
            )

    # -- e-mail --

    def _send_email(self, t: float, campaign: str, subject: str, marketing: bool) -> None:
        """E-mail sent, maybe opened and clicked; a click lands on the website."""
        rng = self.rng
        props = {
            "campaign_name": campaign,
            "email_subject": subject,
            "email_id": f"em_{_token(rng, 10)}",
        }
        traits = {"email": self.person.email}
        self._server(t, EMAIL, "Email Sent", props, None, traits)
        opens = 0.12 + 0.4 * self.interest + (0.2 if not marketing else 0)
        if rng.random() >= opens:
            return
        t += 60 + rng.expovariate(1 / (4 * _HOUR))
        self._server(t, EMAIL, "Email Opened", dict(props), None, dict(traits))
        if rng.random() < 0.12 + 0.2 * self.interest:
            t += 5 + rng.expovariate(1 / 30)
            link = f"{SITE}/collections/{self.person.category}"
            self._server(t, EMAIL, "Email Clicked", {**props, "link_url": link}, None, dict(traits))
            self._engage(t, 1)
            self._at(t + 2, self._visit, self._pick_device(True), "email", False, campaign)
        elif marketing and rng.random() < 0.02:
            self._server(t + 20, EMAIL, "Email Unsubscribed", dict(props), None, dict(traits))
            self.email_optin = False

    def _triggered_email(self, t: float, campaign: tuple[str, str]) -> None:
        self._send_email(t, campaign[0], campaign[1], False)

    def _newsletter(self, t: float) -> None:
        """The weekly newsletter, sent to all opted-in contacts in one batch."""
        if not self.email_optin:
            return
        name, subject = _EMAIL_CAMPAIGNS[int(t // _WEEK) % len(_EMAIL_CAMPAIGNS)]
        self._send_email(t + self.rng.uniform(0, 20) * _MINUTE, name, subject, True)
        self._at(t + _WEEK, self._newsletter)

    # -- SMS and WhatsApp --

    def _sms(self, t: float, campaign: tuple[str, str], marketing: bool) -> None:
        """An SMS sent; marketing ones are sometimes clicked or answered with STOP."""
        rng = self.rng
        name, text = campaign
        url = f"{SITE}/s/{_token(rng, 6)}"
        traits = {"phone": self.person.phone}
        self._server(
            t,
            SMS,
            "SMS Sent",
            {"campaign_name": name, "text": text.format(url=url), "direction": "outbound"},
            self.phone_anon,
            traits,
        )
        if not marketing:
            return
        if "{url}" in text and rng.random() < 0.05 + 0.1 * self.interest:
            self._at(
                t + 30 + rng.expovariate(1 / 600),
                self._visit,
                self._pick_device(True),
                "sms",
                False,
                name,
            )
        elif rng.random() < 0.03:
            self._server(
                t + rng.uniform(1, 60) * _MINUTE,
                SMS,
                "SMS Received",
                {"text": "STOP", "direction": "inbound", "campaign_name": name},
                self.phone_anon,
                dict(traits),
            )
            self.sms_optin = False

    def _reminder(self, t: float) -> None:
        """Appointment reminder by SMS; many customers confirm by replying."""
        rng = self.rng
        traits = {"phone": self.person.phone}
        text = "Lindwood: reminder of your design consultation tomorrow. Reply C to confirm."
        self._server(
            t,
            SMS,
            "SMS Sent",
            {"campaign_name": "appointment-reminder", "text": text, "direction": "outbound"},
            self.phone_anon,
            traits,
        )
        if rng.random() < 0.6:
            self._server(
                t + rng.uniform(1, 90) * _MINUTE,
                SMS,
                "SMS Received",
                {"campaign_name": "appointment-reminder", "text": "C", "direction": "inbound"},
                self.phone_anon,
                dict(traits),
            )

    def _sms_campaign(self, t: float) -> None:
        if not self.sms_optin:
            return
        campaign = _SMS_CAMPAIGNS[int(t // (2 * _WEEK)) % len(_SMS_CAMPAIGNS)]
        self._sms(t + self.rng.uniform(0, 10) * _MINUTE, campaign, True)
        self._at(t + 2 * _WEEK, self._sms_campaign)

    def _whatsapp(self, t: float) -> None:
        """A short WhatsApp conversation started by the customer."""
        rng = self.rng
        t = self._awake(t)
        ext = [
            {
                "id": self.person.wa_id,
                "type": "whatsapp_id",
                "collection": "users",
                "encoding": "none",
            }
        ]
        for _ in range(1 + (rng.random() < 0.5)):
            question, answer = rng.choice(_WA_LINES)
            for direction, text, event in (
                ("inbound", question, "Message Received"),
                ("outbound", answer, "Message Sent"),
            ):
                self._server(
                    t,
                    WHATSAPP,
                    event,
                    {"direction": direction, "text": text},
                    self.wa_anon,
                    {"phone": self.person.phone},
                    externalIds=[dict(e) for e in ext],
                )
                t += 20 + rng.expovariate(1 / 120)
        self.phone_known = True
        self._engage(t, 1)
        self._next_touch(t)

    # -- calls --

    def _call(self, t: float, direction: str, duration: int, summary: str, topic: str) -> None:
        props = {
            "direction": direction,
            "duration_seconds": duration,
            "summary": summary,
            "agent": self.rng.choice(_AGENTS),
            "topic": topic,
        }
        self._server(
            t, CALLS, "Call Completed", props, self.phone_anon, {"phone": self.person.phone}
        )

    def _agent_identify(self, t: float, traits: dict) -> None:
        """The call centre agent saves the caller as a customer."""
        msg = {"type": "identify", "userId": self.person.user_id, "traits": traits}
        msg["context"] = {"library": dict(_LIBRARIES[CALLS])}
        self._emit(t, CALLS, msg)

    def _inbound_call(self, t: float) -> None:
        """The customer calls; the agent may create a customer record."""
        rng = self.rng
        t = self._open(t, 8, 20)
        topic, summary = rng.choice(_CALL_TOPICS)
        self.phone_known = True
        self._call(t, "inbound", int(60 + rng.expovariate(1 / 240)), summary, topic)
        if self.stage < 0 and rng.random() < 0.45:
            self.email_known |= rng.random() < 0.75
            if self._contact(t + 120, "inbound_call"):
                traits = self._traits() if self.email_known else {"phone": self.person.phone}
                self._agent_identify(t + 60, traits)
        self._engage(t, 2 if topic == "Consultation booking" else 1)
        self._next_touch(t, force=self.entry == "call" and self.touches == 0)

    def _callback(self, t: float, form_name: str) -> None:
        """Outbound call-back after an abandoned form that captured a phone number."""
        rng = self.rng
        topic = "Abandoned form call-back"
        if rng.random() < 0.35:
            self._call(
                t,
                "outbound",
                int(15 + rng.random() * 30),
                f"Call-back for '{form_name}': no answer, left voicemail.",
                topic,
            )
            return
        self._call(
            t,
            "outbound",
            int(120 + rng.expovariate(1 / 300)),
            f"Call-back for abandoned '{form_name}' form; discussed requirements.",
            topic,
        )
        if self.stage < 0 and rng.random() < 0.65:
            self.email_known = True
            if self._contact(t + 300, "callback"):
                self._agent_identify(t + 240, self._traits())
        self._engage(t, 3)

    def _sales_call(self, t: float, attempt: int) -> None:
        """A sales call to an MQL: qualify (CRM) and book a store appointment, or not."""
        rng = self.rng
        topic = "Sales qualification"
        if rng.random() < 0.35:
            self._call(
                t,
                "outbound",
                int(15 + rng.random() * 30),
                "Sales call: no answer, left voicemail.",
                topic,
            )
            if attempt < 3:
                self._at(
                    self._open(t + rng.uniform(1, 2) * _DAY, 9, 18), self._sales_call, attempt + 1
                )
            return
        qualified = rng.random() < 0.4 + 0.4 * self.interest
        summary = (
            "Sales call: budget and timeline confirmed, appointment offered."
            if qualified
            else "Sales call: not ready to buy, keep nurturing."
        )
        self._call(t, "outbound", int(180 + rng.expovariate(1 / 420)), summary, topic)
        if not qualified:
            return
        t += rng.uniform(5, 60) * _MINUTE
        self._server(
            t,
            CRM,
            "Lead Qualified",
            {
                "lead_id": self.lead_id,
                "product_interest": self.person.category,
                "budget": rng.choice((1000, 2500, 5000, 10000)),
                "qualified_by": rng.choice(_AGENTS),
            },
            None,
        )
        self._stage(t + 1, _SQL)
        if rng.random() < 0.45:
            when = self._open(t + rng.uniform(2, 10) * _DAY, 10, 18)
            self._at(when, self._store_visit, "appointment")
            if self.phone_known:
                self._at(when - _DAY - rng.uniform(1, 3) * _HOUR, self._reminder)

    # -- stores --

    def _store_visit(self, t: float, purpose: str) -> None:
        """A store visit: loyalty members are seen, anyone may buy, some enrol in loyalty."""
        rng = self.rng
        t = self._open(t, 10, 20)
        appointment = purpose == "appointment"
        if appointment and not self.member and rng.random() < 0.6:
            self._enrol(t)
            t += 60
        if self.member:
            self._pos(t, "Store Visited", {"store_id": self.person.store, "visit_type": purpose})
        odds = 0.25 + 0.3 * self.interest if appointment else 0.17 / (1 + self.orders)
        buys = rng.random() < odds
        t += rng.uniform(10, 50) * _MINUTE
        if not self.member and rng.random() < (0.35 if buys else 0.1):
            self._enrol(t)
            t += 60
        if buys:
            props = {
                **self._order("S", self._basket(None, appointment)),
                "store_id": self.person.store,
                "payment_method": rng.choice(("card", "card", "cash", "financing")),
            }
            if self.member:
                self._pos(t, "Order Completed", props)
                self._ordered(t)
            else:
                ctx = {"library": dict(_LIBRARIES[POS])}
                self._emit(
                    t,
                    POS,
                    {
                        "type": "track",
                        "event": "Order Completed",
                        "properties": props,
                        "context": ctx,
                        "anonymousId": _uuid(rng),
                    },
                )
        self._engage(t, 2)
        self._next_touch(t, force=self.entry == "store" and self.touches == 0 and buys)

    def _enrol(self, t: float) -> None:
        """Loyalty enrolment: the POS identifies the new card, the CRM gets a lead."""
        self.member = True
        self.email_known = True
        p = self.person
        self._emit(
            t,
            POS,
            {
                "type": "identify",
                "anonymousId": self.card_anon,
                "traits": {
                    "email": p.email,
                    "first_name": p.first_name,
                    "last_name": p.last_name,
                    "loyalty_card": p.card,
                },
                "context": {"library": dict(_LIBRARIES[POS]), "externalIds": self._card_ids()},
            },
        )
        self._contact(t + 600, "store_loyalty")

    def _card_ids(self) -> list[dict]:
        return [
            {
                "id": self.person.card,
                "type": "loyalty_card",
                "collection": "users",
                "encoding": "none",
            }
        ]

    def _pos(self, t: float, event: str, props: dict) -> None:
        ctx: dict = {"library": dict(_LIBRARIES[POS]), "externalIds": self._card_ids()}
        if self.rng.random() < 0.7:
            ctx["traits"] = {"email": self.person.email}
        self._emit(
            t,
            POS,
            {
                "type": "track",
                "event": event,
                "properties": props,
                "context": ctx,
                "anonymousId": self.card_anon,
            },
        )


def _next_slot(t: float, offset: float, period: float) -> float:
    """Return the first ``offset + k * period`` (epoch-aligned) after ``t``."""
    k = -(-(t - offset) // period)
    return offset + k * period


def _acquisition(
    rng: random.Random, channel: str, country: _Country, campaign: str | None
) -> tuple[str, str, dict | None]:
    """Return (referrer, landing query string, context.campaign) for a channel."""
    if channel == "direct":
        return "", "", None
    if channel == "organic_search":
        r = rng.random()
        engine = (
            f"https://www.{country.google}/"
            if r < 0.86
            else "https://www.bing.com/"
            if r < 0.96
            else "https://duckduckgo.com/"
        )
        return engine, "", None
    if channel == "organic_social":
        return rng.choice(_SOCIAL_REFERRERS), "", None
    if channel == "referral":
        return rng.choice(_REFERRERS), "", None
    if channel == "paid_search":
        name, term = rng.choice(_PAID_SEARCH_CAMPAIGNS)
        if rng.random() < 0.88:
            source, ref, click = "google", f"https://www.{country.google}/", "gclid"
            token = f"Cj0KCQjw{_token(rng, 40)}_BwE"
        else:
            source, ref, click = "bing", "https://www.bing.com/", "msclkid"
            token = f"{rng.getrandbits(128):032x}"
        utm = {"source": source, "medium": "cpc", "name": name, "term": term.replace("+", " ")}
        return (
            ref,
            (
                f"?utm_source={source}&utm_medium=cpc&utm_campaign={name}"
                f"&utm_term={term}&{click}={token}"
            ),
            utm,
        )
    if channel == "paid_social":
        name = rng.choice(_SOCIAL_CAMPAIGNS)
        source, ref = (
            ("facebook", "https://m.facebook.com/")
            if rng.random() < 0.55
            else ("instagram", "https://l.instagram.com/")
        )
        utm = {
            "source": source,
            "medium": "cpc",
            "name": name,
            "content": "ad_" + str(rng.randrange(1, 9)),
        }
        return (
            ref,
            (
                f"?utm_source={source}&utm_medium=cpc&utm_campaign={name}"
                f"&utm_content={utm['content']}&fbclid=IwAR{_token(rng, 44)}"
            ),
            utm,
        )
    if channel == "display":
        source, name = rng.choice(_DISPLAY)
        utm = {"source": source, "medium": "display", "name": name}
        return "", f"?utm_source={source}&utm_medium=display&utm_campaign={name}", utm
    if channel == "affiliate":
        source, ref = rng.choice(_AFFILIATES)
        utm = {"source": source, "medium": "affiliate", "name": "affiliate_programme"}
        return (
            ref,
            (
                f"?utm_source={source}&utm_medium=affiliate&utm_campaign=affiliate_programme"
                f"&awc={rng.randrange(10**4, 10**5)}_{rng.getrandbits(40)}"
            ),
            utm,
        )
    if channel == "email":
        name = campaign or "newsletter"
        utm = {"source": "newsletter", "medium": "email", "name": name}
        return "", f"?utm_source=newsletter&utm_medium=email&utm_campaign={name}", utm
    if channel == "sms":
        name = campaign or "sms"
        utm = {"source": "sms_gateway", "medium": "sms", "name": name}
        return "", f"?utm_source=sms_gateway&utm_medium=sms&utm_campaign={name}", utm
    raise ValueError(f"unknown channel {channel!r}")


_HH_MM = tuple(f"T{h:02d}:{m:02d}:" for h in range(24) for m in range(60))


class _Timestamps:
    """Fast ISO 8601 (UTC, millisecond, ``Z``) formatting of epoch seconds."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}

    def __call__(self, t: float) -> str:
        day, ms = divmod(int(t * 1000), 86_400_000)
        minute, ms = divmod(ms, 60_000)
        prefix = self.days.get(day)
        if prefix is None:
            prefix = self.days[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
        return f"{prefix}{_HH_MM[minute]}{ms // 1000:02d}.{ms % 1000:03d}Z"


def generate(
    customers: int = 1000, days: int = 90, seed: int = 7, end: datetime | None = None
) -> Iterator[tuple[str, dict]]:
    """Yield (source name, Segment message) for a synthetic world; same args -> identical output.

    ``end`` is the world's last moment (UTC; a naive datetime is taken as UTC), by default today's
    midnight UTC; every timestamp lies in ``[end - days, end)``.
    """
    if customers < 0 or days <= 0:
        raise ValueError("customers must be >= 0 and days > 0")
    if end is None:
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    elif end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    stop = end.timestamp()
    return _stream(customers, seed, stop - days * _DAY, stop)


def _stream(customers: int, seed: int, start: float, end: float) -> Iterator[tuple[str, dict]]:
    iso = _Timestamps()
    when = itemgetter(0)
    for index in range(customers):
        events = _Journey(seed, index, start, end).run()
        events.sort(key=when)
        prefix = f"demo-{seed}-{index}-"
        for n, (t, source, msg) in enumerate(events):
            msg["messageId"] = f"{prefix}{n}"
            msg["timestamp"] = iso(t)
            yield source, msg
