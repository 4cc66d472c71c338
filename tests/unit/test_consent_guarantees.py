"""G1-G3 of the consent issue, as properties of the pure filter over random interleavings."""

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.consent.domain import ConsentState, Defaults, filter_record
from shared.events import (
    AllowedTouch,
    ConsentChange,
    ConsentStatus,
    CustomerLogRecord,
    EraseMarker,
    Purpose,
    TouchEvent,
)
from shared.purposes import PROJECTION_PURPOSES
from tests.consent_model import ProjectionModel, expected_holdings

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
) -> list[AllowedTouch | EraseMarker]:
    outputs: list[AllowedTouch | EraseMarker] = []
    for offset in range(start, len(log) if stop is None else stop):
        record = log[offset]
        decision = filter_record(record, offset, states.get(record.customer_id, {}), defaults)
        states[record.customer_id] = decision.state
        outputs.extend(decision.outputs)
    return outputs


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
