"""The typed Aria Billing Cloud client: one method per API call, errors classified, replies parsed.

- Everything goes through `http.ApiChannel` (the injected transport, the bounded timeout, ApiCall
  reports, secret scrubbing); this module only builds bodies and names what comes back.
- Every call is a POST whose body carries `rest_call`, `client_no`, `auth_key` and
  `output_format: "json"`: core calls to `/v1/core`, the object query to
  `/api/AriaQuery/objects.php`. Bodies are JSON (money as exact numbers), or form-encoded with arrays
  as JSON text when `form_bodies` is set.
- Aria answers errors with HTTP 200; `errors.classify` reads `error_code`. gen_rb_m is the only
  write, and only with `do_write`: its unknown outcomes (`may_have_applied`) are settled by reading
  `get_invoice_history`, never by sending it again. There is no repeat here: retries and backoff
  belong to the orchestrator.
- The auth_key is in every request body: it never appears in a repr, an error or an ApiCall, and a
  transport error is raised without the httpx exception (which holds the request) chained to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import pydantic

from orchestrator.adapters.providers import http
from orchestrator.adapters.providers.aria.errors import PLATFORM, classify
from orchestrator.adapters.providers.aria.queries import InvoiceQuery
from orchestrator.adapters.providers.aria.wire import (
    InvoiceDetails,
    InvoiceHistory,
    InvoicePage,
    RebillLineItem,
    RebillReply,
    WireModel,
)
from orchestrator.domain.billing import ApiCall
from orchestrator.domain.errors import ProviderError

__all__ = ["CORE_PATH", "MAX_ALT_CALLER_ID", "OBJECT_QUERY_PATH", "AriaClient"]

CORE_PATH = "/v1/core"
OBJECT_QUERY_PATH = "/api/AriaQuery/objects.php"
#: Field lengths gen_rb_m accepts (the seed page); longer ones are refused before sending.
MAX_ALT_CALLER_ID = 30
MAX_COMMENTS = 3000
MAX_QUALIFIER = 100

_HEADERS = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate", "User-Agent": "rebill"}
_JSON_HEADERS = {**_HEADERS, "Content-Type": "application/json"}
_FORM_HEADERS = {**_HEADERS, "Content-Type": "application/x-www-form-urlencoded"}

M = TypeVar("M", bound=WireModel)


class AriaClient:
    """One Aria client (tenant) over HTTP. Methods raise `orchestrator.domain.errors.ProviderError`
    subclasses; those Aria answered in the body carry its `error_code` (`errors.AriaCodedError`)."""

    def __init__(
        self,
        *,
        base_url: str,
        client_no: int,
        auth_key: pydantic.SecretStr,
        transport: httpx.BaseTransport,
        timeout: httpx.Timeout,
        observer: Callable[[ApiCall], None] | None = None,
        form_bodies: bool = False,
    ) -> None:
        if not isinstance(auth_key, pydantic.SecretStr):
            raise TypeError("auth_key must be a pydantic.SecretStr")
        if isinstance(client_no, bool) or not isinstance(client_no, int) or client_no <= 0:
            raise ValueError("client_no must be a positive whole number")
        self._client_no = client_no
        self._auth_key = auth_key
        self._form_bodies = form_bodies
        self._channel = http.ApiChannel(
            platform=PLATFORM,
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            classify=classify,
            observer=observer,
            secrets=lambda: (auth_key,),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, client_no={self._client_no!r})"

    @property
    def base_url(self) -> str:
        return self._channel.base_url

    @property
    def client_no(self) -> int:
        return self._client_no

    def one_slot(self) -> AbstractContextManager[None]:
        """This thread's calls inside share one of the tenant's slots, when the transport is limited."""
        return self._channel.one_slot()

    # --- get_invoice_information_m -----------------------------------------------------------------------

    def get_invoice_information(self, query: InvoiceQuery, *, limit: int, offset: int = 0) -> InvoicePage:
        """One page of an object query. Aria may cap `limit` without saying so: page by what comes back.

        The page's `starting_record` is the `offset` asked when Aria leaves it out.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if offset < 0:
            raise ValueError("offset must not be negative")
        operation = "get_invoice_information_m"
        page = self._call(
            operation,
            OBJECT_QUERY_PATH,
            {"query_string": query.text, "limit": limit, "offset": offset},
            InvoicePage,
        )
        if page.starting_record is None:
            page = page.model_copy(update={"starting_record": offset})
        return page

    def iter_invoice_pages(
        self, query: InvoiceQuery, *, page_size: int = 500, start_offset: int = 0
    ) -> Iterator[InvoicePage]:
        """The query's pages in order, one held at a time: `offset` advances by the records returned,
        until `total_records` is reached or a page comes back empty."""
        offset = start_offset
        while True:
            page = self.get_invoice_information(query, limit=page_size, offset=offset)
            if not page.invoice_details_m:
                return
            yield page
            offset += len(page.invoice_details_m)
            if page.total_records is not None and offset >= page.total_records:
                return

    # --- get_invoice_details_m ---------------------------------------------------------------------------

    def get_invoice_details(self, invoice_no: int, *, acct_no: int) -> InvoiceDetails:
        """An invoice's lines (tax lines included: they are never sent back) and its rebill flags."""
        return self._call(
            "get_invoice_details_m", CORE_PATH, {"invoice_no": invoice_no, "acct_no": acct_no}, InvoiceDetails
        )

    # --- get_invoice_history_m ---------------------------------------------------------------------------

    def get_invoice_history(
        self,
        acct_no: int,
        *,
        start_bill_date: date | None = None,
        end_bill_date: date | None = None,
        include_voided: bool = False,
    ) -> InvoiceHistory:
        """Every invoice of the account over all plan instances, rebill invoices included: what settles
        an unknown gen_rb_m outcome (`InvoiceHistory.rebilled`)."""
        params: dict[str, Any] = {
            "acct_no": acct_no,
            "master_plan_instance_id": -1,
            "include_voided": "true" if include_voided else "false",
            "rb_option": 0,
        }
        if start_bill_date is not None:
            params["start_bill_date"] = start_bill_date.isoformat()
        if end_bill_date is not None:
            params["end_bill_date"] = end_bill_date.isoformat()
        return self._call("get_invoice_history_m", CORE_PATH, params, InvoiceHistory)

    # --- gen_rb_m ----------------------------------------------------------------------------------------

    def gen_rb_m(
        self,
        *,
        acct_no: int,
        orig_invoice_no: int,
        reason_cd: int,
        line_items: Sequence[RebillLineItem],
        alt_caller_id: str,
        do_collect: bool,
        do_write: bool = True,
        comments: str | None = None,
        qualifiers: Mapping[str, str] | None = None,
    ) -> RebillReply:
        """Credit memo + rebill invoice for one original, in one synchronous call.

        Not idempotent: an error with `may_have_applied` (only when `do_write`) is settled by reading
        `get_invoice_history`. With `do_write=False` Aria computes the same reply and changes nothing
        (`invoice_no` is None). `line_items` must name every non-tax line, ascending by `line_no`.
        """
        _check_lines(line_items)
        _check_length("alt_caller_id", alt_caller_id, MAX_ALT_CALLER_ID)
        if comments is not None:
            _check_length("comments", comments, MAX_COMMENTS)
        pairs = list((qualifiers or {}).items())
        for name, value in pairs:
            _check_length("qualifier name", name, MAX_QUALIFIER)
            _check_length("qualifier value", value, MAX_QUALIFIER)
        params: dict[str, Any] = {
            "acct_no": acct_no,
            "orig_invoice_no": orig_invoice_no,
            "reason_cd": reason_cd,
            "rb_line_items": [item.to_wire() for item in line_items],
            "do_collect": 1 if do_collect else 0,
            "do_write": "true" if do_write else "false",
            "alt_caller_id": alt_caller_id,
        }
        if comments is not None:
            params["rb_comments"] = comments
        if pairs:
            params["optional_transaction_qualifiers"] = [
                {"qualifier_name": name, "qualifier_value": value} for name, value in pairs
            ]
        return self._call("gen_rb_m", CORE_PATH, params, RebillReply, mutating=do_write)

    # --- plumbing ----------------------------------------------------------------------------------------

    def _call(
        self, operation: str, path: str, params: Mapping[str, Any], model: type[M], *, mutating: bool = False
    ) -> M:
        body = {
            "rest_call": operation,
            "client_no": self._client_no,
            "auth_key": self._auth_key.get_secret_value(),
            "output_format": "json",
            **params,
        }
        if self._form_bodies:
            request = self._channel.request("POST", path, headers=_FORM_HEADERS, content=_form(body))
        else:
            request = self._channel.request("POST", path, headers=_JSON_HEADERS, content=http.encode_json(body))
        try:
            response, watch = self._channel.send(operation, request, mutating=mutating)
        except ProviderError as error:
            raise error from None  # the transport's exception holds the request, and the body the key

        def parse(payload: Any, status_code: int) -> M:
            return http.parse_model(
                model, payload, operation=operation, platform=PLATFORM, mutating=mutating, status_code=status_code
            )

        return self._channel.settle(operation, response, watch, mutating=mutating, parse=parse)


def _form(body: Mapping[str, Any]) -> bytes:
    """`application/x-www-form-urlencoded`, arrays as JSON text (Crescendo refuses `name[0][field]`)."""
    fields = {
        name: http.encode_json(value).decode() if isinstance(value, list | dict) else str(value)
        for name, value in body.items()
    }
    return urlencode(fields).encode()


def _check_lines(line_items: Sequence[RebillLineItem]) -> None:
    if not line_items:
        raise ValueError("gen_rb_m needs at least one line item (every non-tax line of the original)")
    numbers = [item.line_no for item in line_items]
    if numbers != sorted(set(numbers)):
        raise ValueError(f"line items must be in strictly ascending line_no order, got {numbers}")


def _check_length(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters; Aria takes at most {limit}")
