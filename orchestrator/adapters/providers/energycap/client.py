"""The typed EnergyCAP client: one exchange per call, errors classified, replies parsed at the boundary.

- The httpx transport and the timeout are injected; the kit's `ApiChannel` sends, times, reports
  (every exchange is an `ApiCall` to `observer`) and scrubs. There is no repeat here: backoff for
  transient faults belongs to the orchestrator (one retry layer per failure type), and an uncertain
  write is settled by reading the batch by its code (`find_batch`), never by sending it again.
- Every request carries `ECI-ApiKey` and `Content-Type: application/json`, GETs too. The key never
  appears in a repr, a log line, an error or an `ApiCall`.
- Lists are paged by the page size the server echoes (it caps a larger one silently), over pages
  1..`TotalPages`; past the end is `[]`. Bills come by ascending id, so writes never shift pages.
- A reply carrying `ECI-Deprecated` is logged as a warning naming the endpoint.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from orchestrator.adapters.providers.energycap.errors import PLATFORM, classify
from orchestrator.adapters.providers.energycap.filters import Field, Filter, Op, chunked, where
from orchestrator.adapters.providers.energycap.wire import (
    BatchData,
    BillData,
    TaskData,
    UpdateResult,
    WireModel,
    parse_task_guid,
)
from orchestrator.adapters.providers.http import (
    NO_BODY,
    ApiChannel,
    Parser,
    header,
    parse_model,
    protocol_error,
)
from orchestrator.domain.billing import ApiCall
from orchestrator.domain.errors import ProviderError

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_REVERSE_IDS", "SELF_CONTAINED", "EnergyCapClient", "Page"]

logger = logging.getLogger(__name__)

#: What a list is asked for by default: the API's maximum (the server may answer fewer).
DEFAULT_PAGE_SIZE = 1000
MAX_REVERSE_IDS = 1000
SELF_CONTAINED = "new self-contained batch"
_MAX_TEXT = 255

REVERSE_PATH = "/api/v202510/bill/reverse"
IMPORT_PATH = "/api/v3/import/bill"

M = TypeVar("M", bound=WireModel)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Page(Generic[M]):
    """One page of a list as the server answered it; resume a listing with
    `start_page=page.page_number + 1, page_size=page.page_size`."""

    items: list[M]
    page_number: int
    page_size: int
    total_records: int | None
    total_pages: int | None

    @property
    def last(self) -> bool:
        if self.total_pages is not None:
            return self.page_number >= self.total_pages
        return len(self.items) < self.page_size


class EnergyCapClient:
    """One EnergyCAP datasource over HTTP. Methods raise `orchestrator.domain.errors.ProviderError`
    subclasses (`errors.BatchCodeInUse` for a code another batch has)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: pydantic.SecretStr,
        transport: httpx.BaseTransport,
        timeout: httpx.Timeout,
        observer: Callable[[ApiCall], None] | None = None,
    ) -> None:
        if not isinstance(api_key, pydantic.SecretStr):
            raise TypeError("api_key must be a pydantic.SecretStr")
        self._api_key = api_key
        self._channel = ApiChannel(
            platform=PLATFORM,
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            classify=classify,
            observer=observer,
            secrets=lambda: (api_key,),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._channel.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._channel.base_url

    def one_slot(self) -> AbstractContextManager[None]:
        """This thread's calls inside share one of the tenant's slots, when the transport is limited."""
        return self._channel.one_slot()

    # --- bills ---------------------------------------------------------------------------------------------

    def iter_bill_pages(
        self, selection: Filter | None = None, *, page_size: int = DEFAULT_PAGE_SIZE, start_page: int = 1
    ) -> Iterator[Page[BillData]]:
        """`GET /api/v3/bill` page by page (ascending `billId`); one page held at a time."""
        return self._pages("bill.list", "/api/v3/bill", BillData, selection, page_size, start_page)

    def iter_bills(self, selection: Filter | None = None, *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[BillData]:
        for page in self.iter_bill_pages(selection, page_size=page_size):
            yield from page.items

    def get_bills(self, bill_ids: Iterable[int], *, page_size: int = DEFAULT_PAGE_SIZE) -> list[BillData]:
        """The bills of these ids that exist, read `billId one of` at most 100 at a time."""
        return [
            bill
            for selection in chunked(Field.BILL_ID, bill_ids)
            for bill in self.iter_bills(selection, page_size=page_size)
        ]

    def get_bill(self, bill_id: int) -> BillData:
        """`GET /api/v3/bill/{billId}`; ProviderNotFound when unknown."""
        return self._get("bill.get", f"/api/v3/bill/{int(bill_id)}", BillData)

    def bills_in_batch(self, batch_code: str, *, page_size: int = DEFAULT_PAGE_SIZE) -> list[BillData]:
        """Every bill of the batch with this code: after a reversal, the reversal bills (`reversalOfBillId`)."""
        return list(self.iter_bills(where(Field.BATCH_CODE, Op.EQUALS, batch_code), page_size=page_size))

    # --- batches and tasks -----------------------------------------------------------------------------------

    def iter_batches(
        self, selection: Filter | None = None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[BatchData]:
        for page in self._pages("batch.list", "/api/v3/batch", BatchData, selection, page_size, 1):
            yield from page.items

    def get_batch(self, batch_id: int) -> BatchData:
        return self._get("batch.get", f"/api/v3/batch/{int(batch_id)}", BatchData)

    def find_batch(self, batch_code: str) -> BatchData | None:
        """The batch with this code (codes are unique, compared case-blind), or None: how an uncertain
        reverse or import is settled."""
        wanted = batch_code.lower()
        found = [
            b
            for b in self.iter_batches(where(Field.BATCH_CODE, Op.EQUALS, batch_code))
            if b.batch_code.lower() == wanted
        ]
        if len(found) > 1:
            raise protocol_error(
                "batch.list",
                platform=PLATFORM,
                mutating=False,
                what=f"{len(found)} batches have the code {batch_code!r}, which EnergyCAP keeps unique",
            )
        return found[0] if found else None

    def get_task(self, task_guid: str) -> TaskData:
        """`GET /api/v3/task/{taskGuid}`; ProviderNotFound when unknown."""
        return self._get("task.get", f"/api/v3/task/{quote(task_guid, safe='')}", TaskData)

    def find_tasks(self, batch_code: str) -> list[TaskData]:
        """The tasks of the batch with this code (an import's task, when its reply was lost)."""
        selection = where(Field.BATCH_CODE, Op.EQUALS, batch_code)
        return [
            task
            for page in self._pages("task.list", "/api/v3/task", TaskData, selection, DEFAULT_PAGE_SIZE, 1)
            for task in page.items
        ]

    # --- writes ------------------------------------------------------------------------------------------------

    def reverse_bills(self, bill_ids: Sequence[int], batch_code: str, note: str) -> UpdateResult:
        """`PUT /api/v202510/bill/reverse` into a new self-contained batch with this code (all or nothing).

        Not idempotent: the batch code is the key. An error with `may_have_applied` is settled with
        `find_batch(batch_code)`; `BatchCodeInUse` means an earlier call with the code landed.
        """
        ids = list(dict.fromkeys(int(bill_id) for bill_id in bill_ids))
        if not 1 <= len(ids) <= MAX_REVERSE_IDS:
            raise ValueError(f"a reversal takes 1 to {MAX_REVERSE_IDS} bill ids, got {len(ids)}")
        _check_text("batch_code", batch_code, required=True)
        _check_text("note", note)
        body = {
            "batchSettings": {"batchMode": SELF_CONTAINED, "newBatch": {"batchCode": batch_code, "note": note}},
            "billIds": ids,
        }
        return self._write("bill.reverse", "PUT", REVERSE_PATH, body, self._model(UpdateResult, "bill.reverse", True))

    def import_bills(self, csv_bytes: bytes, batch_code: str, file_name: str, note: str) -> str:
        """`POST /api/v3/import/bill` (the file base64-encoded) into a new self-contained batch; the task GUID.

        Not idempotent: settle an uncertain outcome with `find_batch` / `find_tasks` by the code.
        """
        if not csv_bytes:
            raise ValueError("the import file is empty")
        _check_text("batch_code", batch_code, required=True)
        _check_text("file_name", file_name, required=True)
        _check_text("note", note)
        body = {
            "batchSettings": {"batchMode": SELF_CONTAINED, "newBatchCode": batch_code},
            "data": base64.b64encode(csv_bytes).decode("ascii"),
            "fileName": file_name,
            "importNote": note,
        }
        return self._write("import.bill", "POST", IMPORT_PATH, body, self._task_guid("import.bill"))

    def reimport_kickouts(self, task_guid: str, batch_code: str) -> str:
        """`POST /api/v202401/import/bill/task/{guid}/kickout`: re-import what the task kicked out, into a
        new self-contained batch with this code; the new task's GUID."""
        _check_text("batch_code", batch_code, required=True)
        body = {"batchSettings": {"batchMode": SELF_CONTAINED, "newBatchCode": batch_code}}
        path = f"/api/v202401/import/bill/task/{quote(task_guid, safe='')}/kickout"
        return self._write("import.kickout", "POST", path, body, self._task_guid("import.kickout"))

    # --- plumbing --------------------------------------------------------------------------------------------

    def _get(self, operation: str, path: str, model: type[M]) -> M:
        result, _ = self._exchange(operation, "GET", path, parse=self._model(model, operation, False))
        return result

    def _write(self, operation: str, method: str, path: str, body: Mapping[str, Any], parse: Parser[R]) -> R:
        content = json.dumps(body, separators=(",", ":")).encode()
        result, _ = self._exchange(operation, method, path, content=content, mutating=True, parse=parse)
        return result

    def _pages(
        self,
        operation: str,
        path: str,
        model: type[M],
        selection: Filter | None,
        page_size: int,
        start_page: int,
    ) -> Iterator[Page[M]]:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if start_page < 1:
            raise ValueError("start_page must be at least 1")
        items = pydantic.RootModel[list[model]]  # type: ignore[valid-type]  # a runtime generic
        number, asked, answered = start_page, page_size, None
        while True:
            params = {"pageNumber": str(number), "pageSize": str(asked)}
            if selection is not None:
                params["filter"] = str(selection)
            parsed, headers = self._exchange(operation, "GET", path, params=params, parse=self._list(items, operation))
            page = _page(parsed, headers, number, asked, operation)
            if answered is not None and page.page_size != answered:
                raise protocol_error(
                    operation,
                    platform=PLATFORM,
                    mutating=False,
                    what=f"the page size changed from {answered} to {page.page_size} while paging",
                )
            answered = asked = page.page_size
            yield page
            if page.last or not page.items:
                return
            number += 1

    def _exchange(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        parse: Parser[R],
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        mutating: bool = False,
    ) -> tuple[R, httpx.Headers]:
        headers = {
            "ECI-ApiKey": self._api_key.get_secret_value(),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": "rebill",
        }
        request = self._channel.request(method, path, headers=headers, params=params, content=content)
        try:
            response, watch = self._channel.send(operation, request, mutating=mutating)
        except ProviderError as error:
            raise error from None  # the request holds the API key: do not chain it
        deprecated = header(response.headers, "ECI-Deprecated")
        if deprecated is not None:
            logger.warning("EnergyCAP marks %s %s (%s) as deprecated: %s", method, path, operation, deprecated)
        return self._channel.settle(operation, response, watch, mutating=mutating, parse=parse), response.headers

    @staticmethod
    def _model(model: type[M], operation: str, mutating: bool) -> Parser[M]:
        def parse(payload: Any, status_code: int) -> M:
            return parse_model(
                model, payload, operation=operation, platform=PLATFORM, mutating=mutating, status_code=status_code
            )

        return parse

    @staticmethod
    def _list(items: type[pydantic.RootModel[list[M]]], operation: str) -> Parser[list[M]]:
        def parse(payload: Any, status_code: int) -> list[M]:
            if payload is NO_BODY:
                return []
            parsed = parse_model(items, payload, operation=operation, platform=PLATFORM, mutating=False)
            return parsed.root

        return parse

    @staticmethod
    def _task_guid(operation: str) -> Parser[str]:
        def parse(payload: Any, status_code: int) -> str:
            try:
                return parse_task_guid(None if payload is NO_BODY else payload)
            except ValueError as exc:
                raise protocol_error(
                    operation, platform=PLATFORM, mutating=True, what=str(exc), status_code=status_code
                ) from None

        return parse


def _page(items: list[M], headers: Mapping[str, str], asked_number: int, asked_size: int, operation: str) -> Page[M]:
    """A page with the paging headers read (`PageSize` falls back to the size asked when absent)."""
    values: dict[str, int | None] = {}
    for name in ("PageNumber", "PageSize", "TotalNumberOfRecords", "TotalPages"):
        raw = header(headers, name)
        try:
            values[name] = None if raw is None or not raw.strip() else int(raw.strip())
        except ValueError:
            raise protocol_error(
                operation, platform=PLATFORM, mutating=False, what=f"the {name} header is not a number: {raw!r}"
            ) from None
    size = values["PageSize"] or asked_size
    if size < 1 or len(items) > size:
        raise protocol_error(
            operation, platform=PLATFORM, mutating=False, what=f"{len(items)} items on a page of size {size}"
        )
    return Page(items, values["PageNumber"] or asked_number, size, values["TotalNumberOfRecords"], values["TotalPages"])


def _check_text(name: str, value: str, *, required: bool = False) -> None:
    if required and not value.strip():
        raise ValueError(f"{name} must not be empty")
    if len(value) > _MAX_TEXT:
        raise ValueError(f"{name} must be at most {_MAX_TEXT} characters, got {len(value)}")
