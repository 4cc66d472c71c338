"""How every service process starts: its command line, and the garbage collector it runs with."""

import gc
import sys
from collections.abc import Iterator

import pytest

import shared.service
from shared.service import run_command_line
from shared.settings import TouchlineSettings


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def _no_topics(settings: TouchlineSettings) -> list[str]:
    return []


def test_a_command_runs_with_the_collector_tuned_for_long_lived_state(
    restored_collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared.service, "ensure_topics", _no_topics)
    monkeypatch.setattr(shared.service, "configure_logging", lambda level: None)
    monkeypatch.setattr(sys, "argv", ["touchline", "worker"])
    seen: list[tuple[tuple[int, int, int], int]] = []

    run_command_line(
        "touchline",
        None,
        TouchlineSettings(),
        {"worker": lambda arguments: seen.append((gc.get_threshold(), gc.get_freeze_count()))},
    )

    [(thresholds, frozen)] = seen
    assert thresholds == (50_000, 20, 100)
    assert frozen > 0  # what start-up built is out of the collector's way


def test_arguments_are_refused_by_a_command_that_takes_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["touchline", "worker", "extra"])
    with pytest.raises(SystemExit):
        run_command_line("touchline", None, TouchlineSettings(), {"worker": lambda arguments: None})
