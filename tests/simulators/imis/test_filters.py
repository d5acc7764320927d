"""The list queries' filters (`?Property=operation:value`), straight on the state (no HTTP)."""

from __future__ import annotations

import pytest

from simulators.imis.errors import BadRequest
from simulators.imis.examples import EXAMPLE_LEGACY_INVOICE_ID
from simulators.imis.filters import Filter
from simulators.imis.state import ImisState


class TestFindInvoices:
    def test_filters_combine(self, state: ImisState) -> None:
        examples = state.seed_examples()

        def ids(*filters: tuple[str, str]) -> list[str]:
            found, _ = state.find_invoices([Filter.parse(name, raw) for name, raw in filters])
            return [i.invoice_id for i in found]

        assert ids(("BillToPartyId", "101"), ("Balance", "gt:0")) == ["8158", "8200", "8300"]
        assert ids(("BillingLogKey", examples.original_key), ("BillToPartyId", "106")) == ["8163", "8164"]
        assert ids(("BillingLogKey", examples.original_key), ("Balance", "eq:0")) == ["8160", "8166"]
        assert ids(("InvoiceId", EXAMPLE_LEGACY_INVOICE_ID)) == [EXAMPLE_LEGACY_INVOICE_ID]
        assert ids(("InvoiceNumber", "between:8160|8162")) == ["8160", "8161", "8162"]
        assert ids(("SoldToPartyId", "in:105,108")) == ["7002", "8162"]
        assert ids(("AccountingMethod", "Accrual")) == ["2317"]
        assert ids(("billtopartyid", "ne:101"), ("BillingLogKey", examples.original_key))[:2] == ["8159", "8160"]

    def test_paging_is_stable_creation_order(self, state: ImisState) -> None:
        seeded = state.seed_billing(invoices=25, seed=8)
        key = [Filter.parse("BillingLogKey", seeded.original_key)]
        pages = [state.find_invoices(key, offset, 10) for offset in (0, 10, 20)]
        assert [total for _, total in pages] == [25, 25, 25]
        assert [i.invoice_id for page, _ in pages for i in page] == list(seeded.invoice_ids)

    def test_unknown_filter_property_is_a_bad_request(self, state: ImisState) -> None:
        with pytest.raises(BadRequest) as caught:
            state.find_invoices([Filter.parse("BilingLogKey", "x")])
        assert caught.value.field == "BilingLogKey"
        with pytest.raises(BadRequest):
            state.find_invoices([Filter.parse("Balance", "gt:lots")])
