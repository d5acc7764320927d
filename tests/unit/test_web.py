"""The web view's rules without a server: who may see it, what an operator is told to run, the chart."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import SecretStr

from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.run import ItemState, ReasonCode, RunState
from orchestrator.entrypoints.web.auth import BasicAuth, web_auth
from orchestrator.entrypoints.web.chart import activity_svg
from orchestrator.services.views import Activity, ActivityBucket, Outcomes, Progress, operator_actions

SECRET = SecretStr("operator:s3cret-pass")
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104  # what the view must refuse to serve open on


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


class TestBasicAuth:
    @pytest.mark.parametrize(
        ("header", "allowed"),
        [
            (basic("operator:s3cret-pass"), True),
            ("basic " + base64.b64encode(b"operator:s3cret-pass").decode(), True),
            (basic("operator:s3cret-pas"), False),
            (basic("Operator:s3cret-pass"), False),
            (basic("operator:s3cret-pass "), False),
            ("Bearer s3cret-pass", False),
            ("Basic not-base64!", False),
            ("Basic ", False),
            ("", False),
            (None, False),
        ],
    )
    def test_allows_only_the_exact_credentials(self, header: str | None, allowed: bool) -> None:
        assert BasicAuth.parse(SECRET).allows(header) is allowed

    def test_its_repr_shows_no_secret(self) -> None:
        assert "s3cret" not in repr(BasicAuth.parse(SECRET))


class TestWebAuth:
    @pytest.mark.parametrize("address", ["127.0.0.1", EVERY_INTERFACE, "::"])
    def test_credentials_apply_wherever_it_listens(self, address: str) -> None:
        assert web_auth(SECRET, address=address, insecure_local=False) is not None
        assert web_auth(SECRET, address=address, insecure_local=True) is not None

    @pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
    def test_open_only_on_loopback_and_only_when_asked(self, address: str) -> None:
        assert web_auth(None, address=address, insecure_local=True) is None
        with pytest.raises(ConfigurationError, match="REBILL_WEB_BASIC_AUTH must be set"):
            web_auth(None, address=address, insecure_local=False)

    @pytest.mark.parametrize("address", [EVERY_INTERFACE, "::", "192.168.1.20", "localhost"])
    def test_never_open_beyond_loopback(self, address: str) -> None:
        with pytest.raises(ConfigurationError, match=r"only on 127\.0\.0\.1 or ::1"):
            web_auth(None, address=address, insecure_local=True)
        with pytest.raises(ConfigurationError, match="REBILL_WEB_BASIC_AUTH must be set"):
            web_auth(SecretStr(""), address=address, insecure_local=False)

    @pytest.mark.parametrize("value", ["no-colon-secret", ":secret-pw", "secret-user:"])
    def test_malformed_credentials_are_refused_without_echoing_them(self, value: str) -> None:
        with pytest.raises(ConfigurationError, match="user:password") as raised:
            web_auth(SecretStr(value), address="127.0.0.1", insecure_local=True)
        assert "secret" not in str(raised.value)


class TestOperatorActions:
    @pytest.mark.parametrize(
        ("state", "code", "rebill_sent", "commands"),
        [
            (RunState.NEEDS_ATTENTION, ReasonCode.FAILED_ITEMS, False, ["rebill retry R --wait", "rebill cancel R"]),
            (RunState.NEEDS_ATTENTION, ReasonCode.AWAITING_OPERATOR, True, ["rebill retry R --wait"]),
            (RunState.STALLED, ReasonCode.STALLED, True, ["rebill retry R --wait"]),
            (RunState.FAILED, ReasonCode.REBILL_REFUSED, False, ["rebill retry R --wait", "rebill cancel R"]),
            (RunState.FAILED, ReasonCode.BILLING_FAILED, True, ["rebill status R"]),
            (RunState.REVERSING, None, False, ["rebill retry R --wait", "rebill cancel R"]),
            (RunState.POLLING, None, True, ["rebill retry R --wait"]),
            (RunState.COMPLETED, None, True, []),
            (RunState.CANCELLED, ReasonCode.CANCELLED, False, []),
            (RunState.DRY_RUN, None, False, []),
        ],
    )
    def test_what_applies_per_state_and_reason(
        self, state: RunState, code: ReasonCode | None, rebill_sent: bool, commands: list[str]
    ) -> None:
        actions = operator_actions("R", state, code, rebill_sent=rebill_sent)

        assert [action.command for action in actions] == commands
        assert all(action.effect for action in actions)


class TestProgress:
    def progress(self, *, settled_last_minute: int, planned: bool = True) -> Progress:
        outcomes = Outcomes({ItemState.REVERSED: 40, ItemState.PENDING: 60}, {ItemState.REVERSED: Decimal("10.00")})
        return Progress(
            run_id="R",
            state=RunState.REVERSING,
            reason=None,
            planned=planned,
            outcomes=outcomes,
            settled_last_minute=settled_last_minute,
            observed_at=datetime(2026, 12, 1, tzinfo=UTC),
            last_step=None,
        )

    def test_eta_from_the_last_minute_pace(self) -> None:
        assert self.progress(settled_last_minute=120).eta_seconds == 30.0

    def test_no_eta_without_pace_or_before_the_plan_is_complete(self) -> None:
        assert self.progress(settled_last_minute=0).eta_seconds is None
        assert self.progress(settled_last_minute=120, planned=False).eta_seconds is None


class TestActivityChart:
    def activity(self, *buckets: ActivityBucket) -> Activity:
        return Activity(start=datetime(2026, 12, 1, tzinfo=UTC), bucket_seconds=10.0, buckets=buckets)

    def test_draws_reversal_bars_and_the_tenant_cap(self) -> None:
        svg = activity_svg(
            self.activity(ActivityBucket(0, 50, 50, 100, 40_000.0), ActivityBucket(10, 0, 0, 0, 0.0)), cap=8
        )

        assert svg.count('class="reversals"') == 1
        assert "50 reversed (5.0/s)" in svg
        assert "tenant cap 8" in svg
        assert "http" not in svg

    def test_says_so_when_nothing_happened_yet(self) -> None:
        assert "No invoice settled" in activity_svg(self.activity(ActivityBucket(0, 0, 0, 0, 0.0)), cap=8)
