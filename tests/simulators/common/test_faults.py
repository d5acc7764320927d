"""The shared fault settings and the random decisions made from them (injected rng, no HTTP)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from simulators.common.faults import FaultInjector, FaultKind, Faults, merge_patch


def kinds(injector: FaultInjector[Any], operation: str, n: int, *, api: bool = True) -> Counter[FaultKind | None]:
    return Counter(injector.decide(operation, api=api).kind for _ in range(n))


class TestDecisions:
    def test_no_faults_by_default(self) -> None:
        decision = FaultInjector(Faults()).decide("InvoiceSummary.get")
        assert (decision.kind, decision.delay_seconds) == (None, 0.0)

    @pytest.mark.parametrize(
        ("setting", "kind"),
        [
            ("p_429", FaultKind.TOO_MANY_REQUESTS),
            ("p_500", FaultKind.SERVER_ERROR),
            ("p_503_html", FaultKind.MAINTENANCE_HTML),
            ("p_hang", FaultKind.HANG),
            ("p_reply_lost", FaultKind.REPLY_LOST),
            ("p_html_200", FaultKind.HTML_200),
            ("p_truncated_json", FaultKind.TRUNCATED_JSON),
        ],
    )
    def test_certain_fault(self, setting: str, kind: FaultKind) -> None:
        injector = FaultInjector(Faults(**{setting: 1.0}))
        assert kinds(injector, "Invoice.ProcessCashReversal", 20) == {kind: 20}

    def test_probabilities_are_honoured_with_a_seeded_rng(self) -> None:
        injector = FaultInjector(Faults(p_429=0.2, p_500=0.1), random.Random(5))
        seen = kinds(injector, "InvoiceSummary.get", 5000)
        assert 900 < seen[FaultKind.TOO_MANY_REQUESTS] < 1100
        assert 400 < seen[FaultKind.SERVER_ERROR] < 600

    def test_same_rng_seed_same_decisions(self) -> None:
        def run() -> list[FaultKind | None]:
            injector = FaultInjector(Faults(p_429=0.3, p_500=0.3, jitter_ms=5), random.Random(9))
            return [injector.decide("token", api=False).kind or injector.decide("x").kind for _ in range(100)]

        assert run() == run()

    def test_latency_and_jitter(self) -> None:
        injector = FaultInjector(Faults(latency_ms=40, jitter_ms=10), random.Random(1))
        delays = [injector.decide("InvoiceSummary.get").delay_seconds for _ in range(200)]
        assert all(0.040 <= d <= 0.050 for d in delays)
        assert len(set(delays)) > 100

    def test_fault_operations_limit_the_faults(self) -> None:
        injector = FaultInjector(Faults(p_500=1.0, fault_operations=frozenset({"Invoice.ProcessCashReversal"})))
        assert injector.decide("Invoice.ProcessCashReversal").kind is FaultKind.SERVER_ERROR
        assert injector.decide("Invoice.CanCashInvoiceBeReversed").kind is None
        assert injector.decide("InvoiceSummary.get").kind is None

    def test_token_is_faulted_only_when_named(self) -> None:
        everything = FaultInjector(Faults(p_500=1.0))
        assert everything.decide("token", api=False).kind is None
        named = FaultInjector(Faults(p_500=1.0, fault_operations=frozenset({"token"})))
        assert named.decide("token", api=False).kind is FaultKind.SERVER_ERROR

    def test_only_reply_lost_and_truncated_apply_the_operation(self) -> None:
        assert {k for k in FaultKind if k.applies_operation} == {FaultKind.REPLY_LOST, FaultKind.TRUNCATED_JSON}


class TestMergePatch:
    def test_merge_patch(self) -> None:
        assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": 5}) == {
            "a": 1,
            "b": {"d": 3, "e": 4},
            "f": 5,
        }


class TestUpdates:
    def test_a_platform_model_stays_that_model(self) -> None:
        class PlatformFaults(Faults):
            page_cap: int = 100

        injector = FaultInjector(PlatformFaults(p_500=0.5))
        updated = injector.update({"page_cap": 7, "p_500": None})
        assert isinstance(updated, PlatformFaults)
        assert (updated.page_cap, updated.p_500) == (7, 0.0)
        assert injector.settings is updated
