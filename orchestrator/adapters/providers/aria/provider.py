"""Aria behind the `BillingProvider` port: one gen_rb_m per invoice (credit memo and rebill invoice at
once), with the run's corrections, exactly once.

- open: parse the selector and options; read the invoices file (its numbers are stored with the
  run) and the corrections file (its rows are kept); read the selection until an invoice whose lines
  the corrections name (refused when there is none, unless `allow_no_change`), and ask Aria once
  with `do_write: "false"` what that invoice would become, so a bad reason code (3024) or a request
  Aria refuses stops the run before anything is written. Scope: the bill date (or the file's set of
  invoices); one account's run holds only its part of it.
- plan: the object query page by page (records returned advance the cursor: Aria caps `limit`), or
  the file's numbers a page at a time; each invoice with its verdict (`eligibility`), grouped by
  account so an account's invoices are sent one after another (Aria answers 3108 to concurrent
  work on one billing group).
- act: settle = the account's invoice history (rebilled: done, with its rebill invoice); prepare =
  the invoice's header and lines read again, the verdict checked again, the corrections applied;
  apply = gen_rb_m with every non-tax line in ascending line_no; preview (dry run) = the same with
  `do_write: "false"`. A 3097 is settled by reading the history, a 2003 skips the invoice as voided;
  3108 and every unknown outcome (timeout, 5xx, 502, 1001) go back to the core, whose next claim
  settles by reading before anything is sent again.
- follow: nothing after the invoices: the run completes once they are settled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from contextvars import copy_context
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from orchestrator.adapters.providers.aria.client import AriaClient
from orchestrator.adapters.providers.aria.corrections import (
    Corrections,
    CorrectionsError,
    cents,
    load_corrections,
    rebill_lines,
)
from orchestrator.adapters.providers.aria.eligibility import SkipReason, rebill_unknown, verdict
from orchestrator.adapters.providers.aria.errors import AriaCode, error_code_of
from orchestrator.adapters.providers.aria.options import (
    AriaKept,
    AriaOptions,
    AriaSelection,
    AriaSelector,
    read_invoices_file,
)
from orchestrator.adapters.providers.aria.queries import InvoiceQuery, bill_run, one_invoice
from orchestrator.adapters.providers.aria.wire import InvoiceHeader, InvoiceHistory, RebillLineItem, RebillReply
from orchestrator.adapters.providers.run_request import parse_run_request
from orchestrator.domain.billing import Invoice, money
from orchestrator.domain.errors import (
    PermanentProviderError,
    ProviderError,
    ProviderRefused,
    RunRefused,
    TransientProviderError,
)
from orchestrator.domain.run import (
    Item,
    ItemOutcome,
    ItemState,
    PlannedItem,
    Run,
    RunOptions,
    RunState,
    Selection,
    Step,
)
from orchestrator.services.ports import (
    ActionUnit,
    Decision,
    Finish,
    FollowView,
    Opening,
    PlanPage,
    Preparation,
    Prepared,
    ScheduledSelection,
    StepResult,
)

__all__ = ["ALT_CALLER_ID", "AriaProvider"]

#: `alt_caller_id` of every gen_rb_m: who made the rebill, as Aria records it (`created_by`).
ALT_CALLER_ID = "rebill"
#: The qualifier naming the run on every rebill (`optional_transaction_qualifiers`).
RUN_QUALIFIER = "run_id"
#: Invoice numbers of a file read (one object query each) per plan page.
FILE_PAGE = 100
#: Headers planned (their history reads made) per plan page, so the first chunk goes out early.
PLAN_SLICE = 50


@dataclass(frozen=True, slots=True)
class _Headers:
    """One page of a selection: where it starts, each invoice number with its header (None: Aria has
    no such invoice), and whether it is the last."""

    start: int
    headers: list[tuple[int, InvoiceHeader | None]]
    last: bool


@dataclass(frozen=True, slots=True)
class Rebill:
    """What one gen_rb_m sends for one original, and the charges before and after (tax excluded)."""

    acct_no: int
    invoice_no: int
    lines: tuple[RebillLineItem, ...]
    old_charges: Decimal
    new_charges: Decimal


class AriaProvider:
    """The `BillingProvider` port over one Aria client (tenant); thread-safe, stateless besides its client."""

    name = "aria"
    title = "Aria"
    unit = ActionUnit.ITEM
    previews_items = True

    def __init__(self, client: AriaClient, *, page_size: int = 500, reads_at_once: int = 1) -> None:
        self._client = client
        self._page_size = page_size
        self._reads_at_once = reads_at_once

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client!r})"

    # --- open and plan ---------------------------------------------------------------------------------

    def open(self, selector: Mapping[str, Any], options: Mapping[str, Any], run: RunOptions) -> Opening:
        chosen = parse_run_request(AriaSelector, selector, "Aria selection")
        asked = parse_run_request(AriaOptions, options, "Aria option")
        corrections = load_corrections(asked.corrections)
        numbers = read_invoices_file(chosen.invoices_file) if chosen.invoices_file is not None else None
        selection = AriaSelection(**dict(chosen), invoice_nos=numbers)
        found, first = self._first_corrected(selection, corrections)
        if not found:
            raise RunRefused(f"{_describe(selection)} has no invoice on Aria client {self._client.client_no}")
        if first is None and not asked.allow_no_change:
            raise RunRefused(
                f"the corrections in {corrections.source} name no line of any invoice of {_describe(selection)}: "
                "the rebills would change nothing (check the file's services, or pass --allow-no-change)"
            )
        if first is not None:
            self._try_one(first, asked)
        return Opening(
            selection=Selection(
                scope=selection.scope,
                guard_key=selection.scope + (f":account:{selection.account}" if selection.account else ""),
                label=_describe(selection),
                selector=selection.model_dump(mode="json", exclude_none=True),
                whole=selection.account is None,
            ),
            options=asked.model_dump(mode="json"),
            state=AriaKept.of(corrections).model_dump(mode="json"),
        )

    def _first_corrected(self, selection: AriaSelection, corrections: Corrections) -> tuple[bool, Rebill | None]:
        """Whether the selection has any invoice, and the first one whose lines the corrections name.

        Reads headers in order and the lines of every invoice that may be rebilled, and stops at the
        first match: usually the first invoice.
        """
        found = False
        for page in self._selected(selection, cursor=0):
            for _, header in page.headers:
                if header is None:
                    continue
                found = True
                if header.voided or header.is_rebill:
                    continue
                rebill = self._rebill_of(header, corrections)
                if rebill is not None:
                    return True, rebill
        return found, None

    def _rebill_of(self, header: InvoiceHeader, corrections: Corrections) -> Rebill | None:
        """The rebill of `header` when the corrections name one of its lines, else None."""
        details = self._client.get_invoice_details(header.invoice_no, acct_no=header.acct_no)
        lines = rebill_lines(details.invoice_line_details, corrections)
        if not lines.matched:
            return None
        return Rebill(header.acct_no, header.invoice_no, lines.items, lines.old_charges, lines.new_charges)

    def _try_one(self, rebill: Rebill, options: AriaOptions) -> None:
        """Ask Aria what one rebill would be (`do_write: "false"`): a refusal that every rebill of the run
        would get (bad reason code, bad request) stops the run before it starts. A transient failure
        leaves the question open: each rebill is asked anyway."""
        try:
            self._gen_rb_m(rebill, options, run_id=None, comments=options.comments or "rebill run", write=False)
        except TransientProviderError:
            return
        except PermanentProviderError as error:
            if error_code_of(error) in (AriaCode.VOIDED, AriaCode.ALREADY_REBILLED):
                return  # that invoice is not to be rebilled; the others are checked one by one
            raise RunRefused(
                f"Aria refuses the rebill of invoice {rebill.invoice_no} as asked, so it would refuse every "
                f"one: {error.message}"
            ) from None

    def prepare_run(self, run: Run) -> Preparation:
        return Preparation()

    def iter_plan(self, run: Run, *, cursor: int) -> Iterator[PlanPage]:
        """A query page is planned `PLAN_SLICE` headers at a time: each slice's history reads go out one
        after another, so the first chunk is sent after a slice's reads rather than a whole page's."""
        for page in self._selected(_selection(run), cursor=cursor):
            histories: dict[int, InvoiceHistory] = {}
            for offset in range(0, max(len(page.headers), 1), PLAN_SLICE):
                piece = page.headers[offset : offset + PLAN_SLICE]
                rebilled = self._rebilled([header for _, header in piece if header is not None], histories)
                end = offset + len(piece)
                yield PlanPage(
                    items=tuple(_planned(number, header, rebilled) for number, header in piece),
                    cursor=page.start + offset,
                    next_cursor=None if page.last and end >= len(page.headers) else page.start + end,
                )

    def _selected(self, selection: AriaSelection, *, cursor: int) -> Iterator[_Headers]:
        """The selection's invoices from `cursor`, a page at a time, one page held at once."""
        if selection.invoice_nos is None:
            assert selection.bill_date is not None
            query = bill_run(selection.bill_date, acct_no=selection.account)
            for page in self._client.iter_invoice_pages(query, page_size=self._page_size, start_offset=cursor):
                total = page.total_records
                yield _Headers(
                    start=page.starting_record if page.starting_record is not None else cursor,
                    headers=[(header.invoice_no, header) for header in page.invoice_details_m],
                    last=total is not None and page.next_offset >= total,
                )
            return
        numbers = selection.invoice_nos
        for start in range(cursor, len(numbers), FILE_PAGE):
            batch = numbers[start : start + FILE_PAGE]
            yield _Headers(
                start=start,
                headers=[(number, self._header(number)) for number in batch],
                last=start + len(batch) >= len(numbers),
            )

    def _header(self, invoice_no: int) -> InvoiceHeader | None:
        page = self._client.get_invoice_information(one_invoice(invoice_no), limit=1)
        return next((header for header in page.invoice_details_m if header.invoice_no == invoice_no), None)

    def _rebilled(self, headers: Sequence[InvoiceHeader], histories: dict[int, InvoiceHistory]) -> set[int]:
        """Which of `headers` were rebilled, reading the history only of accounts where it decides a
        verdict (each account's once: `histories` keeps those read)."""
        unknown = [header for header in headers if rebill_unknown(header)]
        unread = dict.fromkeys(header.acct_no for header in unknown if header.acct_no not in histories)
        histories.update(self._histories(list(unread)))
        return {header.invoice_no for header in unknown if histories[header.acct_no].rebilled(header.invoice_no)}

    def _histories(self, accounts: Sequence[int]) -> dict[int, InvoiceHistory]:
        """The accounts' histories, up to `reads_at_once` read together (the tenant limit still holds the
        cap): read one after another, a slice's reads would keep acting waiting a second at a run's start.
        Each read runs in a copy of this thread's context, so its call lands on the run's record."""
        if self._reads_at_once <= 1 or len(accounts) <= 1:
            return {acct_no: self._client.get_invoice_history(acct_no) for acct_no in accounts}
        with ThreadPoolExecutor(max_workers=min(self._reads_at_once, len(accounts))) as pool:
            read = [pool.submit(copy_context().run, self._client.get_invoice_history, acct_no) for acct_no in accounts]
            try:
                return {acct_no: future.result() for acct_no, future in zip(accounts, read, strict=True)}
            except BaseException:
                pool.shutdown(cancel_futures=True)  # the page is planned again: the reads not begun are not made
                raise

    # --- act ---------------------------------------------------------------------------------------------

    def one_invoice_at_a_time(self) -> AbstractContextManager[None]:
        return self._client.one_slot()

    def settle(self, run: Run, items: Sequence[Item]) -> Mapping[int, ItemOutcome]:
        """An invoice claimed before may have been rebilled: its account's history says so. A dry run
        wrote nothing, so it has nothing to settle."""
        if run.options.dry_run:
            return {}
        settled: dict[int, ItemOutcome] = {}
        histories: dict[int, InvoiceHistory] = {}
        for item in items:
            acct_no, invoice_no = _numbers(item)
            history = histories.get(acct_no)
            if history is None:
                history = histories[acct_no] = self._client.get_invoice_history(acct_no)
            if history.rebilled(invoice_no):
                settled[item.id] = _rebilled_per_history(history, invoice_no, "after an unknown outcome")
        return settled

    def prepare(self, run: Run, items: Sequence[Item]) -> Prepared:
        """Read each invoice again (header and lines): what changed since planning decides, then the
        corrections make the request."""
        corrections = _kept(run).to_corrections()
        send: list[Item] = []
        rebills: list[Rebill] = []
        decided: dict[int, ItemOutcome] = {}
        for item in items:
            acct_no, invoice_no = _numbers(item)
            header = self._header(invoice_no)
            if header is None:
                decided[item.id] = ItemOutcome(ItemState.SKIPPED, reason=SkipReason.NOT_FOUND.value)
                continue
            details = self._client.get_invoice_details(invoice_no, acct_no=acct_no)
            skip = verdict(header, rebilled=details.rb_status)
            if skip is not None:
                decided[item.id] = ItemOutcome(ItemState.SKIPPED, reason=skip.value)
                continue
            try:
                lines = rebill_lines(details.invoice_line_details, corrections)
            except CorrectionsError as error:
                decided[item.id] = ItemOutcome(ItemState.FAILED, reason=str(error))
                continue
            if not lines.items:
                decided[item.id] = ItemOutcome(ItemState.FAILED, reason="the invoice has no line to rebill")
                continue
            send.append(item)
            rebills.append(Rebill(acct_no, invoice_no, lines.items, lines.old_charges, lines.new_charges))
        return Prepared(send=tuple(send), request=tuple(rebills), decided=decided)

    def apply(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        options = _options(run)
        comments = options.comments or _run_comments(run)
        outcomes: dict[int, ItemOutcome] = {}
        for item, rebill in zip(prepared.send, prepared.request, strict=True):
            outcomes[item.id] = self._rebill(rebill, options, run_id=run.id, comments=comments)
        return outcomes

    def _rebill(self, rebill: Rebill, options: AriaOptions, *, run_id: str, comments: str) -> ItemOutcome:
        try:
            reply = self._gen_rb_m(rebill, options, run_id=run_id, comments=comments, write=True)
        except PermanentProviderError as error:
            code = error_code_of(error)
            if code == AriaCode.VOIDED:
                return ItemOutcome(ItemState.SKIPPED, reason=SkipReason.VOIDED.value)
            if code == AriaCode.ALREADY_REBILLED or error.may_have_applied:
                # A refused second rebill, or a reply that came back unreadable: the history says what happened.
                return self._settle_now(rebill, error)
            raise
        if reply.invoice_no is None:
            return self._settle_now(rebill, ProviderRefused("gen_rb_m: Aria named no rebill invoice"))
        return ItemOutcome(
            ItemState.REVERSED,
            rebill_ref=str(reply.invoice_no),
            new_amount=cents(reply.amount) if reply.amount is not None else None,
        )

    def _settle_now(self, rebill: Rebill, error: ProviderError) -> ItemOutcome:
        history = self._client.get_invoice_history(rebill.acct_no)
        if history.rebilled(rebill.invoice_no):
            return _rebilled_per_history(history, rebill.invoice_no, f"after {error.message}")
        raise error

    def preview(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        """What Aria would bill for each invoice (`do_write: "false"`); nothing is written."""
        options = _options(run)
        comments = options.comments or _run_comments(run)
        outcomes: dict[int, ItemOutcome] = {}
        for item, rebill in zip(prepared.send, prepared.request, strict=True):
            try:
                reply = self._gen_rb_m(rebill, options, run_id=run.id, comments=comments, write=False)
            except PermanentProviderError as error:
                code = error_code_of(error)
                if code == AriaCode.VOIDED:
                    outcomes[item.id] = ItemOutcome(ItemState.SKIPPED, reason=SkipReason.VOIDED.value)
                    continue
                if code == AriaCode.ALREADY_REBILLED:
                    outcomes[item.id] = ItemOutcome(ItemState.SKIPPED, reason=SkipReason.ALREADY_REBILLED.value)
                    continue
                raise
            outcomes[item.id] = ItemOutcome(
                ItemState.PREVIEWED, new_amount=cents(reply.amount) if reply.amount is not None else None
            )
        return outcomes

    def _gen_rb_m(
        self, rebill: Rebill, options: AriaOptions, *, run_id: str | None, comments: str, write: bool
    ) -> RebillReply:
        return self._client.gen_rb_m(
            acct_no=rebill.acct_no,
            orig_invoice_no=rebill.invoice_no,
            reason_cd=options.reason_code,
            line_items=rebill.lines,
            alt_caller_id=ALT_CALLER_ID,
            do_collect=options.collect,
            do_write=write,
            comments=comments,
            qualifiers={RUN_QUALIFIER: run_id} if run_id is not None else None,
        )

    # --- follow ------------------------------------------------------------------------------------------

    def follow(self, run: Run, view: FollowView) -> Decision:
        """gen_rb_m made each rebill invoice already: nothing is left to send or watch."""
        return Decision(Finish(RunState.COMPLETED))

    def send_step(self, run: Run, step: Step) -> StepResult:
        raise ProviderRefused(f"Aria runs have no run-level step ({step.key})", operation=step.kind)

    def settle_step(self, run: Run, step: Step) -> StepResult:
        raise ProviderRefused(f"Aria runs have no run-level step ({step.key})", operation=step.kind)

    def describe_follow_up(self, run: Run, view: FollowView) -> list[dict[str, Any]]:
        return []

    # --- operators ---------------------------------------------------------------------------------------

    def summarize(self, run: Run) -> Mapping[str, Any]:
        selection = _selection(run)
        options = _options(run)
        kept = _kept(run)
        return {
            "bill_date": selection.bill_date.isoformat() if selection.bill_date else None,
            "account": selection.account,
            "invoices_file": str(selection.invoices_file) if selection.invoices_file else None,
            "invoices_in_file": len(selection.invoice_nos) if selection.invoice_nos is not None else None,
            "corrections": f"{kept.corrections_source} ({len(kept.corrections)} rows)",
            "reason_code": options.reason_code,
            "collect": options.collect,
            "comments": options.comments or _run_comments(run),
        }

    def choose_scheduled(self, choice: Mapping[str, Any]) -> ScheduledSelection:
        return ScheduledSelection(
            None,
            reason="Aria runs cannot be scheduled yet: start them with `rebill run --provider aria --bill-date ...`",
        )

    def check(self) -> str:
        """Sign in and read one record of the object query."""
        page = self._client.get_invoice_information(InvoiceQuery(), limit=1)
        total = page.total_records if page.total_records is not None else len(page.invoice_details_m)
        return f"Aria client {self._client.client_no} at {self._client.base_url}: signed in, {total} invoice(s)"


def _selection(run: Run) -> AriaSelection:
    return AriaSelection.model_validate(dict(run.selection.selector))


def _options(run: Run) -> AriaOptions:
    return AriaOptions.model_validate(dict(run.provider_options))


def _kept(run: Run) -> AriaKept:
    return AriaKept.model_validate(dict(run.provider_state))


def _run_comments(run: Run) -> str:
    return f"rebill run {run.id}"


def _describe(selection: AriaSelection) -> str:
    if selection.bill_date is not None:
        account = f" of account {selection.account}" if selection.account is not None else ""
        return f"bill date {selection.bill_date.isoformat()}{account}"
    count = len(selection.invoice_nos or ())
    return f"invoices file {selection.invoices_file} ({count} invoice{'s' if count != 1 else ''})"


def to_item_invoice(header: InvoiceHeader) -> Invoice:
    """The neutral invoice the ledger keeps; what settle and prepare need rides along in `details`."""
    return Invoice(
        invoice_id=str(header.invoice_no),
        amount=header.amount,
        balance=header.total_due if header.total_due is not None else header.amount,
        number=str(header.invoice_no),
        party_id=str(header.acct_no),
        party_name=header.client_acct_id,
        details={
            "acct_no": header.acct_no,
            "invoice_no": header.invoice_no,
            "billing_group_no": header.billing_group_no,
            "bill_date": header.bill_date.isoformat() if header.bill_date else None,
        },
    )


def _planned(number: int, header: InvoiceHeader | None, rebilled: set[int]) -> PlannedItem:
    if header is None:
        unknown = Invoice(invoice_id=str(number), amount=Decimal("0.00"), balance=Decimal("0.00"), number=str(number))
        return PlannedItem.skipped(unknown, SkipReason.NOT_FOUND.value)
    invoice = to_item_invoice(header)
    skip = verdict(header, rebilled=header.invoice_no in rebilled)
    if skip is not None:
        return PlannedItem.skipped(invoice, skip.value)
    return PlannedItem.eligible(invoice, group=str(header.acct_no))


def _numbers(item: Item) -> tuple[int, int]:
    details = item.invoice.details
    return int(details["acct_no"]), int(details["invoice_no"])


def _rebilled_per_history(history: InvoiceHistory, invoice_no: int, when: str) -> ItemOutcome:
    """REVERSED as the history shows it: the rebill invoice and what it bills, where the history names them."""
    rebill_no = history.rebill_invoice_no(invoice_no)
    amount = next(
        (row.amount for row in history.invoice_hist if rebill_no is not None and row.invoice_no == rebill_no), None
    )
    shown = f" {rebill_no}" if rebill_no is not None else ""
    billed = f" ({money(amount)})" if amount is not None else ""
    return ItemOutcome(
        ItemState.REVERSED,
        reason=f"rebilled{shown}{billed}: confirmed by the account's invoice history {when}",
        settled_by_read=True,
        rebill_ref=str(rebill_no) if rebill_no is not None else None,
        new_amount=cents(amount) if amount is not None else None,
    )


if TYPE_CHECKING:
    from orchestrator.services.ports import BillingProvider

    def _conforms_to_the_port(provider: AriaProvider) -> BillingProvider:
        return provider  # mypy proves AriaProvider satisfies BillingProvider
