"""The typed Salesforce Revenue Cloud Billing client: one exchange per call, errors classified, replies parsed.

- Requests go through the client kit's `ApiChannel` on the injected transport, with the timeout
  (every phase bounded); every exchange, the token's included, is reported to `observer` as an
  `ApiCall`; error messages are scrubbed of the client secret and the token.
- One instance serves every worker thread of a process. The token (OAuth client credentials) is
  fetched under a lock when first needed. It has no announced lifetime: it lives as long as its
  session, so it is only fetched again when a call is answered 401 `INVALID_SESSION_ID`; that call
  is then repeated once (a 401 was not applied, so this is safe for writes too), and a second 401
  is `ProviderAuthError`. That is the only repeat here: backoff belongs to the orchestrator.
- Every reply's `Sforce-Limit-Info: api-usage=N/M` is read; `usage` is the latest seen, for the
  run to pause at a share of the allocation before Salesforce refuses (`errors.AllocationExhausted`).
- Calls go to `base_url` only: the token's `instance_url` is not followed, and a `nextRecordsUrl`
  is followed only when it is a query locator (`/services/data/vXX.X/query/<locator>`).
- The client secret and the token never appear in a repr, a log line, an error or an ApiCall.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from orchestrator.adapters.providers.http import (
    ApiChannel,
    BearerToken,
    Parser,
    parse_model,
    protocol_error,
    request_token,
)
from orchestrator.adapters.providers.salesforce.errors import LIMIT_INFO, PLATFORM, TOKEN_OPERATION, classify
from orchestrator.adapters.providers.salesforce.soql import MAX_IN_VALUES, Query
from orchestrator.adapters.providers.salesforce.wire import (
    ApiUsage,
    AsyncResponse,
    QueryPage,
    Record,
    RecoveryResult,
    RecoveryResults,
    TokenResponse,
    WireModel,
    parse_limit_info,
)
from orchestrator.domain.billing import ApiCall

__all__ = ["DEFAULT_API_VERSION", "SalesforceClient"]

DEFAULT_API_VERSION = "v62.0"

R = TypeVar("R", bound=Record)
M = TypeVar("M", bound=WireModel)

_HEADERS = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate", "User-Agent": "rebill"}
_VERSION = re.compile(r"v\d+\.\d+")
#: What a `nextRecordsUrl` may be: a query locator of this org's API, nothing else.
_NEXT_RECORDS = re.compile(r"/services/data/v\d+\.\d+/query/[A-Za-z0-9]+-\d+")


class SalesforceClient:
    """One org over HTTP. Methods raise `orchestrator.domain.errors.ProviderError` subclasses (see `errors.py`)."""

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: pydantic.SecretStr,
        api_version: str = DEFAULT_API_VERSION,
        transport: httpx.BaseTransport,
        timeout: httpx.Timeout,
        observer: Callable[[ApiCall], None] | None = None,
    ) -> None:
        if not isinstance(client_secret, pydantic.SecretStr):
            raise TypeError("client_secret must be a pydantic.SecretStr")
        if not _VERSION.fullmatch(api_version):
            raise ValueError(f"api_version must look like v62.0, got {api_version!r}")
        self._client_id = client_id
        self._client_secret = client_secret
        self._data = f"/services/data/{api_version}"
        self._channel = ApiChannel(
            platform=PLATFORM,
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            classify=classify,
            observer=observer,
            secrets=lambda: (self._client_secret, self._token.secret),
        )
        self._token = BearerToken(self._fetch_token)  # no lifetime is announced: renewed on a 401 only
        self._usage: ApiUsage | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, client_id={self._client_id!r})"

    __str__ = __repr__

    @property
    def base_url(self) -> str:
        return self._channel.base_url

    @property
    def usage(self) -> ApiUsage | None:
        """The org's API usage (`used`/`allocation`) as the latest reply's `Sforce-Limit-Info` said; None before any."""
        return self._usage

    def one_slot(self) -> AbstractContextManager[None]:
        """This thread's calls inside share one of the org's slots, when the transport is limited."""
        return self._channel.one_slot()

    # --- query -------------------------------------------------------------------------------------------

    def query(self, query: Query[R], *, resume_from: str | None = None) -> Iterator[QueryPage[R]]:
        """The query's pages, one parsed page at a time, following `nextRecordsUrl` until `done`.

        Never assumes a page size. `resume_from` is a page's `nextRecordsUrl` kept from an earlier
        iteration: paging goes on from there. A locator that expired raises `QueryLocatorExpired`:
        run the query again from its first page.
        """
        model: type[QueryPage[R]] = QueryPage[query.sobject.record]  # type: ignore[name-defined]  # runtime generic
        if resume_from is None:
            page = self._call(
                "query", "GET", f"{self._data}/query", params={"q": query.soql}, parse=_model(model, "query")
            )
        else:
            page = self._more(model, resume_from)
        yield page
        while not page.done:
            if not page.nextRecordsUrl:
                raise protocol_error(
                    "query.more", platform=PLATFORM, mutating=False, what="done is false but there is no nextRecordsUrl"
                )
            page = self._more(model, page.nextRecordsUrl)
            yield page

    def records(self, query: Query[R]) -> Iterator[R]:
        """Every record of the query, page after page (for small selections; plans page with `query`)."""
        for page in self.query(query):
            yield from page.records

    def count(self, query: Query[R]) -> int:
        """The answer of a `COUNT()` query (`soql.count(...)`)."""
        if not query.is_count:
            raise ValueError("count() takes a COUNT() query (soql.count)")
        return next(self.query(query)).totalSize

    def _more(self, model: type[QueryPage[R]], next_records_url: str) -> QueryPage[R]:
        path = next_records_url
        if path.startswith(self.base_url):
            path = path[len(self.base_url) :]
        if not _NEXT_RECORDS.fullmatch(path):
            raise protocol_error(
                "query.more",
                platform=PLATFORM,
                mutating=False,
                what=f"a nextRecordsUrl that is not a query locator ({path[:100]!r}) is not followed",
            )
        return self._call("query.more", "GET", path, parse=_model(model, "query.more"))

    # --- void, generate, recover ---------------------------------------------------------------------------

    def void(self, invoice_id: str) -> AsyncResponse:
        """Start voiding a posted invoice (Posted → Void In Progress → Voided). Not idempotent: settle an
        unknown outcome by reading `Invoice.Status`, never by sending it again."""
        path = f"{self._data}/commerce/invoicing/invoices/{_segment(invoice_id)}/actions/void"
        return self._call("void", "POST", path, mutating=True, parse=_model(AsyncResponse, "void", mutating=True))

    def generate(
        self,
        billing_schedule_ids: Sequence[str],
        *,
        correlation_id: str,
        invoice_date: date,
        target_date: date,
        action: Literal["Posted", "Draft"] = "Posted",
    ) -> AsyncResponse:
        """New invoices from 1 to 200 distinct billing schedules. Never names an account or an order (those
        would bill everything of it). Settle an unknown outcome by reading the schedules and their lines."""
        ids = list(billing_schedule_ids)
        if not 1 <= len(ids) <= MAX_IN_VALUES or len(set(ids)) != len(ids):
            raise ValueError(f"generate takes 1 to {MAX_IN_VALUES} distinct billing schedule ids, got {len(ids)}")
        if not correlation_id or len(correlation_id) > 255:
            raise ValueError("correlation_id must be 1 to 255 characters")
        body = {
            "billingScheduleIds": ids,
            "action": action,
            "invoiceDate": invoice_date.isoformat(),
            "targetDate": target_date.isoformat(),
            "correlationId": correlation_id,
        }
        path = f"{self._data}/commerce/invoicing/invoices/collection/actions/generate"
        return self._call(
            "generate",
            "POST",
            path,
            json_body=body,
            mutating=True,
            parse=_model(AsyncResponse, "generate", mutating=True),
        )

    def recover(self, billing_schedule_id: str) -> RecoveryResult:
        """Finish the latest generated invoice of one schedule in Error or Processing (one per request)."""
        operation = "recover"
        path = f"{self._data}/commerce/invoicing/billing-schedules/collection/actions/recover"

        def parse(payload: Any, status_code: int) -> RecoveryResult:
            results = parse_model(
                RecoveryResults, payload, operation=operation, platform=PLATFORM, mutating=True, status_code=status_code
            )
            if not results.recoveryResults:
                raise protocol_error(
                    operation, platform=PLATFORM, mutating=True, what="no recoveryResults", status_code=status_code
                )
            return results.recoveryResults[0]

        body = {"billingScheduleIds": [billing_schedule_id]}
        return self._call(operation, "POST", path, json_body=body, mutating=True, parse=parse)

    # --- plumbing ------------------------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        parse: Parser[M],
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        mutating: bool = False,
    ) -> M:
        """One API call: bearer token, one exchange, the usage header read, classification, parsing (and
        on a first 401, one new token and one repeat)."""
        content = None if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
        headers = dict(_HEADERS)
        if content is not None:
            headers["Content-Type"] = "application/json"

        def build(authorization: Mapping[str, str]) -> httpx.Request:
            return self._channel.request(
                method, path, headers={**headers, **authorization}, params=params, content=content
            )

        return self._token.call(
            self._channel, operation, build, mutating=mutating, parse=parse, on_reply=self._read_usage
        )

    def _read_usage(self, response: httpx.Response) -> None:
        usage = parse_limit_info(response.headers.get(LIMIT_INFO))
        if usage is not None:
            self._usage = usage

    def _fetch_token(self) -> pydantic.SecretStr:
        """A new token by the client-credentials grant (run under the token's lock)."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret.get_secret_value(),
        }
        request = self._channel.request("POST", "/services/oauth2/token", data=form, headers=_HEADERS)
        return request_token(self._channel, TOKEN_OPERATION, request, parse=_token).access_token


def _model(model: type[M], operation: str, *, mutating: bool = False) -> Parser[M]:
    def parse(payload: Any, status_code: int) -> M:
        return parse_model(
            model, payload, operation=operation, platform=PLATFORM, mutating=mutating, status_code=status_code
        )

    return parse


def _token(payload: Any, status_code: int) -> TokenResponse:
    # parse_model never echoes the input: the body holds the token.
    return parse_model(
        TokenResponse, payload, operation=TOKEN_OPERATION, platform=PLATFORM, mutating=False, status_code=status_code
    )


def _segment(value: str) -> str:
    """One URL path segment: everything but unreserved characters percent-encoded."""
    return quote(value, safe="")
