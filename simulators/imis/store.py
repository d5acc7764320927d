"""What the seeding and the task runner need of the state: `typing.Protocol`s that `ImisState` satisfies.

`state.py` imports `seeding.py` and `tasks.py`; typing those two against `ImisState` would make them
import it back (if only for the type checker), a cycle. They are typed against these protocols
instead, each listing just the part of the store it uses; mypy checks that `ImisState` fits them
wherever it is handed over (`TaskRunner(self)` in state.py, every `state.seed_billing(...)` call).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from simulators.imis.entities import Batch, BillingLog, Invoice, Party, TaskRecord
from simulators.imis.faults import FaultInjector


class Store(Protocol):
    """The entities and the store methods both the seeding and the task runner use."""

    # Re-entrant: callers hold it while calling methods that take it again.
    lock: threading.RLock
    parties: dict[str, Party]
    invoices: dict[str, Invoice]
    billing_logs: dict[str, BillingLog]
    batches: dict[str, Batch]

    def next_seq(self) -> int: ...

    def new_batch_id(self) -> str: ...

    def add_billing_log(self, log: BillingLog, at: datetime | None = None) -> BillingLog: ...

    def invoices_of(self, billing_log_key: str) -> Sequence[Invoice]: ...


class SeedingStore(Store, Protocol):
    """The store as `seeding.py` fills it: parties and invoices added directly."""

    def ensure_party(self, party_id: str, name: str | None = None) -> Party: ...

    def add_invoice(self, invoice: Invoice) -> Invoice: ...

    def invoice_id_for_number(self, number: int) -> str | None: ...


class TaskStore(Store, Protocol):
    """The store as `tasks.py` runs a task on it: its record, its log's statuses, reversals, the batch."""

    faults: FaultInjector
    tasks: dict[str, TaskRecord]

    def new_guid(self) -> str: ...

    def set_status(self, log: BillingLog, status: int, information: str | None = None) -> None: ...

    def reverse_open_invoice(self, invoice: Invoice, operation: str) -> None: ...

    def post_batch(self, batch_id: str) -> Batch: ...

    def count_rebill(self, rebill: dict[str, Any]) -> None: ...
