"""Constants and small helpers shared by the Salesforce simulator tests."""

from __future__ import annotations

from typing import Any

import httpx

from simulators.salesforce.faults import SalesforceFaults

CLIENT_ID = "3MVG9-rebill-test"
CLIENT_SECRET = "s1mulated-S3CRET"
#: Walks that finish on the next access (HTTP tests do not wait).
INSTANT = SalesforceFaults(void_seconds=0, generate_seconds=0)
VOID = "commerce/invoicing/invoices/{}/actions/void"
GENERATE = "commerce/invoicing/invoices/collection/actions/generate"
RECOVER = "commerce/invoicing/billing-schedules/collection/actions/recover"


class FakeClock:
    """A monotonic clock moved by hand; `step` moves it on every read too (for tokens that die at once)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.step = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def get_token(base_url: str, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> str:
    response = httpx.post(
        f"{base_url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def generate_body(schedule_ids: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "billingScheduleIds": schedule_ids,
        "action": "Posted",
        "invoiceDate": "2025-12-01",
        "targetDate": "2025-12-01",
        "correlationId": "run-1/generate/0001",
        **fields,
    }
