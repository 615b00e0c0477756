"""Sources as Collect sees them: a source's default channel must be a channel Plait knows."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from plait.collect.channels import CHANNELS, ChannelRules
from plait.core.errors import InvalidInput
from plait.core.settings import Settings
from plait.core.sources import create_source


def known_channels(settings: Settings) -> list[str]:
    """GA4's channels, Plait's offline channels, and those named in ``plait.toml``."""
    config = channel_config(settings)
    extra = [rule.channel for rule in ChannelRules.from_config(config).custom]
    names = settings.channels.get("names", [])
    return list(dict.fromkeys([*CHANNELS, *extra, *names]))


def channel_config(settings: Settings) -> dict[str, Any]:
    """The ``[channels]`` table without ``names`` (extra channel names, not rules)."""
    return {k: v for k, v in settings.channels.items() if k != "names"}


def canonical_channel(settings: Settings, channel: str | None) -> str | None:
    """The known channel ``channel`` names (case-insensitively), or a clear error."""
    if channel is None or not channel.strip():
        return None
    by_lower = {name.lower(): name for name in known_channels(settings)}
    found = by_lower.get(channel.strip().lower())
    if found is None:
        raise InvalidInput(
            f"unknown channel {channel!r}; known channels: {', '.join(by_lower.values())}"
            " (add more under [channels] names in plait.toml)",
            field="channel",
        )
    return found


def add_source(
    conn: Connection, settings: Settings, name: str, channel: str | None = None
) -> dict[str, Any]:
    """Create a source whose default channel is a known one; returns its write key once."""
    return create_source(conn, name, canonical_channel(settings, channel))
