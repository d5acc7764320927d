"""Pure rules, table-tested."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from orchestrator.config import load_settings
from orchestrator.domain.billing import AccountingMethod, BillingLogStatus, Invoice, SkipReason
from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.run import PollVerdict, RunMode, RunOptions, judge_poll, rebill_run_name, retry_delay


def invoice(amount: str, balance: str, paid: str = "0", pending: str = "0") -> Invoice:
    return Invoice("1", AccountingMethod.CASH, Decimal(amount), Decimal(balance), Decimal(paid), Decimal(pending))


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (invoice("95.00", "95.00"), None),
        (invoice("95.00", "0.00", paid="95.00"), SkipReason.HAS_PAYMENT),
        (invoice("95.00", "75.00", paid="20.00"), SkipReason.HAS_PAYMENT),
        (invoice("95.00", "95.00", pending="10.00"), SkipReason.HAS_PENDING_PAYMENT),
        (invoice("95.00", "0.00"), SkipReason.ZERO_BALANCE),
        (invoice("0.00", "0.00"), SkipReason.ZERO_BALANCE),
        (invoice("95.00", "80.00"), SkipReason.HAS_PAYMENT),  # a credit applied: not untouched
    ],
)
def test_only_open_invoices_with_no_payments_are_reversed(candidate: Invoice, reason: SkipReason | None) -> None:
    assert candidate.skip_reason() is reason


@pytest.mark.parametrize(
    ("attempt", "retry_after", "jitter_picks", "expected"),
    [
        (1, None, "max", 1.0),
        (2, None, "max", 2.0),
        (4, None, "max", 8.0),
        (10, None, "max", 30.0),  # capped
        (3, None, "min", 0.0),  # full jitter may go to zero
        (1, 12.0, "min", 12.0),  # never sooner than Retry-After
        (1, 90.0, "max", 90.0),  # Retry-After above the cap is still honoured
    ],
)
def test_retry_delay(attempt: int, retry_after: float | None, jitter_picks: str, expected: float) -> None:
    def jitter(ceiling: float) -> float:
        return ceiling if jitter_picks == "max" else 0.0

    assert retry_delay(attempt, base=1.0, cap=30.0, retry_after=retry_after, jitter=jitter) == expected


S = BillingLogStatus


@pytest.mark.parametrize(
    ("status", "post", "posted", "quiet", "verdict"),
    [
        (S.COMPLETED, True, False, 0, PollVerdict.COMPLETED),
        (S.REVERSING, True, False, 10, PollVerdict.KEEP_POLLING),
        (S.PROCESSING, True, False, 10, PollVerdict.KEEP_POLLING),
        (S.PENDING, True, False, 10, PollVerdict.KEEP_POLLING),
        (S.UNPOSTED_BATCH, True, False, 0, PollVerdict.POST_BATCH),
        (S.UNPOSTED_BATCH, False, False, 0, PollVerdict.NEEDS_ATTENTION),
        (S.UNPOSTED_BATCH, True, True, 10, PollVerdict.KEEP_POLLING),
        (S.FAILED, True, False, 0, PollVerdict.FAILED),
        (S.BATCH_DELETED, True, False, 0, PollVerdict.FAILED),
        (S.PROCESSING, True, False, 61, PollVerdict.STALLED),
        (S.UNPOSTED_BATCH, True, True, 61, PollVerdict.STALLED),
    ],
)
def test_judge_poll(status: S, post: bool, posted: bool, quiet: float, verdict: PollVerdict) -> None:
    assert (
        judge_poll(
            status,
            post_unposted_batch=post,
            batch_already_posted=posted,
            seconds_since_change=quiet,
            stall_after_seconds=60,
        )
        is verdict
    )


def test_run_options_survive_the_ledger() -> None:
    options = RunOptions(mode=RunMode.NATIVE, party_id="101", adjustment_date=date(2026, 4, 23), chunk_size=7)
    assert RunOptions.from_json(options.to_json()) == options


def test_rebill_run_names_follow_the_seed_page() -> None:
    assert rebill_run_name("Regular Membership Fees", None) == "Rebill: Regular Membership Fees"
    assert rebill_run_name("Regular Membership Fees", "101") == "Rebill: Regular Membership Fees for 101"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REBILL_CHUNK_SIZE", "0"),
        ("REBILL_IMIS_MAX_CONCURRENCY", "many"),
        ("REBILL_IMIS_BASE_URL", "not a url"),
        ("REBILL_LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings()


def test_missing_tenant_settings_are_named() -> None:
    with pytest.raises(ConfigurationError, match="REBILL_IMIS_BASE_URL, REBILL_IMIS_USERNAME, REBILL_IMIS_PASSWORD"):
        load_settings(imis_base_url=None, imis_username=None, imis_password=None).require_imis()


@pytest.mark.parametrize(
    ("cap", "window", "expected"),
    [(4, None, 16), (8, None, 16), (24, None, 48), (24, 30, 30)],
    ids=["default-cap", "cap-8", "cap-24-follows-the-cap", "set-explicitly"],
)
def test_the_dispatch_window_lets_a_run_use_every_slot(cap: int, window: int | None, expected: int) -> None:
    # Each chunk in the broker has at most one call in flight: fewer chunks than slots would idle slots.
    assert load_settings(imis_max_concurrency=cap, dispatch_window=window).chunks_in_broker() == expected


def test_a_lease_shorter_than_a_write_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBILL_LEASE_SECONDS", "20")
    monkeypatch.setenv("REBILL_IMIS_TIMEOUT_SECONDS", "30")
    with pytest.raises(ConfigurationError, match=r"REBILL_LEASE_SECONDS \(20\) must exceed twice"):
        load_settings()
