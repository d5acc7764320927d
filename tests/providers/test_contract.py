"""The provider contract: what every platform behind the port must do, whatever its vocabulary.

Each tenant (`tenants.py`) is a provider built through the registry against its platform's
simulator. The suite drives the port as the core does (open, plan, settle, prepare, apply, preview)
and checks the effect on the platform itself, by its own counters.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from orchestrator.domain.errors import ProviderError, TransientProviderError
from orchestrator.domain.run import Item, ItemOutcome, ItemState, PlannedItem, Run, RunOptions, RunState, Step
from orchestrator.services.ports import ActionUnit, BillingProvider
from tests.providers.tenants import TENANTS, Tenant

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=sorted(TENANTS))
def tenant(request: pytest.FixtureRequest) -> Iterator[Tenant]:
    with ExitStack() as cleanup:
        yield TENANTS[request.param](cleanup)


def open_run(tenant: Tenant, *, dry_run: bool = False) -> Run:
    options = RunOptions(dry_run=dry_run, chunk_size=1000)
    opening = tenant.provider.open(tenant.selector, tenant.options, options)
    run = Run(
        id=str(uuid.uuid4()),
        provider=tenant.name,
        selection=opening.selection,
        state=RunState.DRY_RUN if dry_run else RunState.REVERSING,
        options=options,
        created_at=NOW,
        updated_at=NOW,
        provider_options=opening.options,
        provider_state=opening.state,
        item_actions=opening.item_actions,
    )
    if dry_run:
        return run
    prepared = tenant.provider.prepare_run(run)
    state = {**run.provider_state, **prepared.state}
    return replace(run, provider_state=state)


def plan(tenant: Tenant, run: Run, *, cursor: int = 0) -> list[PlannedItem]:
    return [item for page in tenant.provider.iter_plan(run, cursor=cursor) for item in page.items]


def items_of(planned: Sequence[PlannedItem], *, claims: int = 1) -> list[Item]:
    return [
        Item(
            id=index,
            run_id="run",
            chunk_id=1,
            invoice=one.invoice,
            state=ItemState.IN_FLIGHT,
            attempts=claims,
            claims_total=claims,
            chunk_seq=0,
        )
        for index, one in enumerate(planned, start=1)
        if one.state is ItemState.PENDING
    ]


def unit(provider: BillingProvider, items: list[Item]) -> list[Item]:
    """What one write covers: the first item, or the whole chunk."""
    return items if provider.unit is ActionUnit.CHUNK else items[:1]


def act(tenant: Tenant, run: Run, items: list[Item]) -> dict[int, ItemOutcome]:
    """Settle (when claimed before), prepare and apply one unit, as a worker does."""
    provider = tenant.provider
    outcomes: dict[int, ItemOutcome] = {}
    with provider.one_invoice_at_a_time():
        if any(item.claimed_before for item in items):
            outcomes.update(provider.settle(run, items))
        todo = [item for item in items if item.id not in outcomes]
        if todo:
            prepared = provider.prepare(run, todo)
            outcomes.update(prepared.decided)
            if prepared.send:
                outcomes.update(provider.apply(run, prepared))
    return outcomes


def acted_on(tenant: Tenant) -> dict[str, int]:
    return {invoice: count for invoice, count in tenant.applied().items() if count}


class TestSelection:
    def test_planning_finds_every_invoice_with_the_platforms_verdict(self, tenant: Tenant) -> None:
        run = open_run(tenant, dry_run=True)
        planned = plan(tenant, run)

        assert {one.invoice.invoice_id for one in planned} == set(tenant.expected)
        eligible = {one.invoice.invoice_id for one in planned if one.state is ItemState.PENDING}
        assert eligible == {invoice for invoice, reason in tenant.expected.items() if reason is None}
        assert all(one.reason for one in planned if one.state is ItemState.SKIPPED)

    def test_planning_resumes_from_a_cursor_without_repeating_a_page(self, tenant: Tenant) -> None:
        run = open_run(tenant, dry_run=True)
        pages = list(tenant.provider.iter_plan(run, cursor=0))
        if len(pages) < 2 or pages[0].next_cursor is None:
            pytest.skip("the selection fits one page")
        resumed = plan(tenant, run, cursor=pages[0].next_cursor)
        assert [one.invoice.invoice_id for page in pages[1:] for one in page.items] == [
            one.invoice.invoice_id for one in resumed
        ]

    def test_a_dry_run_writes_nothing(self, tenant: Tenant) -> None:
        run = open_run(tenant, dry_run=True)
        planned = plan(tenant, run)
        tenant.provider.describe_follow_up(run, _NoLedger(items_of(planned)))
        if tenant.provider.previews_items:
            items = unit(tenant.provider, items_of(planned))
            prepared = tenant.provider.prepare(run, items)
            previews = tenant.provider.preview(run, prepared)
            assert {outcome.state for outcome in previews.values()} <= {ItemState.PREVIEWED, ItemState.SKIPPED}
        assert acted_on(tenant) == {}


class TestOneAction:
    def test_an_eligible_invoice_is_acted_on_once(self, tenant: Tenant) -> None:
        run = open_run(tenant)
        items = unit(tenant.provider, items_of(plan(tenant, run)))

        outcomes = act(tenant, run, items)

        assert {outcomes[item.id].state for item in items} == {ItemState.REVERSED}
        assert acted_on(tenant) == {item.invoice.invoice_id: 1 for item in items}

    def test_a_second_claim_settles_by_reading_and_sends_nothing(self, tenant: Tenant) -> None:
        run = open_run(tenant)
        items = unit(tenant.provider, items_of(plan(tenant, run)))
        act(tenant, run, items)
        again = [replace(item, claims_total=2, attempts=2) for item in items]

        outcomes = act(tenant, run, again)

        assert {outcomes[item.id].state for item in again} == {ItemState.REVERSED}
        assert all(outcomes[item.id].settled_by_read for item in again)
        assert acted_on(tenant) == {item.invoice.invoice_id: 1 for item in items}

    def test_a_lost_reply_is_settled_by_reading_never_by_sending_again(self, tenant: Tenant) -> None:
        run = open_run(tenant)
        items = unit(tenant.provider, items_of(plan(tenant, run)))
        tenant.fault_writes("lost")
        with pytest.raises(ProviderError) as lost:
            act(tenant, run, items)
        assert lost.value.may_have_applied
        tenant.fault_writes(None)
        again = [replace(item, claims_total=2, attempts=2) for item in items]

        outcomes = act(tenant, run, again)

        assert {outcomes[item.id].state for item in again} == {ItemState.REVERSED}
        assert acted_on(tenant) == {item.invoice.invoice_id: 1 for item in items}

    def test_a_server_fault_before_anything_applied_is_transient_and_the_retry_applies_once(
        self, tenant: Tenant
    ) -> None:
        run = open_run(tenant)
        items = unit(tenant.provider, items_of(plan(tenant, run)))
        tenant.fault_writes("refused")
        with pytest.raises(TransientProviderError):
            act(tenant, run, items)
        assert acted_on(tenant) == {}
        tenant.fault_writes(None)
        again = [replace(item, claims_total=2, attempts=2) for item in items]

        outcomes = act(tenant, run, again)

        assert {outcomes[item.id].state for item in again} == {ItemState.REVERSED}
        assert acted_on(tenant) == {item.invoice.invoice_id: 1 for item in items}


class _NoLedger:
    """The follow-up's view of a run that has only its plan."""

    def __init__(self, items: list[Item]) -> None:
        self._items = items

    def items(self, *, states: Collection[ItemState] | None = None) -> Iterator[Item]:
        return iter(self._items)

    def steps(self) -> Sequence[Step]:
        return []
