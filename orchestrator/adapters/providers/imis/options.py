"""What an iMIS run is asked for (selector, options) and what the provider keeps between its steps.

All three are stored with the run as JSON and parsed back here, so a retry works from what was
decided and read when the run started.
"""

from __future__ import annotations

import enum
import re
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.domain import limits
from orchestrator.domain.user_input import quoted

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def parse_billing_log_key(value: str) -> str:
    """A BillingLogKey as iMIS stores it (lower-case GUID, braces dropped), or ValueError saying why."""
    key = value.strip().strip("{}")
    if not _GUID.match(key):
        raise ValueError(
            f"{quoted(value)} is not a BillingLogKey: expected a GUID such as a9f0db70-d684-481a-84cd-d8fa1cd8f404"
        )
    return key.lower()


class RunMode(enum.StrEnum):
    ORCHESTRATED = "orchestrated"  # rebill reverses invoice by invoice, then sends the rebill alone
    NATIVE = "native"  # one server-side task with both actions (iMIS 20.3.208+)


class ImisSelector(BaseModel):
    """Which billing: the original BillingLog, and optionally one contact of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    billing_log: str = Field(description="BillingLogKey of the billing to reverse.")
    party_id: str | None = Field(
        None,
        max_length=limits.MAX_PARTY_ID_LENGTH,
        description="Single contact: reverse and rebill only this party's invoices.",
    )

    @field_validator("billing_log")
    @classmethod
    def _key(cls, value: str) -> str:
        return parse_billing_log_key(value)

    @field_validator("party_id")
    @classmethod
    def _party(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a party id cannot be empty")
        return value.strip() if value is not None else None


class ImisOptions(BaseModel):
    """iMIS's own run options; defaults come from the iMIS settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: RunMode = Field(
        RunMode.ORCHESTRATED, description="native: one server-side task with both actions (iMIS 20.3.208+)."
    )
    tracking_log: bool = Field(True, description="POST a 'Reversing invoices' BillingLog first.")
    adjustment_reason: str = Field("Reverse and rebill", description="AdjustmentReason sent with each reversal.")
    adjustment_date: date | None = Field(None, description="AdjustmentDate of the reversals; default: the day sent.")
    do_not_cancel_membership: bool = Field(
        True,
        description="DoNotCancelMembership on each reversal (memberships are kept by default).",
        json_schema_extra={"cli": "--keep-membership/--cancel-membership"},
    )
    automatically_post_batch: bool = Field(
        True,
        description="AutomaticallyPostBatch on the rebill.",
        json_schema_extra={"cli": "--auto-post-batch/--no-auto-post-batch"},
    )
    post_unposted_batch: bool = Field(
        True,
        description="Post the batch when the BillingLog stops at 4 (Unposted batch).",
        json_schema_extra={"cli": "--post-unposted-batch/--leave-unposted-batch"},
    )


class ImisKept(BaseModel):
    """The provider's state of one run: the original as read at start, and the logs it follows."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    original: dict[str, Any]
    tracking_log_key: str | None = None
    tracking_log_created: bool = False
    known_log_keys: list[str] | None = None  # logs that existed before the rebill, when iMIS names its log
    rebill_log_key: str | None = None
    batch_id: str | None = None
    batch_posted: bool = False
