"""Deterministic seeding: one period over many accounts and meters, with the bills a run must skip."""

from __future__ import annotations

from decimal import Decimal

from simulators.energycap.corrected import corrected_bills_csv
from simulators.energycap.import_csv import check_row, read_rows
from simulators.energycap.state import EnergyCapState, SeededPeriod


def snapshot(state: EnergyCapState) -> list[tuple[object, ...]]:
    return [
        (b.bill_id, b.account.account_code, b.meters[0].meter_code, b.billing_period, b.account_period, b.total_cost)
        for b in state.bills.values()
    ]


class TestSeedPeriod:
    def test_same_arguments_same_data(self) -> None:
        first, second = EnergyCapState(), EnergyCapState()
        assert first.seed_period(300, seed=9) == second.seed_period(300, seed=9)
        assert snapshot(first) == snapshot(second)
        third = EnergyCapState()
        third.seed_period(300, seed=10)
        assert snapshot(third) != snapshot(first)

    def test_the_period_holds_every_kind_of_bill(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        period = [state.bills[i] for i in seeded.bill_ids]
        assert len(period) == 200 + len(seeded.reversal_ids)
        assert {b.account_period for b in period} == {202510}
        assert len(seeded.void_ids) == len(seeded.reversed_ids) == 8
        assert all(state.bills[i].void for i in seeded.void_ids)
        assert len(seeded.eligible_ids) == 200 - 16
        assert all(state.bills[i].skip_reason() is None for i in seeded.eligible_ids)
        assert len(seeded.exported_ids) == 50
        assert any(state.bills[i].ap_exported and state.bills[i].gl_exported for i in seeded.exported_ids)
        assert len(seeded.account_codes) > 50
        assert len({b.meters[0].meter_id for b in period if not b.is_reversal}) == 200

    def test_reversed_bills_and_their_reversals_are_linked_in_the_same_period(
        self, state: EnergyCapState, seeded: SeededPeriod
    ) -> None:
        for original_id, reversal_id in zip(seeded.reversed_ids, seeded.reversal_ids, strict=True):
            original, reversal = state.bills[original_id], state.bills[reversal_id]
            assert original.reversed_by_bill_id == reversal_id
            assert reversal.reversal_of_bill_id == original_id
            assert reversal.total_cost == -original.total_cost
            assert reversal.account_period == original.account_period == 202510
            assert reversal.skip_reason() == "reversal_bill"
            assert original.skip_reason() == "already_reversed"
        assert reversal_id > max(seeded.bill_ids[:200])

    def test_another_period_and_money_as_decimal(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        assert seeded.other_period == 202509
        assert len(seeded.other_period_ids) == 40
        assert {state.bills[i].account_period for i in seeded.other_period_ids} == {202509}
        assert max(seeded.other_period_ids) < min(seeded.bill_ids)
        for bill in state.bills.values():
            assert isinstance(bill.total_cost, Decimal)
            assert bill.total_cost == bill.total_cost.quantize(Decimal("0.01"))
            assert sum(cost for _, cost in bill.lines) == bill.total_cost

    def test_seeding_counts_nothing(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        counters = state.counters()
        assert counters["reversals"] == {}
        assert counters["batches"] == {}

    def test_a_second_period_gets_fresh_accounts(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        again = state.seed_period(20, seed=3, account_period=202511)
        assert not set(again.account_codes) & set(seeded.account_codes)
        assert min(again.bill_ids) > max(seeded.bill_ids)


class TestCorrectedBills:
    def test_one_valid_row_per_eligible_bill(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        rows = read_rows(corrected_bills_csv(state, seeded).encode())
        assert len(rows) == len(seeded.eligible_ids)
        for raw, bill_id in zip(rows, seeded.eligible_ids, strict=True):
            row, bill = check_row(raw), state.bills[bill_id]
            assert (raw["accountcode"], raw["metercode"]) == (bill.account.account_code, bill.meters[0].meter_code)
            assert row.billing_period == bill.billing_period
            assert row.total_cost == (bill.total_cost * Decimal("0.95")).quantize(Decimal("0.01"))
