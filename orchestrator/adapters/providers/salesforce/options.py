"""What a Salesforce run is asked for (selector, options) and what the provider keeps between its steps.

All three are stored with the run as JSON and parsed back here, so a retry works from what was
decided when the run opened (the generate dates included: they are fixed then, not when the
generate calls go out).
"""

from __future__ import annotations

import re
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ID = re.compile(r"[A-Za-z0-9]{18}")
_ECHO = 40  # characters of a bad value echoed back in an error


def parse_record_id(value: str) -> str:
    """A Salesforce record id in its 18-character form (case-sensitive, kept as given), or ValueError."""
    text = value.strip()
    if not _ID.fullmatch(text):
        shown = text if len(text) <= _ECHO else text[:_ECHO] + "…"
        raise ValueError(
            f"{shown!r} is not an 18-character Salesforce id (letters and digits, e.g. 7Bk5g00000ReBiLAAQ)"
        )
    return text


class SalesforceSelector(BaseModel):
    """Which invoices: those of one invoice batch run, or those of one billing account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    invoice_batch_run: str | None = Field(
        None, description="Id of the InvoiceBatchRun whose invoices are voided and generated again."
    )
    billing_account: str | None = Field(
        None, description="Void and generate again the invoices of this billing account (its Account id) instead."
    )

    @field_validator("invoice_batch_run", "billing_account")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else parse_record_id(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> SalesforceSelector:
        if (self.invoice_batch_run is None) == (self.billing_account is None):
            raise ValueError(
                "choose the invoices by an invoice batch run (--invoice-batch-run) or by a billing account "
                "(--billing-account), one of the two"
            )
        return self


class SalesforceOptions(BaseModel):
    """Salesforce's own run options. The dates are filled in when the run opens (the plan shows them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    invoice_date: date | None = Field(None, description="invoiceDate of the new invoices (default: the target date).")
    target_date: date | None = Field(
        None,
        description="targetDate of the generate calls: periods up to it are billed (default: today in the org's "
        "time zone, REBILL_SALESFORCE_TIME_ZONE, fixed when the run opens and shown in the plan).",
    )
    draft: bool = Field(False, description="Generate the new invoices as Draft instead of Posted.")
    void_stuck_after_seconds: float = Field(
        900.0,
        gt=0,
        le=7 * 86_400,
        description="An invoice still Void In Progress this many seconds after the run began watching the voids "
        "makes the run NEEDS_ATTENTION, naming it.",
    )

    @property
    def action(self) -> str:
        """What generate makes of the new invoices: Posted, or Draft."""
        return "Draft" if self.draft else "Posted"


class SalesforceKept(BaseModel):
    """The provider's state of one run while it follows the voids and the new invoices."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: Voided invoices not yet seen Voided (None: not read yet; every voided invoice is then watched).
    void_pending: list[str] | None = None
    #: When the run began watching the voids (reset by `rebill retry` after a stuck void).
    void_watch_since: datetime | None = None
    voids_done: bool = False
    #: How many times the follow-up stopped for an operator: each `rebill retry` grants the recoveries anew.
    attention_rounds: int = 0
    #: Billing schedule id -> what Salesforce said when recovering it failed.
    recover_errors: dict[str, str] = Field(default_factory=dict)
