"""Merge rules: what one event's identifiers do to the graph. Pure logic over plain data.

An event links its identifiers to one profile. If they already belong to several profiles,
those merge — unless the merged profile would hold more identifiers of a kind than its limit
allows (by default one ``user_id``, five e-mails, five phones). Then the lowest-priority
identifier on the event that causes the conflict is left out and the merge is tried once
more without it; if it still conflicts, nothing merges and the event joins the profile of
its strongest identifier. Every identifier left out and every refusal is reported.

The survivor of a merge is the oldest profile (UUIDv7 ids sort by creation), so customer
ids stay stable as people are stitched together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from uuid import UUID

from plait.identity.identifiers import Identifier, IdentityRules


@dataclass(frozen=True)
class Merge:
    """Root ``from_id`` joined root ``into_id`` through ``identifiers``."""

    from_id: UUID
    into_id: UUID
    identifiers: tuple[Identifier, ...]


@dataclass(frozen=True)
class Refusal:
    """A merge refused, or identifiers left out of one, and why."""

    code: str
    message: str
    identifiers: tuple[Identifier, ...]
    profile_ids: tuple[UUID, ...]


@dataclass
class Outcome:
    """What applying one event did."""

    home: UUID | None = None
    links: list[tuple[Identifier, UUID]] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    created: list[UUID] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    roots: dict[UUID, list[Identifier]]
    new: list[Identifier]
    over: dict[str, int]


class GraphState:
    """The part of the graph a batch of events touches, held in memory while it is applied.

    ``home`` maps identifiers to their home profile; ``parent`` maps profiles to their root;
    ``counts`` holds, per root, how many identifiers of each limited kind it has.
    """

    def __init__(
        self,
        rules: IdentityRules,
        home: Mapping[Identifier, UUID],
        roots: Mapping[UUID, UUID],
        counts: Mapping[UUID, Mapping[str, int]],
        new_id: Callable[[], UUID],
    ) -> None:
        self.rules = rules
        self.home = dict(home)
        self.parent = dict(roots)
        self.counts = {root: Counter(kinds) for root, kinds in counts.items()}
        self.new_id = new_id

    def find(self, profile_id: UUID) -> UUID:
        """The current root of a profile (with path compression)."""
        root = profile_id
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while profile_id != root:
            self.parent[profile_id], profile_id = root, self.parent[profile_id]
        return root

    def apply(self, identifiers: list[Identifier]) -> Outcome:
        """Link one event's identifiers (strongest first) under the merge rules."""
        outcome = Outcome()
        if not identifiers:
            return outcome
        plan = self._plan(identifiers)
        if plan.over:
            dropped = self._conflicting(identifiers, plan)
            if dropped is not None:
                kept = [identifier for identifier in identifiers if identifier != dropped]
                retry = self._plan(kept)
                outcome.refusals.append(
                    Refusal(
                        "left_out",
                        f"{_label(dropped)} left out: {_over_text(plan.over, self.rules)}",
                        (dropped,),
                        tuple(plan.roots),
                    )
                )
                if not retry.over:
                    return self._commit(retry, outcome, identifiers[0])
            outcome.refusals.append(
                Refusal(
                    "refused",
                    f"no merge: {_over_text(plan.over, self.rules)}",
                    tuple(identifiers[1:]),
                    tuple(plan.roots),
                )
            )
            return self._commit(self._plan(identifiers[:1]), outcome, identifiers[0])
        return self._commit(plan, outcome, identifiers[0])

    def _plan(self, identifiers: list[Identifier]) -> _Plan:
        roots: dict[UUID, list[Identifier]] = {}
        new: list[Identifier] = []
        for identifier in identifiers:
            home = self.home.get(identifier)
            if home is None:
                new.append(identifier)
            else:
                roots.setdefault(self.find(home), []).append(identifier)
        if len(roots) <= 1 and not new:
            return _Plan(roots, new, {})
        total: Counter[str] = Counter()
        for root in roots:
            total.update(self.counts.get(root, {}))
        total.update(kind for kind, _ in new)
        over = {}
        for kind, count in total.items():
            limit = self.rules.limit(kind)
            already = max((self.counts.get(root, {}).get(kind, 0) for root in roots), default=0)
            # A customer already past a limit (a forced merge, a lowered limit) may still
            # gain what does not add to the excess.
            if limit is not None and count > max(limit, already):
                over[kind] = count
        return _Plan(roots, new, over)

    def _conflicting(self, identifiers: list[Identifier], plan: _Plan) -> Identifier | None:
        """The lowest-priority identifier whose removal lowers an over-limit count.

        The strongest identifier is never left out: it decides where the event belongs.
        """
        for identifier in reversed(identifiers[1:]):
            kind = identifier[0]
            if identifier in plan.new and kind in plan.over:
                return identifier
            home = self.home.get(identifier)
            if home is None:
                continue
            root = self.find(home)
            only_link = plan.roots[root] == [identifier]
            if only_link and any(self.counts.get(root, {}).get(k) for k in plan.over):
                return identifier
        return None

    def _commit(self, plan: _Plan, outcome: Outcome, strongest: Identifier) -> Outcome:
        if plan.roots:
            into = min(plan.roots)
        else:
            into = self.new_id()
            self.parent[into] = into
            outcome.created.append(into)
        for root, via in sorted(plan.roots.items()):
            if root != into:
                self.parent[root] = into
                self.counts.setdefault(into, Counter()).update(self.counts.pop(root, {}))
                outcome.merges.append(Merge(root, into, tuple(via)))
        for identifier in plan.new:
            self.home[identifier] = into
            if self.rules.limit(identifier[0]) is not None:
                self.counts.setdefault(into, Counter())[identifier[0]] += 1
            outcome.links.append((identifier, into))
        outcome.home = self.home[strongest]
        return outcome


def _label(identifier: Identifier) -> str:
    return f"{identifier[0]} {identifier[1]!r}"


def _over_text(over: Mapping[str, int], rules: IdentityRules) -> str:
    parts = [f"{count} {kind} (limit {rules.limit(kind)})" for kind, count in sorted(over.items())]
    return "the merged profile would hold " + ", ".join(parts)
