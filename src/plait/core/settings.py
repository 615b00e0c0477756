"""Settings from defaults, an optional ``plait.toml`` and ``PLAIT_*`` environment variables.

Precedence, lowest first: built-in defaults, ``plait.toml`` (``$PLAIT_CONFIG`` or
``./plait.toml``), environment. Nested settings use ``__`` in environment names, e.g.
``PLAIT_COLLECT__DEDUP_WINDOW_DAYS=3``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class CollectSettings(BaseModel):
    """Limits and rules of the tracking API and importers."""

    max_event_bytes: int = Field(32 * 1024, gt=0)
    max_request_bytes: int = Field(500 * 1024, gt=0)
    max_batch_events: int = Field(2500, gt=0)
    dedup_window_days: float = Field(7, ge=0)
    future_tolerance_seconds: float = Field(300, ge=0)


class ServerSettings(BaseModel):
    """How ``plait serve`` listens and what it does in the background."""

    host: str = "127.0.0.1"
    port: int = Field(8400, gt=0, lt=65536)
    lake_sync_interval_seconds: float = Field(5, gt=0)
    history_refresh_interval_seconds: float = Field(60, ge=0)
    """How often the kept history (``analytics.history``) takes in the lake's changes; reports
    recompute what changed since, so this trades report speed against background work."""
    public_url: str | None = None
    session_hours: float = Field(12, gt=0)
    """How long a dashboard sign-in lasts."""
    login_max_failures: int = Field(5, ge=1)
    """Failed sign-ins per email within ``login_window_minutes`` before it is locked."""
    login_max_failures_per_address: int = Field(20, ge=1)
    """Failed sign-ins per client IP address within the window."""
    login_window_minutes: float = Field(15, gt=0)
    warm_dashboard: bool = True
    """Recompute the analytics pages' default views after new data reaches the lake."""
    warm_interval_seconds: float = Field(60, gt=0)
    """At most one warm-up per interval, however often the lake syncs."""
    resolver_burst_share: float = Field(0.25, gt=0, le=1)
    """While events arrive faster than identity resolution takes them in (a burst of
    ingestion), and for at most ``resolver_burst_seconds`` of its being behind, resolution
    takes at most this share of its time, so the burst keeps the CPU; 1 turns this off."""
    resolver_burst_seconds: float = Field(30, ge=0)
    """How long identity resolution yields to a burst before it runs flat out to catch up."""
    sqlite_writer_process: bool = True
    """On SQLite, store tracked events from a process of the server's own
    (:mod:`plait.collect.writer_process`) rather than from a thread of each worker."""
    upkeep_nice: int = Field(10, ge=0, le=19)
    """How much lower the upkeep process's CPU priority is than the server's (a Unix ``nice``
    increment; 0 keeps them equal), so requests come first when the two want the same core.
    Its lake replication runs in bursts of a second every few seconds; at equal priority
    they held the ingest bench's requests back (PostgreSQL, 10,000 events/s offered, four runs
    each: p99 76-208 -> 40-79 ms)."""


class IdentitySettings(BaseModel):
    """How identifiers are recognised and when profiles may merge (see ``plait.identity``)."""

    default_region: str = "US"
    priority: list[str] = Field(
        default_factory=lambda: [
            "user_id",
            "email",
            "phone",
            "loyalty_card",
            "wa_id",
            "whatsapp_bsuid",
            "messenger_psid",
            "instagram_id",
            "telegram_id",
            "device_id",
            "anonymous_id",
        ]
    )
    limits: dict[str, int] = Field(default_factory=lambda: {"user_id": 1, "email": 5, "phone": 5})
    trait_kinds: dict[str, str] = Field(
        default_factory=lambda: {"email": "email", "phone": "phone"}
    )
    external_id_kinds: dict[str, str] = Field(
        default_factory=lambda: {
            "whatsapp_id": "wa_id",
            "psid": "messenger_psid",
            "igsid": "instagram_id",
            "telegram_user_id": "telegram_id",
        }
    )
    junk_values: list[str] = Field(default_factory=list)
    junk_pattern: str | None = None


class ProfileSettings(BaseModel):
    """How the customer 360 reads traits and events."""

    default_trait_strategy: Literal["last", "first", "non_empty"] = "last"
    trait_strategies: dict[str, Literal["last", "first", "non_empty"]] = Field(default_factory=dict)
    contact_events: list[str] = Field(
        default_factory=lambda: [
            "Call Completed",
            "Chat Started",
            "Chat Message Received",
            "Chat Message Sent",
            "Message Received",
            "Message Sent",
            "Email Received",
            "Email Replied",
            "Store Visited",
            "Meeting Completed",
        ]
    )
    order_events: list[str] = Field(default_factory=lambda: ["Order Completed"])
    qualified_events: list[str] = Field(default_factory=lambda: ["Lead Qualified"])


class PositionWeights(BaseModel):
    """Shares of a conversion for the first, middle and last touches (the custom model)."""

    first: float = Field(0.3, ge=0)
    middle: float = Field(0.4, ge=0)
    last: float = Field(0.3, ge=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> PositionWeights:
        if abs(self.first + self.middle + self.last - 1) > 1e-9:
            raise ValueError("custom weights must sum to 1")
        return self


class AnalyticsSettings(BaseModel):
    """Sessions, touches, conversions and attribution (the Measure area). Sales are the
    ``profiles.order_events`` and qualification the ``profiles.qualified_events``, so the
    customer 360 and the channel report count the same things."""

    session_timeout_minutes: float = Field(30, gt=0)
    split_sessions_on_campaign: bool = False
    touch_types: list[str] = Field(default_factory=lambda: ["page", "screen"])
    touch_events: list[str] = Field(
        default_factory=lambda: [
            "Email Clicked",
            "Email Link Clicked",
            "Push Notification Tapped",
            "Call Completed",
            "Store Visited",
            "Chat Started",
            "Chat Message Received",
            "Message Received",
            "Email Received",
            "Meeting Completed",
        ]
    )
    touch_channels: list[str] = Field(default_factory=lambda: ["Store", "Phone"])
    """Channels where any event is a touch (a purchase at the till is a store visit)."""
    contact_events: list[str] = Field(
        default_factory=lambda: ["Signed Up", "Lead Created", "Form Submitted"]
    )
    contact_on_identify: bool = True
    qualified_stages: list[str] = Field(
        default_factory=lambda: [
            "marketing_qualified_lead",
            "sales_qualified_lead",
            "marketingqualifiedlead",
            "salesqualifiedlead",
            "mql",
            "sql",
        ]
    )
    lookback_days: float = Field(90, gt=0)
    collapse_repeats: bool = False
    half_life_days: float = Field(7, gt=0)
    custom_weights: PositionWeights = PositionWeights()
    markov_order: int = Field(1, ge=1, le=3)
    direct_channel: str = "Direct"
    currency: str | None = None
    """The reporting currency; unset, revenue is summed as recorded, whatever its currency."""
    exchange_rates: dict[str, float] = Field(default_factory=dict)
    spark_master: str = "local[2]"


class BusinessHours(BaseModel):
    """When the team works, for SLA clocks: opening hours per weekday and holidays."""

    timezone: str = "UTC"
    days: dict[str, list[str]] = Field(
        default_factory=lambda: {
            day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")
        }
    )
    """Weekday (mon…sun) to opening intervals ``HH:MM-HH:MM``; a missing day is closed."""
    holidays: list[str] = Field(default_factory=list)
    """Closed dates, ``YYYY-MM-DD``."""


class SlaPolicy(BaseModel):
    """Response and resolution targets, counted in business hours (0 turns one off)."""

    first_response_minutes: float = Field(60, ge=0)
    next_response_minutes: float = Field(240, ge=0)
    resolution_minutes: float = Field(1440, ge=0)
    warn_fraction: float = Field(0.8, gt=0, le=1)
    """A deadline is *at risk* once this much of its time has passed."""


class InboxSettings(BaseModel):
    """The inbox: provider endpoints, the outbox's retries, assignment and SLAs."""

    twilio_api_url: str = "https://api.twilio.com"
    meta_graph_url: str = "https://graph.facebook.com/v21.0"
    telegram_api_url: str = "https://api.telegram.org"
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, gt=0, lt=65536)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    reply_domain: str | None = None
    """Where replies to conversation emails go: ``reply+<token>@reply_domain``."""
    max_attempts: int = Field(8, ge=1)
    retry_seconds: float = Field(5, gt=0)
    """The first retry's delay; each later one doubles it."""
    provider_timeout_seconds: float = Field(10, gt=0)
    agent_capacity: int = Field(10, ge=1)
    business_hours: BusinessHours = BusinessHours()
    sla: SlaPolicy = SlaPolicy()
    csat: bool = True
    """Ask for a rating from 1 to 5 when a conversation is resolved."""


class Settings(BaseSettings):
    """Everything configurable in Plait; each field has a default and an env override."""

    model_config = SettingsConfigDict(
        env_prefix="PLAIT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    home: Path = Path("./plait-data")
    database_url: str = ""
    lake: str = ""
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    secret_key: str | None = None
    """Signs dashboard session cookies; unset, one is generated in ``home``."""
    collect: CollectSettings = CollectSettings()
    server: ServerSettings = ServerSettings()
    channels: dict[str, Any] = Field(default_factory=dict)
    identity: IdentitySettings = IdentitySettings()
    profiles: ProfileSettings = ProfileSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    inbox: InboxSettings = InboxSettings()

    @model_validator(mode="after")
    def _derive_locations(self) -> Settings:
        home = self.home.expanduser().resolve()
        object.__setattr__(self, "home", home)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{home / 'plait.db'}")
        if not self.lake:
            object.__setattr__(self, "lake", str(home / "lake"))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_path())
        return (init_settings, env_settings, toml)


def config_path() -> Path:
    """Where ``plait.toml`` is read from: ``$PLAIT_CONFIG`` or the working directory."""
    return Path(os.environ.get("PLAIT_CONFIG", "plait.toml"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
