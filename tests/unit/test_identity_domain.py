"""Identity resolution: links, merges and merge protection, as properties over random touch sequences."""

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from services.identity.domain import (
    Graph,
    Identifier,
    Resolution,
    anonymous_profile,
    apply,
    decide,
    default_rules,
    goes_with,
    identifiers_of,
    split_profile,
)
from shared.events import IdentityChangeKind as ChangeKind
from shared.identities import CUSTOMER_ID, may_be_absorbed

RULES = default_rules(["loyalty_card"])


@dataclass(frozen=True)
class Touch:
    event_id: str
    customer_id: str | None
    identities: dict[str, str]


def resolve(graph: Graph, touch: Touch) -> Resolution:
    resolution = decide(
        graph, identifiers_of(touch.customer_id, touch.identities, RULES), touch.event_id, RULES
    )
    apply(graph, resolution.changes)
    return resolution


def resolve_all(touches: list[Touch]) -> tuple[Graph, list[Resolution]]:
    graph = Graph()
    return graph, [resolve(graph, touch) for touch in touches]


touches = st.lists(
    st.builds(
        Touch,
        event_id=st.uuids().map(str),
        customer_id=st.none() | st.sampled_from(["c-1", "c-2", "c-3"]),
        identities=st.fixed_dictionaries(
            {},
            optional={
                "email": st.sampled_from(["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"]),
                "phone": st.sampled_from(["+4915112345678", "+4915112345679"]),
                "anonymous_id": st.sampled_from(["a-1", "a-2", "a-3", "a-4", "null", "0000"]),
                "loyalty_card": st.sampled_from(["L-1", "L-2", "undefined"]),
            },
        ),
    ).filter(lambda touch: touch.customer_id or touch.identities),
    max_size=40,
)


def web(event_id: str, **identities: str) -> Touch:
    return Touch(event_id, identities.pop("customer_id", None), identities)


def test_an_anonymous_visit_then_a_login_joins_the_visitor_to_the_customer() -> None:
    graph = Graph()
    visit = resolve(graph, web("e-1", anonymous_id="a-1"))
    assert visit.profile == anonymous_profile(("anonymous_id", "a-1"))
    login = resolve(graph, web("e-2", customer_id="c-1", anonymous_id="a-1", email="ada@x.io"))
    assert login.profile == "c-1"
    assert [(c.kind, c.profile, c.other) for c in login.changes] == [
        (ChangeKind.LINKED, "c-1", None),
        (ChangeKind.LINKED, "c-1", None),
        (ChangeKind.MERGED, "c-1", visit.profile),
    ]
    assert resolve(graph, web("e-3", email="ada@x.io")).profile == "c-1"
    assert resolve(graph, web("e-4", anonymous_id="a-1")).profile == "c-1"
    assert graph.merged_into == {visit.profile: "c-1"}


def test_two_known_customers_sharing_an_email_stay_two_profiles_and_the_conflict_is_recorded() -> None:
    graph = Graph()
    resolve(graph, web("e-1", customer_id="c-1", email="family@x.io"))
    second = resolve(graph, web("e-2", customer_id="c-2", email="family@x.io"))
    assert second.profile == "c-2"
    [linked, conflict] = second.changes
    assert (linked.kind, linked.identifier) == (ChangeKind.LINKED, (CUSTOMER_ID, "c-2"))
    assert (conflict.kind, conflict.other) == (ChangeKind.CONFLICT, "c-1")
    assert "customer_id" in (conflict.reason or "")
    assert graph.owner[("email", "family@x.io")] == "c-1"


def test_a_blocked_value_never_links_anything() -> None:
    graph = Graph()
    first = resolve(graph, web("e-1", customer_id="c-1", anonymous_id="undefined"))
    second = resolve(graph, web("e-2", customer_id="c-2", anonymous_id="undefined"))
    third = resolve(graph, web("e-3", anonymous_id="00000000-0000-0000-0000-000000000000"))
    assert (first.profile, second.profile) == ("c-1", "c-2")
    assert third.profile == anonymous_profile(("event", "e-3"))
    assert all(kind == CUSTOMER_ID for kind, _ in graph.owner)


def test_a_profile_holds_at_most_its_limit_of_a_kind_and_the_refused_link_is_named() -> None:
    graph = Graph()
    for n, email in enumerate(["a@x.io", "b@x.io", "c@x.io", "d@x.io"]):
        last = resolve(graph, web(f"e-{n}", customer_id="c-1", email=email))
    assert last.changes[-1].kind == ChangeKind.CONFLICT
    assert "already holds 3 email" in (last.changes[-1].reason or "")
    assert ("email", "d@x.io") not in graph.owner


@given(touches)
def test_deciding_the_same_log_again_reaches_the_same_graph_and_changes(log: list[Touch]) -> None:
    first_graph, first = resolve_all(log)
    second_graph, second = resolve_all(log)
    assert first == second
    assert first_graph == second_graph


@given(touches)
def test_folding_the_recorded_changes_alone_rebuilds_the_graph(log: list[Touch]) -> None:
    graph, resolutions = resolve_all(log)
    rebuilt = Graph()
    for resolution in resolutions:
        apply(rebuilt, resolution.changes)
    assert rebuilt == graph


@given(touches)
def test_merge_protection_holds_whatever_the_order_of_touches(log: list[Touch]) -> None:
    graph, _ = resolve_all(log)
    for profile, held in graph.held.items():
        kinds = [kind for kind, _ in held]
        assert all(kinds.count(kind) <= RULES.limit(kind) for kind in kinds)
        customers = [value for kind, value in held if kind == CUSTOMER_ID]
        assert customers in ([], [profile]), "a customer's profile is named by its one customer id"
    assert not any(RULES.is_blocked(kind, value) for kind, value in graph.owner)
    assert all(graph.owner[i] == profile for profile, held in graph.held.items() for i in held)
    assert set(graph.merged_into.values()).isdisjoint(graph.merged_into), "merges point at survivors"
    # What lets consent skip the redirect lookup for a known customer's id.
    assert all(may_be_absorbed(absorbed) for absorbed in graph.merged_into), "a customer is never absorbed"


@given(touches)
def test_identifiers_seen_together_share_a_profile_unless_a_conflict_says_why_not(log: list[Touch]) -> None:
    graph, resolutions = resolve_all(log)
    for touch, resolution in zip(log, resolutions, strict=True):
        if any(change.kind == ChangeKind.CONFLICT for change in resolution.changes):
            continue
        together: set[Identifier] = set(identifiers_of(touch.customer_id, touch.identities, RULES))
        assert {graph.owner.get(i, survivor(graph, resolution.profile)) for i in together} <= {
            survivor(graph, resolution.profile)
        }


@given(touches, st.data())
def test_a_graph_holding_only_what_a_touch_names_decides_as_the_whole_graph_does(
    log: list[Touch], data: st.DataObject
) -> None:
    """The resolver loads, per batch, the named identifiers' owners and everything those hold."""
    graph, _ = resolve_all(log)
    touch = data.draw(touches.filter(bool)).pop()
    identifiers = identifiers_of(touch.customer_id, touch.identities, RULES)
    owners = {graph.owner_of(i) for i in identifiers} - {None}
    part = Graph(
        owner={i: p for i, p in graph.owner.items() if p in owners or i in identifiers},
        held={p: set(graph.holdings(p)) for p in owners if p in graph.held},
    )
    assert decide(part, identifiers, touch.event_id, RULES) == decide(
        graph, identifiers, touch.event_id, RULES
    )


def survivor(graph: Graph, profile: str) -> str:
    return graph.merged_into.get(profile, profile)


def test_a_touch_goes_with_a_split_off_identifier_only_when_that_decided_its_profile() -> None:
    card, email, anonymous = ("loyalty_card", "L-1"), ("email", "a@b.io"), ("anonymous_id", "v-1")
    assert goes_with([card], card, RULES)
    assert goes_with([card, anonymous], card, RULES), "a card outranks a browser's id"
    assert not goes_with([email, card], card, RULES), "the email decided it"
    assert not goes_with([(CUSTOMER_ID, "c-1"), card], card, RULES)
    assert not goes_with([], card, RULES)


def test_a_split_off_identifier_goes_to_the_profile_it_would_have_made_alone() -> None:
    card = ("loyalty_card", "L-1")
    assert split_profile("c-1", card) == anonymous_profile(card)
    assert split_profile(anonymous_profile(card), card) is None, "it made that profile: nothing to leave"
    assert split_profile("c-1", (CUSTOMER_ID, "c-1")) is None
