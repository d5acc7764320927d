"""iMIS's own fault settings: per-invoice faults, and updates of the whole iMIS model (no HTTP).

How faults are drawn is tested with the kit, in `tests/simulators/common/test_faults.py`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simulators.imis.faults import FaultInjector, Faults


class TestInvoiceFaults:
    def test_invoice_faults(self) -> None:
        injector = FaultInjector(Faults(fail_invoices={"8158": "500"}))
        assert injector.invoice_fault("8158") == "500"
        assert injector.invoice_fault("8159") is None
        assert injector.invoice_fault(None) is None


class TestUpdates:
    def test_partial_update_keeps_the_rest(self) -> None:
        injector = FaultInjector(Faults(p_500=0.5, page_size_cap=50))
        updated = injector.update({"p_429": 0.1}, retry_after_seconds=3)
        assert (updated.p_429, updated.p_500, updated.page_size_cap, updated.retry_after_seconds) == (0.1, 0.5, 50, 3)
        assert injector.settings is updated

    def test_null_resets_a_setting_and_removes_an_invoice_entry(self) -> None:
        injector = FaultInjector(Faults(p_500=0.5, fail_invoices={"a": "500", "b": "html"}))
        injector.update({"fail_invoices": {"a": None, "c": "refuse"}, "p_500": None})
        assert injector.settings.fail_invoices == {"b": "html", "c": "refuse"}
        assert injector.settings.p_500 == 0.0

    @pytest.mark.parametrize(
        "patch",
        [
            {"p_500": 1.5},
            {"latency_ms": -1},
            {"refusal_style": "418"},
            {"rebill_outcome": "explode"},
            {"fail_invoices": {"8158": "boom"}},
            {"page_size_cap": 0},
            {"no_such_setting": 1},
        ],
    )
    def test_bad_values_are_rejected_and_nothing_changes(self, patch: dict[str, object]) -> None:
        injector = FaultInjector()
        before = injector.settings
        with pytest.raises(ValidationError):
            injector.update(patch)
        assert injector.settings is before

    def test_public_dict_round_trips(self) -> None:
        faults = Faults(fault_operations=frozenset({"b", "a"}), fail_invoices={"x": "truncated"})
        data = faults.public_dict()
        assert data["fault_operations"] == ["a", "b"]
        assert Faults.model_validate(data) == faults
