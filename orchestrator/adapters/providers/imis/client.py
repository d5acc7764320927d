"""The typed iMIS REST client: one exchange per call, errors classified, replies parsed at the boundary.

- The httpx transport is injected (composition root or test) with the timeout; this module never
  builds one, and it refuses a timeout that leaves any phase unbounded. Each call is one
  `httpx.Request` handed straight to the transport: `httpx.Client`'s auth and redirect flows and
  event hooks do nothing for a bearer-token API that follows no redirect, and with its cookie jar
  they cost about a quarter of each exchange's CPU. Cookies are still kept, but only once the
  tenant sets one (a load balancer's affinity cookie, say): a tenant that sets none costs nothing.
- One instance serves every worker thread of a process. The bearer token is fetched under a lock,
  refreshed ahead of `expires_in - refresh_margin_seconds`, and on a 401 fetched again once and the
  call repeated once; a second 401 is `ProviderAuthError`. That is the only repeat here: backoff for
  transient faults belongs to the orchestrator (one retry layer per failure type).
- Every HTTP exchange, `/token` included, is reported to `observer` as an `ApiCall`.
- The password and the token never appear in a repr, a log line or an exception message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from orchestrator.adapters.providers.imis import envelopes
from orchestrator.adapters.providers.imis.errors import NOT_DECODED, classify, outcome_of, protocol_error
from orchestrator.adapters.providers.imis.wire import (
    BatchSummaryData,
    BillingLogData,
    InvoiceSummaryData,
    PagedResult,
    ServiceResponse,
    TokenResponse,
    WireModel,
    decode_json,
    unwrap,
)
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import ProviderError

__all__ = ["DEFAULT_TOKEN_LIFETIME_SECONDS", "ImisClient", "next_page_offset"]

logger = logging.getLogger(__name__)

#: Used when `/token` omits `expires_in`: the shortest lifetime seen in the field (20 minutes).
DEFAULT_TOKEN_LIFETIME_SECONDS = 1200.0

M = TypeVar("M", bound=WireModel)
R = TypeVar("R")

_JSON_HEADERS = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate", "User-Agent": "rebill"}

#: Parsed URLs kept per path: the fixed paths of every call, not the per-invoice ones beyond this.
_URL_CACHE_SIZE = 64

#: What a parser gets for a 2xx reply without a body.
_NO_BODY: Any = object()

#: A reply's parser: the body decoded once (or `_NO_BODY`) and the status code.
Parser = Callable[[Any, int], R]


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
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not isinstance(password, pydantic.SecretStr):
            raise TypeError("password must be a pydantic.SecretStr")
        unbounded = [
            phase
            for phase, value in (
                ("connect", timeout.connect),
                ("read", timeout.read),
                ("write", timeout.write),
                ("pool", timeout.pool),
            )
            if value is None
        ]
        if unbounded:
            raise ValueError(
                "the timeout given to ImisClient must bound every phase of a request "
                f"(unbounded: {', '.join(unbounded)}); pass e.g. timeout=httpx.Timeout(30, connect=5)"
            )
        if refresh_margin_seconds < 0:
            raise ValueError("refresh_margin_seconds must not be negative")
        self._base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._transport = transport
        self._extensions = {"timeout": timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}
        self._cookies = httpx.Cookies()
        self._observer = observer
        self._refresh_margin = float(refresh_margin_seconds)
        self._clock = clock
        self._wrap_primitives = wrap_primitives
        self._token_lock = threading.Lock()
        self._token: pydantic.SecretStr | None = None
        self._token_generation = 0
        self._refresh_at = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r}, username={self._username!r})"

    __str__ = __repr__

    @property
    def base_url(self) -> str:
        return self._base_url

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

    def _model(self, model: type[M], operation: str, *, mutating: bool = False) -> Parser[M]:
        optional = self._optional_model(model, operation, mutating=mutating)

        def parse(payload: Any, status_code: int) -> M:
            parsed = optional(payload, status_code)
            if parsed is None:
                raise protocol_error(operation, mutating=mutating, what="an empty body", status_code=status_code)
            return parsed

        return parse

    @staticmethod
    def _optional_model(model: type[M], operation: str, *, mutating: bool) -> Parser[M | None]:
        def parse(payload: Any, status_code: int) -> M | None:
            if payload is _NO_BODY:
                return None
            try:
                return model.model_validate(payload)
            except pydantic.ValidationError as exc:
                raise protocol_error(
                    operation,
                    mutating=mutating,
                    what=f"unexpected {model.__name__} shape: {_summarise(exc)}",
                    status_code=status_code,
                ) from None

        return parse

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
        for attempt in (1, 2):
            token, generation = self._bearer()
            headers = {**_JSON_HEADERS, "Authorization": f"Bearer {token}"}
            if content is not None:
                headers["Content-Type"] = "application/json"
            request = httpx.Request(
                method, self._url(path), params=params, content=content, headers=headers, extensions=self._extensions
            )
            started_at, started = datetime.now(UTC), time.perf_counter()
            try:
                response = self._exchange(request)
            except httpx.HTTPError as exc:
                failure = self._failure(classify(operation=operation, mutating=mutating, exc=exc))
                self._report(operation, started_at, started, None, failure)
                raise failure from exc
            if response.status_code == 401 and attempt == 1:
                self._report(
                    operation,
                    started_at,
                    started,
                    401,
                    None,
                    outcome=CallOutcome.TRANSIENT,
                    note="token rejected (HTTP 401); fetching a new one and repeating once",
                )
                self._invalidate_token(generation)
                continue
            payload = _decode_success(response)
            error = classify(
                operation=operation,
                mutating=mutating,
                status_code=response.status_code,
                headers=response.headers,
                body=response.content,
                payload=payload,
            )
            if error is None:
                try:
                    result = parse(payload, response.status_code)
                except ProviderError as exc:
                    error = exc
                else:
                    self._report(operation, started_at, started, response.status_code, None)
                    return result
            failure = self._failure(error)
            self._report(operation, started_at, started, response.status_code, failure)
            raise failure
        raise AssertionError("unreachable: the second attempt always returns or raises")  # pragma: no cover

    def one_slot(self) -> AbstractContextManager[None]:
        """This thread's calls inside share one of the tenant's slots, when the transport is limited."""
        one_slot = getattr(self._transport, "one_slot", None)
        return one_slot() if one_slot is not None else contextlib.nullcontext()

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self._base_url + path)
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[path] = url
        return url

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        """Send one request and read its whole reply; the connection (and the tenant's slot) is freed on return."""
        if self._cookies:
            self._cookies.set_cookie_header(request)
        response = self._transport.handle_request(request)
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        if "set-cookie" in response.headers:
            self._cookies.extract_cookies(response)
        return response

    # --- token -------------------------------------------------------------------------------------------

    def _bearer(self) -> tuple[str, int]:
        """The current token (fetched or refreshed under the lock when due) and its generation."""
        with self._token_lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._fetch_token_locked()
            assert self._token is not None
            return self._token.get_secret_value(), self._token_generation

    def _invalidate_token(self, generation: int) -> None:
        """Drop the token a 401 rejected, unless another thread already replaced it."""
        with self._token_lock:
            if self._token_generation == generation:
                self._token = None

    def _fetch_token_locked(self) -> None:
        operation = "token"
        asked_at = self._clock()
        form = {
            "grant_type": "password",
            "username": self._username,
            "password": self._password.get_secret_value(),
        }
        started_at, started = datetime.now(UTC), time.perf_counter()
        try:
            request = httpx.Request(
                "POST", self._url("/token"), data=form, headers=_JSON_HEADERS, extensions=self._extensions
            )
            response = self._exchange(request)
        except httpx.HTTPError as exc:
            failure = self._failure(classify(operation=operation, exc=exc))
            self._report(operation, started_at, started, None, failure)
            raise failure from None  # the request object holds the password: do not chain it
        payload = _decode_success(response)
        error = classify(
            operation=operation,
            status_code=response.status_code,
            headers=response.headers,
            body=response.content,
            payload=payload,
        )
        token: TokenResponse | None = None
        if error is None:
            try:
                token = TokenResponse.model_validate(payload)
            except pydantic.ValidationError:
                # Never echo the body or pydantic's input: it holds the token.
                error = protocol_error(operation, mutating=False, what="no access_token in the /token reply")
        if token is None:
            failure = self._failure(error)
            self._report(operation, started_at, started, response.status_code, failure)
            raise failure
        lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
        if token.expires_in is not None and token.expires_in >= 0:
            lifetime = token.expires_in
        # Refresh `margin` ahead of expiry, but not before half the lifetime has passed: a margin longer
        # than a short lifetime would otherwise fetch a token for every call.
        margin = min(self._refresh_margin, lifetime / 2)
        self._token = token.access_token
        self._token_generation += 1
        self._refresh_at = asked_at + lifetime - margin
        self._report(operation, started_at, started, response.status_code, None)

    # --- reporting ---------------------------------------------------------------------------------------

    def _failure(self, error: ProviderError | None) -> ProviderError:
        """The error to raise, with the password and token removed should a server ever echo them."""
        if error is None:  # pragma: no cover - classify always returns an error for these paths
            error = protocol_error("imis", mutating=False, what="unclassified failure")
        secrets = [self._password.get_secret_value()]
        if self._token is not None:
            secrets.append(self._token.get_secret_value())
        message = error.message
        for secret in secrets:
            if len(secret) >= 3 and secret in message:
                message = message.replace(secret, "***")
        if message != error.message:
            error.message = message
            error.args = (message,)
        return error

    def _report(
        self,
        operation: str,
        started_at: datetime,
        started: float,
        status_code: int | None,
        error: ProviderError | None,
        *,
        outcome: CallOutcome | None = None,
        note: str | None = None,
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        call = ApiCall(
            operation=operation,
            outcome=outcome or outcome_of(error),
            latency_ms=latency_ms,
            started_at=started_at,
            status_code=status_code,
            error=note if error is None else error.message,
        )
        logger.debug("imis %s -> %s %s in %.1f ms", operation, status_code or "-", call.outcome.value, latency_ms)
        if self._observer is None:
            return
        try:
            self._observer(call)
        except Exception:
            logger.exception("the ApiCall observer failed for %s; the call itself is unaffected", operation)


def _decode_success(response: httpx.Response) -> Any:
    """A 2xx body decoded once, for `classify` and the parser alike (a 500-invoice page is 1.3 MB).

    `_NO_BODY` when there is none; `NOT_DECODED` when the reply is not a 2xx or not JSON, so that
    `classify` names what is wrong with it.
    """
    if not 200 <= response.status_code < 300:
        return NOT_DECODED
    raw = response.content
    if response.status_code == 204 or not raw.strip():
        return _NO_BODY
    try:
        return decode_json(raw)
    except ValueError:
        return NOT_DECODED


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


def _summarise(exc: pydantic.ValidationError) -> str:
    """Where and what, never the offending input (it may be large, or sensitive)."""
    parts = [
        f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)[:3]
    ]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
