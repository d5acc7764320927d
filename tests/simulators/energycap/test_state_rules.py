"""Bill reversal, lists and keys, straight on the state (no HTTP)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from simulators.energycap.errors import Forbidden, NotFound, SimError, Unauthorized
from simulators.energycap.state import MAX_REVERSE_IDS, EnergyCapState, SeededPeriod
from tests.simulators.energycap.helpers import API_KEY, reverse


def fingerprint(state: EnergyCapState) -> tuple[int, int, list[int | None]]:
    return len(state.bills), len(state.batches), [b.reversed_by_bill_id for b in state.bills.values()]


class TestReverse:
    def test_reverses_eligible_bills_into_a_closed_self_contained_batch(
        self, state: EnergyCapState, seeded: SeededPeriod
    ) -> None:
        ids = seeded.eligible_ids[:5]
        result = state.reverse_bills(reverse(ids, "RB-7F3A21C0-0001", "run-7f3a"))
        assert (result.selected, result.updated) == (5, 5)
        batch = result.batch
        assert (batch.batch_code, batch.note, batch.is_open) == ("RB-7F3A21C0-0001", "run-7f3a", False)
        assert batch.end_date is not None
        assert len(batch.bill_ids) == 5
        for original_id, reversal_id in zip(ids, batch.bill_ids, strict=True):
            original, reversal = state.bills[original_id], state.bills[reversal_id]
            assert original.reversed_by_bill_id == reversal_id
            assert reversal.reversal_of_bill_id == original_id
            assert reversal.total_cost == -original.total_cost
            assert (reversal.account, reversal.meters) == (original.account, original.meters)
            assert (reversal.begin_date, reversal.end_date) == (original.begin_date, original.end_date)
            assert reversal.billing_period == original.billing_period
            assert reversal.account_period == original.account_period
            assert reversal.batch is batch
            assert reversal_id > max(seeded.bill_ids)
        assert batch.running_total == -sum(state.bills[i].total_cost for i in ids)
        counters = state.counters()
        assert counters["reversals"] == {str(i): 1 for i in ids}
        assert counters["batches"] == {"RB-7F3A21C0-0001": 1}
        assert counters["reverse_calls"] == [
            {"code": "RB-7F3A21C0-0001", "endpoint": "v202510", "ids": list(ids), "selected": 5, "updated": 5}
        ]
        assert counters["first_reversal_at"] is not None

    def test_ineligible_bills_are_selected_not_updated(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        ids = [seeded.eligible_ids[0], seeded.void_ids[0], seeded.reversal_ids[0], seeded.reversed_ids[0]]
        result = state.reverse_bills(reverse(ids))
        assert (result.selected, result.updated) == (4, 1)
        assert state.bills[seeded.void_ids[0]].reversed_by_bill_id is None
        assert state.counters()["duplicate_reversals"] == {str(seeded.reversed_ids[0]): 1}

    def test_a_bill_reversed_twice_is_not_updated_but_counted(
        self, state: EnergyCapState, seeded: SeededPeriod
    ) -> None:
        bill_id = seeded.eligible_ids[0]
        state.reverse_bills(reverse([bill_id], "RB-A"))
        second = state.reverse_bills(reverse([bill_id], "RB-B"))
        assert (second.selected, second.updated) == (1, 0)
        assert second.batch.bill_ids == []  # a call that updates nothing still makes its batch
        counters = state.counters()
        assert counters["reversals"] == {str(bill_id): 1}
        assert counters["duplicate_reversals"] == {str(bill_id): 1}

    def test_duplicate_ids_count_once(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        bill_id = seeded.eligible_ids[0]
        result = state.reverse_bills(reverse([bill_id, bill_id, bill_id]))
        assert (result.selected, result.updated) == (1, 1)

    def test_the_account_period_comes_from_the_new_batch_when_both_parts_are_sent(
        self, state: EnergyCapState, seeded: SeededPeriod
    ) -> None:
        a, b = seeded.eligible_ids[:2]
        both = state.reverse_bills(reverse([a], "RB-1", account_period_year=2025, account_period_number=11))
        assert state.bills[both.batch.bill_ids[0]].account_period == 202511
        half = state.reverse_bills(reverse([b], "RB-2", account_period_year=2025))
        assert state.bills[half.batch.bill_ids[0]].account_period == 202510

    def test_batch_mode_is_case_blind(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        result = state.reverse_bills(reverse(seeded.eligible_ids[:1], mode="New Self-Contained  BATCH"))
        assert result.updated == 1

    @pytest.mark.parametrize(
        ("changes", "why"),
        [
            ({"bill_ids": ()}, "billIds cannot be empty"),
            ({"bill_ids": None}, "billIds cannot be empty"),
            ({"bill_ids": "unknown"}, "Unknown bill id\\(s\\): 999999"),
            ({"bill_ids": tuple(range(1, MAX_REVERSE_IDS + 2))}, f"at most {MAX_REVERSE_IDS} ids, got 1001"),
            ({"batch_code": None}, "batchCode is required"),
            ({"batch_code": " "}, "batchCode is required"),
            ({"batch_code": "x" * 256}, "between 0 and 255"),
            ({"note": "x" * 256}, "between 0 and 255"),
            ({"batch_mode": None}, "batchMode is required"),
            ({"batch_mode": "smart batch"}, "is not one of"),
            ({"batch_mode": "new batch"}, "not supported here"),
            ({"batch_mode": "use existing batch"}, "not supported here"),
            ({"account_period_year": 1800}, "accountPeriodYear"),
            ({"account_period_number": 13}, "accountPeriodNumber"),
        ],
    )
    def test_a_refusal_applies_nothing(
        self, state: EnergyCapState, seeded: SeededPeriod, changes: dict[str, object], why: str
    ) -> None:
        if changes.get("bill_ids") == "unknown":
            changes["bill_ids"] = (*seeded.eligible_ids[:3], 999_999)
        request = dataclasses.replace(reverse(seeded.eligible_ids[:3]), **changes)  # type: ignore[arg-type]  # ill-typed on purpose: refused as on the wire
        before = fingerprint(state)
        with pytest.raises(SimError, match=why) as raised:
            state.reverse_bills(request)
        assert raised.value.status == 400
        assert fingerprint(state) == before
        counters = state.counters()
        assert counters["reversals"] == {}
        assert counters["reverse_calls"] == []
        assert len(counters["refused_writes"]) == 1

    def test_a_batch_code_in_use_in_any_case_is_refused_and_counted(
        self, state: EnergyCapState, seeded: SeededPeriod
    ) -> None:
        first, second = seeded.eligible_ids[:2]
        state.reverse_bills(reverse([first], "RB-CODE"))
        before = fingerprint(state)
        with pytest.raises(SimError, match="already exists"):
            state.reverse_bills(reverse([second], "rb-code"))
        with pytest.raises(SimError, match="already exists"):
            state.reverse_bills(reverse([second], "IMP-202510"))  # the seeded import batch
        assert fingerprint(state) == before
        counters = state.counters()
        assert counters["batch_code_attempts"] == {"RB-CODE": 1, "rb-code": 1, "IMP-202510": 1}
        assert counters["batches"] == {"RB-CODE": 1}


class TestLists:
    def test_default_page_size_and_ascending_ids(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        page = state.list_bills(None, 1, None)
        assert page.page_size == 250
        assert page.total == len(state.bills)
        assert page.total_pages == 1
        assert [b.bill_id for b in page.items] == sorted(state.bills)

    def test_pages_follow_the_answered_size(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        selection = "accountPeriod equals '202510'"
        pages = [state.list_bills(selection, n, 100) for n in (1, 2, 3, 4)]
        assert [len(p.items) for p in pages] == [100, 100, len(seeded.bill_ids) - 200, 0]
        assert {p.total_pages for p in pages} == {3}
        assert [b.bill_id for p in pages for b in p.items] == sorted(seeded.bill_ids)

    def test_the_size_is_capped_silently(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        assert state.list_bills(None, 1, 5000).page_size == 1000
        state.faults.update(page_cap=40)
        page = state.list_bills(None, 2, 100)
        assert (page.page_size, len(page.items), page.total_pages) == (40, 40, math.ceil(len(state.bills) / 40))

    def test_no_match_has_no_pages(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        page = state.list_bills("accountCode equals 'NOPE'", 1, None)
        assert (page.items, page.total, page.total_pages) == ([], 0, 0)

    @pytest.mark.parametrize(("number", "size"), [(0, None), (-1, 10), (1, 0)])
    def test_bad_paging_is_a_400(self, state: EnergyCapState, number: int, size: int | None) -> None:
        with pytest.raises(SimError, match="must be at least 1"):
            state.list_bills(None, number, size)

    def test_a_cached_selection_sees_new_bills(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        selection = "accountPeriod equals '202510'"
        before = state.list_bills(selection, 1, 1000).total
        state.reverse_bills(reverse(seeded.eligible_ids[:3]))
        after = state.list_bills(selection, 1, 1000)
        assert after.total == before + 3
        assert after.items[0].reversed_by_bill_id is not None or after.items[0].skip_reason() is not None

    def test_batches_and_tasks_by_code(self, state: EnergyCapState, seeded: SeededPeriod) -> None:
        state.reverse_bills(reverse(seeded.eligible_ids[:1], "RB-LIST"))
        assert [b.batch_code for b in state.list_batches("batchCode equals 'rb-list'", 1, None).items] == ["RB-LIST"]
        assert state.list_batches("batchCode equals 'NOPE'", 1, None).total == 0
        with pytest.raises(SimError, match="not a filterable field of batches"):
            state.list_batches("accountCode equals 'X'", 1, None)
        assert state.list_tasks("batchCode equals 'RB-LIST'", 1, None).total == 0

    def test_unknown_ids_are_not_found(self, state: EnergyCapState) -> None:
        for read in (lambda: state.bill(1), lambda: state.batch(1), lambda: state.task("nope")):
            with pytest.raises(NotFound) as raised:
                read()
            assert raised.value.status == 404


class TestKeys:
    def test_the_key_reads_and_writes(self, state: EnergyCapState) -> None:
        state.authorize(API_KEY, write=True)

    @pytest.mark.parametrize("key", [None, "", "wrong", "Bearer " + API_KEY])
    def test_an_unknown_key_is_a_401(self, state: EnergyCapState, key: str | None) -> None:
        with pytest.raises(Unauthorized):
            state.authorize(key, write=False)

    def test_a_key_without_bills_and_batches_reads_but_cannot_write(self, state: EnergyCapState) -> None:
        state.add_api_key("reader", bills_and_batches=False)
        state.authorize("reader", write=False)
        with pytest.raises(Forbidden, match="BillsAndBatches"):
            state.authorize("reader", write=True)

    def test_a_revoked_key_is_a_401(self, state: EnergyCapState) -> None:
        assert state.revoke_api_key(API_KEY)
        with pytest.raises(Unauthorized):
            state.authorize(API_KEY, write=False)
