"""The client kit every provider shares: a channel to the tenant, and the generic half of classifying.

channel.py    ApiChannel: builds requests carrying the timeout, sends them on the injected transport,
              keeps cookies once set, times and reports every exchange as an ApiCall, scrubs secrets
              from errors, classifies with the platform's `classify`, reaches the tenant's one_slot
failures.py   transport_failure, status_failure, protocol_error, parse_retry_after, outcome_of, and
              the small readers a classify needs (header, html_detail, clip)
bodies.py     encode_json: request bodies with Decimals written as exact JSON numbers
replies.py    decode_json (money as Decimal), decode_success, success_payload, parse_model,
              describe_validation_error, NOT_DECODED / NO_BODY
bearer.py     BearerToken: a token shared by a client's threads, fetched under a lock when missing or
              due, and the one new token and repeat a 401 earns; request_token, which never chains
              the credentials' request to an error

A platform client only builds requests, calls the channel and keeps its own error table:

    def classify(*, operation, mutating=False, status_code, headers, body, payload=NOT_DECODED, now=None):
        if 200 <= status_code < 300:
            payload = success_payload(operation, platform="Aria", mutating=mutating, ...)  # raises
            return refusal_in_body(payload)  # the platform's own rule, e.g. Aria's error_code != 0
        return status_failure(operation=operation, platform="Aria", mutating=mutating,
                              status_code=status_code, headers=headers, detail=its_messages(body))

    channel = ApiChannel(platform="Aria", base_url=url, transport=transport, timeout=timeout,
                         classify=classify, observer=observer, secrets=lambda: (auth_key,))
    request = channel.request("POST", "/v1/core", headers=JSON_HEADERS, content=body)
    invoice = channel.call("gen_rb_m", request, mutating=True,
                           parse=lambda payload, status: parse_model(GenRbM, payload, operation="gen_rb_m",
                                                                     platform="Aria", mutating=True))

(`classify` must catch the `ProviderProtocolError` `success_payload` raises and return it: it returns
errors, it does not raise them; see `orchestrator/adapters/providers/imis/errors.py`.)
"""

from orchestrator.adapters.providers.http.bearer import BearerToken, request_token
from orchestrator.adapters.providers.http.bodies import encode_json
from orchestrator.adapters.providers.http.channel import ApiChannel, Classifier, Parser, Stopwatch
from orchestrator.adapters.providers.http.failures import (
    SETTLE_BY_READING,
    clip,
    header,
    html_detail,
    outcome_of,
    parse_retry_after,
    protocol_error,
    status_failure,
    transport_failure,
)
from orchestrator.adapters.providers.http.replies import (
    NO_BODY,
    NOT_DECODED,
    decode_json,
    decode_success,
    describe_validation_error,
    parse_model,
    success_payload,
)

__all__ = [
    "NOT_DECODED",
    "NO_BODY",
    "SETTLE_BY_READING",
    "ApiChannel",
    "BearerToken",
    "Classifier",
    "Parser",
    "Stopwatch",
    "clip",
    "decode_json",
    "decode_success",
    "describe_validation_error",
    "encode_json",
    "header",
    "html_detail",
    "outcome_of",
    "parse_model",
    "parse_retry_after",
    "protocol_error",
    "request_token",
    "status_failure",
    "success_payload",
    "transport_failure",
]
