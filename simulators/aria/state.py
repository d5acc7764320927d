"""The simulated Aria tenant: accounts, invoices and lines, every rule of gen_rb_m, no HTTP.

Like moto's `models.py`, this module knows nothing about requests or JSON: `wire.py` parses and
renders, `app.py` routes. One re-entrant lock (`AriaState.lock`) guards everything; the objects the
getters return are live, so read them while holding it.

Rules in short (`reference/aria-api.md`):
- An invoice's amount is the sum of its lines, each `units * rate_per_unit` rounded half-up to cents;
  `total_due` is what is left after payments and credits (0 once voided or rebilled).
- `gen_rb_m` on an original writes, at once, a credit memo equal to its amount (`credit`, `total_due`
  0) and a rebill invoice (`invoice_type_cd` R, numbered above every original) from the lines sent:
  a corrected rate or unit count where given, the original's where not; lines left out are marked
  `rb_excluded` and not rebilled; tax is recomputed at the original's rate.
- A second rebill of one original is refused with 3097, one of a voided invoice with 2003 (both
  counted). Paid invoices are rebilled (Aria refunds them), but counted as ineligible attempts, and
  so are rebills of rebill invoices: a run must skip all three kinds itself.
- A write holds its account's billing group from its arrival (`arrive`) to its reply (`leave`); a
  write arriving on the group meanwhile gets 3108 and changes nothing.
- `do_write: false` computes the same reply and changes nothing; no invoice number is consumed.
"""

from __future__ import annotations

import bisect
import enum
import hmac
import itertools
import operator
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from simulators.aria.faults import AriaFaultInjector, AriaFaults
from simulators.common import RequestCounters

ZERO = Decimal("0.00")
CENT = Decimal("0.01")

TAX_LINE = 2
REBILL_TYPE = "R"
ORIGINAL_TYPE = "F"
#: The first rebill invoice number: every original is numbered below it.
FIRST_REBILL_NO = 52_000_000
#: Reason codes the simulated client has defined; any other `reason_cd` gets 3024.
DEFAULT_REASON_CODES = frozenset(range(1, 10))


def cents(value: Decimal) -> Decimal:
    """Half-up to two places: how Aria rounds every amount."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


class ErrorCode(enum.IntEnum):
    """The `error_code`s of the contract's table that the simulator answers."""

    OK = 0
    UNEXPECTED = 1001
    AUTHENTICATION = 1004
    NO_ACCOUNT = 1009
    MISSING_PARAMETER = 1010
    UNPARSABLE_JSON = 1012
    INVALID_INPUT = 1016
    INVALID_DATE = 1024
    INVALID_BOOLEAN = 1033
    VOIDED = 2003
    NO_INVOICE = 3004
    INVALID_REASON = 3024
    ALREADY_REBILLED = 3097
    BILLING_GROUP_BUSY = 3108


class AriaError(Exception):
    """A business or input error: answered with HTTP 200 and this `error_code` / `error_msg`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    acct_no: int
    client_acct_id: str
    billing_group_no: int


@dataclass(frozen=True, slots=True)
class Service:
    service_no: int
    client_service_id: str
    name: str
    line_type: int

    @property
    def is_tax(self) -> bool:
        return self.line_type == TAX_LINE


@dataclass(slots=True)
class Line:
    line_no: int
    service: Service
    units: Decimal
    rate_per_unit: Decimal
    rb_excluded: bool = False
    rb_line_comments: str | None = None
    _amount: tuple[Decimal, Decimal, Decimal] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def amount(self) -> Decimal:
        """`units * rate_per_unit`, half-up to cents; kept while both are the same (immutable) Decimals."""
        kept, units, rate = self._amount, self.units, self.rate_per_unit
        if kept is not None and kept[0] is units and kept[1] is rate:
            return kept[2]
        amount = cents(units * rate)
        self._amount = (units, rate, amount)
        return amount


@dataclass(slots=True)
class Invoice:
    invoice_no: int
    account: Account
    bill_date: date
    lines: list[Line]
    invoice_type_cd: str = ORIGINAL_TYPE
    #: The rate of its tax line (None: no tax line), applied to the non-tax lines' total.
    tax_rate: Decimal | None = None
    payments: Decimal = ZERO
    paid_date: date | None = None
    voiding_event_no: int | None = None
    credit: Decimal = ZERO
    rb_no: int | None = None
    rb_reason_cd: int | None = None
    rb_comments: str | None = None
    orig_invoice_no: int | None = None
    created_by: str | None = None
    created_date: date | None = None
    qualifiers: tuple[tuple[str, str], ...] = ()

    @property
    def amount(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def total_due(self) -> Decimal:
        return self._due(self.amount)

    def amount_and_due(self) -> tuple[Decimal, Decimal]:
        """`amount` and `total_due`, the lines summed once (a page of headers shows both)."""
        amount = self.amount
        return amount, self._due(amount)

    def _due(self, amount: Decimal) -> Decimal:
        if self.voided or self.rebilled:
            return ZERO
        return max(ZERO, amount - self.payments - self.credit)

    @property
    def voided(self) -> bool:
        return self.voiding_event_no is not None

    @property
    def rebilled(self) -> bool:
        """Rebilled already: `rb_status` "True" and `rb_no` set."""
        return self.rb_no is not None

    @property
    def is_rebill(self) -> bool:
        return self.invoice_type_cd == REBILL_TYPE

    @property
    def unpaid(self) -> bool:
        return self.paid_date is None and self.payments == 0 and self.total_due == self.amount > 0

    @property
    def eligible(self) -> bool:
        """What a run may rebill: not voided, not a rebill, not rebilled, no payment."""
        return not self.voided and not self.is_rebill and not self.rebilled and self.unpaid

    def dump(self) -> dict[str, Any]:
        """Everything about the invoice, JSON-ready (money as strings), for assertions."""
        return {
            "invoice_no": self.invoice_no,
            "acct_no": self.account.acct_no,
            "client_acct_id": self.account.client_acct_id,
            "billing_group_no": self.account.billing_group_no,
            "bill_date": self.bill_date.isoformat(),
            "invoice_type_cd": self.invoice_type_cd,
            "amount": str(self.amount),
            "total_due": str(self.total_due),
            "payments": str(self.payments),
            "paid_date": None if self.paid_date is None else self.paid_date.isoformat(),
            "voiding_event_no": self.voiding_event_no,
            "credit": str(self.credit),
            "rb_no": self.rb_no,
            "rb_reason_cd": self.rb_reason_cd,
            "rb_comments": self.rb_comments,
            "orig_invoice_no": self.orig_invoice_no,
            "created_by": self.created_by,
            "qualifiers": [list(pair) for pair in self.qualifiers],
            "eligible": self.eligible,
            "lines": [
                {
                    "line_no": line.line_no,
                    "service_no": line.service.service_no,
                    "client_service_id": line.service.client_service_id,
                    "line_type": line.service.line_type,
                    "units": str(line.units),
                    "rate_per_unit": str(line.rate_per_unit),
                    "amount": str(line.amount),
                    "rb_excluded": line.rb_excluded,
                }
                for line in self.lines
            ],
        }


# --------------------------------------------------------------------------------------------
# Commands (what wire.py parses requests into)
# --------------------------------------------------------------------------------------------

QueryKey = Literal["bill_date", "acct_no", "invoice_no", "client_acct_id", "invoice_type_cd"]


@dataclass(frozen=True, slots=True)
class Condition:
    """`key = value` or `key != value` of an object query; `value` already typed for the key."""

    key: QueryKey
    value: date | int | str
    negated: bool = False

    def __call__(self, invoice: Invoice) -> bool:
        return (_QUERY_VALUES.get(self.key, _invoice_type_cd)(invoice) == self.value) != self.negated


@dataclass(frozen=True, slots=True)
class InvoiceQuery:
    conditions: tuple[Condition, ...] = ()
    descending: bool = False


@dataclass(frozen=True, slots=True)
class AccountRef:
    """`acct_no` or `client_acct_id`, as a request named the account."""

    acct_no: int | None = None
    client_acct_id: str | None = None


@dataclass(frozen=True, slots=True)
class RebillLine:
    line_no: int
    service_no: int | None = None
    client_service_id: str | None = None
    rate_per_unit: Decimal | None = None
    units: Decimal | None = None
    comments: str | None = None


@dataclass(frozen=True, slots=True)
class RebillRequest:
    account: AccountRef
    orig_invoice_no: int
    reason_cd: int
    lines: tuple[RebillLine, ...]
    comments: str | None = None
    do_write: bool = True
    do_collect: bool | None = None
    alt_caller_id: str | None = None
    qualifiers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    account: AccountRef
    start_bill_date: date | None = None
    end_bill_date: date | None = None
    include_voided: bool = False
    rb_option: Literal[0, 1, 2] = 0


@dataclass(frozen=True, slots=True)
class RebillPreview:
    """What a rebill makes (or would make): the new invoice's lines and amount."""

    original: Invoice
    lines: tuple[Line, ...]
    excluded_line_nos: frozenset[int]

    @property
    def amount(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)


@dataclass(frozen=True, slots=True)
class RebillResult:
    preview: RebillPreview
    request: RebillRequest
    invoice_no: int | None  # None for a dry run
    created_date: date


@dataclass(frozen=True, slots=True)
class Arrival:
    """A write arriving on a billing group: it holds the group, or finds it `busy` (another write holds it)."""

    billing_group_no: int
    seq: int
    busy: bool


# --------------------------------------------------------------------------------------------
# The state
# --------------------------------------------------------------------------------------------


class AriaState:
    """One simulated Aria client (tenant). Thread-safe."""

    def __init__(
        self,
        client_no: int = 7_000_123,
        auth_key: str = "sim-auth-key",
        *,
        reason_codes: Iterable[int] = DEFAULT_REASON_CODES,
        faults: AriaFaults | None = None,
        rng_seed: int = 0,
        today: date | None = None,
    ) -> None:
        self.client_no = client_no
        self.auth_key = auth_key
        self.reason_codes = frozenset(reason_codes)
        self._today = today
        self.faults = AriaFaultInjector(faults, random.Random(rng_seed))
        self.traffic = RequestCounters()
        self.lock = threading.RLock()
        self._arrivals = itertools.count(1)
        self._held: dict[int, int] = {}  # billing group -> the seq of the write in progress on it
        self._init_entities()
        self._init_counters()

    def _init_entities(self) -> None:
        self.accounts: dict[int, Account] = {}
        self._by_client_acct_id: dict[str, Account] = {}
        self.invoices: dict[int, Invoice] = {}
        self._numbers: list[int] = []  # every invoice number, ascending
        self._by_bill_date: dict[date, list[int]] = {}
        self._by_account: dict[int, list[int]] = {}
        self._next_rebill_no = FIRST_REBILL_NO
        self._next_void_event = 900_000

    def _init_counters(self) -> None:
        self._error_codes: Counter[int] = Counter()
        self._rebills: Counter[int] = Counter()
        self._gen_rb_m_calls = 0
        self._dry_runs = 0
        self._duplicates = 0
        self._ineligible = 0
        self._busy_refusals = 0

    def reset(self) -> None:
        """Forget every entity and counter (credentials, reason codes and fault settings are kept)."""
        with self.lock:
            self._init_entities()
            self.reset_counters()

    def close(self) -> None:
        """Nothing runs in the background: every call is answered synchronously."""

    @property
    def today(self) -> date:
        return self._today or datetime.now(UTC).date()

    # ---------------------------------------------------------------- auth

    def authenticate(self, client_no: int | None, auth_key: str | None) -> None:
        """AriaError 1004 unless both match (compared in constant time)."""
        if (
            client_no != self.client_no
            or auth_key is None
            or not hmac.compare_digest(auth_key.encode(), self.auth_key.encode())
        ):
            raise AriaError(ErrorCode.AUTHENTICATION, "authentication error")

    # ---------------------------------------------------------------- adding entities (seeding)

    def add_account(self, account: Account) -> Account:
        with self.lock:
            if account.acct_no in self.accounts or account.client_acct_id in self._by_client_acct_id:
                raise ValueError(f"account {account.acct_no} already exists")
            self.accounts[account.acct_no] = account
            self._by_client_acct_id[account.client_acct_id] = account
            return account

    def add_invoice(self, invoice: Invoice) -> Invoice:
        with self.lock:
            if invoice.invoice_no in self.invoices:
                raise ValueError(f"invoice {invoice.invoice_no} already exists")
            if invoice.account.acct_no not in self.accounts:
                raise ValueError(f"account {invoice.account.acct_no} does not exist")
            self.invoices[invoice.invoice_no] = invoice
            bisect.insort(self._numbers, invoice.invoice_no)
            bisect.insort(self._by_bill_date.setdefault(invoice.bill_date, []), invoice.invoice_no)
            bisect.insort(self._by_account.setdefault(invoice.account.acct_no, []), invoice.invoice_no)
            if invoice.invoice_no >= self._next_rebill_no:
                self._next_rebill_no = invoice.invoice_no + 1
            return invoice

    def rebill_now(self, orig_invoice_no: int, *, reason_cd: int, comments: str, rates: Sequence[Decimal]) -> Invoice:
        """Seeding: rebill an original outright with new rates for its non-tax lines (in order)."""
        with self.lock:
            original = self.invoices[orig_invoice_no]
            changes = iter(rates)
            lines = tuple(
                RebillLine(line.line_no, line.service.service_no, rate_per_unit=next(changes, None))
                for line in original.lines
                if not line.service.is_tax
            )
            request = RebillRequest(
                AccountRef(original.account.acct_no), orig_invoice_no, reason_cd, lines, comments, alt_caller_id="seed"
            )
            result = self._apply(request, self._preview(request, original), original.bill_date)
            assert result.invoice_no is not None
            return self.invoices[result.invoice_no]

    def void(self, invoice_no: int) -> Invoice:
        """Void an invoice (Aria's void_invoice_m); it can never be rebilled afterwards."""
        with self.lock:
            invoice = self._invoice(invoice_no)
            if invoice.voiding_event_no is None:
                invoice.voiding_event_no = self._next_void_event
                self._next_void_event += 1
            return invoice

    def pay(self, invoice_no: int, amount: Decimal, *, paid_date: date | None = None) -> Invoice:
        """Apply a payment; `paid_date` is set once the invoice is paid in full."""
        with self.lock:
            invoice = self._invoice(invoice_no)
            invoice.payments = cents(invoice.payments + amount)
            if invoice.payments >= invoice.amount - invoice.credit:
                invoice.paid_date = paid_date or self.today
            return invoice

    # ---------------------------------------------------------------- lookups

    def _invoice(self, invoice_no: int) -> Invoice:
        invoice = self.invoices.get(invoice_no)
        if invoice is None:
            raise AriaError(ErrorCode.NO_INVOICE, f"invoice {invoice_no} does not exist")
        return invoice

    def account(self, ref: AccountRef) -> Account:
        """The account a request names; 1009 when there is none, 1010 when it names none."""
        with self.lock:
            if ref.acct_no is not None:
                account = self.accounts.get(ref.acct_no)
            elif ref.client_acct_id is not None:
                account = self._by_client_acct_id.get(ref.client_acct_id)
            else:
                raise AriaError(ErrorCode.MISSING_PARAMETER, "missing required parameter: acct_no")
            if account is None:
                raise AriaError(ErrorCode.NO_ACCOUNT, "account does not exist")
            return account

    def invoice(self, invoice_no: int, account: AccountRef | None = None) -> Invoice:
        """`get_invoice_details_m`: the invoice, on that account when one is named (else 3004)."""
        with self.lock:
            owner = None if account is None or account == AccountRef() else self.account(account)
            invoice = self._invoice(invoice_no)
            if owner is not None and invoice.account != owner:
                raise AriaError(ErrorCode.NO_INVOICE, f"invoice {invoice_no} does not exist on this account")
            return invoice

    def query_invoices(self, query: InvoiceQuery, offset: int, limit: int | None) -> tuple[list[Invoice], int]:
        """`get_invoice_information_m`: the page at `offset` (`limit` None: none) and the total count."""
        with self.lock:
            matched = [self.invoices[n] for n in self._candidates(query.conditions)]
            for condition in query.conditions:  # one pass each: no generator per invoice
                matched = [invoice for invoice in matched if condition(invoice)]
            if query.descending:
                matched.reverse()
            page = [] if limit is None else matched[offset : offset + limit]
            return page, len(matched)

    def _candidates(self, conditions: Sequence[Condition]) -> Sequence[int]:
        """Invoice numbers (ascending) that may match: the smallest index an `=` condition allows."""
        for condition in conditions:
            value = condition.value
            if condition.negated:
                continue
            if condition.key == "invoice_no" and isinstance(value, int):
                return [value] if value in self.invoices else []
            if condition.key == "bill_date" and isinstance(value, date):
                return self._by_bill_date.get(value, [])
            if condition.key == "acct_no" and isinstance(value, int):
                return self._by_account.get(value, [])
        return self._numbers

    def history(self, request: HistoryRequest) -> list[Invoice]:
        """`get_invoice_history_m`: the account's invoices by number, voided ones only when asked."""
        with self.lock:
            account = self.account(request.account)
            rows = []
            for number in self._by_account.get(account.acct_no, []):
                invoice = self.invoices[number]
                if invoice.voided and not request.include_voided:
                    continue
                if request.start_bill_date is not None and invoice.bill_date < request.start_bill_date:
                    continue
                if request.end_bill_date is not None and invoice.bill_date > request.end_bill_date:
                    continue
                if request.rb_option == 1 and invoice.is_rebill:
                    continue
                if request.rb_option == 2 and not invoice.rebilled:
                    continue
                rows.append(invoice)
            return rows

    def dump_invoices(self, bill_date: date | None = None) -> list[dict[str, Any]]:
        with self.lock:
            numbers = self._numbers if bill_date is None else self._by_bill_date.get(bill_date, [])
            return [self.invoices[n].dump() for n in numbers]

    # ---------------------------------------------------------------- gen_rb_m

    def arrive(self, account: AccountRef) -> Arrival | None:
        """A write on the account's billing group starts: it holds the group until `leave`, unless
        another write holds it already (then it is `busy`). None: no such account."""
        with self.lock:
            try:
                group = self.account(account).billing_group_no
            except AriaError:
                return None
            arrival = Arrival(group, next(self._arrivals), busy=group in self._held)
            if not arrival.busy:
                self._held[group] = arrival.seq
            return arrival

    def leave(self, arrival: Arrival) -> None:
        with self.lock:
            if self._held.get(arrival.billing_group_no) == arrival.seq:
                del self._held[arrival.billing_group_no]

    def gen_rb_m(self, request: RebillRequest, arrival: Arrival | None = None) -> RebillResult:
        """Validate a gen_rb_m and apply it (a dry run: compute only). Raises AriaError for every refusal,
        which changes nothing but the counters.

        A write is refused with 3108 when it arrived on a busy billing group (`arrival`), or, without
        an arrival, while another write holds its group.
        """
        with self.lock:
            self._gen_rb_m_calls += 1
            if not request.do_write:
                self._dry_runs += 1
            account = self.account(request.account)
            if request.reason_cd not in self.reason_codes:
                raise AriaError(ErrorCode.INVALID_REASON, f"invalid reason code {request.reason_cd}")
            original = self._invoice(request.orig_invoice_no)
            if original.account != account:
                raise AriaError(
                    ErrorCode.NO_INVOICE, f"invoice {request.orig_invoice_no} does not exist on this account"
                )
            preview = self._preview(request, original)
            if request.do_write and original.rebilled:
                self._duplicates += 1
            elif request.do_write and not original.eligible:
                self._ineligible += 1
            if original.voided:
                raise AriaError(ErrorCode.VOIDED, f"invoice {original.invoice_no} has been voided")
            if original.rebilled:
                raise AriaError(
                    ErrorCode.ALREADY_REBILLED,
                    f"invoice {original.invoice_no} has already been rebilled (rebill invoice {original.rb_no})",
                )
            if not request.do_write:
                return RebillResult(preview, request, None, self.today)
            if self._busy(account.billing_group_no, arrival):
                self._busy_refusals += 1
                raise AriaError(ErrorCode.BILLING_GROUP_BUSY, "another invoice in progress for the same billing group")
            result = self._apply(request, preview, self.today)
            self._rebills[original.invoice_no] += 1
            return result

    def _busy(self, group: int, arrival: Arrival | None) -> bool:
        return arrival.busy if arrival is not None else group in self._held

    def _preview(self, request: RebillRequest, original: Invoice) -> RebillPreview:
        by_line_no = {line.line_no: line for line in original.lines}
        previous = 0
        new_lines: list[Line] = []
        for item in request.lines:
            line = by_line_no.get(item.line_no)
            if line is None:
                raise AriaError(ErrorCode.INVALID_INPUT, f"invalid line_no {item.line_no}")
            if item.line_no <= previous:
                raise AriaError(ErrorCode.INVALID_INPUT, "rb_line_items must be in ascending line_no order")
            previous = item.line_no
            if line.service.is_tax:
                raise AriaError(
                    ErrorCode.INVALID_INPUT, f"line {item.line_no} is a tax line: tax lines cannot be modified"
                )
            if (item.service_no is not None and item.service_no != line.service.service_no) or (
                item.client_service_id is not None and item.client_service_id != line.service.client_service_id
            ):
                raise AriaError(ErrorCode.INVALID_INPUT, f"invalid service for line_no {item.line_no}")
            new_lines.append(
                Line(
                    line_no=len(new_lines) + 1,
                    service=line.service,
                    units=line.units if item.units is None else item.units,
                    rate_per_unit=line.rate_per_unit if item.rate_per_unit is None else item.rate_per_unit,
                    rb_line_comments=item.comments,
                )
            )
        sent = {item.line_no for item in request.lines}
        excluded = frozenset(line.line_no for line in original.lines if not line.service.is_tax) - sent
        tax_line = next((line for line in original.lines if line.service.is_tax), None)
        if tax_line is not None and original.tax_rate is not None and new_lines:
            taxable = sum((line.amount for line in new_lines), ZERO)
            new_lines.append(Line(len(new_lines) + 1, tax_line.service, Decimal(1), cents(taxable * original.tax_rate)))
        return RebillPreview(original, tuple(new_lines), excluded)

    def _apply(self, request: RebillRequest, preview: RebillPreview, created: date) -> RebillResult:
        original = preview.original
        number = self._next_rebill_no
        rebill = Invoice(
            invoice_no=number,
            account=original.account,
            bill_date=original.bill_date,  # "Use Original Invoice Date for Rebill"
            lines=list(preview.lines),
            invoice_type_cd=REBILL_TYPE,
            tax_rate=original.tax_rate,
            orig_invoice_no=original.invoice_no,
            rb_reason_cd=request.reason_cd,
            rb_comments=request.comments,
            created_by=request.alt_caller_id,
            created_date=created,
            qualifiers=request.qualifiers,
        )
        self.add_invoice(rebill)
        original.credit = original.amount
        original.rb_no = number
        original.rb_reason_cd = request.reason_cd
        original.rb_comments = request.comments
        for line in original.lines:
            line.rb_excluded = line.line_no in preview.excluded_line_nos
        return RebillResult(preview, request, number, created)

    # ---------------------------------------------------------------- counters

    def answered(self, error_code: int) -> None:
        """Count a reply's `error_code` (0 for success)."""
        with self.lock:
            self._error_codes[error_code] += 1

    def counters(self) -> dict[str, Any]:
        """Traffic (requests per call, responses per status, `peak_concurrency`, `in_flight`), the
        error codes answered, gen_rb_m's calls, rebills per original, duplicate and ineligible
        attempts, dry runs, busy refusals, and the faults injected by kind."""
        with self.lock:
            return {
                **self.traffic.snapshot(),
                "error_codes": {str(code): n for code, n in sorted(self._error_codes.items())},
                "gen_rb_m_calls": self._gen_rb_m_calls,
                "rebills": {str(no): n for no, n in sorted(self._rebills.items())},
                "rebills_total": sum(self._rebills.values()),
                "duplicate_attempts": self._duplicates,
                "ineligible_attempts": self._ineligible,
                "dry_run_calls": self._dry_runs,
                "busy_refusals": self._busy_refusals,
                "faults_injected": self.faults.injected(),
            }

    def reset_counters(self) -> None:
        """Zero the counters (the in-flight peak restarts from what is in flight); entities are kept."""
        with self.lock:
            self._init_counters()
            self.traffic.reset()
            self.faults.reset_counts()


#: What an object-query key compares, per key.
_QUERY_VALUES: dict[str, Callable[[Invoice], date | int | str]] = {
    "bill_date": operator.attrgetter("bill_date"),
    "acct_no": operator.attrgetter("account.acct_no"),
    "invoice_no": operator.attrgetter("invoice_no"),
    "client_acct_id": operator.attrgetter("account.client_acct_id"),
    "invoice_type_cd": operator.attrgetter("invoice_type_cd"),
}
_invoice_type_cd = _QUERY_VALUES["invoice_type_cd"]
