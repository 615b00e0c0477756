"""Device type, operating system and browser of an event, from its user agent or the
device block the mobile SDKs send. Parsing uses ua-parser (with its Rust accelerator)
and is cached per user-agent string, since a site sees few distinct ones."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from ua_parser import parse as parse_user_agent

_TABLET_HINTS = ("ipad", "tablet", "kindle", "silk", "playbook", "nexus 7", "nexus 9", "sm-t")
_MOBILE_OS = frozenset({"ios", "android", "windows phone", "blackberry os", "kaios", "harmonyos"})
_DESKTOP_OS = frozenset({"windows", "mac os x", "macos", "linux", "ubuntu", "chrome os", "fedora"})


class Device(NamedTuple):
    type: str | None
    os: str | None
    browser: str | None


NO_DEVICE = Device(None, None, None)


def device_of(context: Mapping[str, Any]) -> Device:
    """Device type (desktop, mobile, tablet, bot, tv), OS and browser for an event context."""
    user_agent = context.get("userAgent")
    if isinstance(user_agent, str) and user_agent:
        return parse_device(user_agent[:1000])
    device = context.get("device")
    os_block = context.get("os")
    if not isinstance(device, Mapping) and not isinstance(os_block, Mapping):
        return NO_DEVICE
    device = device if isinstance(device, Mapping) else {}
    os_name = os_block.get("name") if isinstance(os_block, Mapping) else None
    os_name = os_name or device.get("type")
    os_name = os_name if isinstance(os_name, str) and os_name else None
    model = str(device.get("model") or "").lower()
    kind = device.get("type") if isinstance(device.get("type"), str) else ""
    if any(hint in model for hint in _TABLET_HINTS):
        device_type = "tablet"
    elif kind.lower() in ("ios", "android") or (os_name or "").lower() in _MOBILE_OS:
        device_type = "mobile"
    else:
        device_type = None
    return Device(device_type, _os_label(os_name), None)


@lru_cache(maxsize=4096)
def parse_device(user_agent: str) -> Device:
    """Parse one user-agent string."""
    result = parse_user_agent(user_agent)
    browser = result.user_agent.family if result.user_agent else None
    browser = None if browser == "Other" else browser
    os_name = result.os.family if result.os else None
    device_family = result.device.family if result.device else None
    return Device(_device_type(user_agent, device_family, os_name), _os_label(os_name), browser)


def _device_type(user_agent: str, device_family: str | None, os_name: str | None) -> str | None:
    ua = user_agent.lower()
    family = (device_family or "").lower()
    os_lower = (os_name or "").lower()
    if family == "spider" or "bot" in ua or "crawler" in ua or "spider" in ua:
        return "bot"
    if "smart-tv" in ua or "smarttv" in ua or "appletv" in ua or "googletv" in ua:
        return "tv"
    if any(hint in family for hint in _TABLET_HINTS) or "tablet" in ua:
        return "tablet"
    if os_lower == "android":
        return "mobile" if "mobile" in ua else "tablet"
    if os_lower in _MOBILE_OS or "mobile" in ua:
        return "mobile"
    if os_lower in _DESKTOP_OS:
        return "desktop"
    return None


def _os_label(os_name: str | None) -> str | None:
    if not os_name or os_name == "Other":
        return None
    return {"ios": "iOS", "android": "Android", "mac os x": "macOS"}.get(os_name.lower(), os_name)
