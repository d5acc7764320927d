"""The typed iMIS REST client: one exchange per call, errors classified, replies parsed at the boundary.

- The plumbing is `orchestrator.adapters.providers.http.ApiChannel`: the injected transport and
  timeout (every phase bounded), one `httpx.Request` per call handed straight to the transport,
  cookies kept once the tenant sets one, every exchange (`/token` included) reported to `observer`
  as an `ApiCall`, secrets scrubbed from errors. This module builds iMIS's requests and reads its
  replies.
- One instance serves every worker thread of a process. The bearer token (`http.BearerToken`) is
  fetched under a lock, refreshed ahead of `expires_in - refresh_margin_seconds`, and on a 401
  fetched again once and the call repeated once; a second 401 is `ProviderAuthError`. That is the
  only repeat here: backoff for transient faults belongs to the orchestrator (one retry layer per
  failure type).
- The password and the token never appear in a repr, a log line or an exception message.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from orchestrator.adapters.providers.http import NO_BODY, ApiChannel, BearerToken, Parser, parse_model, request_token
from orchestrator.adapters.providers.imis import envelopes
from orchestrator.adapters.providers.imis.errors import PLATFORM, classify, protocol_error
from orchestrator.adapters.providers.imis.wire import (
    BatchSummaryData,
    BillingLogData,
    InvoiceSummaryData,
    PagedResult,
    ServiceResponse,
    TokenResponse,
    WireModel,
    unwrap,
)
from orchestrator.domain.billing import ApiCall

__all__ = ["DEFAULT_TOKEN_LIFETIME_SECONDS", "ImisClient", "next_page_offset"]

#: Used when `/token` omits `expires_in`: the shortest lifetime seen in the field (20 minutes).
DEFAULT_TOKEN_LIFETIME_SECONDS = 1200.0

M = TypeVar("M", bound=WireModel)
R = TypeVar("R")

_JSON_HEADERS = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate", "User-Agent": "rebill"}


class ImisClient:
    """One iMIS tenant over HTTP. Methods raise `orchestrator.domain.errors.ProviderError` subclasses."""

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        password: pydantic.SecretStr,
        transport: httpx.BaseTransport,
        timeout: httpx.Timeout,
        observer: Callable[[ApiCall], None] | None = None,
        refresh_margin_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
        wrap_primitives: bool = False,
    ) -> None:
        if not isinstance(password, pydantic.SecretStr):
            raise TypeError("password must be a pydantic.SecretStr")
        if refresh_margin_seconds < 0:
            raise ValueError("refresh_margin_seconds must not be negative")
        self._channel = ApiChannel(
            platform=PLATFORM,
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            classify=classify,
            observer=observer,
            secrets=self._secrets,
        )
        self._username = username
        self._password = password
        self._refresh_margin = float(refresh_margin_seconds)
        self._clock = clock
        self._wrap_primitives = wrap_primitives
        self._refresh_at = 0.0
        self._token = BearerToken(self._fetch_token, due=lambda: self._clock() >= self._refresh_at)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, username={self._username!r})"

    __str__ = __repr__

    @property
    def base_url(self) -> str:
        return self._channel.base_url

    @property
    def username(self) -> str:
        return self._username

    # --- BillingLog --------------------------------------------------------------------------------------

    def get_billing_log(self, key: str) -> BillingLogData:
        """`GET /api/BillingLog/{key}`; ProviderNotFound when unknown."""
        return self._request(
            "BillingLog.get",
            "GET",
            f"/api/BillingLog/{_segment(key)}",
            parse=self._model(BillingLogData, "BillingLog.get"),
        )

    def iter_billing_logs(
        self,
        *,
        cycle_name: str | None = None,
        original_key: str | None = None,
        page_size: int = 100,
    ) -> Iterator[BillingLogData]:
        """Billing logs filtered by `BillingCycleName` and/or `OriginalBillingLogKey`, page by page."""
        filters: dict[str, str] = {}
        if cycle_name is not None:
            filters["BillingCycleName"] = cycle_name
        if original_key is not None:
            filters["OriginalBillingLogKey"] = original_key
        for page in self._iter_pages(
            "BillingLog.list", "/api/BillingLog", filters, BillingLogData, page_size=page_size
        ):
            yield from page.Items

    def create_billing_log(self, body: Mapping[str, Any]) -> BillingLogData:
        """`POST /api/BillingLog` (see `envelopes.billing_log_body`); returns the stored log."""
        operation = "BillingLog.create"
        stored = self._request(
            operation,
            "POST",
            "/api/BillingLog",
            json_body=body,
            mutating=True,
            parse=self._optional_model(BillingLogData, operation, mutating=True),
        )
        if stored is not None:
            return stored
        # A 201 without a body: the log exists, read it back under the key we chose.
        key = body.get("BillingLogKey")
        if not isinstance(key, str):
            raise protocol_error(operation, mutating=True, what="an empty body and no BillingLogKey to read")
        return self.get_billing_log(key)

    # --- InvoiceSummary ----------------------------------------------------------------------------------

    def get_invoice(self, invoice_id: str) -> InvoiceSummaryData:
        """`GET /api/InvoiceSummary/{id}` (the id is URL-encoded: `CASH:23415:<key>` ids contain colons)."""
        return self._request(
            "InvoiceSummary.get",
            "GET",
            f"/api/InvoiceSummary/{_segment(invoice_id)}",
            parse=self._model(InvoiceSummaryData, "InvoiceSummary.get"),
        )

    def iter_invoice_pages(
        self,
        *,
        billing_log_key: str | None = None,
        bill_to_party_id: str | None = None,
        balance_gt_zero: bool = False,
        page_size: int = 500,
        start_offset: int = 0,
    ) -> Iterator[PagedResult[InvoiceSummaryData]]:
        """Invoice summaries one parsed page at a time, following `NextOffset` while `HasNext`.

        The server may cap `limit` below `page_size`; paging follows what it answers, never the size
        asked. Only one page is held at a time.
        """
        filters: dict[str, str] = {}
        if billing_log_key is not None:
            filters["BillingLogKey"] = billing_log_key
        if bill_to_party_id is not None:
            filters["BillToPartyId"] = bill_to_party_id
        if balance_gt_zero:
            filters["Balance"] = "gt:0"
        yield from self._iter_pages(
            "InvoiceSummary.list",
            "/api/InvoiceSummary",
            filters,
            InvoiceSummaryData,
            page_size=page_size,
            start_offset=start_offset,
        )

    # --- Invoice/_execute --------------------------------------------------------------------------------

    def can_cash_invoice_be_reversed(self, invoice_id: str) -> bool:
        body = envelopes.can_cash_invoice_be_reversed(invoice_id, wrap_primitives=self._wrap_primitives)
        return self._bool_result(self._invoice_execute(body, mutating=False), "CanCashInvoiceBeReversed")

    def can_invoice_be_reversed(self, invoice_number: int) -> bool:
        body = envelopes.can_invoice_be_reversed(invoice_number, wrap_primitives=self._wrap_primitives)
        return self._bool_result(self._invoice_execute(body, mutating=False), "CanInvoiceBeReversed")

    def process_cash_reversal(
        self,
        invoice_id: str,
        *,
        adjustment_date: envelopes.DateLike,
        reason: str | None = None,
        do_not_cancel_membership: bool | None = True,
        ship_to_party_id: str | None = None,
        bill_date: envelopes.DateLike | None = None,
    ) -> ServiceResponse:
        """Reverse a persisted cash invoice. Not idempotent: settle an unknown outcome by reading."""
        data = envelopes.cash_reversal_data(
            invoice_id=invoice_id,
            adjustment_date=adjustment_date,
            reason=reason,
            do_not_cancel_membership=do_not_cancel_membership,
            ship_to_party_id=ship_to_party_id,
            bill_date=bill_date,
        )
        return self._invoice_execute(envelopes.process_cash_reversal(data), mutating=True)

    def process_accrual_reversal(
        self,
        invoice_id: str,
        *,
        adjustment_date: envelopes.DateLike,
        reason: str | None = None,
        do_not_cancel_membership: bool | None = True,
        delivery_id: str | None = None,
    ) -> ServiceResponse:
        """Reverse an accrual dues invoice. Not idempotent: settle an unknown outcome by reading."""
        data = envelopes.dues_reversal_data(
            invoice_id=invoice_id,
            adjustment_date=adjustment_date,
            reason=reason,
            do_not_cancel_membership=do_not_cancel_membership,
            delivery_id=delivery_id,
        )
        return self._invoice_execute(envelopes.process_accrual_reversal(data), mutating=True)

    # --- TaskDefinition, BatchSummary --------------------------------------------------------------------

    def execute_task(self, body: Mapping[str, Any]) -> str:
        """`POST /api/TaskDefinition/_execute` with a TaskAdhocRequest; returns the TaskLogId."""
        operation = "TaskDefinition.execute"

        def parse(payload: Any, status_code: int) -> str:
            reply = self._model(ServiceResponse, operation, mutating=True)(payload, status_code)
            result = unwrap(reply.Result)
            task_log_id = unwrap(result.get("TaskLogId")) if isinstance(result, Mapping) else result
            if isinstance(task_log_id, str) and task_log_id.strip():
                return task_log_id
            raise protocol_error(
                operation,
                mutating=True,
                what="no Result.TaskLogId in the reply",
                status_code=status_code,
            )

        return self._request(
            operation, "POST", "/api/TaskDefinition/_execute", json_body=body, mutating=True, parse=parse
        )

    def post_batch(self, batch_id: str) -> ServiceResponse:
        """`POST /api/BatchSummary/_execute` `Post`."""
        operation = "BatchSummary.Post"
        return self._request(
            operation,
            "POST",
            "/api/BatchSummary/_execute",
            json_body=envelopes.batch_post(batch_id, wrap_primitives=self._wrap_primitives),
            mutating=True,
            parse=self._execute_reply(operation, mutating=True),
        )

    def get_batch(self, batch_id: str) -> BatchSummaryData:
        return self._request(
            "BatchSummary.get",
            "GET",
            f"/api/BatchSummary/{_segment(batch_id)}",
            parse=self._model(BatchSummaryData, "BatchSummary.get"),
        )

    # --- plumbing ----------------------------------------------------------------------------------------

    def _invoice_execute(self, body: Mapping[str, Any], *, mutating: bool) -> ServiceResponse:
        operation = f"Invoice.{body['OperationName']}"
        return self._request(
            operation,
            "POST",
            "/api/Invoice/_execute",
            json_body=body,
            mutating=mutating,
            parse=self._execute_reply(operation, mutating=mutating),
        )

    def _execute_reply(self, operation: str, *, mutating: bool) -> Parser[ServiceResponse]:
        optional = self._optional_model(ServiceResponse, operation, mutating=mutating)

        def parse(payload: Any, status_code: int) -> ServiceResponse:
            # A 2xx without a body is a success that says nothing more (reference/imis-api.md).
            reply = optional(payload, status_code)
            return reply if reply is not None else ServiceResponse()

        return parse

    @staticmethod
    def _bool_result(reply: ServiceResponse, operation_name: str) -> bool:
        result = unwrap(reply.Result)
        if isinstance(result, bool):
            return result
        if isinstance(result, str) and result.strip().lower() in {"true", "false"}:
            return result.strip().lower() == "true"
        raise protocol_error(
            f"Invoice.{operation_name}",
            mutating=False,
            what=f"Result is not a boolean ({type(result).__name__})",
        )

    def _iter_pages(
        self,
        operation: str,
        path: str,
        filters: Mapping[str, str],
        item: type[M],
        *,
        page_size: int,
        start_offset: int = 0,
    ) -> Iterator[PagedResult[M]]:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if start_offset < 0:
            raise ValueError("start_offset must not be negative")
        model: type[PagedResult[M]] = PagedResult[item]  # type: ignore[valid-type]  # runtime generic
        offset = start_offset
        while True:
            params = {**filters, "limit": str(page_size), "offset": str(offset)}
            page = self._request(operation, "GET", path, params=params, parse=self._model(model, operation))
            yield page
            next_offset = next_page_offset(page, offset, operation)
            if next_offset is None:
                return
            offset = next_offset

    @staticmethod
    def _model(model: type[M], operation: str, *, mutating: bool = False) -> Parser[M]:
        def parse(payload: Any, status_code: int) -> M:
            return parse_model(
                model, payload, operation=operation, platform=PLATFORM, mutating=mutating, status_code=status_code
            )

        return parse

    @staticmethod
    def _optional_model(model: type[M], operation: str, *, mutating: bool) -> Parser[M | None]:
        parse = ImisClient._model(model, operation, mutating=mutating)

        def optional(payload: Any, status_code: int) -> M | None:
            return None if payload is NO_BODY else parse(payload, status_code)

        return optional

    def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        parse: Parser[R],
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        mutating: bool = False,
    ) -> R:
        """One API call: bearer token, one exchange, classification, parsing; on a first 401 the token
        is fetched again and the call repeated once."""
        content = None if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
        headers = dict(_JSON_HEADERS)
        if content is not None:
            headers["Content-Type"] = "application/json"

        def build(authorization: Mapping[str, str]) -> httpx.Request:
            return self._channel.request(
                method, path, params=params, content=content, headers={**headers, **authorization}
            )

        return self._token.call(self._channel, operation, build, mutating=mutating, parse=parse)

    def one_slot(self) -> AbstractContextManager[None]:
        """This thread's calls inside share one of the tenant's slots, when the transport is limited."""
        return self._channel.one_slot()

    # --- token -------------------------------------------------------------------------------------------

    def _fetch_token(self) -> pydantic.SecretStr:
        """A new token from `/token` (run under the token's lock); sets when to refresh it."""
        operation = "token"
        asked_at = self._clock()
        form = {
            "grant_type": "password",
            "username": self._username,
            "password": self._password.get_secret_value(),
        }
        request = self._channel.request("POST", "/token", data=form, headers=_JSON_HEADERS)
        token = request_token(self._channel, operation, request, parse=_token_response)
        lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
        if token.expires_in is not None and token.expires_in >= 0:
            lifetime = token.expires_in
        # Refresh `margin` ahead of expiry, but not before half the lifetime has passed: a margin longer
        # than a short lifetime would otherwise fetch a token for every call.
        margin = min(self._refresh_margin, lifetime / 2)
        self._refresh_at = asked_at + lifetime - margin
        return token.access_token

    def _secrets(self) -> tuple[pydantic.SecretStr | None, ...]:
        """What an error message must never show, should a server echo it."""
        return self._password, self._token.secret


def _token_response(payload: Any, _: int) -> TokenResponse:
    with contextlib.suppress(pydantic.ValidationError):
        return TokenResponse.model_validate(payload)
    # Raised out here, so the error holds no trace of the body or pydantic's input: they hold the token.
    raise protocol_error("token", mutating=False, what="no access_token in the /token reply")


def _segment(value: str) -> str:
    """One URL path segment: everything but unreserved characters percent-encoded."""
    return quote(value, safe="")


def next_page_offset(page: PagedResult[Any], asked: int, operation: str) -> int | None:
    """Where the next page starts, from what the server answered; None after the last page."""
    received = len(page.Items)
    base = page.Offset if page.Offset is not None else asked
    if page.HasNext is False:
        return None
    # No HasNext: go on only when the server still promises more than it has given.
    if page.HasNext is None and (received == 0 or page.TotalCount is None or base + received >= page.TotalCount):
        return None
    next_offset = page.NextOffset if page.NextOffset is not None else base + received
    if received == 0 or next_offset <= asked:
        raise protocol_error(
            operation,
            mutating=False,
            what=f"paging does not advance (offset {asked}, {received} items, NextOffset {page.NextOffset})",
        )
    return next_offset
