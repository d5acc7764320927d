"""The bounds of a run's options: what the ledger's columns and the product can hold, so a typo
(`--chunk-size 99999999999999999999`) is refused with a clear message instead of failing deep inside.

The command line and the schedule file enforce them; so should anything else that takes run options.
"""

from __future__ import annotations

MAX_CHUNK_SIZE = 10_000  # invoices per reversal task: one broker message, one task's work
MAX_ATTEMPTS = 100  # per invoice, on transient errors
MIN_POLL_INTERVAL_SECONDS = 0.05
MAX_POLL_INTERVAL_SECONDS = 3_600.0  # the platform status is read at least hourly
MIN_STALL_AFTER_SECONDS = 1.0
MAX_STALL_AFTER_SECONDS = 30 * 86_400.0
MAX_PARTY_ID_LENGTH = 64  # the ledger's party_id column
