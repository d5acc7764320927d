"""The seed pages' examples as data: what `seed_examples` creates, so that every example body finds
the billing logs, invoices, parties and batch it names (`seeding.py` loads it; nothing here runs).

- billing `a9f0db70-…` (cycle "Regular Membership Fees", cash, completed) with party 101's open
  invoice 8158 (DUES 250 + JOUR 95 + INSIDMAG 25) and a mix: 8159 open (102), 8160 paid (103),
  8161 part-paid (104), 8162 pending payment (105), 8163+8164 open (106), 8165 open + 8166
  paid (107), and the legacy cash invoice `CASH:23415:…` open (23415);
- an older completed billing of the same cycle: 7001 paid (101), 7002 open (108), never touched;
- an accrual billing of "Chapter Dues" with invoice 2317 (InvoiceNumber 2317, party 102, open);
- 8200, party 101's fundraising pledge (600.00 in four scheduled payments of 150.00);
- 8300, party 101's event invoice; party 23500 (Acme Corporation) as its new bill-to;
- an unposted (Status 4) "Chapter Dues" run whose batch `DUES-2025-10-RB` is Ready (two invoices,
  for 103 and 104, once posted): what `batch_post.json` posts.

The adjusting page sends every Process* example for invoice 8158, whatever its kind:
`INVOICE_8158` holds the kinds it can be made ("accrual" keeps it in the billing as an accrual
invoice, "order" makes it a commerce order outside any billing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from simulators.imis.entities import ACCRUAL, CASH, ZERO, Source

#: The seed pages' billing cycle and effective date (also what `seed_billing` bills by default).
CYCLE = "Regular Membership Fees"
EFFECTIVE_DATE = datetime(2025, 9, 1, tzinfo=UTC)
BILLED_AT = datetime(2025, 8, 15, 9, 30, tzinfo=UTC)
OLDER_EFFECTIVE_DATE = datetime(2024, 9, 1, tzinfo=UTC)
OLDER_BILLED_AT = datetime(2024, 8, 15, 9, 30, tzinfo=UTC)

EXAMPLE_ORIGINAL_KEY = "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
# The progress log the pages' BillingLog POST creates and their task reports on (not seeded).
EXAMPLE_PROGRESS_KEY = "be2506c1-2324-4157-a1ae-bdba7a0dcbea"
EXAMPLE_OLDER_KEY = "0c6b7e3e-5f1a-4c1e-9d2b-6a8f3e2d1c00"
EXAMPLE_ACCRUAL_KEY = "5d2f9a41-7c3b-4e8a-b1f0-2e6c8d9a7b11"
EXAMPLE_UNPOSTED_KEY = "7e1c3b5a-2d4f-4a6b-9c8d-0e1f2a3b4c5d"
EXAMPLE_BATCH_ID = "DUES-2025-10-RB"
EXAMPLE_LEGACY_INVOICE_ID = "CASH:23415:3f2b8c4e-9a1d-4e6f-8b7c-1d2e3f4a5b6c"


@dataclass(frozen=True, slots=True)
class ExampleLine:
    product_code: str
    description: str
    unit_price: Decimal
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class ExampleScheduledPayment:
    scheduled_payment_id: str
    amount: Decimal
    due_date: datetime


@dataclass(frozen=True, slots=True)
class ExampleInvoice:
    invoice_id: str
    party_id: str  # bill-to and sold-to
    lines: tuple[ExampleLine, ...]
    billing_log_key: str | None
    number: int | None = None  # InvoiceNumber, when the id is not one
    accounting_method: int = CASH
    source: Source = Source.DUES
    paid: Decimal = ZERO
    pending: Decimal = ZERO
    shipping: Decimal = ZERO
    handling: Decimal = ZERO
    invoice_date: datetime = BILLED_AT
    due_date: datetime = EFFECTIVE_DATE
    description: str = f"{CYCLE} 2025"
    schedule: tuple[ExampleScheduledPayment, ...] = ()


@dataclass(frozen=True, slots=True)
class UnpostedBatch:
    """A Ready batch: posting it bills each party once, for `lines`."""

    batch_id: str
    party_ids: tuple[str, ...]
    lines: tuple[ExampleLine, ...]
    description: str


@dataclass(frozen=True, slots=True)
class ExampleBilling:
    """A billing run's log: completed with a posted batch, or (with `unposted`) waiting at Status 4."""

    key: str
    cycle_name: str
    accounting_method: int
    effective_date: datetime
    billed_at: datetime
    unposted: UnpostedBatch | None = None


def _dues(price: str = "250.00") -> tuple[ExampleLine, ...]:
    return (ExampleLine("DUES", "Membership dues", Decimal(price)),)


_CHAPTER_DUES = (ExampleLine("CHAPTER", "Chapter dues", Decimal("40.00")),)

PARTIES: tuple[tuple[str, str], ...] = (
    ("101", "Alex Member"),
    ("102", "Blair Okafor"),
    ("103", "Casey Larsen"),
    ("104", "Dana Moreau"),
    ("105", "Emery Tanaka"),
    ("106", "Frankie Reyes"),
    ("107", "Gale Haddad"),
    ("108", "Harper Smith"),
    ("23415", "Indigo Kowalski"),
    ("23500", "Acme Corporation"),
)

#: In creation order (lists answer in it). The original billing is the one the pages reverse; the
#: older billings of its cycle are the ones no reverse-and-rebill of it may touch.
ORIGINAL_BILLING = ExampleBilling(EXAMPLE_ORIGINAL_KEY, CYCLE, CASH, EFFECTIVE_DATE, BILLED_AT)
OLDER_BILLINGS = (ExampleBilling(EXAMPLE_OLDER_KEY, CYCLE, CASH, OLDER_EFFECTIVE_DATE, OLDER_BILLED_AT),)
BILLINGS: tuple[ExampleBilling, ...] = (
    *OLDER_BILLINGS,
    ORIGINAL_BILLING,
    ExampleBilling(EXAMPLE_ACCRUAL_KEY, "Chapter Dues", ACCRUAL, EFFECTIVE_DATE, BILLED_AT),
    # An accrual renewal run left unposted: `batch_post.json` posts its batch.
    ExampleBilling(
        EXAMPLE_UNPOSTED_KEY,
        "Chapter Dues",
        ACCRUAL,
        datetime(2025, 10, 1, tzinfo=UTC),
        datetime(2025, 9, 14, 9, 30, tzinfo=UTC),
        unposted=UnpostedBatch(
            EXAMPLE_BATCH_ID,
            ("103", "104"),
            (ExampleLine("CHAPTER", "Chapter dues", Decimal("120.00")),),
            "Chapter Dues 2025-10",
        ),
    ),
)

_CASH_8158 = ExampleInvoice(
    "8158",
    "101",
    (
        ExampleLine("DUES", "Membership dues", Decimal("250.00")),
        ExampleLine("JOUR", "Journal subscription", Decimal("95.00")),
        ExampleLine("INSIDMAG", "Inside magazine", Decimal("25.00")),
    ),
    EXAMPLE_ORIGINAL_KEY,
)

#: The kinds `seed_examples(invoice_8158=...)` can make invoice 8158 (INVOICES holds the cash one).
INVOICE_8158: dict[str, ExampleInvoice] = {
    "cash": _CASH_8158,
    "accrual": replace(_CASH_8158, accounting_method=ACCRUAL),
    "order": ExampleInvoice(
        "8158",
        "101",
        (ExampleLine("BOOK001", "Governance handbook", Decimal("49.95"), quantity=2),),
        None,
        source=Source.ORDER,
        shipping=Decimal("15.00"),
        handling=Decimal("5.00"),
        description="Order 8158",
    ),
}

#: In creation order (lists answer in it).
INVOICES: tuple[ExampleInvoice, ...] = (
    ExampleInvoice(
        "7001", "101", _dues("240.00"), EXAMPLE_OLDER_KEY, paid=Decimal("240.00"), invoice_date=OLDER_BILLED_AT
    ),
    ExampleInvoice("7002", "108", _dues("240.00"), EXAMPLE_OLDER_KEY, invoice_date=OLDER_BILLED_AT),
    _CASH_8158,
    ExampleInvoice("8159", "102", _dues(), EXAMPLE_ORIGINAL_KEY),
    ExampleInvoice("8160", "103", _dues(), EXAMPLE_ORIGINAL_KEY, paid=Decimal("250.00")),
    ExampleInvoice("8161", "104", _dues(), EXAMPLE_ORIGINAL_KEY, paid=Decimal("100.00")),
    ExampleInvoice("8162", "105", _dues(), EXAMPLE_ORIGINAL_KEY, pending=Decimal("250.00")),
    ExampleInvoice("8163", "106", _dues(), EXAMPLE_ORIGINAL_KEY),
    ExampleInvoice("8164", "106", _CHAPTER_DUES, EXAMPLE_ORIGINAL_KEY),
    ExampleInvoice("8165", "107", _dues(), EXAMPLE_ORIGINAL_KEY),
    ExampleInvoice("8166", "107", _CHAPTER_DUES, EXAMPLE_ORIGINAL_KEY, paid=Decimal("40.00")),
    ExampleInvoice(EXAMPLE_LEGACY_INVOICE_ID, "23415", _dues("185.50"), EXAMPLE_ORIGINAL_KEY, number=8167),
    ExampleInvoice(
        "2317",
        "102",
        _dues("120.00"),
        EXAMPLE_ACCRUAL_KEY,
        accounting_method=ACCRUAL,
        description="Chapter Dues 2025",
    ),
    ExampleInvoice(
        "8200",
        "101",
        (ExampleLine("PLEDGE", "Annual fund pledge", Decimal("600.00")),),
        None,
        source=Source.FUNDRAISING,
        description="Annual fund pledge",
        schedule=(
            ExampleScheduledPayment("1", Decimal("150.00"), datetime(2025, 9, 1, tzinfo=UTC)),
            ExampleScheduledPayment("2", Decimal("150.00"), datetime(2025, 11, 30, tzinfo=UTC)),
            ExampleScheduledPayment("3", Decimal("150.00"), datetime(2026, 2, 28, tzinfo=UTC)),
            ExampleScheduledPayment("4", Decimal("150.00"), datetime(2026, 5, 29, tzinfo=UTC)),
        ),
    ),
    ExampleInvoice(
        "8300",
        "101",
        (ExampleLine("CONF25", "Annual conference registration", Decimal("495.00")),),
        None,
        source=Source.EVENT,
        description="Annual Conference 2025",
    ),
)
