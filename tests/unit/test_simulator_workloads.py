"""The simulator throughput bench's workloads stay true to the simulators: every operation of each mix is a
request its simulator answers with success, from a run prepared the way the bench prepares it (in
process, through `httpx.MockTransport`, with a small seeded run)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ops.bench.simulator_workloads import (
    ARIA_AUTH_KEY,
    ARIA_CLIENT_NO,
    EC_API_KEY,
    SF_CLIENT_ID,
    SF_CLIENT_SECRET,
    WORKLOADS,
)
from simulators.aria.app import AriaApp
from simulators.aria.seeding import seed_bill_run
from simulators.aria.state import AriaState
from simulators.common import SimulatorApp
from simulators.energycap.app import EnergyCapApp
from simulators.energycap.state import EnergyCapState
from simulators.imis.app import ImisApp
from simulators.imis.seeding import seed_billing
from simulators.imis.state import ImisState
from simulators.salesforce.app import SalesforceApp
from simulators.salesforce.state import SalesforceState

INVOICES = 60


def imis() -> tuple[SimulatorApp[ImisState], str]:
    state = ImisState()
    return ImisApp(state), seed_billing(state, INVOICES, 1).original_key


def aria() -> tuple[SimulatorApp[AriaState], str]:
    state = AriaState(ARIA_CLIENT_NO, ARIA_AUTH_KEY)
    return AriaApp(state), seed_bill_run(state, invoices=INVOICES, seed=1).bill_date.isoformat()


def salesforce() -> tuple[SimulatorApp[SalesforceState], str]:
    state = SalesforceState(SF_CLIENT_ID, SF_CLIENT_SECRET)
    return SalesforceApp(state), state.seed_run(0, 1).invoice_batch_run_id  # the workload seeds its own run


def energycap() -> tuple[SimulatorApp[EnergyCapState], str]:
    state = EnergyCapState(EC_API_KEY)
    return EnergyCapApp(state), str(state.seed_period(INVOICES, 1).account_period)


SIMULATORS: dict[str, Callable[[], tuple[SimulatorApp[Any], str]]] = {
    "imis": imis,
    "aria": aria,
    "salesforce": salesforce,
    "energycap": energycap,
}


def test_every_platform_has_a_workload() -> None:
    assert set(WORKLOADS) == set(SIMULATORS)


@pytest.mark.parametrize("provider", sorted(WORKLOADS))
def test_each_operation_of_the_mix_succeeds(provider: str) -> None:
    workload = WORKLOADS[provider]
    assert math.isclose(sum(workload.mix.values()), 1.0)
    app, seeded = SIMULATORS[provider]()
    with httpx.Client(transport=httpx.MockTransport(app.handle), base_url="http://simulator") as client:
        setup = workload.prepare(client, seeded, INVOICES)
        makers = workload.makers(setup, 0, 1)
        assert set(makers) == set(workload.mix)
        rng = random.Random(1)
        for operation, make in makers.items():
            for _ in range(3):  # a few writes each: the run's eligible invoices are not spent
                call = make(rng)
                headers = {**setup.headers, **(call.headers or {})}
                reply = client.request(call.method, call.url, content=call.body, headers=headers)
                assert reply.status_code == 200, (operation, reply.text[:300])
                if provider == "aria":  # Aria answers its refusals with HTTP 200 and an error_code
                    assert reply.json()["error_code"] == 0, (operation, reply.text[:300])
        counters = client.get("/_sim/counters").json()
    assert workload.summary(counters)  # the write counters the report shows are there
