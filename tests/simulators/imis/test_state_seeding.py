"""Seeding: deterministic, realistic mix, independent billings, and the seed pages' entities."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import pytest

from simulators.imis.entities import ACCRUAL, CASH, COMPLETED, UNPOSTED_BATCH, Source
from simulators.imis.errors import Conflict
from simulators.imis.examples import EXAMPLE_BATCH_ID, EXAMPLE_LEGACY_INVOICE_ID, EXAMPLE_ORIGINAL_KEY
from simulators.imis.filters import Filter
from simulators.imis.state import ImisState


def _snapshot(state: ImisState, key: str) -> list[tuple[str, int, str, str, str, str]]:
    return [
        (d["invoice_id"], d["invoice_number"], d["bill_to"], d["amount"], d["balance"], d["payment_amount"])
        for d in state.dump_invoices(key)
    ]


class TestDeterminism:
    def test_same_seed_gives_same_keys_and_invoices(self) -> None:
        with ImisState() as first, ImisState() as second:
            a = first.seed_billing(invoices=120, seed=42)
            b = second.seed_billing(invoices=120, seed=42)
            assert a == b
            assert _snapshot(first, a.original_key) == _snapshot(second, b.original_key)
            assert _snapshot(first, a.other_keys[0]) == _snapshot(second, b.other_keys[0])

    def test_different_seeds_differ(self) -> None:
        with ImisState() as state:
            a = state.seed_billing(invoices=20, seed=1)
            b = state.seed_billing(invoices=20, seed=2)
        assert a.original_key != b.original_key
        assert not set(a.invoice_ids) & set(b.invoice_ids)

    def test_every_call_adds_an_independent_billing_even_with_the_same_seed(self) -> None:
        with ImisState() as state:
            a = state.seed_billing(invoices=30, seed=7)
            b = state.seed_billing(invoices=30, seed=7)
            assert a.original_key != b.original_key
            assert not set(a.invoice_ids) & set(b.invoice_ids)
            assert not set(a.party_ids) & set(b.party_ids)
            assert len(state.dump_invoices(a.original_key)) == 30
            assert len(state.dump_invoices(b.original_key)) == 30

    def test_keys_are_guids(self) -> None:
        with ImisState() as state:
            seeded = state.seed_billing(invoices=5, seed=3, other_billings=2)
        guid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        for key in (seeded.original_key, *seeded.other_keys):
            assert guid.match(key)


class TestMix:
    def test_about_85_percent_open_10_paid_5_part_paid(self) -> None:
        with ImisState() as state:
            seeded = state.seed_billing(invoices=400, seed=11)
            invoices = state.dump_invoices(seeded.original_key)
        kinds: Counter[str] = Counter()
        for inv in invoices:
            amount, balance, paid = (Decimal(inv[k]) for k in ("amount", "balance", "payment_amount"))
            assert Decimal(inv["pending_payment_amount"]) == 0
            if paid == 0:
                assert balance == amount > 0
                kinds["open"] += 1
            elif paid == amount:
                assert balance == 0
                kinds["paid"] += 1
            else:
                assert 0 < paid < amount
                assert balance == amount - paid
                kinds["part"] += 1
        assert kinds == {"open": 340, "paid": 40, "part": 20}
        assert (seeded.open_count, seeded.paid_count, seeded.part_paid_count) == (340, 40, 20)
        assert len(seeded.open_invoice_ids) == 340

    def test_small_billings_still_have_a_paid_and_a_part_paid_invoice(self) -> None:
        with ImisState() as state:
            seeded = state.seed_billing(invoices=10, seed=5)
        assert seeded.paid_count >= 1
        assert seeded.part_paid_count >= 1
        assert seeded.open_count + seeded.paid_count + seeded.part_paid_count == 10

    def test_some_parties_have_two_invoices(self) -> None:
        with ImisState() as state:
            seeded = state.seed_billing(invoices=200, seed=9)
            owners = Counter(d["bill_to"] for d in state.dump_invoices(seeded.original_key))
        assert set(owners.values()) == {1, 2}
        assert 1 <= sum(1 for n in owners.values() if n == 2) <= 10
        assert set(seeded.party_ids) == set(owners)

    def test_a_few_cash_invoices_have_legacy_ids(self) -> None:
        with ImisState() as state:
            seeded = state.seed_billing(invoices=200, seed=9)
            legacy = [i for i in seeded.invoice_ids if i.startswith("CASH:")]
            assert 1 <= len(legacy) <= 8
            for invoice_id in legacy:
                match = re.fullmatch(r"CASH:(\d+):([0-9a-f-]{36})", invoice_id)
                assert match is not None
                assert state.invoice(invoice_id).bill_to == match.group(1)
            numeric = [i for i in seeded.invoice_ids if not i.startswith("CASH:")]
            assert all(state.invoice(i).number == int(i) for i in numeric)

    def test_accrual_billing(self) -> None:
        with ImisState() as state:
            seeded = state.seed_billing(invoices=50, seed=4, accounting_method="accrual", cycle_name="Chapter Dues")
            assert seeded.accounting_method == ACCRUAL
            assert state.billing_log(seeded.original_key).accounting_method == ACCRUAL
            assert all(state.invoice(i).accounting_method == ACCRUAL for i in seeded.invoice_ids)
            assert not any(i.startswith("CASH:") for i in seeded.invoice_ids)

    def test_rebill_parties_are_those_with_only_open_invoices(self) -> None:
        with ImisState() as state:
            seeded = state.seed_billing(invoices=150, seed=21)
            by_party: dict[str, list[bool]] = {}
            for invoice_id in seeded.invoice_ids:
                invoice = state.invoice(invoice_id)
                by_party.setdefault(invoice.bill_to, []).append(invoice.is_open_unpaid)
        expected = {p for p, flags in by_party.items() if all(flags)}
        assert set(seeded.rebill_party_ids) == expected
        assert len(expected) < len(by_party)


class TestOtherBillings:
    def test_older_completed_billings_of_the_same_cycle_with_open_invoices(self) -> None:
        with ImisState() as state:
            seeded = state.seed_billing(invoices=40, seed=2, other_billings=2)
            original = state.billing_log(seeded.original_key)
            assert len(seeded.other_keys) == 2
            for key in seeded.other_keys:
                older = state.billing_log(key)
                assert older.status == COMPLETED
                assert older.cycle_name == original.cycle_name
                assert older.effective_date is not None
                assert original.effective_date is not None
                assert older.effective_date < original.effective_date
            assert seeded.other_open_invoice_ids
            for invoice_id in seeded.other_open_invoice_ids:
                invoice = state.invoice(invoice_id)
                assert invoice.is_open_unpaid
                assert invoice.billing_log_key in seeded.other_keys

    def test_cycle_listing_is_in_creation_order_oldest_first(self) -> None:
        with ImisState() as state:
            seeded = state.seed_billing(invoices=5, seed=2, other_billings=2)
            logs, total = state.find_billing_logs([Filter.parse("BillingCycleName", seeded.cycle_name)])
        assert total == 3
        assert [log.key for log in logs] == [*reversed(seeded.other_keys), seeded.original_key]

    def test_effective_date_and_cycle_name_are_used(self) -> None:
        effective = datetime(2026, 1, 1, tzinfo=UTC)
        with ImisState() as state:
            seeded = state.seed_billing(invoices=3, seed=1, cycle_name="Student Fees", effective_date=effective)
            log = state.billing_log(seeded.original_key)
        assert (log.cycle_name, log.effective_date, log.status) == ("Student Fees", effective, COMPLETED)

    def test_bad_arguments(self) -> None:
        with ImisState() as state:
            with pytest.raises(ValueError, match="negative"):
                state.seed_billing(invoices=-1, seed=1)
            with pytest.raises(ValueError, match="accounting method"):
                state.seed_billing(invoices=1, seed=1, accounting_method="barter")


class TestSeedExamples:
    def test_creates_what_the_pages_refer_to(self, state: ImisState) -> None:
        seeded = state.seed_examples()
        assert seeded.original_key == EXAMPLE_ORIGINAL_KEY
        log = state.billing_log(EXAMPLE_ORIGINAL_KEY)
        assert (log.cycle_name, log.status, log.accounting_method) == ("Regular Membership Fees", COMPLETED, CASH)
        i8158 = state.invoice("8158")
        assert (i8158.bill_to, i8158.accounting_method, i8158.source) == ("101", CASH, Source.DUES)
        assert i8158.is_open_unpaid
        assert i8158.amount == Decimal("370.00")
        assert {line.product_code for line in i8158.lines} == {"DUES", "JOUR", "INSIDMAG"}
        accrual = state.invoice_by_number(2317)
        assert (accrual.accounting_method, accrual.is_open_unpaid) == (ACCRUAL, True)
        assert state.invoice("8200").source == Source.FUNDRAISING
        assert state.invoice("8300").source == Source.EVENT
        assert "23500" in state.parties
        assert state.invoice(EXAMPLE_LEGACY_INVOICE_ID).billing_log_key == EXAMPLE_ORIGINAL_KEY
        assert state.batch(EXAMPLE_BATCH_ID).status == "Ready"
        unposted = state.billing_log(state.batch(EXAMPLE_BATCH_ID).billing_log_key or "")
        assert unposted.status == UNPOSTED_BATCH
        assert set(seeded.open_invoice_ids) == {"8158", "8159", "8163", "8164", "8165", EXAMPLE_LEGACY_INVOICE_ID}
        assert set(seeded.rebill_party_ids) == {"101", "102", "106", "23415"}

    def test_once_per_simulator(self, state: ImisState) -> None:
        state.seed_examples()
        with pytest.raises(Conflict):
            state.seed_examples()

    @pytest.mark.parametrize(
        ("kind", "method", "source"), [("accrual", ACCRUAL, Source.DUES), ("order", CASH, Source.ORDER)]
    )
    def test_8158_can_be_another_kind_of_invoice(
        self, state: ImisState, kind: Literal["accrual", "order"], method: int, source: Source
    ) -> None:
        state.seed_examples(invoice_8158=kind)
        invoice = state.invoice("8158")
        assert (invoice.accounting_method, invoice.source) == (method, source)

    def test_examples_and_seeded_billings_live_side_by_side(self, state: ImisState) -> None:
        state.seed_examples()
        seeded = state.seed_billing(invoices=20, seed=1)
        assert not set(seeded.invoice_ids) & {"8158", "2317", "8200", "8300"}
