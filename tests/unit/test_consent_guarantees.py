"""G1-G3 of the consent issue, as properties of the pure filter over random interleavings."""

from collections.abc import Iterable
from datetime import UTC, datetime
from random import Random
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from services.consent.domain import (
    ConsentState,
    Defaults,
    ForwardedTouch,
    LogItem,
    Output,
    filter_batch,
    filter_record,
    read_logged,
    state_of,
    status_at,
    with_change,
)
from shared.events import (
    AbsorbedMarker,
    AllowedRecord,
    AllowedTouch,
    ConsentChange,
    ConsentStatus,
    CustomerLogRecord,
    ProfileAbsorbed,
    ProfileMerged,
    ProfileSplit,
    Purpose,
    TouchEvent,
)
from shared.purposes import PROJECTION_PURPOSES
from shared.serialization import decode_allowed, encode
from tests.consent_model import ProjectionModel, expected_holdings, expected_purposes

AT = datetime(2026, 11, 22, tzinfo=UTC)
CUSTOMERS = ("ann", "ben", "cat")


def touch(number: int, customer: str) -> TouchEvent:
    return TouchEvent(
        event_id=f"e{number}",
        customer_id=customer,
        type="page.viewed",
        channel="web",
        occurred_at=AT,
        received_at=AT,
        source="test",
    )


def change(
    number: int, customer: str, purpose: Purpose, status: ConsentStatus, erasure: bool
) -> ConsentChange:
    return ConsentChange(
        change_id=f"c{number}",
        customer_id=customer,
        purpose=purpose,
        status=status,
        changed_at=AT,
        source="test",
        erasure=erasure and status is ConsentStatus.DENIED,
    )


@st.composite
def customer_logs(draw: st.DrawFn) -> list[CustomerLogRecord]:
    """Touches and consent changes of a few customers, interleaved as one partition would carry them."""
    steps = draw(st.lists(st.tuples(st.sampled_from(CUSTOMERS), st.integers(0, 9)), max_size=60))
    log: list[CustomerLogRecord] = []
    for number, (customer, kind) in enumerate(steps):
        if kind < 6:
            log.append(touch(number, customer))
        else:
            purpose = draw(st.sampled_from(list(Purpose)))
            status = draw(st.sampled_from(list(ConsentStatus)))
            log.append(change(number, customer, purpose, status, erasure=kind == 9))
    return log


defaults_strategy = st.fixed_dictionaries(
    {purpose: st.sampled_from(list(ConsentStatus)) for purpose in Purpose}
)


def run_filter(
    log: list[CustomerLogRecord],
    defaults: Defaults,
    states: dict[str, ConsentState],
    start: int = 0,
    stop: int | None = None,
) -> list[AllowedRecord]:
    outputs: list[AllowedRecord] = []
    for offset in range(start, len(log) if stop is None else stop):
        record = log[offset]
        decision = filter_record(record, offset, states.get(record.customer_id, {}), defaults)
        states[record.customer_id] = decision.state
        outputs.extend(as_allowed(decision.outputs))
    return outputs


def as_allowed(outputs: Iterable[Output]) -> list[AllowedRecord]:
    """Outputs as projections read them off the allowed stream (a merge's carried-over denials go back
    to the customer log instead)."""
    return [
        cast(AllowedTouch, decode_allowed(output.wire())) if isinstance(output, ForwardedTouch) else output
        for output in outputs
        if not isinstance(output, ConsentChange)
    ]


def as_logged(log: list[CustomerLogRecord]) -> list[tuple[int, LogItem]]:
    """The log as the processor reads it: touches as their logged bytes."""
    return [(offset, read_logged(encode(record))) for offset, record in enumerate(log)]


@settings(max_examples=400)
@given(log=customer_logs(), defaults=defaults_strategy)
def test_g1_g2_every_projection_holds_exactly_what_consent_allows(
    log: list[CustomerLogRecord], defaults: Defaults
) -> None:
    outputs = run_filter(log, defaults, {})
    for projection in PROJECTION_PURPOSES:
        assert ProjectionModel(projection).apply_all(outputs).holdings() == expected_holdings(
            log, projection, defaults
        )


@settings(max_examples=400)
@given(log=customer_logs(), defaults=defaults_strategy)
def test_g1_no_touch_is_forwarded_for_a_purpose_withdrawn_before_it(
    log: list[CustomerLogRecord], defaults: Defaults
) -> None:
    consent: dict[tuple[str, Purpose], ConsentStatus] = {}
    states: dict[str, ConsentState] = {}
    for offset, record in enumerate(log):
        decision = filter_record(record, offset, states.get(record.customer_id, {}), defaults)
        states[record.customer_id] = decision.state
        if isinstance(record, ConsentChange):
            consent[(record.customer_id, record.purpose)] = record.status
            continue
        forwarded = {
            p for output in decision.outputs if isinstance(output, AllowedTouch) for p in output.purposes
        }
        granted = {
            p for p in Purpose if consent.get((record.customer_id, p), defaults[p]) is ConsentStatus.GRANTED
        }
        assert forwarded == granted


@settings(max_examples=400)
@given(log=customer_logs(), defaults=defaults_strategy, data=st.data())
def test_g3_a_crash_and_replay_from_the_last_commit_changes_no_projection(
    log: list[CustomerLogRecord], defaults: Defaults, data: st.DataObject
) -> None:
    crashed_at = data.draw(st.integers(0, len(log)), label="records processed before the crash")
    committed = data.draw(st.integers(0, crashed_at), label="offset committed before the crash")
    states: dict[str, ConsentState] = {}
    before_crash = run_filter(log, defaults, states, stop=crashed_at)
    # The changelog-backed table survives with everything processed; offsets only up to `committed`.
    after_restart = run_filter(log, defaults, states, start=committed)
    for projection in PROJECTION_PURPOSES:
        rebuilt = ProjectionModel(projection).apply_all(before_crash + after_restart)
        assert rebuilt.holdings() == expected_holdings(log, projection, defaults)


def reloaded(audit: list[tuple[str, Purpose, ConsentStatus, int]], customer: str) -> ConsentState:
    """A customer's state as the filter reads it back from the audit trail."""
    return state_of((purpose, status, offset) for who, purpose, status, offset in audit if who == customer)


@settings(max_examples=400)
@given(log=customer_logs(), defaults=defaults_strategy, data=st.data())
def test_g3_batches_cut_anywhere_survive_crashes_between_the_audit_write_and_the_commit(
    log: list[CustomerLogRecord], defaults: Defaults, data: st.DataObject
) -> None:
    """The batch filter as the processor runs it: a change and the touches it governs in one batch or in
    several; a crash after a batch's audit write and before its Kafka commit loses the memory and the
    batch's outputs, and the batch is decided again with states read back from the audit trail."""
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(log))), max_size=8), label="batch ends")))
    bounds = list(zip([0, *cuts], [*cuts, len(log)], strict=True))
    audit: list[tuple[str, Purpose, ConsentStatus, int]] = []
    states: dict[str, ConsentState] = {}
    committed: list[AllowedRecord] = []
    for start, stop in bounds:
        batch = as_logged(log)[start:stop]
        crashes = data.draw(st.integers(0, 2), label="crashes before this batch commits")
        for _ in range(crashes + 1):
            for customer in {record.customer_id for _, record in batch} - states.keys():
                states[customer] = reloaded(audit, customer)
            working = dict(states)
            decided = filter_batch(batch, working, defaults)
            audit += [
                (r.customer_id, r.purpose, r.status, offset)
                for offset, r in batch
                if isinstance(r, ConsentChange)
            ]
            audit = list(dict.fromkeys(audit))  # ON CONFLICT (change_id) DO NOTHING
            if crashes:
                crashes -= 1
                states = {}  # the process died: memory gone, outputs never committed
                continue
            states = working
            committed += as_allowed(output for outputs in decided for output in outputs)
            break
    for projection in PROJECTION_PURPOSES:
        rebuilt = ProjectionModel(projection).apply_all(committed)
        assert rebuilt.holdings() == expected_holdings(log, projection, defaults)


@given(log=customer_logs())
def test_a_state_read_back_from_the_audit_trail_equals_the_state_kept_in_memory(
    log: list[CustomerLogRecord],
) -> None:
    states: dict[str, ConsentState] = {}
    filter_batch(list(enumerate(log)), states, dict.fromkeys(Purpose, ConsentStatus.GRANTED))
    audit = [
        (r.customer_id, r.purpose, r.status, o) for o, r in enumerate(log) if isinstance(r, ConsentChange)
    ]
    for customer, state in states.items():
        assert reloaded(audit, customer) == {purpose: list(entries) for purpose, entries in state.items()}


def merge(number: int, absorbed: str, survivor: str) -> ProfileMerged:
    return ProfileMerged(
        change_id=f"m{number}:0",
        customer_id=absorbed,
        survivor=survivor,
        identifier_kind="email",
        identifier_value="a@b.io",
        caused_by=f"e{number}",
        at=AT,
    )


@st.composite
def merging_logs(draw: st.DrawFn, splits: bool = True) -> list[CustomerLogRecord]:
    """A log in which `ann` is absorbed into `ben` at some point: ann says nothing after it, and ben's
    side of the merge comes somewhere after it, in ben's order."""
    before, after = draw(customer_logs()), draw(customer_logs())
    rest: list[CustomerLogRecord] = [r for r in after if r.customer_id != "ann"]
    absorbed = ProfileAbsorbed(change_id=f"m{len(before)}:0", customer_id="ben", absorbed="ann", at=AT)
    rest.insert(draw(st.integers(0, len(rest))), absorbed)
    log = [*before, merge(len(before), "ann", "ben"), *rest]
    if splits and draw(st.booleans()):
        log += split_off_ann(log, draw(st.randoms(use_true_random=False)))
    return log


def split_off_ann(log: list[CustomerLogRecord], chooser: Random) -> list[CustomerLogRecord]:
    """A split at the end of the log: some of the person's touches go back to ann, logged again for her."""
    touches = [r for r in log if isinstance(r, TouchEvent) and r.customer_id in ("ann", "ben")]
    moving = chooser.sample(touches, k=chooser.randint(0, len(touches)))
    split = ProfileSplit(
        change_id="s:0",
        customer_id="ben",
        split_off="ann",
        identifier_kind="loyalty_card",
        identifier_value="L-1",
        event_ids=[t.event_id for t in moving],
        detached_from=[],
        caused_by="s",
        at=AT,
    )
    return [split, *(t.model_copy(update={"customer_id": "ann"}) for t in moving if t.customer_id == "ben")]


def with_carried_denials(log: list[CustomerLogRecord], defaults: Defaults) -> list[CustomerLogRecord]:
    """The log as the filter leaves it: what a merge carries over lands right after the merge record."""
    states: dict[str, ConsentState] = {}
    result: list[CustomerLogRecord] = []
    pending = list(log)
    while pending:
        record = pending.pop(0)
        offset = len(result)
        result.append(record)
        decision = filter_record(record, offset, states.get(record.customer_id, {}), defaults)
        states[record.customer_id] = decision.state
        pending[:0] = [output for output in decision.outputs if isinstance(output, ConsentChange)]
    return result


@settings(max_examples=400)
@given(log=merging_logs(splits=False), defaults=defaults_strategy)
def test_a_denial_stated_on_either_side_of_a_merge_holds_after_it(
    log: list[CustomerLogRecord], defaults: Defaults
) -> None:
    merged_at = next(n for n, r in enumerate(log) if isinstance(r, ProfileMerged))
    last_said: dict[Purpose, ConsentStatus] = {}
    for record in log[:merged_at]:
        if isinstance(record, ConsentChange) and record.customer_id == "ann":
            last_said[record.purpose] = record.status
    denied_by_ann = {p for p, status in last_said.items() if status is ConsentStatus.DENIED}
    filtered = with_carried_denials(log, defaults)
    carried = [r for r in filtered if isinstance(r, ConsentChange) and r.source == "identity-merge"]
    assert {(c.customer_id, c.purpose, c.status) for c in carried} == {
        ("ben", p, ConsentStatus.DENIED) for p in denied_by_ann
    }
    # Until ben states otherwise, nothing of ben's is used for a purpose either of them denied.
    ben_said: dict[Purpose, ConsentStatus] = {}
    for record in log[:merged_at]:
        if isinstance(record, ConsentChange) and record.customer_id == "ben":
            ben_said[record.purpose] = record.status
    allowed = expected_purposes(filtered, defaults)
    for record in log[merged_at + 1 :]:
        if isinstance(record, ConsentChange) and record.customer_id == "ben":
            ben_said[record.purpose] = record.status
            denied_by_ann.discard(record.purpose)
        elif isinstance(record, TouchEvent) and record.customer_id == "ben":
            for purpose in denied_by_ann | {p for p, s in ben_said.items() if s is ConsentStatus.DENIED}:
                assert purpose not in allowed[record.event_id]


@settings(max_examples=300)
@given(log=merging_logs(), defaults=defaults_strategy)
def test_each_side_of_a_merge_reaches_the_allowed_stream_with_the_survivors_consent_at_its_side(
    log: list[CustomerLogRecord], defaults: Defaults
) -> None:
    filtered = with_carried_denials(log, defaults)
    notices = [r for r in run_filter(filtered, defaults, {}) if isinstance(r, ProfileMerged | AbsorbedMarker)]
    assert [type(notice) for notice in notices] == [ProfileMerged, AbsorbedMarker]
    sealed, absorbed = notices
    assert isinstance(sealed, ProfileMerged)
    assert isinstance(absorbed, AbsorbedMarker)
    assert (sealed.customer_id, absorbed.customer_id, absorbed.absorbed) == ("ann", "ben", "ann")
    # What ben allows at his side of the merge: the purposes a touch of ben's logged there would get.
    at = next(n for n, r in enumerate(filtered) if isinstance(r, ProfileAbsorbed))
    probe = TouchEvent(
        event_id="probe",
        customer_id="ben",
        type="view",
        channel="web",
        occurred_at=AT,
        received_at=AT,
        source="test",
    )
    assert absorbed.purposes == expected_purposes([*filtered[:at], probe], defaults)["probe"]


@settings(max_examples=200)
@given(log=merging_logs(), defaults=defaults_strategy)
def test_g1_g2_hold_across_merges_and_splits(log: list[CustomerLogRecord], defaults: Defaults) -> None:
    filtered = with_carried_denials(log, defaults)
    outputs = run_filter(filtered, defaults, {})
    for projection in PROJECTION_PURPOSES:
        assert ProjectionModel(projection).apply_all(outputs).holdings() == expected_holdings(
            filtered, projection, defaults
        )


@given(
    st.lists(st.tuples(st.integers(0, 60), st.sampled_from(list(ConsentStatus))), max_size=40),
    st.integers(-2, 62),
    st.sampled_from(list(ConsentStatus)),
)
def test_the_status_in_force_at_an_offset_is_the_last_change_logged_before_it(
    changes: list[tuple[int, ConsentStatus]], offset: int, default: ConsentStatus
) -> None:
    """Looked up newest first and by bisection, as the filter does per touch, read as plainly as it can be:
    a replayed record lands inside a history, a fresh one after all of it."""
    state: ConsentState = {}
    for change_offset, status in changes:
        state = with_change(state, Purpose.MARKETING, status, change_offset)
    before = [
        status for change_offset, status in state.get(Purpose.MARKETING.value, ()) if change_offset < offset
    ]
    expected = ConsentStatus(before[-1]) if before else default
    defaults = dict.fromkeys(Purpose, default)
    assert status_at(state, Purpose.MARKETING, offset, defaults) is expected
