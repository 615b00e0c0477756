"""Identifiers without a database: normal forms, junk values, configurable rules, reading the
identifiers an event row carries, their priority order, anchors and suppression keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from email_validator import validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.core.errors import InvalidInput
from plait.core.settings import IdentitySettings, Settings
from plait.identity import identifiers as identifiers_module
from plait.identity.identifiers import (
    IdentityRules,
    anchor_of,
    identifiers_of,
    identity_rules,
    suppression_key,
)
from plait.identity.resolver import event_identifiers

JUNK = [
    "",
    "  ",
    "anonymous",
    "null",
    "NULL",
    "undefined",
    "none",
    "0",
    "-1",
    "[object Object]",
    "00000000-0000-0000-0000-000000000000",
]


def rules(**identity: Any) -> IdentityRules:
    return IdentityRules.from_settings(IdentitySettings(**identity))


def event(**fields: Any) -> dict[str, Any]:
    """An ``events`` row with every identity column present (and empty unless given)."""
    row: dict[str, Any] = {
        "user_id": None,
        "anonymous_id": None,
        "previous_id": None,
        "type": "track",
        "traits": None,
        "context": {},
    }
    row.update(fields)
    return row


# --- normal forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Ana.Lima@Example.COM", "ana.lima@example.com"),
        ("  Bob@EXAMPLE.org ", "bob@example.org"),
        ("carla@shop.example.com", "carla@shop.example.com"),
    ],
)
def test_email_is_lower_cased_and_trimmed(raw: str, normal: str) -> None:
    assert rules().normalize("email", raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "not-an-email",
        "ana@",
        "@example.com",
        "ana@example",
        "ana@@example.com",
        "ana lima@example.com",
    ],
)
def test_invalid_email_is_not_an_identifier(raw: str) -> None:
    assert rules().normalize("email", raw) is None


def test_national_phone_number_is_read_in_the_default_region() -> None:
    french, american = rules(default_region="FR"), rules(default_region="US")
    assert french.normalize("phone", "06 12 34 56 78") == "+33612345678"
    assert american.normalize("phone", "06 12 34 56 78") is None
    assert american.normalize("phone", "(650) 253-0000") == "+16502530000"
    assert french.normalize("phone", "(650) 253-0000") is None


def test_default_region_is_case_insensitive() -> None:
    assert rules(default_region="fr").normalize("phone", "06 12 34 56 78") == "+33612345678"


def test_international_phone_number_is_read_in_any_region() -> None:
    for region in ("US", "FR", "GB"):
        assert rules(default_region=region).normalize("phone", "+33 6 12 34 56 78") == (
            "+33612345678"
        )


@pytest.mark.parametrize("raw", ["12345", "not a phone", "+1 555 0100", "+33 6 12"])
def test_invalid_phone_number_is_dropped(raw: str) -> None:
    assert rules().normalize("phone", raw) is None


def test_other_kinds_are_kept_as_given_but_trimmed() -> None:
    assert rules().normalize("user_id", "  Cus_42 ") == "Cus_42"
    assert rules().normalize("user_id", 42) == "42"


@pytest.mark.parametrize("value", [True, False, 4.2, None, ["a"], {"id": "a"}])
def test_values_that_are_not_strings_or_integers_are_not_identifiers(value: Any) -> None:
    assert rules().normalize("user_id", value) is None


def test_overlong_value_is_not_an_identifier() -> None:
    assert rules().normalize("user_id", "x" * 500) == "x" * 500
    assert rules().normalize("user_id", "x" * 501) is None


# --- junk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["user_id", "anonymous_id", "email"])
@pytest.mark.parametrize("value", JUNK)
def test_junk_value_is_never_an_identifier(kind: str, value: str) -> None:
    assert rules().normalize(kind, value) is None


@pytest.mark.parametrize("value", JUNK)
def test_event_with_only_junk_identifiers_has_none(value: str) -> None:
    row = event(
        user_id=value,
        anonymous_id=value,
        traits={"email": value, "phone": value},
        context={"device": {"id": value}, "externalIds": [{"type": "whatsapp_id", "id": value}]},
    )
    assert identifiers_of(row, rules()) == []


def test_integer_junk_is_junk_too() -> None:
    assert rules().normalize("user_id", 0) is None
    assert rules().normalize("user_id", -1) is None


def test_configured_junk_values_add_to_the_built_in_ones() -> None:
    custom = rules(junk_values=["  Guest ", "N/A"])
    for value in ("guest", "GUEST", " Guest", "n/a", "N/A"):
        assert custom.normalize("user_id", value) is None, value
    assert custom.normalize("user_id", "null") is None
    assert custom.normalize("user_id", "guest-1") == "guest-1"
    assert rules().normalize("user_id", "guest") == "guest"


def test_configured_junk_pattern() -> None:
    custom = rules(junk_pattern=r"^test-")
    assert custom.normalize("user_id", "test-123") is None
    assert custom.normalize("anonymous_id", "  test-abc") is None
    assert custom.normalize("email", "test-ana@example.com") is None
    assert custom.normalize("user_id", "my-test-1") == "my-test-1"
    assert custom.normalize("email", "ana@example.com") == "ana@example.com"
    assert rules().normalize("user_id", "test-123") == "test-123"


def test_bad_junk_pattern_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"identity\.junk_pattern is not a valid regex"):
        rules(junk_pattern="(unclosed")


def test_bad_identity_settings_are_invalid_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_CONFIG", str(tmp_path / "absent.toml"))
    settings = Settings(home=tmp_path, identity=IdentitySettings(junk_pattern="[a-"))
    with pytest.raises(InvalidInput, match=r"plait\.toml \[identity\].*junk_pattern") as caught:
        identity_rules(settings)
    assert caught.value.field == "identity"


def test_priority_must_list_anonymous_id() -> None:
    with pytest.raises(ValueError, match="anonymous_id"):
        rules(priority=["user_id", "email"])


def test_kinds_must_be_lower_case_names() -> None:
    with pytest.raises(ValueError, match="Loyalty"):
        rules(trait_kinds={"loyalty": "Loyalty-Card"})
    with pytest.raises(ValueError, match="Crm"):
        rules(limits={"Crm": 1})


def test_external_id_kinds_must_be_lower_case_names() -> None:
    """``from_settings``: a bad setting raises ValueError; a kind an external id type maps to
    is a kind like any other, so a bad one must not silently drop those ids."""
    with pytest.raises(ValueError, match="WhatsApp ID"):
        rules(external_id_kinds={"whatsapp_id": "WhatsApp ID"})


# --- reading events -----------------------------------------------------------------------


def test_user_and_anonymous_ids_are_read() -> None:
    row = event(type="identify", user_id="cus_42", anonymous_id="anon-1")
    assert identifiers_of(row, rules()) == [("user_id", "cus_42"), ("anonymous_id", "anon-1")]


def test_alias_previous_id_is_an_anonymous_id() -> None:
    row = event(type="alias", user_id="cus_42", previous_id="anon-old")
    assert identifiers_of(row, rules()) == [("user_id", "cus_42"), ("anonymous_id", "anon-old")]


def test_previous_id_of_other_event_types_is_ignored() -> None:
    row = event(type="identify", user_id="cus_42", previous_id="anon-old")
    assert identifiers_of(row, rules()) == [("user_id", "cus_42")]


def test_identity_traits_are_read_from_traits_and_context_traits() -> None:
    row = event(
        type="identify",
        traits={"email": "Ana@Example.com", "first_name": "Ana"},
        context={"traits": {"phone": "+33 6 12 34 56 78"}},
    )
    assert identifiers_of(row, rules()) == [
        ("email", "ana@example.com"),
        ("phone", "+33612345678"),
    ]


def test_trait_phone_uses_the_default_region() -> None:
    row = event(traits={"phone": "06 12 34 56 78"})
    assert identifiers_of(row, rules(default_region="FR")) == [("phone", "+33612345678")]
    assert identifiers_of(row, rules(default_region="US")) == []


def test_invalid_trait_values_are_skipped() -> None:
    row = event(
        user_id="cus_42",
        traits={"email": "not-an-email", "phone": "12"},
        context={"traits": {"email": "null"}},
    )
    assert identifiers_of(row, rules()) == [("user_id", "cus_42")]


def test_external_ids_map_known_types_and_keep_unknown_types_as_kinds() -> None:
    row = event(
        context={
            "externalIds": [
                {"type": "whatsapp_id", "id": "33612345678", "collection": "users"},
                {"type": "loyalty_card", "id": "LC-0001"},
                {"type": "telegram_id", "id": 987654},
                {"type": "telegram_user_id", "id": "123456"},
                {"type": "PSID", "id": "psid-1"},
            ]
        }
    )
    found = identifiers_of(row, rules())
    assert set(found) == {
        ("wa_id", "33612345678"),
        ("loyalty_card", "LC-0001"),
        ("telegram_id", "987654"),
        ("telegram_id", "123456"),
        ("messenger_psid", "psid-1"),
    }
    assert ("whatsapp_id", "33612345678") not in found


def test_external_id_types_are_folded_to_kind_names() -> None:
    row = event(
        context={
            "externalIds": [
                {"type": "WhatsApp-ID", "id": "33612345678"},
                {"type": "Shopify Customer Id", "id": "sh-1"},
            ]
        }
    )
    assert set(identifiers_of(row, rules())) == {
        ("wa_id", "33612345678"),
        ("shopify_customer_id", "sh-1"),
    }


def test_malformed_external_ids_are_ignored() -> None:
    row = event(
        user_id="cus_42",
        context={
            "externalIds": [
                "not-a-mapping",
                {"id": "no-type"},
                {"type": 7, "id": "type-not-a-string"},
                {"type": "9lives", "id": "kind-must-start-with-a-letter"},
                {"type": "crm_id"},
                {"type": "crm_id", "id": "undefined"},
            ]
        },
    )
    assert identifiers_of(row, rules()) == [("user_id", "cus_42")]


def test_external_ids_that_are_not_a_list_are_ignored() -> None:
    row = event(anonymous_id="anon-1", context={"externalIds": {"type": "crm_id", "id": "c"}})
    assert identifiers_of(row, rules()) == [("anonymous_id", "anon-1")]


def test_device_id_is_read_from_context_device() -> None:
    row = event(anonymous_id="anon-1", context={"device": {"id": "dev-1", "model": "iPhone"}})
    assert identifiers_of(row, rules()) == [("device_id", "dev-1"), ("anonymous_id", "anon-1")]


def test_identifiers_are_sorted_strongest_first() -> None:
    row = event(
        type="identify",
        user_id="cus_42",
        anonymous_id="anon-1",
        traits={"email": "ana@example.com", "phone": "+33612345678"},
        context={
            "device": {"id": "dev-1"},
            "externalIds": [
                {"type": "zz_custom", "id": "z-1"},
                {"type": "crm_id", "id": "c-1"},
                {"type": "whatsapp_id", "id": "33612345678"},
                {"type": "loyalty_card", "id": "LC-1"},
            ],
        },
    )
    assert identifiers_of(row, rules()) == [
        ("user_id", "cus_42"),
        ("email", "ana@example.com"),
        ("phone", "+33612345678"),
        ("loyalty_card", "LC-1"),
        ("wa_id", "33612345678"),
        ("device_id", "dev-1"),
        ("crm_id", "c-1"),
        ("zz_custom", "z-1"),
        ("anonymous_id", "anon-1"),
    ]


def test_unknown_kinds_rank_between_listed_kinds_and_anonymous_id() -> None:
    default = rules()
    assert default.rank("user_id") < default.rank("email") < default.rank("phone")
    assert default.rank("phone") < default.rank("wa_id") < default.rank("device_id")
    assert default.rank("device_id") < default.rank("crm_id") < default.rank("anonymous_id")
    assert default.rank("crm_id") == default.rank("other_kind")


def test_custom_priority_reorders_identifiers() -> None:
    custom = rules(priority=["email", "user_id", "anonymous_id"])
    row = event(user_id="cus_42", anonymous_id="anon-1", traits={"email": "ana@example.com"})
    assert identifiers_of(row, custom) == [
        ("email", "ana@example.com"),
        ("user_id", "cus_42"),
        ("anonymous_id", "anon-1"),
    ]


def test_duplicate_identifiers_are_removed() -> None:
    row = event(
        type="alias",
        user_id="cus_42",
        anonymous_id="anon-1",
        previous_id="anon-1",
        traits={"email": "Ana@Example.com", "phone": "+1 650 253 0000"},
        context={
            "traits": {"email": "ana@example.com ", "phone": "(650) 253-0000"},
            "externalIds": [
                {"type": "crm_id", "id": "c-1"},
                {"type": "CRM-ID", "id": "c-1"},
            ],
        },
    )
    assert identifiers_of(row, rules()) == [
        ("user_id", "cus_42"),
        ("email", "ana@example.com"),
        ("phone", "+16502530000"),
        ("crm_id", "c-1"),
        ("anonymous_id", "anon-1"),
    ]


def test_same_value_under_two_kinds_is_two_identifiers() -> None:
    row = event(user_id="abc", anonymous_id="abc")
    assert identifiers_of(row, rules()) == [("user_id", "abc"), ("anonymous_id", "abc")]


def test_event_without_identifiers() -> None:
    assert identifiers_of(event(), rules()) == []
    assert identifiers_of({"type": "track"}, rules()) == []


def test_configured_trait_kinds() -> None:
    custom = rules(
        trait_kinds={"email": "email", "phone": "phone", "loyaltyNumber": "loyalty_card"}
    )
    row = event(
        type="identify",
        anonymous_id="anon-1",
        traits={"loyaltyNumber": "LC-0042", "email": "ana@example.com"},
    )
    assert identifiers_of(row, custom) == [
        ("email", "ana@example.com"),
        ("loyalty_card", "LC-0042"),
        ("anonymous_id", "anon-1"),
    ]
    assert identifiers_of(row, rules()) == [
        ("email", "ana@example.com"),
        ("anonymous_id", "anon-1"),
    ]


def test_trait_kinds_replace_the_defaults() -> None:
    custom = rules(trait_kinds={"work_email": "email"})
    row = event(traits={"email": "home@example.com", "work_email": "Work@Example.com"})
    assert identifiers_of(row, custom) == [("email", "work@example.com")]


# --- anchors and suppression keys ---------------------------------------------------------


def test_anchor_is_the_strongest_identifier() -> None:
    row = event(
        type="identify",
        user_id="cus_42",
        anonymous_id="anon-1",
        traits={"email": "ana@example.com"},
    )
    assert anchor_of(identifiers_of(row, rules())) == ("user_id", "cus_42")
    anonymous = event(anonymous_id="anon-1", traits={"email": "ana@example.com"})
    assert anchor_of(identifiers_of(anonymous, rules())) == ("email", "ana@example.com")
    assert anchor_of([]) is None


def test_suppression_key_is_a_digest_that_hides_the_value() -> None:
    key = suppression_key(("email", "ana@example.com"))
    assert re.fullmatch(r"[0-9a-f]{32,}", key)
    assert "ana" not in key
    assert "example" not in key
    assert key == suppression_key(("email", "ana@example.com"))


def test_suppression_key_differs_by_kind_and_value() -> None:
    keys = {
        suppression_key(("user_id", "12345")),
        suppression_key(("anonymous_id", "12345")),
        suppression_key(("wa_id", "12345")),
        suppression_key(("user_id", "12346")),
    }
    assert len(keys) == 4
    assert all("12345" not in key for key in keys)


def test_configured_external_id_types_are_folded_like_incoming_ones() -> None:
    rules = IdentityRules.from_settings(
        IdentitySettings(external_id_kinds={"Shopify-Customer": "shopify_id"})
    )
    event = {"context": {"externalIds": [{"type": "shopify customer", "id": "42"}]}}
    assert identifiers_of(event, rules) == [("shopify_id", "42")]


ID_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["", "  ", "null", "0", "anonymous", "u-1", " u-1 ", "a-7", "ann@x.org"]),
    st.text(max_size=12),
    st.integers(-2, 3),
)
TRAITS = st.one_of(
    st.none(),
    st.just({}),
    st.just({"email": "Ann@Example.com"}),
    st.just({"plan": "pro"}),
    st.just({"phone": "+33 6 12 34 56 78"}),
)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["track", "page", "identify", "alias"]),
    user_id=ID_VALUES,
    anonymous_id=ID_VALUES,
    previous_id=ID_VALUES,
    traits=TRAITS,
    context_traits=TRAITS,
    external=st.sampled_from([None, [], [{"type": "loyalty_card", "id": "L-9"}], "odd"]),
    device=st.sampled_from([None, {}, {"id": "dev-1"}, {"id": None}, {"type": "ios"}]),
)
def test_an_events_identifiers_with_its_stored_anchor_leading(
    kind, user_id, anonymous_id, previous_id, traits, context_traits, external, device
) -> None:
    """``event_identifiers`` (with its shortcut for events that carry only ids) gives what the
    full derivation gives: the anchor stored at ingestion, then the rest strongest first."""
    found_rules = rules()
    context = {"traits": context_traits, "externalIds": external, "device": device}
    row = {
        "type": kind,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "previous_id": previous_id,
        "traits": traits,
        "context": {key: value for key, value in context.items() if value is not None},
    }
    every = identifiers_of(row, found_rules)
    anchor = anchor_of(every)
    row["identity_kind"], row["identity_value"] = anchor or (None, None)
    expected = every if anchor is None else [anchor, *(i for i in every if i != anchor)]
    assert event_identifiers(row, found_rules) == expected


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="aZ09._%+-'@x-y", min_size=3, max_size=30),
        st.from_regex(r"[A-Za-z0-9._%+-]{1,12}@[A-Za-z0-9.-]{1,20}\.[A-Za-z]{1,6}", fullmatch=True),
        st.sampled_from(["a@ab--cd.com", "x@xn--bcher-kva.ch", "a@x.test", "a@x.home.arpa"]),
        st.emails(),
    )
)
def test_plain_addresses_skip_the_validator_with_the_same_result(text: str) -> None:
    """The shortcut for plain ASCII addresses agrees with email_validator whenever it is taken."""
    if not identifiers_module._plain_email(text):
        return
    checked = validate_email(text, check_deliverability=False)
    assert text.lower() == checked.normalized.lower()


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Ann@Example.COM", True),
        ("a.b+c@mail.example.co.uk", True),
        ("a@ab--cd.com", False),  # IDNA rules: left to the validator, which refuses it
        ("x@xn--bcher-kva.ch", False),  # Punycode: the validator shows it as bücher.ch
        ("a@x.test", False),  # special-use name: refused
        ("ünï@x.io", False),
        ("a..b@x.io", False),
    ],
)
def test_which_addresses_take_the_shortcut(text: str, plain: bool) -> None:
    assert identifiers_module._plain_email(text) is plain
