"""The simulated EnergyCAP datasource: accounts, meters, bills, batches, import tasks and their rules; no HTTP.

Like moto's `models.py`, this module knows nothing about requests or JSON (`wire.py` renders and
parses, `app.py` routes). One re-entrant lock (`EnergyCapState.lock`) guards everything; the
entities the getters return are live, so read them while holding it.

The rules, as the contract (reference/energycap-api.md) decides them:
- Every request needs a known `ECI-ApiKey` (401); writes need a key whose user has BillsAndBatches (403).
- Bill reversal is all or nothing: 1..1000 ids, every id known, a batch code no batch has (any case),
  `new self-contained batch` only. A 200 makes the closed batch and one reversal bill per eligible
  bill (not void, not a reversal, not reversed yet); the others are selected but not updated, and
  sending an already reversed bill again is counted as a duplicate reversal.
- An import makes its batch and a Queued task at once; the task runs for `EnergyCapFaults.import_seconds`
  (advanced lazily by the clock on every access: no thread), then imports its valid rows together
  and kicks out the others with a message. A re-import of a task's kickouts is a task of its own.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from simulators.common import RequestCounters
from simulators.energycap import filters
from simulators.energycap.errors import Forbidden, NotFound, SimError, Unauthorized
from simulators.energycap.faults import CountedFaults, EnergyCapFaults
from simulators.energycap.import_csv import (
    BillRow as ImportedRow,
    ImportFileError,
    RawRow,
    RowFault,
    check_row,
    read_rows,
)

DEFAULT_ACCOUNT_PERIOD = 202510
DEFAULT_PAGE_SIZE = 250
MAX_PAGE_SIZE = 1000
MAX_REVERSE_IDS = 1000
MAX_TEXT = 255
SELF_CONTAINED = "new self-contained batch"
BATCH_MODES = frozenset({SELF_CONTAINED, "use existing batch", "new batch"})

QUEUED = "Queued"
RUNNING = "Running"
COMPLETED = "Completed"
COMPLETED_WITH_KICKOUTS = "Completed with kickouts"
FAILED = "Failed"

CENT = Decimal("0.01")
T = TypeVar("T")
K = TypeVar("K")


# --------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Meter:
    meter_id: int
    meter_code: str


@dataclass(slots=True)
class Account:
    account_id: int
    account_code: str
    account_info: str
    meters: list[Meter]

    def meter(self, code: str) -> Meter | None:
        lowered = code.lower()
        return next((m for m in self.meters if m.meter_code.lower() == lowered), None)


@dataclass(slots=True)
class Batch:
    batch_id: int
    batch_code: str
    note: str | None
    is_open: bool
    start_date: datetime
    end_date: datetime | None = None
    bill_ids: list[int] = field(default_factory=list)
    running_total: Decimal = Decimal("0.00")


@dataclass(slots=True)
class Bill:
    bill_id: int
    account: Account
    meters: tuple[Meter, ...]
    begin_date: date
    end_date: date
    billing_period: int
    account_period: int
    total_cost: Decimal
    batch: Batch | None
    void: bool = False
    approved: bool = False
    ap_exported: bool = False
    gl_exported: bool = False
    reversal_of_bill_id: int | None = None
    reversed_by_bill_id: int | None = None
    lines: tuple[tuple[str, Decimal], ...] = ()
    # Bumped by every change; wire.py caches the rendered JSON per version.
    version: int = 0
    rendered: tuple[int, bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def is_reversal(self) -> bool:
        return self.reversal_of_bill_id is not None

    @property
    def is_reversed(self) -> bool:
        return self.reversed_by_bill_id is not None

    def skip_reason(self) -> str | None:
        """Why a reversal leaves this bill alone (contract order), or None when it is eligible."""
        if self.void:
            return "void"
        if self.is_reversal:
            return "reversal_bill"
        if self.is_reversed:
            return "already_reversed"
        return None


@dataclass(frozen=True, slots=True)
class Kickout:
    row: int  # 1-based data row of the task's file
    account_code: str
    meter_code: str
    billing_period: str
    message: str


@dataclass(frozen=True, slots=True)
class ImportOutput:
    rows: int
    created_bill_ids: tuple[int, ...]
    kickouts: tuple[Kickout, ...]


@dataclass(slots=True)
class ImportTask:
    guid: str
    task_id: int
    batch: Batch
    kind: Literal["import", "kickout"]
    file_name: str | None
    note: str | None
    begin_date: datetime
    running_at: float  # clock time it leaves Queued
    done_at: float  # clock time it ends
    data: bytes | None = None  # the file of an import
    rows: list[RawRow] | None = None  # the rows of a kickout re-import
    parent_guid: str | None = None
    status: str = QUEUED
    message: str | None = None
    end_date: datetime | None = None
    output: ImportOutput | None = None
    kicked_out_rows: list[RawRow] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in (COMPLETED, COMPLETED_WITH_KICKOUTS, FAILED)


# --------------------------------------------------------------------------------------------
# Commands and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReverseRequest:
    """A bill reversal as sent (wire.py checks only the JSON shape; the rules are here)."""

    bill_ids: tuple[int, ...] | None
    batch_mode: str | None
    batch_code: str | None
    note: str | None = None
    account_period_year: int | None = None
    account_period_number: int | None = None


@dataclass(frozen=True, slots=True)
class ReverseResult:
    selected: int
    updated: int
    batch: Batch


@dataclass(frozen=True, slots=True)
class ImportRequest:
    batch_mode: str | None
    batch_code: str | None
    data: str | None  # base64
    file_name: str | None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    page_number: int
    page_size: int
    total: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.page_size)


@dataclass(frozen=True, slots=True)
class SeededPeriod:
    """What `seed_period` made, for tests and demos to plan against (ids ascending)."""

    account_period: int
    seed: int
    bill_ids: tuple[int, ...]  # every bill of the period, reversal bills included
    eligible_ids: tuple[int, ...]
    void_ids: tuple[int, ...]
    reversed_ids: tuple[int, ...]
    reversal_ids: tuple[int, ...]
    exported_ids: tuple[int, ...]
    other_period: int
    other_period_ids: tuple[int, ...]
    account_codes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accountPeriod": self.account_period,
            "seed": self.seed,
            "billIds": list(self.bill_ids),
            "eligibleIds": list(self.eligible_ids),
            "voidIds": list(self.void_ids),
            "reversedIds": list(self.reversed_ids),
            "reversalIds": list(self.reversal_ids),
            "exportedIds": list(self.exported_ids),
            "otherPeriod": self.other_period,
            "otherPeriodIds": list(self.other_period_ids),
            "accountCodes": list(self.account_codes),
        }


# --------------------------------------------------------------------------------------------
# Filterable fields (contract, decided subset)
# --------------------------------------------------------------------------------------------

BILL_FIELDS: tuple[filters.FieldSpec[Bill], ...] = (
    filters.FieldSpec("billId", filters.Kind.INT, filters.INT_OPERATORS, lambda b: b.bill_id),
    filters.FieldSpec("accountId", filters.Kind.INT, filters.INT_OPERATORS, lambda b: b.account.account_id),
    filters.FieldSpec("accountCode", filters.Kind.STRING, filters.ALL_OPERATORS, lambda b: b.account.account_code),
    filters.FieldSpec("accountPeriod", filters.Kind.PERIOD, filters.PERIOD_OPERATORS, lambda b: b.account_period),
    filters.FieldSpec("billingPeriod", filters.Kind.PERIOD, filters.PERIOD_OPERATORS, lambda b: b.billing_period),
    filters.FieldSpec(
        "batchCode", filters.Kind.STRING, filters.INT_OPERATORS, lambda b: b.batch.batch_code if b.batch else None
    ),
)
BATCH_FIELDS: tuple[filters.FieldSpec[Batch], ...] = (
    filters.FieldSpec("batchCode", filters.Kind.STRING, filters.INT_OPERATORS, lambda b: b.batch_code),
)
TASK_FIELDS: tuple[filters.FieldSpec[ImportTask], ...] = (
    filters.FieldSpec("batchCode", filters.Kind.STRING, filters.INT_OPERATORS, lambda t: t.batch.batch_code),
)

_FILTER_CACHE_SIZE = 64


# --------------------------------------------------------------------------------------------
# The state
# --------------------------------------------------------------------------------------------


class EnergyCapState:
    """One simulated EnergyCAP datasource. Thread-safe; import tasks advance with `clock`."""

    def __init__(
        self,
        api_key: str = "sim-api-key",
        faults: EnergyCapFaults | None = None,
        rng_seed: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.lock = threading.RLock()
        self.rng_seed = rng_seed
        self.faults = CountedFaults(faults or EnergyCapFaults(), random.Random(rng_seed))
        self.traffic = RequestCounters()
        self._clock = clock
        self._wall_clock = wall_clock
        self._api_keys: dict[str, bool] = {api_key: True}
        self._init_entities()
        self._init_counters()

    def _init_entities(self) -> None:
        self._ids = random.Random(f"energycap-ids:{self.rng_seed}")
        self._kickout_rng = random.Random(f"energycap-kickouts:{self.rng_seed}")
        self.accounts: dict[str, Account] = {}  # by lower-case code
        self.bills: dict[int, Bill] = {}  # ascending ids: insertion order
        self.batches: dict[int, Batch] = {}
        self.tasks: dict[str, ImportTask] = {}  # by lower-case GUID
        self._batch_codes: dict[str, Batch] = {}  # by lower-case code
        self._pending: list[ImportTask] = []
        self.seeded: dict[int, SeededPeriod] = {}  # by account period, the latest seeding
        self._drawn_rows: set[tuple[str, str, str]] = set()
        self._next_account = 1
        self._next_meter = 1
        self._next_bill = 100_001
        self._next_batch = 1
        self._next_task = 1
        self._bills_version = 0
        self._filter_cache: dict[str, tuple[int, list[Bill]]] = {}

    def _init_counters(self) -> None:
        self._reversals: Counter[int] = Counter()
        self._duplicate_reversals: Counter[int] = Counter()
        self._batch_code_attempts: Counter[str] = Counter()
        self._import_attempts: Counter[str] = Counter()
        self._batches_made: Counter[str] = Counter()
        self._kickout_reimports: Counter[str] = Counter()
        self._deprecated_calls: Counter[str] = Counter()
        self._reverse_calls: list[dict[str, Any]] = []
        self._imports: list[dict[str, Any]] = []
        self._refused_writes: list[dict[str, Any]] = []
        self._first_reversal: datetime | None = None
        self._last_reversal: datetime | None = None

    def reset(self) -> None:
        """Forget every entity and counter (API keys and fault settings are kept)."""
        with self.lock:
            self._init_entities()
            self.reset_counters()

    def close(self) -> None:
        """Nothing runs in the background: import tasks advance with the clock on each access."""

    # ---------------------------------------------------------------- keys

    def add_api_key(self, key: str, *, bills_and_batches: bool = True) -> None:
        """Accept `key`; without BillsAndBatches its writes get 403."""
        with self.lock:
            self._api_keys[key] = bills_and_batches

    def revoke_api_key(self, key: str) -> bool:
        with self.lock:
            return self._api_keys.pop(key, None) is not None

    def authorize(self, key: str | None, *, write: bool) -> None:
        """Unauthorized for a missing or unknown key; Forbidden for a write by a key without BillsAndBatches."""
        known = None
        if key:
            for candidate, may_write in list(self._api_keys.items()):
                if secrets.compare_digest(candidate.encode(), key.encode()):
                    known = may_write
        if known is None:
            raise Unauthorized("The API key is missing, invalid or revoked.")
        if write and not known:
            raise Forbidden("The user of this API key lacks the BillsAndBatches permission (Edit/Create).")

    # ---------------------------------------------------------------- counters

    def deprecated_call(self, endpoint: str) -> None:
        with self.lock:
            self._deprecated_calls[endpoint] += 1

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                **self.traffic.snapshot(),
                "faults": self.faults.counts(),
                "reversals": {str(bill_id): n for bill_id, n in self._reversals.items()},
                "duplicate_reversals": {str(bill_id): n for bill_id, n in self._duplicate_reversals.items()},
                "batch_code_attempts": dict(self._batch_code_attempts),
                "import_attempts": dict(self._import_attempts),
                "batches": dict(self._batches_made),
                "reverse_calls": [dict(call) for call in self._reverse_calls],
                "imports": [dict(entry) for entry in self._imports],
                "kickout_reimports": dict(self._kickout_reimports),
                "refused_writes": [dict(entry) for entry in self._refused_writes],
                "deprecated_calls": dict(self._deprecated_calls),
                "first_reversal_at": _iso(self._first_reversal),
                "last_reversal_at": _iso(self._last_reversal),
            }

    def reset_counters(self) -> None:
        """Zero the counters and the in-flight peak; entities are kept."""
        with self.lock:
            self._init_counters()
            self.traffic.reset()
            self.faults.reset_counts()

    # ---------------------------------------------------------------- reads

    def bill(self, bill_id: int) -> Bill:
        return self._known(self.bills, bill_id, f"Bill {bill_id}")

    def batch(self, batch_id: int) -> Batch:
        return self._known(self.batches, batch_id, f"Batch {batch_id}")

    def task(self, guid: str) -> ImportTask:
        return self._known(self.tasks, guid.strip().lower(), f"Task {guid}")

    def _known(self, entities: Mapping[K, T], key: K, what: str) -> T:
        with self.lock:
            self._advance()
            found = entities.get(key)
            if found is None:
                raise NotFound(f"{what} was not found.")
            return found

    def batch_by_code(self, code: str) -> Batch | None:
        with self.lock:
            self._advance()
            return self._batch_codes.get(code.lower())

    def account(self, code: str) -> Account | None:
        with self.lock:
            return self.accounts.get(code.lower())

    def list_bills(self, filter_text: str | None, page_number: int, page_size: int | None) -> Page[Bill]:
        with self.lock:
            self._advance()
            return self._page(self._matching_bills(filter_text), page_number, page_size)

    def list_batches(self, filter_text: str | None, page_number: int, page_size: int | None) -> Page[Batch]:
        with self.lock:
            self._advance()
            check = filters.compile_filter(filter_text, BATCH_FIELDS, "batches")
            return self._page(_select(self.batches.values(), check), page_number, page_size)

    def list_tasks(self, filter_text: str | None, page_number: int, page_size: int | None) -> Page[ImportTask]:
        with self.lock:
            self._advance()
            check = filters.compile_filter(filter_text, TASK_FIELDS, "tasks")
            ordered = sorted(self.tasks.values(), key=lambda t: t.task_id)
            return self._page(_select(ordered, check), page_number, page_size)

    def page_size(self, asked: int | None) -> int:
        """The size a list answers with: the default, capped silently by the API's max and the fault cap."""
        size = DEFAULT_PAGE_SIZE if asked is None else asked
        if size < 1:
            raise SimError(f"pageSize must be at least 1, got {size}.")
        cap = self.faults.settings.page_cap
        return min(size, MAX_PAGE_SIZE, cap if cap is not None else MAX_PAGE_SIZE)

    def _page(self, matching: list[T], page_number: int, page_size: int | None) -> Page[T]:
        if page_number < 1:
            raise SimError(f"pageNumber must be at least 1, got {page_number}.")
        size = self.page_size(page_size)
        start = (page_number - 1) * size
        return Page(matching[start : start + size], page_number, size, len(matching))

    def _matching_bills(self, filter_text: str | None) -> list[Bill]:
        """Bills matching a filter, ascending id; cached per filter text until a bill changes."""
        key = (filter_text or "").strip()
        cached = self._filter_cache.get(key)
        if cached is not None and cached[0] == self._bills_version:
            return cached[1]
        check = filters.compile_filter(key, BILL_FIELDS, "bills")
        matching = _select(self.bills.values(), check)
        if len(self._filter_cache) >= _FILTER_CACHE_SIZE:
            self._filter_cache.clear()
        self._filter_cache[key] = (self._bills_version, matching)
        return matching

    # ---------------------------------------------------------------- reversal

    def reverse_bills(self, request: ReverseRequest, *, endpoint: str = "v202510") -> ReverseResult:
        """All or nothing: a SimError leaves the state as it was."""
        with self.lock:
            self._advance()
            code = request.batch_code
            if code:
                self._batch_code_attempts[code] += 1
            try:
                ids = self._check_reversal(request)
            except SimError as exc:
                self._refused_writes.append({"operation": "reverse", "code": code, "message": exc.message})
                raise
            assert code is not None
            now = self._wall_clock()
            batch = self._new_batch(code, request.note, now, is_open=False)
            batch.end_date = now
            self._batches_made[code] += 1
            account_period = None
            if request.account_period_year is not None and request.account_period_number is not None:
                account_period = request.account_period_year * 100 + request.account_period_number
            updated = 0
            for bill_id in ids:
                original = self.bills[bill_id]
                if original.skip_reason() is not None:
                    if original.is_reversed:
                        self._duplicate_reversals[bill_id] += 1
                    continue
                self._make_reversal(original, batch, account_period)
                self._reversals[bill_id] += 1
                updated += 1
            if updated:
                self._first_reversal = self._first_reversal or now
                self._last_reversal = now
            self._reverse_calls.append(
                {"code": code, "endpoint": endpoint, "ids": list(ids), "selected": len(ids), "updated": updated}
            )
            return ReverseResult(len(ids), updated, batch)

    def _check_reversal(self, request: ReverseRequest) -> list[int]:
        _check_batch_mode(request.batch_mode)
        self._check_new_code(request.batch_code)
        _check_text("newBatch.note", request.note)
        year, number = request.account_period_year, request.account_period_number
        if year is not None and not 1900 <= year <= 2099:
            raise SimError(f"newBatch.accountPeriodYear must be between 1900 and 2099, got {year}.")
        if number is not None and not 1 <= number <= 12:
            raise SimError(f"newBatch.accountPeriodNumber must be between 1 and 12, got {number}.")
        if not request.bill_ids:
            raise SimError("billIds cannot be empty.")
        ids = list(dict.fromkeys(request.bill_ids))
        if len(ids) > MAX_REVERSE_IDS:
            raise SimError(f"billIds may hold at most {MAX_REVERSE_IDS} ids, got {len(ids)}.")
        unknown = [bill_id for bill_id in ids if bill_id not in self.bills]
        if unknown:
            shown = ", ".join(str(i) for i in unknown[:10]) + (" …" if len(unknown) > 10 else "")
            raise SimError(f"Unknown bill id(s): {shown}.")
        return ids

    def _make_reversal(self, original: Bill, batch: Batch, account_period: int | None) -> Bill:
        reversal = self._add_bill(
            account=original.account,
            meters=original.meters,
            begin_date=original.begin_date,
            end_date=original.end_date,
            billing_period=original.billing_period,
            account_period=account_period if account_period is not None else original.account_period,
            total_cost=-original.total_cost,
            batch=batch,
            approved=original.approved,
            reversal_of_bill_id=original.bill_id,
            lines=tuple((caption, -cost) for caption, cost in original.lines),
        )
        original.reversed_by_bill_id = reversal.bill_id
        original.version += 1
        self._bills_version += 1
        return reversal

    # ---------------------------------------------------------------- import

    def import_bills(self, request: ImportRequest) -> ImportTask:
        """Make the batch and a Queued task; the rows are read when the task runs."""
        with self.lock:
            self._advance()
            code = request.batch_code
            if code:
                self._batch_code_attempts[code] += 1
                self._import_attempts[code] += 1
            try:
                _check_batch_mode(request.batch_mode)
                self._check_new_code(code)
                _check_text("importNote", request.note)
                if not request.file_name or not request.file_name.strip():
                    raise SimError("fileName is required.")
                data = _base64(request.data)
            except SimError as exc:
                self._refused_writes.append({"operation": "import", "code": code, "message": exc.message})
                raise
            assert code is not None
            return self._new_task(code, request.note, "import", file_name=request.file_name, data=data)

    def reimport_kickouts(self, guid: str, batch_mode: str | None, batch_code: str | None) -> ImportTask:
        """A new task importing the rows `guid` kicked out; 404 unknown, 400 unless it ended with kickouts."""
        with self.lock:
            self._advance()
            if batch_code:
                self._batch_code_attempts[batch_code] += 1
            try:
                parent = self.task(guid)
                if parent.status != COMPLETED_WITH_KICKOUTS:
                    raise SimError(f"Task {guid} has status '{parent.status}', not '{COMPLETED_WITH_KICKOUTS}'.")
                _check_batch_mode(batch_mode)
                self._check_new_code(batch_code)
            except SimError as exc:
                self._refused_writes.append({"operation": "kickout", "code": batch_code, "message": exc.message})
                raise
            assert batch_code is not None
            self._kickout_reimports[parent.guid] += 1
            return self._new_task(
                batch_code,
                parent.note,
                "kickout",
                file_name=parent.file_name,
                rows=[dict(row) for row in parent.kicked_out_rows],
                parent_guid=parent.guid,
            )

    def _new_task(
        self,
        code: str,
        note: str | None,
        kind: Literal["import", "kickout"],
        *,
        file_name: str | None,
        data: bytes | None = None,
        rows: list[RawRow] | None = None,
        parent_guid: str | None = None,
    ) -> ImportTask:
        now, started = self._wall_clock(), self._clock()
        seconds = self.faults.settings.import_seconds
        task = ImportTask(
            guid=str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
            task_id=self._next_task,
            batch=self._new_batch(code, note, now, is_open=True),
            kind=kind,
            file_name=file_name,
            note=note,
            begin_date=now,
            running_at=started + seconds / 4,
            done_at=started + seconds,
            data=data,
            rows=rows,
            parent_guid=parent_guid,
        )
        self._next_task += 1
        self._batches_made[code] += 1
        self.tasks[task.guid] = task
        self._pending.append(task)
        return task

    def advance(self) -> None:
        """Move every task its clock time says is due (every other public method does this first)."""
        with self.lock:
            self._advance()

    def _advance(self) -> None:
        if not self._pending:
            return
        now = self._clock()
        still: list[ImportTask] = []
        for task in self._pending:
            if now >= task.done_at:
                self._finish(task)
            else:
                if now >= task.running_at:
                    task.status = RUNNING
                still.append(task)
        self._pending = still

    def _finish(self, task: ImportTask) -> None:
        ended = self._wall_clock()
        task.end_date = task.batch.end_date = ended
        task.batch.is_open = False
        try:
            rows = task.rows if task.rows is not None else read_rows(task.data or b"")
        except ImportFileError as exc:
            task.status, task.message = FAILED, f"Import failed: {exc}"
            self._record_import(task, rows=0)
            return
        created: list[int] = []
        kickouts: list[Kickout] = []
        for number, raw in enumerate(rows, start=1):
            try:
                checked = self._check_import_row(raw, random_kickout=task.kind == "import")
            except RowFault as exc:
                kickouts.append(
                    Kickout(
                        number,
                        raw.get("accountcode", ""),
                        raw.get("metercode", ""),
                        raw.get("billingperiod", ""),
                        str(exc),
                    )
                )
                task.kicked_out_rows.append(raw)
                continue
            created.append(self._import_row(checked, task.batch).bill_id)
        task.output = ImportOutput(len(rows), tuple(created), tuple(kickouts))
        task.status = COMPLETED_WITH_KICKOUTS if kickouts else COMPLETED
        task.message = f"{len(created)} bill(s) imported, {len(kickouts)} row(s) kicked out."
        self._record_import(task, rows=len(rows))

    def _check_import_row(self, raw: RawRow, *, random_kickout: bool) -> tuple[ImportedRow, Account, Meter]:
        account = self.accounts.get(raw.get("accountcode", "").lower())
        if account is None:
            raise RowFault(f"Account code '{raw.get('accountcode', '')}' was not found.")
        meter = account.meter(raw.get("metercode", ""))
        if meter is None:
            raise RowFault(f"Meter code '{raw.get('metercode', '')}' is not on account '{account.account_code}'.")
        checked = check_row(raw)
        key = (account.account_code.lower(), meter.meter_code.lower(), str(checked.billing_period))
        if random_kickout and key not in self._drawn_rows:
            self._drawn_rows.add(key)
            if self._kickout_rng.random() < self.faults.settings.p_kickout:
                raise RowFault("The bill could not be imported (simulated kickout); import it again.")
        return checked, account, meter

    def _import_row(self, checked: tuple[ImportedRow, Account, Meter], batch: Batch) -> Bill:
        row, account, meter = checked
        return self._add_bill(
            account=account,
            meters=(meter,),
            begin_date=row.begin_date,
            end_date=row.end_date,
            billing_period=row.billing_period,
            account_period=row.billing_period,
            total_cost=row.total_cost,
            batch=batch,
            lines=row.lines,
        )

    def _record_import(self, task: ImportTask, *, rows: int) -> None:
        output = task.output
        self._imports.append(
            {
                "code": task.batch.batch_code,
                "kind": task.kind,
                "task": task.guid,
                "status": task.status,
                "rows": rows,
                "created": len(output.created_bill_ids) if output else 0,
                "kicked_out": len(output.kickouts) if output else 0,
            }
        )

    # ---------------------------------------------------------------- accounts (seeding, and fixing kickouts)

    def add_account(self, code: str, meter_codes: Sequence[str], info: str | None = None) -> Account:
        with self.lock:
            if code.lower() in self.accounts:
                raise SimError(f"Account code '{code}' already exists.")
            account = Account(self._next_account, code, info or f"Account {code}", [])
            self._next_account += 1
            self.accounts[code.lower()] = account
            for meter_code in meter_codes:
                self.add_meter(code, meter_code)
            return account

    def add_meter(self, account_code: str, meter_code: str) -> Meter:
        with self.lock:
            account = self.accounts.get(account_code.lower())
            if account is None:
                raise NotFound(f"Account code '{account_code}' was not found.")
            if account.meter(meter_code) is not None:
                raise SimError(f"Meter code '{meter_code}' is already on account '{account_code}'.")
            meter = Meter(self._next_meter, meter_code)
            self._next_meter += 1
            account.meters.append(meter)
            return meter

    # ---------------------------------------------------------------- seeding

    def seed_period(self, bills: int, seed: int, account_period: int = DEFAULT_ACCOUNT_PERIOD) -> SeededPeriod:
        """One account period of `bills` bills over fresh accounts, and some bills of the period before.

        About 4% are void, 4% reversed (their reversal bills land in the same period, in a closed
        batch), a quarter exported to AP (half of those to GL too); at least one of each from 10
        bills on. The same arguments give the same codes, dates and costs on a fresh simulator.
        """
        if bills < 0:
            raise ValueError("bills must not be negative")
        _check_period(account_period)
        with self.lock:
            rng = random.Random(f"energycap-seed:{seed}:{account_period}")
            pairs = self._seed_accounts(rng, bills)
            previous = _shift_period(account_period, -1)
            now = self._wall_clock()
            older_batch = self._new_batch(self._seed_code(f"IMP-{previous}"), "seeded", now, is_open=False)
            older_pairs = rng.sample(pairs, max(1, bills // 5)) if pairs else []
            other_ids = [
                self._seed_bill(rng, account, meter, previous, _shift_period(previous, -1), older_batch).bill_id
                for account, meter in older_pairs
            ]
            batch = self._new_batch(self._seed_code(f"IMP-{account_period}"), "seeded", now, is_open=False)
            originals = [
                self._seed_bill(
                    rng,
                    account,
                    meter,
                    account_period,
                    previous if rng.random() < 0.2 else account_period,
                    batch,
                )
                for account, meter in pairs
            ]
            void, reversed_, exported = self._seed_flags(rng, originals)
            reversal_ids: list[int] = []
            if reversed_:
                reversals = self._new_batch(self._seed_code(f"REV-{account_period}"), "seeded", now, is_open=False)
                reversal_ids = [self._make_reversal(bill, reversals, None).bill_id for bill in reversed_]
            untouched = set(void) | {b.bill_id for b in reversed_}
            seeded = SeededPeriod(
                account_period=account_period,
                seed=seed,
                bill_ids=tuple(b.bill_id for b in originals) + tuple(reversal_ids),
                eligible_ids=tuple(b.bill_id for b in originals if b.bill_id not in untouched),
                void_ids=tuple(sorted(void)),
                reversed_ids=tuple(b.bill_id for b in reversed_),
                reversal_ids=tuple(reversal_ids),
                exported_ids=tuple(sorted(exported)),
                other_period=previous,
                other_period_ids=tuple(other_ids),
                account_codes=tuple(dict.fromkeys(account.account_code for account, _ in pairs)),
            )
            self.seeded[account_period] = seeded
            return seeded

    def _seed_accounts(self, rng: random.Random, bills: int) -> list[tuple[Account, Meter]]:
        """Fresh accounts of 1-3 meters until there is one (account, meter) per bill."""
        pairs: list[tuple[Account, Meter]] = []
        while len(pairs) < bills:
            number = 10_000 + self._next_account
            code = f"AC-{number}"
            while code.lower() in self.accounts:
                number += 1
                code = f"AC-{number}"
            meters = [f"MT-{number}-{k}" for k in range(1, rng.randint(1, 3) + 1)]
            account = self.add_account(code, meters, f"{rng.choice(_PLACES)} {number % 97} - {rng.choice(_UTILITIES)}")
            pairs += [(account, meter) for meter in account.meters]
        return pairs[:bills]

    def _seed_bill(
        self,
        rng: random.Random,
        account: Account,
        meter: Meter,
        account_period: int,
        billing_period: int,
        batch: Batch,
    ) -> Bill:
        begin = date(billing_period // 100, billing_period % 100, 1)
        end = date(begin.year + begin.month // 12, begin.month % 12 + 1, 1) - timedelta(days=rng.randint(0, 2))
        total = Decimal(rng.randint(2_500, 900_000)) / 100
        energy = (total * Decimal(rng.randint(55, 85)) / 100).quantize(CENT)
        return self._add_bill(
            account=account,
            meters=(meter,),
            begin_date=begin,
            end_date=end,
            billing_period=billing_period,
            account_period=account_period,
            total_cost=total,
            batch=batch,
            approved=rng.random() < 0.9,
            lines=(("Energy", energy), ("Delivery", total - energy)),
        )

    def _seed_flags(self, rng: random.Random, originals: list[Bill]) -> tuple[list[int], list[Bill], list[int]]:
        n = len(originals)

        def share(fraction: float) -> int:
            return max(1, round(n * fraction)) if n >= 10 else round(n * fraction)

        order = list(range(n))
        rng.shuffle(order)
        void_count, reversed_count = share(0.04), share(0.04)
        void = [originals[i] for i in order[:void_count]]
        reversed_ = sorted(
            (originals[i] for i in order[void_count : void_count + reversed_count]), key=lambda b: b.bill_id
        )
        for bill in void:
            bill.void = True
        exported: list[int] = []
        for bill in rng.sample(originals, share(0.25)):
            bill.ap_exported = True
            bill.gl_exported = rng.random() < 0.5
            exported.append(bill.bill_id)
        return [b.bill_id for b in void], reversed_, exported

    def _seed_code(self, stem: str) -> str:
        code, n = stem, 1
        while code.lower() in self._batch_codes:
            n += 1
            code = f"{stem}-{n}"
        return code

    # ---------------------------------------------------------------- small helpers

    def _check_new_code(self, code: str | None) -> None:
        if code is None or not code.strip():
            raise SimError("newBatch.batchCode is required.")
        _check_text("batchCode", code)
        if code.lower() in self._batch_codes:
            raise SimError(f"Batch code '{code}' already exists; batch codes must be unique.")

    def _new_batch(self, code: str, note: str | None, now: datetime, *, is_open: bool) -> Batch:
        batch = Batch(self._next_batch, code, note, is_open, now)
        self._next_batch += 1
        self.batches[batch.batch_id] = batch
        self._batch_codes[code.lower()] = batch
        return batch

    def _add_bill(self, *, account: Account, batch: Batch | None, **values: Any) -> Bill:
        bill = Bill(bill_id=self._next_bill, account=account, batch=batch, **values)
        self._next_bill += 1
        self.bills[bill.bill_id] = bill
        self._bills_version += 1
        if batch is not None:
            batch.bill_ids.append(bill.bill_id)
            batch.running_total += bill.total_cost
        return bill


_PLACES = ("Main Library", "City Hall", "Fire Station", "Elementary School", "Water Plant", "Police HQ", "Arena")
_UTILITIES = ("Electric", "Natural Gas", "Water", "Sewer", "Steam")


def _select(items: Iterable[T], check: Callable[[T], bool] | None) -> list[T]:
    return list(items) if check is None else [item for item in items if check(item)]


def _check_batch_mode(mode: str | None) -> None:
    """Only self-contained batches are simulated (the contract's other modes are never sent)."""
    if mode is None or not mode.strip():
        raise SimError("batchSettings.batchMode is required.")
    lowered = " ".join(mode.lower().split())
    if lowered not in BATCH_MODES:
        raise SimError(f"batchMode '{mode}' is not one of: {', '.join(sorted(BATCH_MODES))}.")
    if lowered != SELF_CONTAINED:
        raise SimError(f"batchMode '{mode}' is not supported here: only '{SELF_CONTAINED}' is.")


def _check_text(name: str, value: str | None) -> None:
    if value is not None and len(value) > MAX_TEXT:
        raise SimError(f"{name} must be between 0 and {MAX_TEXT} characters.")


def _base64(data: str | None) -> bytes:
    if not data or not data.strip():
        raise SimError("data is required: the file as base64.")
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SimError("data is not valid base64.") from None


def _check_period(period: int) -> None:
    if not (190_001 <= period <= 209_912 and 1 <= period % 100 <= 12):
        raise ValueError(f"not a period yyyymm: {period}")


def _shift_period(period: int, months: int) -> int:
    index = (period // 100) * 12 + (period % 100 - 1) + months
    return (index // 12) * 100 + index % 12 + 1


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
