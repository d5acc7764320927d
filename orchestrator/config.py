"""The one typed settings object. Every setting is an environment variable with the REBILL_ prefix.

The names of the first group are a public interface: keep them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.run import RunOptions

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REBILL_", extra="ignore", frozen=True)

    # Public interface.
    broker_url: str | None = Field(None, description="Celery broker; unset = embedded Redis in data_dir")
    database_url: str | None = Field(None, description="SQLAlchemy URL; unset = SQLite in data_dir")
    data_dir: Path = Field(Path(".rebill"), description="Embedded Redis, SQLite ledger, reports")
    imis_base_url: AnyHttpUrl | None = None
    imis_username: str | None = None
    imis_password: SecretStr | None = None

    # The tenant and how hard we may push it.
    imis_timeout_seconds: PositiveFloat = 30.0
    imis_connect_timeout_seconds: PositiveFloat = 5.0
    imis_max_concurrency: PositiveInt = 4
    imis_rate_limit: PositiveFloat | None = Field(None, description="requests per second, all workers")
    imis_page_size: PositiveInt = 500
    imis_slot_lease_seconds: PositiveFloat = Field(
        20.0, description="how long a killed worker's tenant slot stays taken (live ones are renewed)"
    )
    imis_slot_handoff_seconds: NonNegativeFloat = Field(
        1.0,
        description="a worker's threads pass a slot among themselves for this long before it goes back "
        "through Redis to every worker; 0 = always through Redis",
    )

    # Workers and the broker.
    queue: str = "rebill"
    worker_concurrency: PositiveInt = 8
    visibility_timeout_seconds: PositiveInt = 3600
    lease_seconds: PositiveFloat = 120.0
    lost_message_seconds: PositiveFloat = 120.0
    reconcile_interval_seconds: PositiveFloat = 15.0
    dispatch_window: PositiveInt | None = Field(
        None,
        description="chunks of a run in the broker at once; unset = twice REBILL_IMIS_MAX_CONCURRENCY, at least 16",
    )
    claim_batch_size: PositiveInt = Field(
        10, description="items a worker claims at once; their outcomes are written together after the batch"
    )
    max_deliveries: PositiveInt = 5
    rebill_settle_seconds: PositiveFloat = 120.0

    # Run defaults (each can be overridden per run on the command line).
    chunk_size: PositiveInt = 50
    max_attempts: PositiveInt = 5
    retry_backoff_seconds: PositiveFloat = 1.0
    retry_backoff_max_seconds: PositiveFloat = 120.0
    adjustment_reason: str = "Reverse and rebill"
    do_not_cancel_membership: bool = True
    automatically_post_batch: bool = True
    post_unposted_batch: bool = True
    poll_interval_seconds: PositiveFloat = 5.0
    stall_after_seconds: PositiveFloat = 1800.0

    flower_basic_auth: SecretStr | None = Field(None, description="user:password; Flower refuses to start without")
    web_basic_auth: SecretStr | None = Field(None, description="user:password; `rebill web` refuses to start without")

    # Scheduled runs and monitoring.
    schedule_file: Path | None = Field(None, description="TOML file of scheduled runs per billing cycle")
    beat_max_interval_seconds: PositiveFloat = Field(
        5.0, description="beat's longest sleep; a second beat takes over within 5x this after the first dies"
    )
    metrics_address: str = Field("127.0.0.1", description="where /metrics listens (worker and `rebill metrics`)")
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = Field(
        None, description="serve the worker's API-call metrics on this port; unset = off"
    )
    metrics_recent_hours: PositiveFloat = Field(24.0, description="finished runs kept in per-run metrics")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "text"

    @model_validator(mode="after")
    def _lease_outlives_a_write(self) -> Settings:
        """A claim renewed just before a reversal must outlive that call, or two workers could send it."""
        longest_call = self.imis_timeout_seconds + self.imis_connect_timeout_seconds
        if self.lease_seconds <= 2 * longest_call:
            raise ValueError(
                f"REBILL_LEASE_SECONDS ({self.lease_seconds:g}) must exceed twice REBILL_IMIS_TIMEOUT_SECONDS + "
                f"REBILL_IMIS_CONNECT_TIMEOUT_SECONDS ({2 * longest_call:g})"
            )
        return self

    def chunks_in_broker(self) -> int:
        """The dispatch window. A chunk's items are worked one after another, one call at a time, so a
        run uses at most this many of the tenant's slots: it must exceed the cap, with room for the
        moments a thread spends between calls (ledger writes, parsing)."""
        if self.dispatch_window is not None:
            return self.dispatch_window
        return max(16, 2 * self.imis_max_concurrency)

    def run_options(self, **overrides: object) -> RunOptions:
        """Run options from these defaults, with the non-None `overrides` applied."""
        values: dict[str, object] = {
            "chunk_size": self.chunk_size,
            "max_attempts": self.max_attempts,
            "retry_backoff_seconds": self.retry_backoff_seconds,
            "retry_backoff_max_seconds": self.retry_backoff_max_seconds,
            "adjustment_reason": self.adjustment_reason,
            "do_not_cancel_membership": self.do_not_cancel_membership,
            "automatically_post_batch": self.automatically_post_batch,
            "post_unposted_batch": self.post_unposted_batch,
            "poll_interval_seconds": self.poll_interval_seconds,
            "stall_after_seconds": self.stall_after_seconds,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return RunOptions(**values)  # type: ignore[arg-type]  # keys are RunOptions fields

    def require_imis(self) -> tuple[str, str, SecretStr]:
        """The tenant's URL and credentials, or a ConfigurationError naming what is missing."""
        missing = [
            name
            for name, value in (
                ("REBILL_IMIS_BASE_URL", self.imis_base_url),
                ("REBILL_IMIS_USERNAME", self.imis_username),
                ("REBILL_IMIS_PASSWORD", self.imis_password),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(f"{', '.join(missing)} must be set to talk to iMIS")
        assert self.imis_base_url is not None
        assert self.imis_username is not None
        assert self.imis_password is not None
        return str(self.imis_base_url).rstrip("/"), self.imis_username, self.imis_password


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value becomes a ConfigurationError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # pydantic validates the keywords
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            if issue["loc"]:
                name = "REBILL_" + "_".join(str(part) for part in issue["loc"]).upper()
                problems.append(f"{name}: {issue['msg']}")
            else:
                problems.append(str(issue["msg"]).removeprefix("Value error, "))
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
