"""Pure rules, table-tested."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from orchestrator.domain.billing import Invoice
from orchestrator.domain.run import (
    Item,
    ItemState,
    Run,
    RunOptions,
    RunState,
    Selection,
    chunk_capacity,
    overlap_refusal,
    retry_delay,
)

BILLING = "fake:2026-11"


@pytest.mark.parametrize(
    ("attempt", "retry_after", "jitter_picks", "expected"),
    [
        (1, None, "max", 1.0),
        (2, None, "max", 2.0),
        (4, None, "max", 8.0),
        (10, None, "max", 30.0),  # capped
        (3, None, "min", 0.0),  # full jitter may go to zero
        (1, 12.0, "min", 12.0),  # never sooner than Retry-After
        (1, 90.0, "max", 90.0),  # Retry-After above the cap is still honoured
    ],
)
def test_retry_delay(attempt: int, retry_after: float | None, jitter_picks: str, expected: float) -> None:
    def jitter(ceiling: float) -> float:
        return ceiling if jitter_picks == "max" else 0.0

    assert retry_delay(attempt, base=1.0, cap=30.0, retry_after=retry_after, jitter=jitter) == expected


def selection(party: str | None = None) -> Selection:
    return Selection(
        scope=BILLING,
        guard_key=BILLING + (f":party:{party}" if party else ""),
        label="billing 2026-11" + (f" for party {party}" if party else ""),
        selector={"billing": "2026-11", **({"party_id": party} if party else {})},
        whole=party is None,
    )


def run(
    chosen: Selection, state: RunState = RunState.REVERSING, *, dry_run: bool = False, guard_held: bool = True
) -> Run:
    at = datetime(2026, 11, 22, tzinfo=UTC)
    return Run(
        id=f"run-{chosen.guard_key}-{state.value}",
        provider="fake",
        selection=chosen,
        state=state,
        options=RunOptions(dry_run=dry_run),
        created_at=at,
        updated_at=at,
        guard_held=guard_held,
    )


WHOLE, CONTACT, OTHER_CONTACT = selection(), selection("P1"), selection("P2")


@pytest.mark.parametrize(
    ("new", "existing", "refusal"),
    [
        (WHOLE, [], None),
        (WHOLE, [run(CONTACT)], "already has a partial run run-fake:2026-11:party:P1-REVERSING"),
        (WHOLE, [run(CONTACT, RunState.COMPLETED)], "a run of the whole would bill those members twice"),
        (CONTACT, [run(WHOLE)], "is already taken by run run-fake:2026-11-REVERSING (REVERSING) for the whole"),
        (CONTACT, [run(WHOLE, RunState.COMPLETED)], "for the whole of it"),
        (WHOLE, [run(WHOLE, RunState.NEEDS_ATTENTION)], "already taken by run run-fake:2026-11-NEEDS_ATTENTION"),
        (CONTACT, [run(CONTACT, RunState.FAILED)], "one billing is reversed and rebilled once"),
        (CONTACT, [run(OTHER_CONTACT)], None),  # another member of the billing
        (
            WHOLE,
            [run(CONTACT, dry_run=True), run(WHOLE, RunState.DRY_RUN, dry_run=True)],
            None,
        ),  # dry runs hold nothing
        (WHOLE, [run(WHOLE, RunState.CANCELLED, guard_held=False)], None),
        (CONTACT, [run(WHOLE, RunState.CANCELLED, guard_held=False)], None),
        (CONTACT, [run(CONTACT, RunState.COMPLETED, guard_held=False)], None),  # a released guard holds nothing
    ],
    ids=[
        "first",
        "whole-beside-contact",
        "whole-beside-finished-contact",
        "contact-beside-whole",
        "contact-beside-finished-whole",
        "second-whole",
        "same-contact",
        "other-contact",
        "beside-dry-runs",
        "whole-after-cancelled",
        "contact-after-cancelled-whole",
        "contact-after-released",
    ],
)
def test_a_run_overlapping_another_of_its_scope_is_refused(
    new: Selection, existing: list[Run], refusal: str | None
) -> None:
    found = overlap_refusal(new, existing)

    if refusal is None:
        assert found is None
    else:
        assert found is not None
        assert refusal in found


def test_run_options_survive_the_ledger_and_ignore_what_they_no_longer_know() -> None:
    options = RunOptions(dry_run=True, allow_partial=True, chunk_size=7, poll_interval_seconds=0.5)
    stored = options.to_json()

    assert RunOptions.from_json(stored) == options
    assert RunOptions.from_json({**stored, "mode": "native", "party_id": "101"}) == options


@pytest.mark.parametrize(
    ("state", "final", "closed"),
    [
        (RunState.PLANNING, False, False),
        (RunState.REVERSING, False, False),
        (RunState.REBILLING, False, False),
        (RunState.POLLING, False, False),
        (RunState.NEEDS_ATTENTION, True, False),
        (RunState.FAILED, True, False),
        (RunState.STALLED, True, False),
        (RunState.COMPLETED, True, True),
        (RunState.CANCELLED, True, True),
        (RunState.DRY_RUN, True, True),
    ],
)
def test_which_run_states_rest_and_which_are_closed_even_to_retry(state: RunState, final: bool, closed: bool) -> None:
    assert (state.is_final, state.is_closed) == (final, closed)


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (ItemState.PENDING, False),
        (ItemState.IN_FLIGHT, False),
        (ItemState.RETRY_WAIT, False),
        (ItemState.REVERSED, True),
        (ItemState.SKIPPED, True),
        (ItemState.FAILED, True),
        (ItemState.PREVIEWED, True),
    ],
)
def test_which_item_states_are_terminal(state: ItemState, terminal: bool) -> None:
    assert state.is_terminal is terminal


@pytest.mark.parametrize(("claims", "before"), [(0, False), (1, False), (2, True), (5, True)])
def test_an_item_claimed_more_than_once_may_have_been_acted_on(claims: int, before: bool) -> None:
    item = Item(
        1, "run", 1, Invoice("1001", Decimal("95.00"), Decimal("95.00")), ItemState.IN_FLIGHT, claims_total=claims
    )

    assert item.claimed_before is before


@pytest.mark.parametrize(
    ("chunk_size", "ramp", "capacities"),
    [
        (50, 0, [50] * 30),  # no ramp: every chunk full (a provider whose write covers a whole chunk)
        (50, 8, [7] * 8 + [13] * 8 + [25] * 8 + [50] * 6),  # an eighth, a quarter, a half, then full
        (50, 1, [7, 13, 25, 50, 50]),
        (5, 2, [1, 1, 2, 2, 3, 3, 5]),  # rounded up
        (1, 8, [1] * 30),  # never empty
        (1000, 3, [125] * 3 + [250] * 3 + [500] * 3 + [1000]),
    ],
)
def test_a_runs_first_chunks_are_smaller(chunk_size: int, ramp: int, capacities: list[int]) -> None:
    assert [chunk_capacity(seq, chunk_size, ramp=ramp) for seq in range(len(capacities))] == capacities
