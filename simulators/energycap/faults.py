"""What the EnergyCAP simulator can be told to do wrong, as one immutable, typed settings object.

| setting            | effect                                                                      | applied? |
|--------------------|-----------------------------------------------------------------------------|----------|
| `latency_ms`       | every counted request waits this long, plus up to `jitter_ms`                | -        |
| `p_500`            | 500 JSON error                                                              | no       |
| `p_503`            | 503 HTML maintenance page                                                   | no       |
| `p_429`            | 429 with `Retry-After: retry_after_seconds` (undocumented, but possible)     | no       |
| `p_lose_reply`     | writes only (reverse, import, kickout re-import): done, then 502 HTML        | **yes**  |
| `import_seconds`   | how long an import task takes from Queued to its end (Queued for a quarter)  | -        |
| `p_kickout`        | a row is kicked out at random, the first time it is imported only            | -        |
| `page_cap`         | lists answer at most this many items per page (below the API's 1000)         | -        |
| `task_guid_reply`  | an import answers the task GUID as a JSON string or as `{"taskGUId": ...}`    | -        |

The probabilistic faults are drawn once per request, in the table's order; if they add up to more
than 1, the later kinds get what is left.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Probability = Field(default=0.0, ge=0.0, le=1.0)


class Faults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0.0)
    jitter_ms: float = Field(default=0.0, ge=0.0)
    p_500: float = Probability
    p_503: float = Probability
    p_429: float = Probability
    retry_after_seconds: int = Field(default=1, ge=0)
    p_lose_reply: float = Probability
    import_seconds: float = Field(default=0.5, ge=0.0)
    p_kickout: float = Probability
    page_cap: int | None = Field(default=None, ge=1)
    task_guid_reply: Literal["string", "object"] = "string"
