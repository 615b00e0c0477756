"""Merge rules in memory: which profile an event's identifiers join, when profiles merge (into
the oldest), limits per kind, leaving out the lowest-priority conflicting identifier, and the
refusals reported on the way. No database: ``GraphState`` with a counting id factory, so the
profile made first has the smallest id."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from plait.core.settings import IdentitySettings
from plait.identity.identifiers import Identifier, IdentityRules
from plait.identity.merge_rules import GraphState, Merge, Outcome, Refusal


def pid(n: int) -> UUID:
    """The ``n``-th profile the id factory makes (1 is the oldest)."""
    return UUID(int=n)


def graph(
    home: Mapping[Identifier, UUID] | None = None,
    roots: Mapping[UUID, UUID] | None = None,
    counts: Mapping[UUID, Mapping[str, int]] | None = None,
    *,
    first_id: int = 1,
    **identity: Any,
) -> GraphState:
    rules = IdentityRules.from_settings(IdentitySettings(**identity))
    numbers = itertools.count(first_id)
    return GraphState(rules, home or {}, roots or {}, counts or {}, lambda: pid(next(numbers)))


def apply(state: GraphState, *identifiers: Identifier) -> Outcome:
    """Apply one event carrying ``identifiers`` (sorted strongest first, as events are)."""
    return state.apply(state.rules.sort(identifiers))


def user(value: str) -> Identifier:
    return ("user_id", value)


def email(value: str) -> Identifier:
    return ("email", f"{value}@example.com")


def phone(n: int) -> Identifier:
    return ("phone", f"+3361234{n:04d}")


def anon(value: str) -> Identifier:
    return ("anonymous_id", value)


def codes(outcome: Outcome) -> list[str]:
    return [refusal.code for refusal in outcome.refusals]


def only(outcome: Outcome, code: str) -> Refusal:
    found = [refusal for refusal in outcome.refusals if refusal.code == code]
    assert len(found) == 1, outcome.refusals
    return found[0]


def root_of(state: GraphState, identifier: Identifier) -> UUID:
    return state.find(state.home[identifier])


# --- linking and merging ------------------------------------------------------------------


def test_no_identifiers_does_nothing() -> None:
    state = graph()
    assert state.apply([]) == Outcome()
    assert state.home == {}


def test_new_identifiers_make_one_profile() -> None:
    state = graph()
    outcome = apply(state, user("u1"), email("ana"), anon("a1"))
    assert outcome.created == [pid(1)]
    assert outcome.home == pid(1)
    assert outcome.merges == []
    assert outcome.refusals == []
    assert sorted(outcome.links) == sorted(
        [(user("u1"), pid(1)), (email("ana"), pid(1)), (anon("a1"), pid(1))]
    )
    assert state.find(pid(1)) == pid(1)
    assert state.counts[pid(1)] == {"user_id": 1, "email": 1}


def test_known_identifiers_join_their_profile_and_new_ones_link_to_it() -> None:
    state = graph()
    apply(state, anon("a1"))
    outcome = apply(state, email("ana"), anon("a1"))
    assert outcome.created == []
    assert outcome.merges == []
    assert outcome.refusals == []
    assert outcome.links == [(email("ana"), pid(1))]
    assert outcome.home == pid(1)


def test_event_of_one_known_identifier_changes_nothing() -> None:
    state = graph()
    apply(state, anon("a1"))
    outcome = apply(state, anon("a1"))
    assert outcome == Outcome(home=pid(1))


def test_two_profiles_merge_into_the_oldest() -> None:
    state = graph()
    apply(state, anon("laptop"))
    apply(state, user("u1"), anon("phone"))
    outcome = apply(state, user("u1"), anon("laptop"))
    assert outcome.merges == [Merge(pid(2), pid(1), (user("u1"),))]
    assert outcome.refusals == []
    assert outcome.created == []
    assert outcome.links == []
    # The event belongs to its anchor's home profile, which now sits under the oldest.
    assert outcome.home == pid(2)
    for identifier in (user("u1"), anon("phone"), anon("laptop")):
        assert root_of(state, identifier) == pid(1)
    assert state.counts[pid(1)] == {"user_id": 1}
    assert pid(2) not in state.counts


def test_merge_into_the_oldest_whatever_the_order_of_identifiers() -> None:
    state = graph()
    apply(state, user("u1"))
    apply(state, anon("a1"))
    outcome = apply(state, user("u1"), anon("a1"))
    assert outcome.merges == [Merge(pid(2), pid(1), (anon("a1"),))]
    assert outcome.home == pid(1)


def test_merge_reports_every_identifier_it_went_through_and_links_new_ones() -> None:
    state = graph()
    apply(state, anon("a1"))
    apply(state, email("ana"), anon("a2"))
    outcome = apply(state, email("ana"), phone(1), anon("a1"), anon("a2"))
    assert outcome.merges == [Merge(pid(2), pid(1), (email("ana"), anon("a2")))]
    assert outcome.links == [(phone(1), pid(1))]
    assert outcome.home == pid(2)
    assert root_of(state, phone(1)) == pid(1)
    assert state.counts[pid(1)] == {"email": 1, "phone": 1}


def test_three_profiles_merge_in_one_event() -> None:
    state = graph()
    for device in ("a1", "a2", "a3"):
        apply(state, anon(device))
    outcome = apply(state, user("u1"), anon("a3"), anon("a2"), anon("a1"))
    assert outcome.merges == [
        Merge(pid(2), pid(1), (anon("a2"),)),
        Merge(pid(3), pid(1), (anon("a3"),)),
    ]
    assert outcome.links == [(user("u1"), pid(1))]
    assert {state.find(pid(n)) for n in (1, 2, 3)} == {pid(1)}


def test_chain_of_merges_ends_with_one_root() -> None:
    state = graph()
    for device in ("a1", "a2", "a3"):
        apply(state, anon(device))
    first = apply(state, email("ana"), anon("a2"), anon("a3"))
    assert first.merges == [Merge(pid(3), pid(2), (anon("a3"),))]
    second = apply(state, user("u1"), anon("a1"), anon("a3"))
    # a3's home is profile 3, whose root is now profile 2: that is what merges into 1.
    assert second.merges == [Merge(pid(2), pid(1), (anon("a3"),))]
    for n in (1, 2, 3):
        assert state.find(pid(n)) == pid(1)
    for identifier in (anon("a1"), anon("a2"), anon("a3"), email("ana"), user("u1")):
        assert root_of(state, identifier) == pid(1)
    assert state.counts[pid(1)] == {"user_id": 1, "email": 1}
    # Homes never move: identifiers stay on the profile they were first linked to.
    assert state.home[anon("a3")] == pid(3)
    assert state.home[email("ana")] == pid(2)


def test_find_follows_a_loaded_forest_and_compresses_it() -> None:
    state = graph(
        home={anon("a4"): pid(4)},
        roots={pid(4): pid(3), pid(3): pid(2), pid(2): pid(1), pid(1): pid(1)},
        counts={pid(1): {"user_id": 1}},
        first_id=10,
    )
    assert state.find(pid(4)) == pid(1)
    assert state.parent[pid(4)] == pid(1)
    assert state.parent[pid(3)] == pid(1)
    assert state.find(pid(9)) == pid(9)
    outcome = apply(state, email("ana"), anon("a4"))
    assert outcome.links == [(email("ana"), pid(1))]
    assert outcome.home == pid(1)


def test_ids_come_from_the_factory_in_order() -> None:
    state = graph(first_id=100)
    assert apply(state, anon("a1")).created == [pid(100)]
    assert apply(state, anon("a2")).created == [pid(101)]
    assert apply(state, anon("a1")).created == []


# --- limits -------------------------------------------------------------------------------


def test_second_user_on_a_shared_device_leaves_the_anonymous_id_out() -> None:
    state = graph()
    apply(state, user("ana"), anon("tablet"))
    outcome = apply(state, user("bob"), anon("tablet"))
    assert outcome.merges == []
    assert outcome.created == [pid(2)]
    assert outcome.links == [(user("bob"), pid(2))]
    assert outcome.home == pid(2)
    refusal = only(outcome, "left_out")
    assert codes(outcome) == ["left_out"]
    assert refusal.identifiers == (anon("tablet"),)
    assert refusal.profile_ids == (pid(1),)
    assert "anonymous_id" in refusal.message
    assert "tablet" in refusal.message
    assert "user_id" in refusal.message
    assert "limit 1" in refusal.message
    # The device stays with the first user.
    assert root_of(state, anon("tablet")) == pid(1)
    assert state.counts[pid(1)] == {"user_id": 1}
    assert state.counts[pid(2)] == {"user_id": 1}


def test_two_user_ids_on_one_event_keep_the_first() -> None:
    state = graph()
    outcome = apply(state, user("u2"), user("u1"), anon("a1"))
    refusal = only(outcome, "left_out")
    assert refusal.identifiers == (user("u2"),)
    assert refusal.profile_ids == ()
    assert outcome.created == [pid(1)]
    assert sorted(outcome.links) == sorted([(user("u1"), pid(1)), (anon("a1"), pid(1))])
    assert user("u2") not in state.home
    assert state.counts[pid(1)] == {"user_id": 1}


def test_up_to_five_emails_then_the_sixth_is_left_out() -> None:
    state = graph()
    five = [email(f"ana{n}") for n in range(1, 6)]
    first = apply(state, user("u1"), *five)
    assert first.refusals == []
    assert state.counts[pid(1)]["email"] == 5
    outcome = apply(state, user("u1"), email("ana6"))
    refusal = only(outcome, "left_out")
    assert codes(outcome) == ["left_out"]
    assert refusal.identifiers == (email("ana6"),)
    assert refusal.profile_ids == (pid(1),)
    assert "6 email (limit 5)" in refusal.message
    assert outcome.links == []
    assert outcome.created == []
    assert outcome.home == pid(1)
    assert email("ana6") not in state.home
    assert state.counts[pid(1)]["email"] == 5


def test_sixth_email_through_a_merge_is_left_out() -> None:
    state = graph()
    apply(state, user("u1"), *(email(f"ana{n}") for n in range(1, 6)))
    apply(state, email("other"), anon("a1"))
    outcome = apply(state, user("u1"), anon("a1"))
    refusal = only(outcome, "left_out")
    assert refusal.identifiers == (anon("a1"),)
    assert set(refusal.profile_ids) == {pid(1), pid(2)}
    assert "6 email (limit 5)" in refusal.message
    assert outcome.merges == []
    assert outcome.home == pid(1)
    assert state.find(pid(2)) == pid(2)


def test_five_phones_are_allowed_six_are_not() -> None:
    state = graph()
    assert apply(state, user("u1"), *(phone(n) for n in range(5))).refusals == []
    outcome = apply(state, user("u1"), phone(5))
    assert only(outcome, "left_out").identifiers == (phone(5),)
    assert "6 phone (limit 5)" in outcome.refusals[0].message


def test_custom_limits_from_settings() -> None:
    state = graph(limits={"user_id": 1, "email": 1})
    assert apply(state, user("u1"), email("ana")).refusals == []
    outcome = apply(state, user("u1"), email("ana.work"))
    refusal = only(outcome, "left_out")
    assert refusal.identifiers == (email("ana.work"),)
    assert "2 email (limit 1)" in refusal.message
    assert email("ana.work") not in state.home
    # Phones are no longer limited: the custom table replaces the defaults.
    phones = [phone(n) for n in range(8)]
    many = apply(state, user("u1"), *phones)
    assert many.refusals == []
    assert sorted(many.links) == sorted((identifier, pid(1)) for identifier in phones)
    assert pid(1) not in state.counts or "phone" not in state.counts[pid(1)]


def test_custom_limit_on_another_kind() -> None:
    state = graph(limits={"user_id": 1, "device_id": 2})
    apply(state, user("u1"), ("device_id", "d1"), ("device_id", "d2"))
    outcome = apply(state, user("u1"), ("device_id", "d3"))
    assert only(outcome, "left_out").identifiers == (("device_id", "d3"),)
    assert "3 device_id (limit 2)" in outcome.refusals[0].message


def test_anonymous_ids_are_unlimited() -> None:
    state = graph()
    devices = [anon(f"device-{n}") for n in range(12)]
    for device in devices:
        apply(state, device)
    outcome = apply(state, user("u1"), *devices)
    assert outcome.refusals == []
    assert len(outcome.merges) == 11
    assert all(merge.into_id == pid(1) for merge in outcome.merges)
    assert {state.find(pid(n)) for n in range(1, 13)} == {pid(1)}
    more = [anon(f"later-{n}") for n in range(20)]
    for device in more:
        step = apply(state, user("u1"), device)
        assert step.refusals == []
        assert step.links == [(device, pid(1))]


# --- leaving out the lowest-priority conflicting identifier --------------------------------


def test_the_lowest_priority_conflicting_identifier_is_left_out_and_the_rest_merge() -> None:
    """Phone and anonymous id both bring three e-mails; leaving out the anonymous id is
    enough, so the phone's profile merges and the anonymous id's does not."""
    state = graph()
    apply(state, user("u1"))
    apply(state, email("p1"), email("p2"), email("p3"), phone(1))
    apply(state, email("q1"), email("q2"), email("q3"), anon("a1"))
    outcome = apply(state, user("u1"), phone(1), anon("a1"))
    refusal = only(outcome, "left_out")
    assert codes(outcome) == ["left_out"]
    assert refusal.identifiers == (anon("a1"),)
    assert set(refusal.profile_ids) == {pid(1), pid(2), pid(3)}
    assert "6 email (limit 5)" in refusal.message
    assert outcome.merges == [Merge(pid(2), pid(1), (phone(1),))]
    assert outcome.home == pid(1)
    assert root_of(state, phone(1)) == pid(1)
    assert root_of(state, anon("a1")) == pid(3)
    assert state.counts[pid(1)] == {"user_id": 1, "email": 3, "phone": 1}


def test_an_identifier_whose_profile_adds_nothing_over_the_limit_is_not_left_out() -> None:
    """The anonymous id is the weakest, but its profile holds no user id: the phone, whose
    profile holds another user id, is the one left out."""
    state = graph()
    apply(state, user("bob"), phone(1))
    apply(state, anon("a1"))
    outcome = apply(state, user("ana"), phone(1), anon("a1"))
    refusal = only(outcome, "left_out")
    assert codes(outcome) == ["left_out"]
    assert refusal.identifiers == (phone(1),)
    assert set(refusal.profile_ids) == {pid(1), pid(2)}
    assert "2 user_id (limit 1)" in refusal.message
    assert outcome.merges == []
    assert outcome.links == [(user("ana"), pid(2))]
    assert outcome.home == pid(2)
    assert root_of(state, phone(1)) == pid(1)
    assert state.counts[pid(2)] == {"user_id": 1}


def test_when_the_retry_still_conflicts_nothing_merges() -> None:
    """Both the phone and the anonymous id belong to other users: leaving out the anonymous
    id is not enough, so nothing merges and the event stays with its user id."""
    state = graph()
    apply(state, user("carl"), anon("a1"))  # profile 1
    apply(state, user("bob"), phone(1))  # profile 2
    apply(state, user("ana"))  # profile 3
    outcome = apply(state, user("ana"), email("ana"), phone(1), anon("a1"))
    assert codes(outcome) == ["left_out", "refused"]
    left_out, refused = outcome.refusals
    assert left_out.identifiers == (anon("a1"),)
    assert refused.identifiers == (email("ana"), phone(1), anon("a1"))
    assert set(left_out.profile_ids) == set(refused.profile_ids) == {pid(1), pid(2), pid(3)}
    assert "3 user_id (limit 1)" in refused.message
    assert refused.message.startswith("no merge")
    assert outcome.merges == []
    assert outcome.links == []
    assert outcome.created == []
    assert outcome.home == pid(3)
    assert email("ana") not in state.home
    assert {state.find(pid(n)) for n in (1, 2, 3)} == {pid(1), pid(2), pid(3)}
    assert state.counts == {
        pid(1): {"user_id": 1},
        pid(2): {"user_id": 1, "phone": 1},
        pid(3): {"user_id": 1},
    }


def test_refused_event_with_a_new_anchor_gets_a_profile_of_its_own() -> None:
    state = graph()
    apply(state, user("carl"), anon("a1"))
    apply(state, user("bob"), phone(1))
    outcome = apply(state, user("ana"), phone(1), anon("a1"))
    assert codes(outcome) == ["left_out", "refused"]
    assert outcome.created == [pid(3)]
    assert outcome.links == [(user("ana"), pid(3))]
    assert outcome.merges == []
    assert outcome.home == pid(3)


def test_no_single_identifier_to_leave_out_is_a_refusal() -> None:
    """Email and phone both lead to another user's profile: leaving one out would not
    help, so nothing is left out and the merge is refused."""
    state = graph()
    apply(state, user("bob"), email("bob"), phone(1))
    apply(state, user("ana"))
    outcome = apply(state, user("ana"), email("bob"), phone(1))
    assert codes(outcome) == ["refused"]
    refusal = outcome.refusals[0]
    assert refusal.identifiers == (email("bob"), phone(1))
    assert set(refusal.profile_ids) == {pid(1), pid(2)}
    assert outcome.merges == []
    assert outcome.links == []
    assert outcome.home == pid(2)
    assert state.find(pid(2)) == pid(2)


def test_the_strongest_identifier_is_never_left_out() -> None:
    state = graph()
    apply(state, user("ana"), email("ana"))  # profile 1
    apply(state, user("bob"))  # profile 2
    # Bob's own profile is as much in conflict as Ana's, but his user id decides the home.
    outcome = apply(state, user("bob"), email("ana"))
    assert codes(outcome) == ["left_out"]
    assert outcome.refusals[0].identifiers == (email("ana"),)
    assert outcome.home == pid(2)
    assert outcome.merges == []
    for refusal in outcome.refusals:
        assert user("bob") not in refusal.identifiers


def test_the_strongest_identifier_stays_even_when_only_it_could_resolve_the_conflict() -> None:
    state = graph()
    apply(state, user("bob"), email("bob"), phone(1))  # profile 1
    outcome = apply(state, user("ana"), email("bob"), phone(1))
    assert codes(outcome) == ["refused"]
    assert all(user("ana") not in refusal.identifiers for refusal in outcome.refusals)
    assert outcome.created == [pid(2)]
    assert outcome.links == [(user("ana"), pid(2))]
    assert outcome.home == pid(2)


def test_strongest_of_equal_kinds_is_kept() -> None:
    state = graph(limits={"user_id": 1, "email": 1})
    outcome = apply(state, email("b"), email("a"), anon("x"))
    assert only(outcome, "left_out").identifiers == (email("b"),)
    assert sorted(outcome.links) == sorted([(email("a"), pid(1)), (anon("x"), pid(1))])
    assert outcome.home == pid(1)


def test_strongest_email_anchor_keeps_its_own_profile_when_the_device_conflicts() -> None:
    state = graph(limits={"user_id": 1, "email": 1})
    apply(state, email("ana"), anon("shared"))  # profile 1
    outcome = apply(state, email("bob"), anon("shared"))
    left_out = only(outcome, "left_out")
    assert left_out.identifiers == (anon("shared"),)
    assert left_out.profile_ids == (pid(1),)
    assert "2 email (limit 1)" in left_out.message
    assert outcome.created == [pid(2)]
    assert outcome.home == pid(2)


# --- nothing to refuse when nothing changes ------------------------------------------------


def test_no_refusal_when_all_identifiers_already_share_a_profile_over_a_limit() -> None:
    """A profile may hold more than a limit allows (limits lowered since, or loaded data):
    an event that changes nothing is not refused."""
    state = graph(
        home={user("u1"): pid(1), user("u2"): pid(2), email("ana"): pid(2), anon("a1"): pid(1)},
        roots={pid(1): pid(1), pid(2): pid(1)},
        counts={pid(1): {"user_id": 2, "email": 1}},
    )
    outcome = apply(state, user("u1"), user("u2"), email("ana"), anon("a1"))
    assert outcome == Outcome(home=pid(1))
    assert apply(state, user("u2"), anon("a1")) == Outcome(home=pid(2))
    assert apply(state, email("ana")) == Outcome(home=pid(2))


def test_no_refusal_when_a_profile_at_its_limit_sees_known_identifiers() -> None:
    state = graph(limits={"user_id": 1, "email": 2})
    apply(state, user("u1"), email("a"), email("b"), anon("d1"))
    outcome = apply(state, user("u1"), email("a"), email("b"), anon("d1"))
    assert outcome == Outcome(home=pid(1))


# --- every refusal says what and who -------------------------------------------------------


def test_every_refusal_carries_identifiers_and_profiles() -> None:
    state = graph()
    apply(state, user("carl"), anon("a1"))  # profile 1
    apply(state, user("bob"), phone(1), email("bob"))  # profile 2
    apply(state, user("ana"))  # profile 3
    shared_device = apply(state, user("dan"), anon("a1"))
    two_others = apply(state, user("ana"), phone(1), anon("a1"))
    same_other = apply(state, user("ana"), email("bob"), phone(1))
    new_emails = apply(state, user("carl"), *(email(f"c{n}") for n in range(6)))

    assert [(r.code, r.identifiers, r.profile_ids) for r in shared_device.refusals] == [
        ("left_out", (anon("a1"),), (pid(1),)),
    ]
    assert [(r.code, r.identifiers, set(r.profile_ids)) for r in two_others.refusals] == [
        ("left_out", (anon("a1"),), {pid(1), pid(2), pid(3)}),
        ("refused", (phone(1), anon("a1")), {pid(1), pid(2), pid(3)}),
    ]
    assert [(r.code, r.identifiers, set(r.profile_ids)) for r in same_other.refusals] == [
        ("refused", (email("bob"), phone(1)), {pid(2), pid(3)}),
    ]
    assert [(r.code, r.identifiers, r.profile_ids) for r in new_emails.refusals] == [
        ("left_out", (email("c5"),), (pid(1),)),
    ]
    everything = [
        *shared_device.refusals,
        *two_others.refusals,
        *same_other.refusals,
        *new_emails.refusals,
    ]
    for refusal in everything:
        assert "limit" in refusal.message
    for refusal in everything:
        if refusal.code == "left_out":
            (left_out,) = refusal.identifiers
            assert left_out[1] in refusal.message


def test_a_customer_already_past_a_limit_still_gains_what_adds_nothing_to_the_excess() -> None:
    rules = IdentityRules.from_settings(IdentitySettings())
    p1 = UUID(int=1)
    state = GraphState(
        rules,
        {("user_id", "u1"): p1, ("user_id", "u2"): p1},
        {p1: p1},
        {p1: {"user_id": 2}},
        lambda: UUID(int=99),
    )
    outcome = state.apply([("user_id", "u1"), ("anonymous_id", "new-device")])
    assert outcome.refusals == []
    assert outcome.links == [(("anonymous_id", "new-device"), p1)]
    third = state.apply([("user_id", "u3"), ("anonymous_id", "new-device")])
    assert [refusal.code for refusal in third.refusals] == ["left_out"]
    assert state.find(third.home) != p1
