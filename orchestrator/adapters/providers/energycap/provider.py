"""EnergyCAP behind the `BillingProvider` port: bills reversed a whole chunk per call, each chunk exactly once.

- open: the selection (an account period and its accounts, pinned to the last bill there now; or the
  ids of a file, all read to check they exist) and the corrected-bills file, validated and matched
  against the selection's eligible bills before the run exists: a row matching none is refused
  (importing it beside an unreversed bill would bill twice) unless `allow_unmatched` leaves it out.
- plan: the bill list page by page (the page size the server echoes), each bill PENDING or SKIPPED
  with the contract's reason (`void`, `reversal_bill`, `already_reversed`); exported bills are eligible.
- act (the unit is the chunk): one `bill/reverse` into a new self-contained batch whose code is
  `RB-<run prefix>-<chunk no>` and whose note is the run id. The code is the only idempotency key:
  a chunk claimed before is settled by reading its batch (found: applied, the reversal bills name
  their originals; not found: the same body is sent again under the same code), and "code in use"
  means an earlier call landed late: read, never resent. An uncertain chunk never gets a new code.
- follow: without a corrected-bills file the run is reverse-only and completes. Otherwise step
  `import/I1` (code `RB-<prefix>-I1`) imports the rows matched to a bill this run reversed, and its
  task is watched to Completed, Completed with kickouts or Failed. Kicked-out rows wait for the
  operator; `rebill retry RUN --reimport-kickouts` sends `import/I2` (the kickout re-import), and so on.
  An import whose answer was lost is settled by reading its batch and task by code.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.adapters.providers.energycap.client import (
    DEFAULT_PAGE_SIZE,
    IMPORT_PATH,
    MAX_REVERSE_IDS,
    REVERSE_PATH,
    SELF_CONTAINED,
    EnergyCapClient,
)
from orchestrator.adapters.providers.energycap.errors import BatchCodeInUse
from orchestrator.adapters.providers.energycap.filters import MAX_LIST_VALUES, Field as FilterField, Filter, Op, where
from orchestrator.adapters.providers.energycap.options import (
    EnergyCapKept,
    EnergyCapOptions,
    EnergyCapSelection,
    EnergyCapSelector,
    KeptRebillFile,
    read_bill_ids,
)
from orchestrator.adapters.providers.energycap.rebill_file import (
    CorrectedBill,
    RebillFileError,
    import_csv,
    parse_rebill_csv,
    read_rebill_file,
)
from orchestrator.adapters.providers.energycap.wire import BatchData, BillData, KickoutData, TaskData, TaskStatus
from orchestrator.adapters.providers.run_request import parse_run_request
from orchestrator.domain.billing import Invoice
from orchestrator.domain.errors import ProviderProtocolError, ProviderRefused, ProviderUnavailable, RunRefused
from orchestrator.domain.run import (
    Item,
    ItemOutcome,
    ItemState,
    Observation,
    PlannedItem,
    ReasonCode,
    Run,
    RunOptions,
    RunState,
    Selection,
    Step,
    StepPhase,
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
    Send,
    Settlement,
    StepResult,
    Watch,
)

log = logging.getLogger(__name__)

IMPORT = "import"  # step kind: the corrected-bills file
REIMPORT = "import.kickout"  # step kind: a task's kicked-out rows again
_STEP_PREFIX = "import/I"
_REVERSED_IN = "reversed in batch "
_NOT_REBILLED = "reversed, not rebilled"
#: The longest wait between two readings of an import task (the contract says every 1-2 s).
_TASK_POLL_SECONDS = 2.0
_SHOWN_LINES = 20

MatchKey = tuple[str, str, int]  # account code, meter code (both lower case), billing period


# --- names the run's writes carry ------------------------------------------------------------------------


def run_prefix(run_id: str) -> str:
    """The part of the run id its batch codes carry: its first 8 characters, upper case."""
    return run_id.replace("-", "")[:8].upper()


def batch_code(run_id: str, chunk_seq: int) -> str:
    """The reversal batch of the run's chunk `chunk_seq` (0, 1, ...): `RB-7F3A21C0-0001`, ..."""
    return f"RB-{run_prefix(run_id)}-{chunk_seq + 1:04d}"


def import_code(run_id: str, number: int) -> str:
    """The batch of the run's `number`-th import: `RB-7F3A21C0-I1` for the file, I2... for re-imports."""
    return f"RB-{run_prefix(run_id)}-I{number}"


def import_step(number: int) -> str:
    return f"{_STEP_PREFIX}{number}"


# --- bills as the ledger keeps them ------------------------------------------------------------------------


def to_item_invoice(bill: BillData) -> Invoice:
    """The neutral invoice the ledger keeps; the account, meters, period and cost ride along in `details`."""
    account = bill.account
    return Invoice(
        invoice_id=str(bill.bill_id),
        amount=bill.total_cost,
        balance=bill.total_cost,
        number=str(bill.bill_id),
        party_id=account.account_code if account else None,
        party_name=account.account_info if account else None,
        details={
            "account": account.account_code if account else None,
            "meters": [meter.meter_code for meter in bill.meters],
            "billing_period": bill.billing_period,
            "account_period": bill.account_period,
            "cost": str(bill.total_cost),
        },
    )


def planned(bill: BillData) -> PlannedItem:
    skip = bill.skip_reason
    invoice = to_item_invoice(bill)
    return PlannedItem.eligible(invoice) if skip is None else PlannedItem.skipped(invoice, skip)


def bill_keys(bill: BillData) -> set[MatchKey]:
    """What ties a bill to a corrected row: its account, each of its meters, its billing period."""
    if bill.account is None or bill.billing_period is None:
        return set()
    account = bill.account.account_code.lower()
    return {(account, meter.meter_code.lower(), bill.billing_period) for meter in bill.meters}


def item_keys(item: Item) -> set[MatchKey]:
    details = item.invoice.details
    account, period = details.get("account"), details.get("billing_period")
    if not account or period is None:
        return set()
    return {(str(account).lower(), str(meter).lower(), int(period)) for meter in details.get("meters") or ()}


@dataclass(frozen=True, slots=True)
class ReverseChunk:
    """What `prepare` decided to send for a chunk: its bills, under its batch code."""

    code: str
    bill_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Imported:
    bill_id: int
    cost: Decimal
    code: str


class EnergyCapProvider:
    """The `BillingProvider` port over one EnergyCAP datasource (thread-safe: no state besides its client)."""

    name = "energycap"
    title = "EnergyCAP"
    unit = ActionUnit.CHUNK
    previews_items = False

    def __init__(self, client: EnergyCapClient, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self._client = client
        self._page_size = page_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client!r})"

    # --- open and plan ---------------------------------------------------------------------------------

    def open(self, selector: Mapping[str, Any], options: Mapping[str, Any], run: RunOptions) -> Opening:
        if not 1 <= run.chunk_size <= MAX_REVERSE_IDS:
            raise RunRefused(
                f"EnergyCAP reverses 1 to {MAX_REVERSE_IDS} bills per call: a chunk size of {run.chunk_size} "
                "cannot be one call (--chunk-size)"
            )
        chosen = parse_run_request(EnergyCapSelector, selector, "EnergyCAP selection")
        asked = parse_run_request(EnergyCapOptions, options, "EnergyCAP option")
        rebill = read_rebill_file(asked.rebill_file) if asked.rebill_file is not None else None
        if chosen.bill_ids_file is not None:
            selection, bills = self._open_bill_ids(chosen.bill_ids_file)
        else:
            assert chosen.account_period is not None
            selection, bills = self._open_period(
                chosen.account_period, chosen.account_code or (), read_all=bool(rebill)
            )
        kept = EnergyCapKept(
            rebill=_matched(rebill.path, rebill.rows, bills, allow_unmatched=asked.allow_unmatched) if rebill else None
        )
        return Opening(
            selection=selection,
            options=asked.model_dump(mode="json"),
            state=kept.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
        )

    def _open_period(self, period: int, codes: Sequence[str], *, read_all: bool) -> tuple[Selection, list[BillData]]:
        """The period's selection pinned to its last bill now (new bills, our reversals among them, come
        after it); every bill when the corrected bills must be matched, else the first and the last."""
        label = f"account period {period}" + (f", accounts {', '.join(codes)}" if codes else "")
        selecting = _period_filter(period, codes)
        bills = self._all_bills(selecting) if read_all else self._first_and_last_bills(selecting)
        if not bills:
            raise RunRefused(f"EnergyCAP has no bills in {label}: nothing to reverse")
        scope = f"energycap:{period}"
        stored = EnergyCapSelection(
            account_period=period, account_codes=tuple(codes), up_to_bill_id=max(bill.bill_id for bill in bills)
        )
        return (
            Selection(
                scope=scope,
                guard_key=scope + (f":accounts:{_digest(sorted(code.lower() for code in codes))}" if codes else ""),
                label=label,
                selector=stored.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
                whole=not codes,
            ),
            bills,
        )

    def _all_bills(self, selecting: Filter) -> list[BillData]:
        return [
            bill for page in self._client.iter_bill_pages(selecting, page_size=self._page_size) for bill in page.items
        ]

    def _first_and_last_bills(self, selecting: Filter) -> list[BillData]:
        """Two pages of one bill (the first and the last), or every page when the paging headers are missing."""
        first = next(self._client.iter_bill_pages(selecting, page_size=1))
        if first.total_pages is None:
            return self._all_bills(selecting)
        if first.total_pages <= first.page_number:
            return first.items
        last = self._client.iter_bill_pages(selecting, page_size=first.page_size, start_page=first.total_pages)
        return first.items + next(last).items

    def _open_bill_ids(self, path: Path) -> tuple[Selection, list[BillData]]:
        """The file's ids, every one read: an id EnergyCAP does not know is refused naming its line."""
        lines = read_bill_ids(path)
        ids = sorted(lines)
        bills = self._client.get_bills(ids, page_size=self._page_size)
        found = {bill.bill_id for bill in bills}
        unknown = [(lines[bill_id], f"no bill {bill_id} in EnergyCAP") for bill_id in ids if bill_id not in found]
        if unknown:
            raise RebillFileError(str(path), sorted(unknown))
        scope = f"energycap:ids:{_digest([str(bill_id) for bill_id in ids])}"
        stored = EnergyCapSelection(bill_ids=tuple(ids), bill_ids_file=str(path))
        return (
            Selection(
                scope=scope,
                guard_key=scope,
                label=f"{len(ids)} bill(s) of {path.name}",
                selector=stored.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
            ),
            bills,
        )

    def prepare_run(self, run: Run) -> Preparation:
        return Preparation()  # nothing must exist on EnergyCAP before the first chunk

    def iter_plan(self, run: Run, *, cursor: int) -> Iterator[PlanPage]:
        """From `cursor` (bills consumed so far) to the end of the selection."""
        chosen = _selection(run)
        if chosen.bill_ids:
            yield from self._bill_id_pages(chosen.bill_ids, cursor)
        else:
            yield from self._period_pages(chosen, cursor)

    def _bill_id_pages(self, ids: Sequence[int], cursor: int) -> Iterator[PlanPage]:
        for start in range(cursor, len(ids), MAX_LIST_VALUES):
            wanted = ids[start : start + MAX_LIST_VALUES]
            bills = sorted(self._client.get_bills(wanted, page_size=self._page_size), key=lambda bill: bill.bill_id)
            end = start + len(wanted)
            yield PlanPage(
                tuple(planned(bill) for bill in bills), cursor=start, next_cursor=end if end < len(ids) else None
            )

    def _period_pages(self, chosen: EnergyCapSelection, cursor: int) -> Iterator[PlanPage]:
        """Pages of the server's size (it caps ours silently); a page that does not hold the cursor at
        that size is asked again, once, at the size it answers."""
        assert chosen.account_period is not None
        selecting = _period_filter(chosen.account_period, chosen.account_codes)
        last_id = chosen.up_to_bill_id
        size = self._page_size
        for _ in range(2):
            for page in self._client.iter_bill_pages(selecting, page_size=size, start_page=cursor // size + 1):
                offset = (page.page_number - 1) * page.page_size
                if not page.items:
                    return
                if not offset <= cursor < offset + page.page_size:
                    size = page.page_size
                    break
                bills = page.items[cursor - offset :]
                selected = [bill for bill in bills if last_id is None or bill.bill_id <= last_id]
                done = page.last or len(selected) < len(bills)
                following = offset + len(page.items)
                yield PlanPage(
                    tuple(planned(bill) for bill in selected), cursor=cursor, next_cursor=None if done else following
                )
                if done:
                    return
                cursor = following
            else:
                return
        raise ProviderProtocolError(
            f"bill.list: page {cursor // size + 1} at the page size EnergyCAP answers ({size}) does not hold "
            f"bill number {cursor + 1} of the selection",
            operation="bill.list",
        )

    # --- act ---------------------------------------------------------------------------------------------

    def one_invoice_at_a_time(self) -> AbstractContextManager[None]:
        return self._client.one_slot()

    def settle(self, run: Run, items: Sequence[Item]) -> Mapping[int, ItemOutcome]:
        """The chunk's batch read by its code: found, it was applied; not found, nothing is settled and
        the same body is sent again under the same code."""
        code = _chunk_code(run, items)
        if self._own_batch(run, code) is None:
            return {}
        return self._read_back(code, items, settled_by_read=True)

    def prepare(self, run: Run, items: Sequence[Item]) -> Prepared:
        """Every bill of the chunk: EnergyCAP itself leaves the ineligible ones alone (selected, not updated)."""
        ids = tuple(int(item.invoice.invoice_id) for item in items)
        return Prepared(send=tuple(items), request=ReverseChunk(_chunk_code(run, items), ids))

    def apply(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        chunk: ReverseChunk = prepared.request
        try:
            result = self._client.reverse_bills(chunk.bill_ids, chunk.code, note=run.id)
        except BatchCodeInUse:
            # An earlier call under this code landed after all: what it did is read, never sent again.
            if self._own_batch(run, chunk.code) is None:
                raise ProviderUnavailable(
                    f"bill.reverse: batch code {chunk.code} is in use but no batch shows it yet; read again later",
                    operation="bill.reverse",
                    may_have_applied=True,
                ) from None
            return self._read_back(chunk.code, prepared.send, settled_by_read=True)
        outcomes = self._read_back(chunk.code, prepared.send, settled_by_read=False)
        reversed_here = sum(outcome.state is ItemState.REVERSED for outcome in outcomes.values())
        if reversed_here != result.updated:
            log.warning(
                "batch %s: EnergyCAP reported %s of %s bills updated, its bills show %s reversals",
                chunk.code,
                result.updated,
                result.selected,
                reversed_here,
            )
        return outcomes

    def preview(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        return {item.id: ItemOutcome(ItemState.PREVIEWED) for item in prepared.send}

    def _own_batch(self, run: Run, code: str) -> BatchData | None:
        """The batch with this code, made by this run (its note is the run id), or None when none has it."""
        batch = self._client.find_batch(code)
        if batch is not None and batch.note is not None and batch.note != run.id:
            raise ProviderRefused(
                f"batch {code} exists on EnergyCAP but belongs to something else (its note is {batch.note[:60]!r}, "
                f"not run {run.id}): nothing was sent; check it on EnergyCAP",
                operation="batch.list",
            )
        return batch

    def _read_back(self, code: str, items: Sequence[Item], *, settled_by_read: bool) -> dict[int, ItemOutcome]:
        """What the batch did to each bill: its reversal bill, or, for a bill it did not reverse, why."""
        reversal_of = {
            bill.reversal_of_bill_id: bill.bill_id
            for bill in self._client.bills_in_batch(code, page_size=self._page_size)
            if bill.reversal_of_bill_id is not None
        }
        outcomes: dict[int, ItemOutcome] = {}
        left: list[Item] = []
        for item in items:
            reversal = reversal_of.get(int(item.invoice.invoice_id))
            if reversal is None:
                left.append(item)
                continue
            outcomes[item.id] = ItemOutcome(
                ItemState.REVERSED,
                reason=f"{_REVERSED_IN}{code}",
                result_ref=str(reversal),
                settled_by_read=settled_by_read,
            )
        if left:
            current = {
                bill.bill_id: bill
                for bill in self._client.get_bills(
                    (int(item.invoice.invoice_id) for item in left), page_size=self._page_size
                )
            }
            for item in left:
                outcomes[item.id] = _not_reversed_by(code, current.get(int(item.invoice.invoice_id)), settled_by_read)
        return outcomes

    # --- follow ------------------------------------------------------------------------------------------

    def follow(self, run: Run, view: FollowView) -> Decision:
        kept = _kept(run)
        if kept.rebill is None:
            return Decision(Finish(RunState.COMPLETED))  # reverse-only: nothing to import
        imports = _import_steps(view.steps())
        if not imports:
            return self._first_import(run, view, kept.rebill, kept)
        last = imports[-1]
        if last.phase is StepPhase.RELEASED:  # known not applied (or given back): send it again, same code
            return Decision(Send(last.key, last.kind, dict(last.request)))
        task = self._task_of(run, last)
        code = str(last.request["batch_code"])
        observation = Observation(subject=f"import {code}", code=task.status, label=task.status, note=task.message)
        status = task.known_status
        if status is None or not status.done:
            return Decision(Watch(after=min(run.options.poll_interval_seconds, _TASK_POLL_SECONDS)), observation)
        items = self._rebill_outcomes(view, kept.rebill, imports, task)
        if status is TaskStatus.COMPLETED:
            return Decision(Finish(RunState.COMPLETED), observation, items=items)
        if status is TaskStatus.FAILED:
            detail = f": {task.message}" if task.message else ""
            return Decision(
                Finish(RunState.FAILED, ReasonCode.BILLING_FAILED, f"import {code} failed on EnergyCAP{detail}"),
                observation,
                items=items,
            )
        if kept.reimport_kickouts:
            number = _step_number(last) + 1
            again = Send(
                import_step(number),
                REIMPORT,
                {"batch_code": import_code(run.id, number), "kickouts_of_task": task.task_guid},
            )
            return Decision(again, observation, state={"reimport_kickouts": None}, items=items)
        kicked_out = len(task.output.kickouts) if task.output else 0
        return Decision(
            Finish(
                RunState.NEEDS_ATTENTION,
                ReasonCode.AWAITING_OPERATOR,
                f"{kicked_out or 'some'} corrected bill(s) were kicked out of import {code} (EnergyCAP's reasons are "
                f"in `rebill report {run.id}`); fix them, then `rebill retry {run.id} --reimport-kickouts`",
            ),
            observation,
            items=items,
        )

    def _first_import(self, run: Run, view: FollowView, rebill: KeptRebillFile, kept: EnergyCapKept) -> Decision:
        """Step I1 with the rows matched to a bill this run reversed; none: the run is done."""
        reversed_keys = set().union(*(item_keys(item) for item in view.items(states={ItemState.REVERSED})))
        rows = [row for row in _kept_rows(rebill) if row.match_key in reversed_keys]
        forget = {"reimport_kickouts": None} if kept.reimport_kickouts else {}  # asked before any kickout
        if not rows:
            return Decision(
                Finish(RunState.COMPLETED), state=forget, items=self._rebill_outcomes(view, rebill, [], None)
            )
        request = {
            "batch_code": import_code(run.id, 1),
            "file_name": f"rebill-{run_prefix(run.id).lower()}.csv",
            "lines": [row.line for row in rows],
        }
        return Decision(Send(import_step(1), IMPORT, request), state=forget)

    def _task_of(self, run: Run, step: Step) -> TaskData:
        if step.ref:
            return self._client.get_task(step.ref)
        settled = self.settle_step(run, step)
        if settled.ref is None:
            raise ProviderUnavailable(
                f"import {step.request.get('batch_code')}: no task found for it yet", operation="task.list"
            )
        return self._client.get_task(settled.ref)

    def _rebill_outcomes(
        self, view: FollowView, rebill: KeptRebillFile, imports: Sequence[Step], last: TaskData | None
    ) -> list[tuple[int, ItemOutcome]]:
        """Each reversed bill with what became of its corrected row: imported (the new bill), kicked out
        (EnergyCAP's message), or none: reversed, not rebilled. Only what changed is returned."""
        imported: dict[MatchKey, _Imported] = {}
        for step in imports:
            if step.phase is not StepPhase.SENT:
                continue
            code = str(step.request["batch_code"])
            for bill in self._client.bills_in_batch(code, page_size=self._page_size):
                for key in bill_keys(bill):
                    imported[key] = _Imported(bill.bill_id, bill.total_cost, code)
        rows = _kept_rows(rebill)
        with_row = {row.match_key for row in rows}
        kicked: dict[MatchKey, str] = {}
        missing = "not imported yet"
        if last is not None and imports:
            code = str(imports[-1].request["batch_code"])
            missing = f"not rebilled: import {code} " + (
                "failed" if last.known_status is TaskStatus.FAILED else "did not create it"
            )
            by_line = {row.line: row for row in rows}
            sent = [by_line[line] for line in imports[0].request.get("lines", ()) if line in by_line]
            for kickout in last.output.kickouts if last.output else ():
                named = _kickout_key(kickout, sent if len(imports) == 1 else ())
                if named is not None:
                    kicked[named] = f"kicked out of import {code}: {kickout.message or 'no reason given'}"
        outcomes: list[tuple[int, ItemOutcome]] = []
        for item in view.items(states={ItemState.REVERSED}):
            keys = item_keys(item)
            reversal = _reversal_part(item)
            hit = next((imported[key] for key in keys if key in imported), None)
            kick = next((kicked[key] for key in keys if key in kicked), None)
            rebill_ref, new_amount = (str(hit.bill_id), hit.cost) if hit else (None, None)
            if hit is not None:
                reason = f"{reversal}; rebilled as bill {hit.bill_id} (batch {hit.code})"
            elif kick is not None:
                reason = f"{reversal}; {kick}"
            elif keys & with_row:
                reason = f"{reversal}; {missing}"
            else:
                reason = f"{reversal}; {_NOT_REBILLED}: no corrected row for it in {Path(rebill.name).name}"
            if reason == item.reason and rebill_ref == item.rebill_ref:
                continue
            outcomes.append(
                (
                    item.id,
                    ItemOutcome(
                        ItemState.REVERSED,
                        reason=reason,
                        error=item.last_error,
                        settled_by_read=item.settled_by_read,
                        result_ref=item.result_ref,
                        rebill_ref=rebill_ref,
                        new_amount=new_amount,
                    ),
                )
            )
        return outcomes

    def send_step(self, run: Run, step: Step) -> StepResult:
        code = str(step.request["batch_code"])
        try:
            if step.kind == REIMPORT:
                guid = self._client.reimport_kickouts(str(step.request["kickouts_of_task"]), code)
            else:
                rebill = _kept(run).rebill
                assert rebill is not None
                wanted = set(step.request["lines"])
                rows = [row for row in _kept_rows(rebill) if row.line in wanted]
                guid = self._client.import_bills(import_csv(rows), code, str(step.request["file_name"]), note=run.id)
        except BatchCodeInUse:
            # An earlier send under this code landed late: its batch and task are read, never sent again.
            settled = self.settle_step(run, step)
            if settled.settlement is Settlement.APPLIED:
                return settled
            raise ProviderUnavailable(
                f"import {code}: the batch code is in use but its task is not readable yet; reading it again later",
                operation=step.kind,
                may_have_applied=True,
            ) from None
        return StepResult(Settlement.APPLIED, ref=guid)

    def settle_step(self, run: Run, step: Step) -> StepResult:
        """An import whose answer was lost: its batch by code (none: not applied), then its task."""
        code = str(step.request["batch_code"])
        if self._own_batch(run, code) is None:
            return StepResult(Settlement.NOT_APPLIED)
        tasks = self._client.find_tasks(code)
        if not tasks:
            return StepResult(Settlement.UNKNOWN)
        return StepResult(Settlement.APPLIED, ref=tasks[0].task_guid)

    def describe_follow_up(self, run: Run, view: FollowView) -> list[dict[str, Any]]:
        """A dry run: each chunk's reversal under its batch code, then the import it would send."""
        eligible = list(view.items(states={ItemState.PENDING}))
        size = run.options.chunk_size
        chunks = [
            {
                "batch_code": batch_code(run.id, number),
                "bills": len(part),
                "first_bill_id": part[0].invoice.invoice_id,
                "last_bill_id": part[-1].invoice.invoice_id,
            }
            for number, part in enumerate(eligible[start : start + size] for start in range(0, len(eligible), size))
        ]
        reverse = {"request": f"PUT {REVERSE_PATH}", "batch_mode": SELF_CONTAINED, "note": run.id, "chunks": chunks}
        rebill = _kept(run).rebill
        if rebill is None:
            return [reverse, {"import": None, "note": "reverse-only: no corrected-bills file, nothing is imported"}]
        keys = [item_keys(item) for item in eligible]
        covered = set().union(*keys)
        rows = [row for row in _kept_rows(rebill) if row.match_key in covered]
        matched = {row.match_key for row in rows}
        return [
            reverse,
            {
                "request": f"POST {IMPORT_PATH}",
                "batch_code": import_code(run.id, 1),
                "file_name": f"rebill-{run_prefix(run.id).lower()}.csv",
                "from_file": rebill.name,
                "rows": len(rows),
                "unmatched_lines_left_out": list(rebill.unmatched),
                "reversed_not_rebilled": sum(1 for item_key in keys if not item_key & matched),
            },
        ]

    # --- operators ---------------------------------------------------------------------------------------

    def summarize(self, run: Run) -> Mapping[str, Any]:
        chosen = _selection(run)
        rebill = _kept(run).rebill
        prefix = run_prefix(run.id)
        summary: dict[str, Any] = {
            "account_period": chosen.account_period,
            "accounts": ", ".join(chosen.account_codes) or None,
            "up_to_bill_id": chosen.up_to_bill_id,
            "bill_ids": f"{len(chosen.bill_ids)} from {chosen.bill_ids_file}" if chosen.bill_ids else None,
            "batches": f"RB-{prefix}-0001, RB-{prefix}-0002, ... (one per chunk of {run.options.chunk_size} bills)",
        }
        if rebill is None:
            summary["rebill"] = "reverse-only: no corrected-bills file was given, nothing is imported"
            return summary
        summary["rebill"] = (
            f"{len(rebill.lines)} corrected bill(s) from {rebill.name}, imported as {import_code(run.id, 1)}"
        )
        if rebill.unmatched:
            summary["unmatched_rows"] = (
                f"left out (no eligible bill): line(s) {_lines_text(rebill.unmatched)} of {Path(rebill.name).name}"
            )
        return summary

    def choose_scheduled(self, choice: Mapping[str, Any]) -> ScheduledSelection:
        return ScheduledSelection(
            None,
            reason="scheduled EnergyCAP runs are not supported yet: start one with "
            "`rebill run --provider energycap --account-period YYYYMM`",
        )

    def check(self) -> str:
        page = next(self._client.iter_bill_pages(page_size=1))
        total = page.total_records if page.total_records is not None else len(page.items)
        return f"EnergyCAP at {self._client.base_url}: API key accepted, {total} bill(s) readable"


# --- helpers ---------------------------------------------------------------------------------------------


def _kept(run: Run) -> EnergyCapKept:
    return EnergyCapKept.model_validate(dict(run.provider_state))


def _selection(run: Run) -> EnergyCapSelection:
    return EnergyCapSelection.model_validate(dict(run.selection.selector))


def _period_filter(period: int, codes: Sequence[str]) -> Filter:
    selecting = where(FilterField.ACCOUNT_PERIOD, Op.EQUALS, period)
    return selecting & where(FilterField.ACCOUNT_CODE, Op.ONE_OF, *codes) if codes else selecting


def _digest(values: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:16]


def _chunk_code(run: Run, items: Sequence[Item]) -> str:
    seqs = {item.chunk_seq for item in items}
    if len(seqs) != 1 or None in seqs:
        raise ValueError(f"EnergyCAP acts on one whole chunk at a time, got chunk numbers {sorted(map(str, seqs))}")
    (seq,) = seqs
    assert seq is not None
    return batch_code(run.id, seq)


def _not_reversed_by(code: str, bill: BillData | None, settled_by_read: bool) -> ItemOutcome:
    """A bill of the chunk the batch holds no reversal of: why, as the bill says now."""
    if bill is None:
        return ItemOutcome(ItemState.FAILED, reason="the bill no longer exists in EnergyCAP")
    skip = bill.skip_reason
    if skip == "already_reversed":
        by = f" by bill {bill.reversed_by_bill_id}" if bill.reversed_by_bill_id else ""
        return ItemOutcome(
            ItemState.SKIPPED, reason=f"already_reversed{by}, outside batch {code}", settled_by_read=settled_by_read
        )
    if skip is not None:
        return ItemOutcome(ItemState.SKIPPED, reason=skip, settled_by_read=settled_by_read)
    return ItemOutcome(
        ItemState.FAILED,
        reason=f"batch {code} holds no reversal of it and it is still unreversed: reverse it in a new run "
        "(this run never sends a second batch for a chunk)",
    )


def _matched(
    path: Path, rows: Sequence[CorrectedBill], bills: Iterable[BillData], *, allow_unmatched: bool
) -> KeptRebillFile:
    """The rows matched to an eligible bill of the selection; a row matching none is refused (importing it
    beside an unreversed bill would bill twice) unless `allow_unmatched` leaves it out."""
    eligible = set().union(*(bill_keys(bill) for bill in bills if bill.skip_reason is None))
    matched = [row for row in rows if row.match_key in eligible]
    unmatched = [row for row in rows if row.match_key not in eligible]
    if unmatched and not allow_unmatched:
        problems = [
            (
                row.line,
                f"account {row.account_code}, meter {row.meter_code}, period {row.billing_period} matches "
                "no eligible bill of the selection",
            )
            for row in unmatched
        ]
        raise RunRefused(
            f"{RebillFileError(str(path), problems)}\nImporting such a row beside a bill that is not reversed would "
            "bill twice: correct the file, or pass --allow-unmatched to leave those rows out"
        )
    if not matched:
        raise RunRefused(f"{path}: no row matches an eligible bill of the selection; nothing would be rebilled")
    return KeptRebillFile(
        name=str(path),
        csv=import_csv(matched).decode(),
        lines=tuple(row.line for row in matched),
        unmatched=tuple(row.line for row in unmatched),
    )


def _kept_rows(rebill: KeptRebillFile) -> list[CorrectedBill]:
    """The kept rows, each with its line in the user's file."""
    rows = parse_rebill_csv(rebill.csv, rebill.name)
    return [replace(row, line=line) for row, line in zip(rows, rebill.lines, strict=True)]


def _import_steps(steps: Iterable[Step]) -> list[Step]:
    return sorted((step for step in steps if step.key.startswith(_STEP_PREFIX)), key=_step_number)


def _step_number(step: Step) -> int:
    return int(step.key.removeprefix(_STEP_PREFIX))


def _kickout_key(kickout: KickoutData, sent: Sequence[CorrectedBill]) -> MatchKey | None:
    """The row a kickout names: by its account, meter and period, else by its row in the file sent."""
    period = kickout.billing_period
    if kickout.account_code and kickout.meter_code and period and period.isdigit():
        return kickout.account_code.lower(), kickout.meter_code.lower(), int(period)
    if 1 <= kickout.row <= len(sent):
        return sent[kickout.row - 1].match_key
    return None


def _reversal_part(item: Item) -> str:
    """What the reversal recorded ("reversed in batch RB-...-0001"), kept in front of what the import adds."""
    if item.reason and item.reason.startswith(_REVERSED_IN):
        return item.reason.split(";", 1)[0]
    return "reversed"


def _lines_text(lines: Sequence[int]) -> str:
    shown = ", ".join(str(line) for line in lines[:_SHOWN_LINES])
    return shown + (f" and {len(lines) - _SHOWN_LINES} more" if len(lines) > _SHOWN_LINES else "")


if TYPE_CHECKING:
    from orchestrator.services.ports import BillingProvider

    def _conforms_to_the_port(provider: EnergyCapProvider) -> BillingProvider:
        return provider  # mypy proves EnergyCapProvider satisfies BillingProvider
