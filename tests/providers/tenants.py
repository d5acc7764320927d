"""One tenant per provider for the contract suite: the provider built through the registry (as the
composition root builds it), against its simulator over loopback HTTP (the fake: in memory), with a
seeded selection and the means to steer the platform. A new platform adds one function here."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.adapters.providers.platform import Connection
from orchestrator.adapters.providers.registry import PLATFORMS
from orchestrator.domain.billing import ApiCall
from orchestrator.services.ports import BillingProvider
from simulators.aria import seed_bill_run
from tests.support.platforms import SIMULATED, Simulated


@dataclass
class Tenant:
    """A provider under test and its platform."""

    name: str
    provider: BillingProvider
    selector: dict[str, Any]
    options: dict[str, Any]
    #: What the platform holds for the selection: invoice id -> skip reason, None when eligible.
    expected: dict[str, str | None]
    #: Invoice id -> how many times a write took effect on it (the platform's own counters).
    applied: Callable[[], dict[str, int]]
    #: Faults on the platform's write calls: "lost" = applied then the reply is lost (502),
    #: "refused" = a 500 before anything is applied, None = none.
    fault_writes: Callable[[str | None], None]
    calls: list[ApiCall] = field(default_factory=list)


def _provider(cleanup: ExitStack, simulated: Simulated, calls: list[ApiCall], **settings: str) -> BillingProvider:
    platform = PLATFORMS[simulated.name]
    values = {key[len(f"REBILL_{simulated.name.upper()}_") :].lower(): value for key, value in simulated.env.items()}
    values.update(settings)
    own = platform.settings.model_validate(values)
    own.require()
    transport = httpx.HTTPTransport()
    cleanup.callback(transport.close)
    connection = Connection(transport=transport, timeout=httpx.Timeout(10, connect=5), observer=calls.append)
    return platform.build(own, connection)


def _fault_setter(simulated: Simulated, operations: frozenset[str]) -> Callable[[str | None], None]:
    def fault(kind: str | None) -> None:
        faults = simulated.state.faults
        if kind is None:
            faults.update(p_reply_lost=0.0, p_500=0.0, fault_operations=None)
        elif kind == "lost":
            faults.update(p_reply_lost=1.0, p_500=0.0, fault_operations=operations)
        else:
            faults.update(p_reply_lost=0.0, p_500=1.0, fault_operations=operations)

    return fault


def imis(cleanup: ExitStack) -> Tenant:
    simulated = SIMULATED["imis"](cleanup)
    billing = simulated.state.seed_billing(invoices=24, seed=uuid.uuid4().int % 1_000_000)
    opened = set(billing.open_invoice_ids)
    calls: list[ApiCall] = []
    return Tenant(
        name="imis",
        provider=_provider(cleanup, simulated, calls, page_size="7"),
        selector={"billing_log": billing.original_key},
        options={},
        expected={i: None if i in opened else "left as-is" for i in billing.invoice_ids},
        applied=lambda: dict(simulated.state.counters()["reversals"]),
        fault_writes=_fault_setter(
            simulated, frozenset({"Invoice.ProcessCashReversal", "Invoice.ProcessAccrualReversal"})
        ),
        calls=calls,
    )


def energycap(cleanup: ExitStack) -> Tenant:
    simulated = SIMULATED["energycap"](cleanup)
    simulated.state.faults.update(page_cap=25)  # a selection of several pages
    period = simulated.state.seed_period(60, seed=uuid.uuid4().int % 1_000_000)
    reasons: dict[str, str | None] = {str(bill_id): None for bill_id in period.eligible_ids}
    for ids, reason in ((period.void_ids, "void"), (period.reversed_ids, "already_reversed")):
        reasons.update(dict.fromkeys(map(str, ids), reason))
    reasons.update(dict.fromkeys(map(str, period.reversal_ids), "reversal_bill"))
    calls: list[ApiCall] = []
    return Tenant(
        name="energycap",
        provider=_provider(cleanup, simulated, calls),
        selector={"account_period": period.account_period},
        options={},
        expected=reasons,
        applied=lambda: dict(simulated.state.counters()["reversals"]),
        fault_writes=_fault_setter(simulated, frozenset({"bill.reverse"})),
        calls=calls,
    )


def salesforce(cleanup: ExitStack) -> Tenant:
    simulated = SIMULATED["salesforce"](cleanup)
    simulated.state.faults.update(page_size=7)
    seeded = simulated.state.seed_run(invoices=24, seed=uuid.uuid4().int % 1_000_000)
    calls: list[ApiCall] = []
    return Tenant(
        name="salesforce",
        provider=_provider(cleanup, simulated, calls),
        selector={"invoice_batch_run": seeded.invoice_batch_run_id},
        options={},
        expected=dict(seeded.expected),
        applied=lambda: dict(simulated.state.counters()["voids"]),
        fault_writes=_fault_setter(simulated, frozenset({"void"})),
        calls=calls,
    )


def aria(cleanup: ExitStack) -> Tenant:
    simulated = SIMULATED["aria"](cleanup)
    seeded = seed_bill_run(simulated.state, invoices=24, seed=uuid.uuid4().int % 1_000_000)
    directory = Path(tempfile.mkdtemp(prefix="aria-contract-"))
    cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
    corrections = directory / "corrections.csv"
    corrections.write_text("service,rate_per_unit,units\nPLAN-BASE,49.995,\nSEATS,11.125,\nSMS,0.0125,\nSUPPORT,,2\n")
    reasons = {
        **dict.fromkeys(seeded.voided, "voided"),
        **dict.fromkeys(seeded.rebilled, "already_rebilled"),
        **dict.fromkeys((*seeded.paid, *seeded.part_paid), "paid"),
    }
    calls: list[ApiCall] = []
    return Tenant(
        name="aria",
        provider=_provider(cleanup, simulated, calls, page_size="7"),
        selector={"bill_date": seeded.bill_date.isoformat()},
        options={"corrections": str(corrections), "reason_code": 2},
        expected={str(number): reasons.get(number) for number in seeded.invoice_nos},
        applied=lambda: dict(simulated.state.counters()["rebills"]),
        fault_writes=_fault_setter(simulated, frozenset({"gen_rb_m"})),
        calls=calls,
    )


TENANTS: dict[str, Callable[[ExitStack], Tenant]] = {
    "imis": imis,
    "energycap": energycap,
    "salesforce": salesforce,
    "aria": aria,
}
