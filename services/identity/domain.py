"""Identity resolution: which profile a touch belongs to, and how its identifiers change the graph.

Identifiers that appear together on a touch link into one profile. `decide` reads the graph and returns
the changes a touch makes (links, merges, conflicts) without touching the graph; `apply` folds them in.
Decisions depend only on the graph and the touch, so deciding the same touches in the same order from an
empty graph reaches the same graph and the same changes: the resolver can always rebuild from its log.

A known customer's profile is named by its customer_id and never absorbed: a merge keeps the profile
holding a customer_id, and two profiles holding different customer_ids never merge (a conflict is
recorded instead). An anonymous profile is named by a digest of the first identifier that made it.
"""

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from shared.events import IdentityChangeKind as ChangeKind
from shared.identities import ANONYMOUS_ID, ANONYMOUS_PROFILE, CUSTOMER_ID, EMAIL, PHONE

Identifier = tuple[str, str]  # (kind, normalized value); customer ids have the kind "customer_id"

ALWAYS_BLOCKED = frozenset({"", "null", "none", "nil", "undefined", "anonymous", "unknown", "n/a", "-1"})
_ALL_ZEROS = re.compile(r"[0\W_]*0[0\W_]*")  # 0, 000-000, 0000 0000: placeholders, never a person


@dataclass(frozen=True)
class IdentityRules:
    """Merge protection: how many identifiers of a kind one profile may hold, values that never link,
    and which identifier decides a touch's profile first (and so which link is refused)."""

    limits: Mapping[str, int]
    default_limit: int
    blocked: Mapping[str, frozenset[str]]
    priority: tuple[str, ...]

    def limit(self, kind: str) -> int:
        return self.limits.get(kind, self.default_limit)

    def is_blocked(self, kind: str, value: str) -> bool:
        folded = value.strip().lower()
        return (
            folded in ALWAYS_BLOCKED
            or bool(_ALL_ZEROS.fullmatch(folded))
            or folded in self.blocked.get(kind, ())
        )

    def rank(self, identifier: Identifier) -> tuple[int, str, str]:
        kind, value = identifier
        position = self.priority.index(kind) if kind in self.priority else len(self.priority)
        return position, kind, value


def default_rules(extra_kinds: Iterable[str] = ()) -> IdentityRules:
    """One customer id per profile, a few addresses and numbers, many devices; a customer id decides
    first, then email, phone, the operator's kinds, and last the anonymous id (shared browsers)."""
    return IdentityRules(
        limits={CUSTOMER_ID: 1, EMAIL: 3, PHONE: 3, ANONYMOUS_ID: 50},
        default_limit=3,
        blocked={},
        priority=(CUSTOMER_ID, EMAIL, PHONE, *sorted(extra_kinds), ANONYMOUS_ID),
    )


class Change(NamedTuple):
    """One change a touch made: an identifier linked to `profile`, `other` merged into `profile` through
    the identifier, or a link refused (`other` is the profile already holding it, if any)."""

    kind: ChangeKind
    profile: str
    identifier: Identifier
    other: str | None = None
    reason: str | None = None


@dataclass
class Graph:
    """The part of the identity graph a batch reads: who holds each identifier, what each profile holds."""

    owner: dict[Identifier, str] = field(default_factory=dict)
    held: dict[str, set[Identifier]] = field(default_factory=dict)
    merged_into: dict[str, str] = field(default_factory=dict)

    def holdings(self, profile: str) -> set[Identifier]:
        return self.held.get(profile, set())

    def owner_of(self, identifier: Identifier) -> str | None:
        # A customer id names its own profile, seen before or not.
        return identifier[1] if identifier[0] == CUSTOMER_ID else self.owner.get(identifier)


class Resolution(NamedTuple):
    profile: str
    changes: list[Change]


def identifiers_of(
    customer_id: str | None, identities: Mapping[str, str], rules: IdentityRules
) -> list[Identifier]:
    """A touch's usable identifiers, highest priority first; blocked values are left out."""
    named = [(CUSTOMER_ID, customer_id)] if customer_id else []
    named += [(kind, value) for kind, value in identities.items() if not rules.is_blocked(kind, value)]
    return sorted(named, key=rules.rank)


def goes_with(carried: Sequence[Identifier], split_off: Identifier, rules: IdentityRules) -> bool:
    """Whether a touch goes with an identifier split off its profile: when that identifier was the
    strongest it carried, the one that decided its profile. A touch that also named a stronger one (a
    customer id, say) stays where that one put it."""
    return bool(carried) and min(carried, key=rules.rank) == split_off


def split_profile(holder: str, identifier: Identifier) -> str | None:
    """The profile an identifier split off `holder` goes to: the one it would have made alone, which is
    the profile it came from when it made one before its merge. None when it cannot leave: a customer id
    names its profile, and an identifier cannot leave the profile it made."""
    if identifier[0] == CUSTOMER_ID:
        return None
    target = anonymous_profile(identifier)
    return None if target == holder else target


def anonymous_profile(basis: Identifier) -> str:
    digest = hashlib.blake2b(f"{basis[0]}\0{basis[1]}".encode(), digest_size=10).hexdigest()
    return f"{ANONYMOUS_PROFILE}{digest}"


def decide(graph: Graph, identifiers: list[Identifier], event_id: str, rules: IdentityRules) -> Resolution:
    """The profile a touch with these identifiers belongs to, and the changes it makes to the graph."""
    if not identifiers:
        # Only blocked values: the touch is kept, on a profile of its own that nothing can join.
        return Resolution(anonymous_profile(("event", event_id)), [])
    owners = [graph.owner_of(identifier) for identifier in identifiers]
    customer = next((value for kind, value in identifiers if kind == CUSTOMER_ID), None)
    profile = customer or next((o for o in owners if o), None) or anonymous_profile(identifiers[0])
    view = _View(graph, rules, profile)
    for identifier, owner in zip(identifiers, owners, strict=True):
        if owner is None or (identifier[0] == CUSTOMER_ID and identifier not in graph.owner):
            view.link(identifier)
        elif view.current(owner) != view.profile:
            view.merge(view.current(owner), identifier)
    return Resolution(view.profile, view.changes)


class _View:
    """The graph as one touch's changes so far leave it, while `decide` is still deciding."""

    def __init__(self, graph: Graph, rules: IdentityRules, profile: str) -> None:
        self.graph, self.rules, self.profile = graph, rules, profile
        self.changes: list[Change] = []
        self.absorbed: dict[str, str] = {}
        self.holding: dict[str, set[Identifier]] = {}

    def current(self, profile: str) -> str:
        return self.absorbed.get(profile, profile)

    def holdings(self, profile: str) -> set[Identifier]:
        return self.holding.setdefault(profile, set(self.graph.holdings(profile)))

    def count(self, holdings: set[Identifier], kind: str) -> int:
        return sum(1 for held_kind, _ in holdings if held_kind == kind)

    def link(self, identifier: Identifier) -> None:
        holdings, kind = self.holdings(self.profile), identifier[0]
        if self.count(holdings, kind) >= self.rules.limit(kind):
            reason = f"{self.profile} already holds {self.rules.limit(kind)} {kind}"
            self.changes.append(Change(ChangeKind.CONFLICT, self.profile, identifier, None, reason))
            return
        holdings.add(identifier)
        self.changes.append(Change(ChangeKind.LINKED, self.profile, identifier))

    def merge(self, other: str, identifier: Identifier) -> None:
        mine, theirs = self.holdings(self.profile), self.holdings(other)
        joined = mine | theirs
        over = sorted({kind for kind, _ in joined if self.count(joined, kind) > self.rules.limit(kind)})
        if over:
            reason = f"joining {other} would give one profile more {', '.join(over)} than allowed"
            self.changes.append(Change(ChangeKind.CONFLICT, self.profile, identifier, other, reason))
            return
        survivor, absorbed = self.profile, other
        if self.count(theirs, CUSTOMER_ID) and not self.count(mine, CUSTOMER_ID):
            survivor, absorbed = other, self.profile
        self.holding[survivor] = joined
        self.holding[absorbed] = set()
        self.absorbed[absorbed] = survivor
        self.absorbed.update({p: survivor for p, s in self.absorbed.items() if s == absorbed})
        self.changes.append(Change(ChangeKind.MERGED, survivor, identifier, absorbed))
        self.profile = survivor


def apply(graph: Graph, changes: Iterable[Change]) -> None:
    """Folds a touch's changes into the graph (in place: a batch's graph is rebuilt for every batch)."""
    for change in changes:
        if change.kind == ChangeKind.LINKED:
            graph.owner[change.identifier] = change.profile
            graph.held.setdefault(change.profile, set()).add(change.identifier)
        elif change.kind == ChangeKind.MERGED and change.other is not None:
            moved = graph.held.pop(change.other, set())
            for identifier in moved:
                graph.owner[identifier] = change.profile
            graph.held.setdefault(change.profile, set()).update(moved)
            for absorbed, survivor in list(graph.merged_into.items()):
                if survivor == change.other:
                    graph.merged_into[absorbed] = change.profile
            graph.merged_into[change.other] = change.profile
