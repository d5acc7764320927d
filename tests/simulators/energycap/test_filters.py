"""The decided filter subset: what parses, what it selects, and the 400 for everything else."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from simulators.energycap import filters
from simulators.energycap.errors import SimError
from simulators.energycap.filters import Clause, Operator


@dataclass
class Row:
    bill_id: int
    code: str
    period: int


FIELDS: tuple[filters.FieldSpec[Row], ...] = (
    filters.FieldSpec("billId", filters.Kind.INT, filters.INT_OPERATORS, lambda r: r.bill_id),
    filters.FieldSpec("accountCode", filters.Kind.STRING, filters.ALL_OPERATORS, lambda r: r.code),
    filters.FieldSpec("accountPeriod", filters.Kind.PERIOD, filters.PERIOD_OPERATORS, lambda r: r.period),
    filters.FieldSpec("batchCode", filters.Kind.STRING, filters.INT_OPERATORS, lambda r: None),
)
ROWS = [Row(1, "AC-1", 202510), Row(2, "ac-2", 202510), Row(3, "AC-3", 202509), Row(4, "A'B|C and D", 202509)]


def select(text: str) -> list[int]:
    check = filters.compile_filter(text, FIELDS, "rows")
    assert check is not None
    return [row.bill_id for row in ROWS if check(row)]


class TestParse:
    def test_the_contract_example(self) -> None:
        clauses = filters.parse("accountPeriod equals '202510' and accountCode one of 'AC-10028'|'AC-10063'")
        assert clauses == [
            Clause("accountPeriod", Operator.EQUALS, ("202510",)),
            Clause("accountCode", Operator.ONE_OF, ("AC-10028", "AC-10063")),
        ]

    def test_keywords_are_case_blind_and_spacing_is_tolerated(self) -> None:
        clauses = filters.parse("  accountCode  NOT   One Of 'a' | 'b'   AND billId Equals '7' ")
        assert clauses == [
            Clause("accountCode", Operator.NOT_ONE_OF, ("a", "b")),
            Clause("billId", Operator.EQUALS, ("7",)),
        ]

    def test_a_quoted_value_keeps_spaces_pipes_and_the_word_and(self) -> None:
        assert filters.parse("accountCode equals 'x|y and z '") == [
            Clause("accountCode", Operator.EQUALS, ("x|y and z ",))
        ]

    @pytest.mark.parametrize("text", ["", "   "])
    def test_blank_is_no_filter(self, text: str) -> None:
        assert filters.parse(text) == []
        assert filters.compile_filter(text, FIELDS, "rows") is None


class TestEvaluate:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("accountPeriod equals '202510'", [1, 2]),
            ("accountPeriod not equals '202510'", [3, 4]),
            ("accountCode equals 'AC-2'", [2]),
            ("accountcode one of 'ac-1'|'AC-3'", [1, 3]),
            ("accountCode not equals 'ac-1'", [2, 3, 4]),
            ("accountCode not one of 'AC-1'|'ac-2'", [3, 4]),
            ("billId one of '1'|'4'|'99'", [1, 4]),
            ("billId equals '3'", [3]),
            ("accountPeriod equals '202510' and accountCode not equals 'AC-1'", [2]),
            ("accountPeriod equals '202510' and accountCode equals 'AC-3'", []),
        ],
    )
    def test_selects(self, text: str, expected: list[int]) -> None:
        assert select(text) == expected

    def test_a_missing_value_matches_not_equals_only(self) -> None:
        assert select("batchCode equals 'X'") == []

    def test_one_hundred_values_are_allowed(self) -> None:
        values = "|".join(f"'{n}'" for n in range(1, 101))
        assert select(f"billId one of {values}") == [1, 2, 3, 4]


class TestRefused:
    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("vendorCode equals 'X'", "not a filterable field"),
            ("totalCost equals '10'", "not a filterable field"),
            ("accountPeriod less than '202510'", "unsupported operator"),
            ("accountCode like 'AC%'", "unsupported operator"),
            ("accountPeriod between '202501'|'202512'", "unsupported operator"),
            ("billId not equals '1'", "not supported for billId"),
            ("billId not one of '1'", "not supported for billId"),
            ("accountPeriod one of '202510'", "not supported for accountPeriod"),
            ("batchCode not equals 'X'", "not supported for batchCode"),
            ("billId equals 'abc'", "whole numbers"),
            ("billId equals '-1'", "whole numbers"),
            ("accountPeriod equals '202513'", "period yyyymm"),
            ("accountPeriod equals '2025-10'", "period yyyymm"),
            ("billId equals '1'|'2'", "takes one value"),
            ("accountCode equals 'AC-1", "unterminated quote"),
            ("accountCode equals AC-1", "unsupported operator"),
            ("accountCode equals 'A' or billId equals '1'", "expected 'and'"),
            ("accountCode equals 'A' and", "expected a field name"),
            ("'x' equals 'y'", "expected a field name"),
            ("accountCode one of 'a'|", "expected a quoted value"),
        ],
    )
    def test_anything_outside_the_subset_is_a_400(self, text: str, why: str) -> None:
        with pytest.raises(SimError, match=why) as raised:
            filters.compile_filter(text, FIELDS, "rows")
        assert raised.value.status == 400

    def test_more_than_one_hundred_values(self) -> None:
        values = "|".join(f"'{n}'" for n in range(1, 102))
        with pytest.raises(SimError, match="at most 100 values"):
            filters.compile_filter(f"billId one of {values}", FIELDS, "rows")
