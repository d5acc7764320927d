"""The simulator's reading of Aria requests: bodies, parameters, the query subset, each with its code."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest

from simulators.aria import wire
from simulators.aria.state import AccountRef, AriaError, Condition, ErrorCode, RebillLine

FORM = "application/x-www-form-urlencoded"


def code_of(call: Any, *args: Any, **kwargs: Any) -> ErrorCode:
    with pytest.raises(AriaError) as caught:
        call(*args, **kwargs)
    return caught.value.code


class TestBodies:
    def test_json_with_exact_decimals(self) -> None:
        params = wire.parse_body("application/json", b'{"rest_call": "gen_rb_m", "x": 44.10}')
        assert params == {"rest_call": "gen_rb_m", "x": Decimal("44.10")}

    @pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
    def test_unparsable_json_is_1012(self, body: bytes) -> None:
        assert code_of(wire.parse_body, "application/json", body) == ErrorCode.UNPARSABLE_JSON

    def test_form_with_arrays_as_json_text(self) -> None:
        body = urlencode({"rest_call": "gen_rb_m", "rb_line_items": '[{"line_no": 1, "rb_rate_per_unit": 0.125}]'})
        params = wire.parse_body(f"{FORM}; charset=utf-8", body.encode())
        assert params["rb_line_items"] == [{"line_no": 1, "rb_rate_per_unit": Decimal("0.125")}]
        assert params["rest_call"] == "gen_rb_m"

    def test_crescendo_bracket_keys_are_1016(self) -> None:
        body = urlencode({"rb_line_items[0][line_no]": "1"}).encode()
        assert code_of(wire.parse_body, FORM, body) == ErrorCode.INVALID_INPUT

    def test_a_form_array_that_is_not_json_is_1012(self) -> None:
        body = urlencode({"rb_line_items": "1|2|3"}).encode()
        assert code_of(wire.parse_body, FORM, body) == ErrorCode.UNPARSABLE_JSON


class TestParameters:
    @pytest.mark.parametrize(
        ("raw", "value"), [(7, 7), ("7", 7), (Decimal("7.0"), 7), (" 7 ", 7), (None, None), ("", None)]
    )
    def test_a_long_is_a_number_or_a_numeric_string(self, raw: Any, value: int | None) -> None:
        assert wire.optional_long({"n": raw}, "n") == value

    @pytest.mark.parametrize("raw", ["x", True, Decimal("7.5"), [7]])
    def test_anything_else_is_1016(self, raw: Any) -> None:
        assert code_of(wire.optional_long, {"n": raw}, "n") == ErrorCode.INVALID_INPUT

    def test_a_missing_long_is_1010(self) -> None:
        assert code_of(wire.long, {}, "orig_invoice_no") == ErrorCode.MISSING_PARAMETER

    @pytest.mark.parametrize(("raw", "value"), [("true", True), ("FALSE", False), (True, True), (None, None)])
    def test_booleans(self, raw: Any, value: bool | None) -> None:
        assert wire.optional_boolean({"b": raw}, "b") == value

    @pytest.mark.parametrize("raw", ["yes", "1", 1])
    def test_other_booleans_are_1033(self, raw: Any) -> None:
        assert code_of(wire.optional_boolean, {"b": raw}, "b") == ErrorCode.INVALID_BOOLEAN

    @pytest.mark.parametrize(("raw", "value"), [(1, True), ("0", False), ("true", True)])
    def test_do_collect_takes_both_spellings(self, raw: Any, value: bool) -> None:
        assert wire.optional_boolean({"do_collect": raw}, "do_collect", numeric=True) is value

    @pytest.mark.parametrize("raw", ["2025-10-1", "10/01/2025", "2025-13-01", 20251001])
    def test_bad_dates_are_1024(self, raw: Any) -> None:
        assert code_of(wire.optional_date, {"d": raw}, "d") == ErrorCode.INVALID_DATE

    def test_a_string_too_long_is_1016(self) -> None:
        assert (
            code_of(wire.optional_string, {"alt_caller_id": "x" * 31}, "alt_caller_id", 30) == ErrorCode.INVALID_INPUT
        )


class TestQuery:
    RUN = (Condition("bill_date", date(2025, 10, 1)), Condition("invoice_type_cd", "R", negated=True))

    @pytest.mark.parametrize(
        "text",
        [
            "bill_date = 2025-10-01 AND invoice_type_cd != R",
            "bill_date=2025-10-01 and invoice_type_cd!=R",
            "  bill_date = '2025-10-01'  AND  invoice_type_cd != \"R\" ORDER BY invoice_no ASC",
        ],
    )
    def test_the_decided_subset_with_or_without_spaces_and_quotes(self, text: str) -> None:
        query = wire.parse_query_string(text)
        assert query.conditions == self.RUN
        assert not query.descending

    def test_keys_and_order(self) -> None:
        query = wire.parse_query_string("acct_no = 3100135 AND client_acct_id = ACCT-1 ORDER BY invoice_no desc")
        assert query.conditions == (Condition("acct_no", 3100135), Condition("client_acct_id", "ACCT-1"))
        assert query.descending
        assert wire.parse_query_string("").conditions == ()

    @pytest.mark.parametrize(
        "text",
        [
            "last_updated = 2025-10-01",
            "bill_date > 2025-10-01",
            "acct_no = 1 OR acct_no = 2",
            "acct_no = abc",
            "invoice_type_cd =",
            "acct_no = 1 ORDER BY acct_no",
            "bill_date = 2025-10-01 ORDER BY bill_date",
        ],
    )
    def test_anything_else_is_1016(self, text: str) -> None:
        assert code_of(wire.parse_query_string, text) == ErrorCode.INVALID_INPUT

    def test_a_bad_bill_date_is_1024(self) -> None:
        assert code_of(wire.parse_query_string, "bill_date = 2025/10/01") == ErrorCode.INVALID_DATE

    @pytest.mark.parametrize(
        ("limit", "expected"), [(None, 100), (0, 100), (500, 500), (5000, 1000), ("250", 250), (-1, None)]
    )
    def test_limit_defaults_caps_silently_and_counts(self, limit: Any, expected: int | None) -> None:
        params = {"query_string": "acct_no = 1", "offset": 20}
        if limit is not None:
            params["limit"] = limit
        _, offset, page = wire.parse_query(params, page_cap=1000)
        assert (offset, page) == (20, expected)

    @pytest.mark.parametrize("params", [{"offset": -1}, {"limit": -2}, {"query_string": 5}])
    def test_bad_paging_is_1016(self, params: dict[str, Any]) -> None:
        assert code_of(wire.parse_query, params, page_cap=1000) == ErrorCode.INVALID_INPUT


REBILL = {
    "acct_no": 3100135,
    "orig_invoice_no": 41000007,
    "reason_cd": 2,
    "rb_comments": "Rate correction, run R-42",
    "rb_line_items": [
        {"line_no": 1, "service_no": 10001, "rb_rate_per_unit": Decimal("44.1")},
        {"line_no": 2, "client_service_id": "SEATS", "rb_units": "3"},
    ],
    "do_collect": 0,
    "do_write": "false",
    "alt_caller_id": "rebill",
    "optional_transaction_qualifiers": [{"qualifier_name": "run_id", "qualifier_value": "R-42"}],
}


class TestRebill:
    def test_the_contracts_example(self) -> None:
        request = wire.parse_rebill(REBILL)
        assert request.account == AccountRef(3100135)
        assert request.lines == (
            RebillLine(1, 10001, rate_per_unit=Decimal("44.1")),
            RebillLine(2, client_service_id="SEATS", units=Decimal(3)),
        )
        assert (request.do_write, request.do_collect, request.qualifiers) == (False, False, (("run_id", "R-42"),))

    def test_do_write_defaults_to_true(self) -> None:
        assert wire.parse_rebill({k: v for k, v in REBILL.items() if k != "do_write"}).do_write

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"acct_no": None}, ErrorCode.MISSING_PARAMETER),
            ({"orig_invoice_no": None}, ErrorCode.MISSING_PARAMETER),
            ({"reason_cd": None}, ErrorCode.MISSING_PARAMETER),
            ({"rb_line_items": None}, ErrorCode.MISSING_PARAMETER),
            ({"rb_line_items": []}, ErrorCode.MISSING_PARAMETER),
            ({"rb_line_items": [{"service_no": 1}]}, ErrorCode.MISSING_PARAMETER),
            ({"rb_line_items": [{"line_no": 1}]}, ErrorCode.MISSING_PARAMETER),
            ({"rb_line_items": [{"line_no": 1, "service_no": 1, "rb_amount": 5}]}, ErrorCode.INVALID_INPUT),
            ({"rb_line_items": [{"line_no": 1, "service_no": 1, "rb_rate_per_unit": "abc"}]}, ErrorCode.INVALID_INPUT),
            ({"rb_line_items": [{"line_no": 1, "service_no": 1, "rb_units": -1}]}, ErrorCode.INVALID_INPUT),
            ({"rb_line_items": {"line_no": 1}}, ErrorCode.INVALID_INPUT),
            ({"orig_invoice_no": "41000007x"}, ErrorCode.INVALID_INPUT),
            ({"rb_comments": "x" * 3001}, ErrorCode.INVALID_INPUT),
            ({"alt_caller_id": "x" * 31}, ErrorCode.INVALID_INPUT),
            (
                {"optional_transaction_qualifiers": [{"qualifier_name": "run_id", "qualifier_value": "x" * 101}]},
                ErrorCode.INVALID_INPUT,
            ),
            ({"do_write": "maybe"}, ErrorCode.INVALID_BOOLEAN),
            ({"do_collect": "2"}, ErrorCode.INVALID_BOOLEAN),
        ],
    )
    def test_refusals(self, change: dict[str, Any], code: ErrorCode) -> None:
        params = {k: v for k, v in {**REBILL, **change}.items() if v is not None}
        assert code_of(wire.parse_rebill, params) == code


class TestHistory:
    def test_master_plan_instance_id_is_required(self) -> None:
        assert code_of(wire.parse_history, {"acct_no": 1}) == ErrorCode.MISSING_PARAMETER

    def test_the_filters(self) -> None:
        request = wire.parse_history(
            {
                "acct_no": "1",
                "master_plan_instance_id": -1,
                "include_voided": "true",
                "rb_option": 2,
                "start_bill_date": "2025-09-01",
            }
        )
        assert (request.include_voided, request.rb_option, request.start_bill_date) == (True, 2, date(2025, 9, 1))

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"include_voided": "no"}, ErrorCode.INVALID_BOOLEAN),
            ({"rb_option": 3}, ErrorCode.INVALID_INPUT),
            ({"end_bill_date": "x"}, ErrorCode.INVALID_DATE),
        ],
    )
    def test_refusals(self, change: dict[str, Any], code: ErrorCode) -> None:
        assert code_of(wire.parse_history, {"acct_no": 1, "master_plan_instance_id": -1, **change}) == code


def test_a_double_in_exponent_form_is_kept_as_plain_digits() -> None:
    assert str(wire.optional_double({"r": "1E+2"}, "r")) == "100"
    assert str(wire.optional_double({"r": Decimal("1.25E-1")}, "r")) == "0.125"
