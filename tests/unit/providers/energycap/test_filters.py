"""The filter builder: only the decided subset comes out, quoted so it cannot mean anything else."""

from __future__ import annotations

import pytest

from orchestrator.adapters.providers.energycap.filters import MAX_LIST_VALUES, Field, Op, chunked, where


class TestWhere:
    @pytest.mark.parametrize(
        ("field", "op", "values", "expected"),
        [
            (Field.BILL_ID, Op.EQUALS, (100017,), "billId equals '100017'"),
            (Field.BILL_ID, Op.ONE_OF, (1, 2, 3), "billId one of '1'|'2'|'3'"),
            (Field.ACCOUNT_ID, Op.EQUALS, (7,), "accountId equals '7'"),
            (Field.ACCOUNT_ID, Op.ONE_OF, (7, 8), "accountId one of '7'|'8'"),
            (Field.ACCOUNT_CODE, Op.EQUALS, ("AC-1",), "accountCode equals 'AC-1'"),
            (Field.ACCOUNT_CODE, Op.NOT_EQUALS, ("AC-1",), "accountCode not equals 'AC-1'"),
            (Field.ACCOUNT_CODE, Op.ONE_OF, ("a b", "c|d"), "accountCode one of 'a b'|'c|d'"),
            (Field.ACCOUNT_CODE, Op.NOT_ONE_OF, ("x",), "accountCode not one of 'x'"),
            (Field.ACCOUNT_PERIOD, Op.EQUALS, (202510,), "accountPeriod equals '202510'"),
            (Field.ACCOUNT_PERIOD, Op.NOT_EQUALS, (202512,), "accountPeriod not equals '202512'"),
            (Field.BILLING_PERIOD, Op.EQUALS, (190001,), "billingPeriod equals '190001'"),
            (Field.BATCH_CODE, Op.EQUALS, ("RB-7F3A21C0-0001",), "batchCode equals 'RB-7F3A21C0-0001'"),
            (Field.BATCH_CODE, Op.ONE_OF, ("A", "B"), "batchCode one of 'A'|'B'"),
        ],
    )
    def test_renders_the_subset(self, field: Field, op: Op, values: tuple[int | str, ...], expected: str) -> None:
        assert str(where(field, op, *values)) == expected

    def test_clauses_join_with_and(self) -> None:
        selection = where(Field.ACCOUNT_PERIOD, Op.EQUALS, 202510) & where(
            Field.ACCOUNT_CODE, Op.ONE_OF, "AC-10028", "AC-10063"
        )
        assert str(selection) == "accountPeriod equals '202510' and accountCode one of 'AC-10028'|'AC-10063'"

    @pytest.mark.parametrize(
        ("field", "op", "values", "why"),
        [
            (Field.BILL_ID, Op.NOT_EQUALS, (1,), "cannot be filtered with 'not equals'"),
            (Field.BILL_ID, Op.NOT_ONE_OF, (1,), "cannot be filtered"),
            (Field.ACCOUNT_PERIOD, Op.ONE_OF, (202510,), "cannot be filtered"),
            (Field.BATCH_CODE, Op.NOT_EQUALS, ("A",), "cannot be filtered"),
            (Field.BILL_ID, Op.EQUALS, (), "needs a value"),
            (Field.BILL_ID, Op.EQUALS, (1, 2), "takes one value"),
            (Field.BILL_ID, Op.EQUALS, ("1",), "whole number"),
            (Field.BILL_ID, Op.EQUALS, (True,), "whole number"),
            (Field.BILL_ID, Op.EQUALS, (0,), "whole number"),
            (Field.ACCOUNT_PERIOD, Op.EQUALS, (202513,), "period yyyymm"),
            (Field.ACCOUNT_PERIOD, Op.EQUALS, (2025,), "period yyyymm"),
            (Field.ACCOUNT_PERIOD, Op.EQUALS, ("202510",), "period yyyymm"),
            (Field.ACCOUNT_CODE, Op.EQUALS, (10,), "takes text"),
            (Field.ACCOUNT_CODE, Op.EQUALS, ("",), "1 to 255 characters"),
            (Field.ACCOUNT_CODE, Op.EQUALS, ("x" * 256,), "1 to 255 characters"),
            (Field.ACCOUNT_CODE, Op.EQUALS, ("O'BRIEN",), "cannot be quoted safely"),
            (Field.ACCOUNT_CODE, Op.EQUALS, ("A' or accountCode equals 'B",), "cannot be quoted safely"),
            (Field.BATCH_CODE, Op.EQUALS, ("A\nB",), "cannot be quoted safely"),
            (Field.BILL_ID, Op.ONE_OF, tuple(range(1, MAX_LIST_VALUES + 2)), "at most 100 values"),
        ],
    )
    def test_refuses_anything_else(self, field: Field, op: Op, values: tuple[int | str, ...], why: str) -> None:
        with pytest.raises(ValueError, match=why):
            where(field, op, *values)

    def test_one_hundred_values_are_fine(self) -> None:
        assert str(where(Field.BILL_ID, Op.ONE_OF, *range(1, 101))).count("|") == 99


class TestChunked:
    def test_splits_into_lists_of_at_most_one_hundred_dropping_duplicates(self) -> None:
        ids = [*range(1, 251), 5, 6]
        filters = [str(f) for f in chunked(Field.BILL_ID, ids)]
        assert [f.count("'") // 2 for f in filters] == [100, 100, 50]
        assert filters[0].startswith("billId one of '1'|'2'")
        assert filters[2].endswith("'250'")

    def test_smaller_chunks_and_nothing_for_no_values(self) -> None:
        assert [str(f) for f in chunked(Field.BATCH_CODE, ["A", "B", "C"], size=2)] == [
            "batchCode one of 'A'|'B'",
            "batchCode one of 'C'",
        ]
        assert list(chunked(Field.BILL_ID, [])) == []

    @pytest.mark.parametrize("size", [0, 101])
    def test_the_size_stays_in_the_subset(self, size: int) -> None:
        with pytest.raises(ValueError, match="size must be between 1 and 100"):
            list(chunked(Field.BILL_ID, [1], size=size))

    def test_chunks_are_checked_like_any_clause(self) -> None:
        with pytest.raises(ValueError, match="cannot be filtered"):
            list(chunked(Field.ACCOUNT_PERIOD, [202510]))
