"""Identifiers: which values on an event say who the customer is, in one normal form.

An identifier is a ``(kind, value)`` pair: ``("email", "ana@example.com")``,
``("phone", "+33612345678")``, ``("wa_id", "33612345678")``. Kinds are ranked by priority
(``user_id`` first, ``anonymous_id`` last); an event's highest-ranked identifier is its
*anchor*, the identifier through which the event belongs to a profile. Junk values (``null``,
``undefined``, all-zero ids …) are never identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from plait.core.errors import InvalidInput
from plait.core.secrets import digest
from plait.core.settings import IdentitySettings, Settings

Identifier = tuple[str, str]

JUNK_VALUES = frozenset(
    {"", "anonymous", "null", "undefined", "none", "nil", "nan", "0", "-1", "[object object]"}
)
_ALL_ZEROS = re.compile(r"^[0\-_.:\s]+$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
MAX_VALUE_LENGTH = 500
_PLAIN_EMAIL = re.compile(
    r"[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
"""A plain ASCII address that ``email_validator`` accepts unchanged (but for the domain's
case), so it need not be asked: a tenth of the time."""


@dataclass(frozen=True)
class IdentityRules:
    """Kinds, their priority and limits, and what counts as junk."""

    priority: tuple[str, ...]
    limits: Mapping[str, int]
    trait_kinds: Mapping[str, str]
    external_id_kinds: Mapping[str, str]
    default_region: str = "US"
    junk_values: frozenset[str] = JUNK_VALUES
    junk_pattern: re.Pattern[str] | None = None
    _rank: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if "anonymous_id" not in self.priority:
            raise ValueError("identity.priority must list anonymous_id")
        kinds = (*self.priority, *self.limits, *self.trait_kinds.values())
        for kind in (*kinds, *self.external_id_kinds.values()):
            check_kind(kind)
        ranks = {kind: 2 * index for index, kind in enumerate(self.priority)}
        self._rank.update(ranks)

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> IdentityRules:
        """Rules from ``[identity]`` in ``plait.toml``; a bad setting raises ValueError."""
        try:
            pattern = re.compile(settings.junk_pattern) if settings.junk_pattern else None
        except re.error as exc:
            raise ValueError(f"identity.junk_pattern is not a valid regex: {exc}") from None
        return cls(
            priority=tuple(settings.priority),
            limits=dict(settings.limits),
            trait_kinds=dict(settings.trait_kinds),
            external_id_kinds={_folded_type(k): v for k, v in settings.external_id_kinds.items()},
            default_region=settings.default_region.upper(),
            junk_values=JUNK_VALUES | {value.strip().lower() for value in settings.junk_values},
            junk_pattern=pattern,
        )

    def rank(self, kind: str) -> int:
        """Lower is stronger; kinds not listed sit just above ``anonymous_id``."""
        known = self._rank.get(kind)
        return known if known is not None else self._rank["anonymous_id"] - 1

    def limit(self, kind: str) -> int | None:
        return self.limits.get(kind)

    def is_junk(self, value: str) -> bool:
        folded = value.strip().lower()
        if folded in self.junk_values or _ALL_ZEROS.match(folded):
            return True
        return bool(self.junk_pattern and self.junk_pattern.search(value))

    def normalize(self, kind: str, value: Any) -> str | None:
        """``value`` in its normal form for ``kind``, or None if it is not an identifier."""
        if isinstance(value, bool) or not isinstance(value, str | int):
            return None
        text = str(value).strip()
        if not text or len(text) > MAX_VALUE_LENGTH or self.is_junk(text):
            return None
        if kind == "email":
            return normalize_email(text)
        if kind == "phone":
            return normalize_phone(text, self.default_region)
        return text

    def sort(self, identifiers: Iterable[Identifier]) -> list[Identifier]:
        """Distinct identifiers, strongest first (ties by kind, then value)."""
        return sorted(set(identifiers), key=lambda item: (self.rank(item[0]), item))


def identity_rules(settings: Settings) -> IdentityRules:
    """The rules ``settings`` describe; a bad ``[identity]`` table is a clear error."""
    try:
        return IdentityRules.from_settings(settings.identity)
    except ValueError as exc:
        raise InvalidInput(f"plait.toml [identity]: {exc}", field="identity") from None


def check_kind(kind: str) -> str:
    """``kind`` if it is a valid identifier kind name (lower-case, digits, underscores)."""
    if not _KIND.match(kind):
        raise ValueError(f"identifier kind {kind!r} must be lower-case letters, digits and _")
    return kind


@lru_cache(maxsize=65536)
def normalize_email(text: str) -> str | None:
    """A syntactically valid address, lower-cased; None if it is not one."""
    if _plain_email(text):
        return text.lower()
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.normalized.lower()


def _plain_email(text: str) -> bool:
    """Whether ``text`` is a plain address (``_PLAIN_EMAIL``) short enough, with no ``--`` in
    its domain (IDNA's rules) and not under a special-use name such as ``.test``."""
    if not text.isascii() or len(text) > 254:
        return False
    folded = text.lower()
    if not _PLAIN_EMAIL.fullmatch(folded):
        return False
    local, _, domain = folded.rpartition("@")
    top = domain.rsplit(".", 1)[-1]
    return len(local) <= 64 and "--" not in domain and top not in SPECIAL_USE_DOMAIN_NAMES


@lru_cache(maxsize=65536)
def normalize_phone(text: str, region: str) -> str | None:
    """A valid number in E.164 (``+33612345678``), reading national numbers in ``region``."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def identifiers_of(event: Mapping[str, Any], rules: IdentityRules) -> list[Identifier]:
    """Every identifier an ``events`` row carries, strongest first.

    Read from ``userId``, ``anonymousId``, an alias's ``previousId`` (as an anonymous id),
    identity traits (``traits`` and ``context.traits``), ``context.externalIds`` and
    ``context.device.id``.
    """
    found: list[Identifier] = []

    def add(kind: str, value: Any) -> None:
        normal = rules.normalize(kind, value)
        if normal is not None:
            found.append((kind, normal))

    add("user_id", event.get("user_id"))
    add("anonymous_id", event.get("anonymous_id"))
    if event.get("type") == "alias":
        add("anonymous_id", event.get("previous_id"))
    context = event.get("context") or {}
    for traits in (event.get("traits"), context.get("traits")):
        if isinstance(traits, Mapping):
            for trait, kind in rules.trait_kinds.items():
                if trait in traits:
                    add(kind, traits[trait])
    external = context.get("externalIds")
    if isinstance(external, list):
        for item in external:
            if isinstance(item, Mapping) and isinstance(item.get("type"), str):
                kind = external_kind(item["type"], rules)
                if kind is not None:
                    add(kind, item.get("id"))
    device = context.get("device")
    if isinstance(device, Mapping):
        add("device_id", device.get("id"))
    return rules.sort(found)


def external_kind(type_: str, rules: IdentityRules) -> str | None:
    """The identifier kind of an ``externalIds`` entry's ``type``, if it names one."""
    folded = _folded_type(type_)
    kind = rules.external_id_kinds.get(folded, folded)
    return kind if _KIND.match(kind) else None


def _folded_type(type_: str) -> str:
    return type_.strip().lower().replace("-", "_").replace(" ", "_")


def anchor_of(identifiers: list[Identifier]) -> Identifier | None:
    """The strongest identifier: the one an event belongs to its profile through."""
    return identifiers[0] if identifiers else None


def suppression_key(identifier: Identifier) -> str:
    """The stored form of an erased identifier: a digest, so the value itself is not kept."""
    kind, value = identifier
    return digest(f"{kind}\x1f{value}")
