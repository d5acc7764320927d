"""`RunViews` on the ledger's tables: the only module that knows which columns the web view reads.

Every query is bounded by an index so a 200,000-invoice run stays fast (`ops/bench/web.py`):
invoice pages are keyset-paged on the item id, per-invoice calls go through (run_id, item_id),
and the activity chart is bucketed by the database. Money is summed exactly: PostgreSQL's NUMERIC
sums, SQLite (money as text) groups by amount and the products are added as `Decimal`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, Integer, cast, func, or_, select
from sqlalchemy.sql import ColumnElement

from orchestrator.adapters.ledger.models import (
    ApiCallRow,
    EarlierOutcomeRow,
    ItemRow,
    RunRow,
    StatusEventRow,
    StepRow,
)
from orchestrator.domain.run import TERMINAL_ITEM_STATES, ItemState, ReasonCode, RunState, StepPhase
from orchestrator.services.views import (
    ZERO,
    Activity,
    ActivityBucket,
    CallView,
    EarlierOutcome,
    FailureGroup,
    InvoiceHistory,
    InvoiceLine,
    InvoicePage,
    InvoiceQuery,
    Outcomes,
    Progress,
    RunDetail,
    RunHeadline,
    RunsPage,
    RunsQuery,
    StatusStep,
)

__all__ = ["SqlRunViews"]

T = TypeVar("T")

_MAX_BUCKETS = 120
_BUCKET_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
_MAX_FAILURE_GROUPS = 20
_RECENT = timedelta(seconds=60)
_TERMINAL = [state.value for state in TERMINAL_ITEM_STATES]

_HEADLINE_COLUMNS = (
    RunRow.id,
    RunRow.provider,
    RunRow.selection_label,
    RunRow.state,
    RunRow.reason_code,
    RunRow.reason,
    RunRow.options,
    RunRow.created_at,
    RunRow.finished_at,
    RunRow.planned,
)
_LINE_COLUMNS = (
    ItemRow.id,
    ItemRow.invoice_id,
    ItemRow.party_id,
    ItemRow.party_name,
    ItemRow.amount,
    ItemRow.state,
    ItemRow.reason,
    ItemRow.attempts,
    ItemRow.last_error,
    ItemRow.settled_by_read,
    ItemRow.invoice_number,
    ItemRow.result_ref,
    ItemRow.rebill_ref,
    ItemRow.new_amount,
    ItemRow.claims_total,
    ItemRow.updated_at,
)
_EARLIER_COLUMNS = (
    EarlierOutcomeRow.item_id,
    EarlierOutcomeRow.state,
    EarlierOutcomeRow.reason,
    EarlierOutcomeRow.error,
    EarlierOutcomeRow.attempts,
    EarlierOutcomeRow.settled_at,
    EarlierOutcomeRow.replaced_at,
)
_STEP_COLUMNS = (
    StatusEventRow.subject,
    StatusEventRow.code,
    StatusEventRow.label,
    StatusEventRow.observed_at,
    StatusEventRow.note,
)
_CALL_COLUMNS = (
    ApiCallRow.operation,
    ApiCallRow.outcome,
    ApiCallRow.status_code,
    ApiCallRow.latency_ms,
    ApiCallRow.started_at,
    ApiCallRow.error,
)


class SqlRunViews:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._clock = clock or (lambda: datetime.now(UTC))

    # --- runs ------------------------------------------------------------------------------

    def runs(self, query: RunsQuery) -> RunsPage:
        statement = select(*_HEADLINE_COLUMNS).order_by(RunRow.created_at.desc()).limit(query.limit)
        if query.states:
            statement = statement.where(RunRow.state.in_(sorted(state.value for state in query.states)))
        if query.providers:
            statement = statement.where(RunRow.provider.in_(sorted(query.providers)))
        if not query.include_dry_runs:
            statement = statement.where(RunRow.state != RunState.DRY_RUN.value)
        with self._engine.connect() as conn:
            rows = conn.execute(statement).all()
            outcomes = self._outcomes(conn, [row.id for row in rows])
            providers = conn.execute(select(RunRow.provider).distinct().order_by(RunRow.provider)).scalars().all()
        return RunsPage(
            runs=tuple(_headline(row, outcomes.get(row.id, Outcomes())) for row in rows),
            providers=tuple(providers),
        )

    def resolve(self, run_id: str) -> str | None:
        with self._engine.connect() as conn:
            found = conn.execute(
                select(RunRow.id).where(RunRow.id.startswith(run_id.strip(), autoescape=True)).limit(2)
            ).all()
        return found[0][0] if len(found) == 1 else None

    # --- one run ---------------------------------------------------------------------------

    def run(self, run_id: str) -> RunDetail | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(RunRow).where(RunRow.id == run_id)).one_or_none()
            if row is None:
                return None
            progress = self._progress(conn, row)
            activity, calls = self._activity(conn, run_id, row.created_at, row.finished_at)
            run_failures = conn.execute(
                select(*_CALL_COLUMNS)
                .where(ApiCallRow.run_id == run_id, ApiCallRow.item_id.is_(None), ApiCallRow.outcome != "ok")
                .order_by(ApiCallRow.started_at.desc())
                .limit(10)
            ).all()
            steps = conn.execute(
                select(StepRow.key, StepRow.phase, StepRow.ref).where(StepRow.run_id == run_id).order_by(StepRow.id)
            ).all()
            return RunDetail(
                headline=_headline(row, progress.outcomes),
                progress=progress,
                settings=_settings(row, steps),
                rebill_sent=any(step.phase != StepPhase.RELEASED.value for step in steps),
                steps=self._steps(conn, run_id),
                failures=self._failures(conn, run_id),
                run_failures=tuple(_call(call) for call in run_failures),
                calls=calls,
                activity=activity,
                new_amount=self._new_amount(conn, run_id),
            )

    def progress(self, run_id: str) -> Progress | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(RunRow.id, RunRow.state, RunRow.reason, RunRow.planned, RunRow.created_at).where(
                    RunRow.id == run_id
                )
            ).one_or_none()
            return self._progress(conn, row) if row is not None else None

    def _progress(self, conn: Connection, row: Any) -> Progress:
        now = self._clock()
        # Worked items only (claimed at least once): a plan's left-as-is invoices settle all at once and
        # would make a young run look fast.
        recent = conn.execute(
            select(func.count()).where(
                ItemRow.run_id == row.id,
                ItemRow.state.in_(_TERMINAL),
                ItemRow.updated_at >= now - _RECENT,
                ItemRow.claims_total > 0,
            )
        ).scalar_one()
        last_step = conn.execute(
            select(*_STEP_COLUMNS)
            .where(StatusEventRow.run_id == row.id)
            .order_by(StatusEventRow.observed_at.desc(), StatusEventRow.id.desc())
            .limit(1)
        ).one_or_none()
        return Progress(
            run_id=row.id,
            state=RunState(row.state),
            reason=row.reason,
            planned=row.planned,
            outcomes=self._outcomes(conn, [row.id]).get(row.id, Outcomes()),
            settled_last_minute=recent,
            observed_at=now,
            last_step=_step(*last_step) if last_step is not None else None,
            window_seconds=min(_RECENT.total_seconds(), (now - row.created_at).total_seconds()),
        )

    # --- invoices --------------------------------------------------------------------------

    def invoices(self, run_id: str, query: InvoiceQuery) -> InvoicePage:
        statement = select(*_LINE_COLUMNS).where(ItemRow.run_id == run_id)
        if query.outcome is not None:
            statement = statement.where(ItemRow.state == query.outcome.value)
        text = query.text.strip()
        if text:
            statement = statement.where(
                or_(
                    ItemRow.invoice_id.startswith(text, autoescape=True),
                    ItemRow.party_id.startswith(text, autoescape=True),
                    func.lower(ItemRow.party_name).contains(text.lower(), autoescape=True),
                )
            )
        backwards = query.before is not None and query.after is None
        if backwards:
            statement = statement.where(ItemRow.id < query.before).order_by(ItemRow.id.desc())
        else:
            if query.after is not None:
                statement = statement.where(ItemRow.id > query.after)
            statement = statement.order_by(ItemRow.id)
        with self._engine.connect() as conn:
            rows = conn.execute(statement.limit(query.limit + 1)).all()
        more = len(rows) > query.limit
        lines = [_line(row) for row in rows[: query.limit]]
        if backwards:
            lines.reverse()
            return InvoicePage(
                lines=tuple(lines),
                next_after=lines[-1].item_id if lines else None,
                previous_before=lines[0].item_id if lines and more else None,
            )
        return InvoicePage(
            lines=tuple(lines),
            next_after=lines[-1].item_id if lines and more else None,
            previous_before=lines[0].item_id if lines and query.after is not None else None,
        )

    def invoice(self, run_id: str, item_id: int) -> InvoiceHistory | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(*_LINE_COLUMNS).where(ItemRow.run_id == run_id, ItemRow.id == item_id)
            ).one_or_none()
            if row is None:
                return None
            calls = conn.execute(
                select(*_CALL_COLUMNS)
                .where(ApiCallRow.run_id == run_id, ApiCallRow.item_id == item_id)
                .order_by(ApiCallRow.started_at, ApiCallRow.id)
            ).all()
            earlier = conn.execute(
                select(*_EARLIER_COLUMNS)
                .where(EarlierOutcomeRow.run_id == run_id, EarlierOutcomeRow.item_id == item_id)
                .order_by(EarlierOutcomeRow.id)
            ).all()
        return InvoiceHistory(_line(row), tuple(_call(call) for call in calls), tuple(map(_earlier, earlier)))

    def every_invoice(self, run_id: str, *, outcome: ItemState | None = None) -> Iterator[InvoiceHistory]:
        """Three streams in item order (items, their calls, their earlier outcomes), merged here: the
        run is read once whatever its size, a few thousand rows at a time."""
        chosen: list[ColumnElement[bool]] = [ItemRow.run_id == run_id]
        if outcome is not None:
            chosen.append(ItemRow.state == outcome.value)
        of_chosen = select(ItemRow.id).where(*chosen)
        items = select(*_LINE_COLUMNS).where(*chosen).order_by(ItemRow.id)
        calls = select(ApiCallRow.item_id, *_CALL_COLUMNS).where(ApiCallRow.run_id == run_id)
        earlier = select(*_EARLIER_COLUMNS).where(EarlierOutcomeRow.run_id == run_id)
        if outcome is not None:
            calls = calls.where(ApiCallRow.item_id.in_(of_chosen))
            earlier = earlier.where(EarlierOutcomeRow.item_id.in_(of_chosen))
        else:
            calls = calls.where(ApiCallRow.item_id.is_not(None))
        with self._engine.connect() as item_conn, self._engine.connect() as call_conn, self._engine.connect() as old:
            item_rows = item_conn.execution_options(yield_per=1000).execute(items)
            call_rows = call_conn.execution_options(yield_per=1000).execute(
                calls.order_by(ApiCallRow.item_id, ApiCallRow.started_at, ApiCallRow.id)
            )
            earlier_rows = old.execution_options(yield_per=1000).execute(
                earlier.order_by(EarlierOutcomeRow.item_id, EarlierOutcomeRow.id)
            )
            try:
                own_calls = _ByItem(call_rows, _call)
                own_earlier = _ByItem(earlier_rows, _earlier)
                for row in item_rows:
                    yield InvoiceHistory(_line(row), own_calls.take(row.id), own_earlier.take(row.id))
            finally:
                item_rows.close()
                call_rows.close()
                earlier_rows.close()

    # --- pieces ----------------------------------------------------------------------------

    def _outcomes(self, conn: Connection, run_ids: Sequence[str]) -> dict[str, Outcomes]:
        if not run_ids:
            return {}
        counts: dict[str, dict[ItemState, int]] = {}
        amounts: dict[str, dict[ItemState, Decimal]] = {}
        if self._postgres:
            summed = conn.execute(
                select(ItemRow.run_id, ItemRow.state, func.count(), func.sum(ItemRow.amount))
                .where(ItemRow.run_id.in_(run_ids))
                .group_by(ItemRow.run_id, ItemRow.state)
            ).all()
            for run_id, state, count, amount in summed:
                counts.setdefault(run_id, {})[ItemState(state)] = count
                amounts.setdefault(run_id, {})[ItemState(state)] = Decimal(amount or 0)
        else:
            # Money is text on SQLite and SUM would add floats: group by the amount (a billing has
            # few distinct prices) and add exactly here.
            grouped = conn.execute(
                select(ItemRow.run_id, ItemRow.state, ItemRow.amount, func.count())
                .where(ItemRow.run_id.in_(run_ids))
                .group_by(ItemRow.run_id, ItemRow.state, ItemRow.amount)
            ).all()
            for run_id, state, price, count in grouped:
                per_run = counts.setdefault(run_id, {})
                money = amounts.setdefault(run_id, {})
                per_run[ItemState(state)] = per_run.get(ItemState(state), 0) + count
                money[ItemState(state)] = money.get(ItemState(state), ZERO) + price * count
        return {run_id: Outcomes(counts[run_id], amounts.get(run_id, {})) for run_id in counts}

    def _new_amount(self, conn: Connection, run_id: str) -> Decimal | None:
        """The amounts the platform billed anew, summed exactly (SQLite: grouped, as in `_outcomes`)."""
        grouped = conn.execute(
            select(ItemRow.new_amount, func.count())
            .where(ItemRow.run_id == run_id, ItemRow.new_amount.is_not(None))
            .group_by(ItemRow.new_amount)
        ).all()
        if not grouped:
            return None
        return sum((amount * count for amount, count in grouped if amount is not None), ZERO)

    def _steps(self, conn: Connection, run_id: str) -> tuple[StatusStep, ...]:
        rows = conn.execute(
            select(*_STEP_COLUMNS)
            .where(StatusEventRow.run_id == run_id)
            .order_by(StatusEventRow.observed_at, StatusEventRow.id)
        ).all()
        return tuple(_step(*row) for row in rows)

    def _failures(self, conn: Connection, run_id: str) -> tuple[FailureGroup, ...]:
        """Failed invoices grouped by their reason with the invoice's own id and party taken out (a
        platform's message usually names the invoice), largest group first."""
        groups: dict[str, tuple[list[int], list[Decimal]]] = {}
        rows = conn.execution_options(yield_per=2000).execute(
            select(
                ItemRow.id, ItemRow.invoice_id, ItemRow.invoice_number, ItemRow.party_id, ItemRow.reason, ItemRow.amount
            )
            .where(ItemRow.run_id == run_id, ItemRow.state == ItemState.FAILED.value)
            .order_by(ItemRow.id)
        )
        for item_id, invoice_id, number, party_id, reason, amount in rows:
            ids, amounts = groups.setdefault(_generic(reason, invoice_id, number, party_id), ([], []))
            ids.append(item_id)
            amounts.append(amount)
        largest = sorted(groups.items(), key=lambda group: (-len(group[1][0]), group[0]))[:_MAX_FAILURE_GROUPS]
        result = []
        for reason, (ids, amounts) in largest:
            example = conn.execute(select(ItemRow.invoice_id, ItemRow.last_error).where(ItemRow.id == ids[0])).one()
            call = conn.execute(
                select(*_CALL_COLUMNS)
                .where(ApiCallRow.run_id == run_id, ApiCallRow.item_id == ids[0], ApiCallRow.outcome != "ok")
                .order_by(ApiCallRow.started_at.desc(), ApiCallRow.id.desc())
                .limit(1)
            ).one_or_none()
            result.append(
                FailureGroup(
                    reason=reason,
                    count=len(ids),
                    amount=sum(amounts, ZERO),
                    example_invoice=example.invoice_id,
                    example_error=example.last_error,
                    example_call=_call(call) if call is not None else None,
                )
            )
        return tuple(result)

    def _activity(
        self, conn: Connection, run_id: str, start: datetime, finished: datetime | None
    ) -> tuple[Activity, dict[tuple[str, str], int]]:
        """The chart's buckets, and the run's calls by (operation, outcome) from the same single pass
        over its calls (the run's largest table)."""
        end = finished or self._clock()
        span = max(1.0, (end - start).total_seconds())
        width = next((step for step in _BUCKET_STEPS if span / step <= _MAX_BUCKETS), _BUCKET_STEPS[-1])
        count = int(span // width) + 1
        settled_in, reversed_in, calls_in, busy_in = [0] * count, [0] * count, [0] * count, [0.0] * count
        settled = self._bucket(ItemRow.updated_at, start, width)
        for bucket, state, n in conn.execute(
            select(settled, ItemRow.state, func.count())
            .where(ItemRow.run_id == run_id, ItemRow.state.in_(_TERMINAL))
            .group_by(settled, ItemRow.state)
        ):
            index = min(max(int(bucket), 0), count - 1)
            settled_in[index] += n
            if state == ItemState.REVERSED.value:
                reversed_in[index] += n
        by_call: dict[tuple[str, str], int] = {}
        started = self._bucket(ApiCallRow.started_at, start, width)
        for bucket, operation, outcome, n, busy in conn.execute(
            select(started, ApiCallRow.operation, ApiCallRow.outcome, func.count(), func.sum(ApiCallRow.latency_ms))
            .where(ApiCallRow.run_id == run_id)
            .group_by(started, ApiCallRow.operation, ApiCallRow.outcome)
        ):
            index = min(max(int(bucket), 0), count - 1)
            calls_in[index] += n
            busy_in[index] += float(busy or 0)
            by_call[(operation, outcome)] = by_call.get((operation, outcome), 0) + n
        buckets = tuple(
            ActivityBucket(i * float(width), settled_in[i], reversed_in[i], calls_in[i], busy_in[i])
            for i in range(count)
        )
        return Activity(start=start, bucket_seconds=float(width), buckets=buckets), by_call

    def _bucket(self, column: Any, start: datetime, width: int) -> ColumnElement[Any]:
        """The index of `width`-second bucket a timestamp falls in, counted from `start`."""
        if self._postgres:
            seconds = func.extract("epoch", column) - start.timestamp()
            return cast(func.floor(seconds / width), Integer)
        seconds = (func.julianday(column) - 2440587.5) * 86400.0 - start.timestamp()
        return cast(seconds / width, Integer)


def _generic(reason: str | None, invoice_id: str, number: str | None, party_id: str | None) -> str:
    """The reason as it reads for every invoice: this invoice's id, number and party replaced."""
    text = reason or "failed (no reason recorded)"
    for value, placeholder in ((invoice_id, "{invoice}"), (number, "{invoice}"), (party_id, "{party}")):
        if value is not None and len(str(value)) >= 3:
            text = text.replace(str(value), placeholder)
    return text


def _headline(row: Any, outcomes: Outcomes) -> RunHeadline:
    return RunHeadline(
        id=row.id,
        provider=row.provider,
        selection=row.selection_label,
        state=RunState(row.state),
        reason_code=ReasonCode(row.reason_code) if row.reason_code else None,
        reason=row.reason,
        dry_run=bool((row.options or {}).get("dry_run")) or row.state == RunState.DRY_RUN.value,
        created_at=row.created_at,
        finished_at=row.finished_at,
        planned=row.planned,
        outcomes=outcomes,
    )


def _settings(row: Any, steps: Sequence[Any]) -> dict[str, str]:
    """The run's options (its platform's too), what the platform's follow-up keeps, and its steps."""
    options = row.options or {}
    kept = {
        name.replace("_", " "): value
        for name, value in (row.provider_state or {}).items()
        if (isinstance(value, str | int | float | bool) and not isinstance(value, bool)) or value is True
    }
    labelled: dict[str, Any] = {
        **{name.replace("_", " "): value for name, value in (row.provider_options or {}).items()},
        **kept,
        **{f"step {step.key}": step.phase.lower() + (f" ({step.ref})" if step.ref else "") for step in steps},
        "chunk size": options.get("chunk_size"),
        "max attempts": options.get("max_attempts"),
        "allow partial": "yes" if options.get("allow_partial") else None,
        "schedule slot": row.schedule_slot,
    }
    return {name: str(value) for name, value in labelled.items() if value not in (None, "")}


def _step(subject: str, code: str, label: str, observed_at: datetime, note: str | None) -> StatusStep:
    return StatusStep(subject, code, label, observed_at, note)


def _line(row: Any) -> InvoiceLine:
    return InvoiceLine(
        item_id=row.id,
        invoice_id=row.invoice_id,
        party_id=row.party_id,
        party_name=row.party_name,
        amount=row.amount,
        outcome=ItemState(row.state),
        reason=row.reason,
        attempts=row.attempts,
        last_error=row.last_error,
        settled_by_read=row.settled_by_read,
        number=row.invoice_number,
        result_ref=row.result_ref,
        rebill_ref=row.rebill_ref,
        new_amount=row.new_amount,
        attempts_total=row.claims_total,
        updated_at=row.updated_at,
    )


def _earlier(row: Any) -> EarlierOutcome:
    return EarlierOutcome(
        outcome=ItemState(row.state),
        reason=row.reason,
        error=row.error,
        attempts=row.attempts,
        settled_at=row.settled_at,
        replaced_at=row.replaced_at,
    )


class _ByItem(Generic[T]):
    """Rows of a stream ordered by item id, handed out one item's rows at a time as items come by."""

    def __init__(self, rows: Iterator[Any], convert: Callable[[Any], T]) -> None:
        self._rows = rows
        self._convert = convert
        self._pending = next(rows, None)

    def take(self, item_id: int) -> tuple[T, ...]:
        own: list[T] = []
        while self._pending is not None and self._pending.item_id <= item_id:
            if self._pending.item_id == item_id:
                own.append(self._convert(self._pending))
            self._pending = next(self._rows, None)
        return tuple(own)


def _call(row: Any) -> CallView:
    return CallView(
        operation=row.operation,
        outcome=row.outcome,
        status_code=row.status_code,
        latency_ms=float(row.latency_ms),
        started_at=row.started_at,
        error=row.error,
    )
