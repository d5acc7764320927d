"""The one typed settings object. Every setting is an environment variable with the REBILL_ prefix.

Each configured platform's settings (`REBILL_IMIS_*`, `REBILL_ARIA_*`, ...) are its provider
package's own `ProviderSettings`, gathered here by the provider registry, so that `Settings` is
still the one object the composition root is built from. The names of the first group are a public
interface: keep them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.adapters.providers.registry import PLATFORMS
from orchestrator.adapters.providers.settings import ProviderSettings
from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.run import RunOptions
from orchestrator.services.context import Tuning

#: The defaults of a run's options and of the deployment's tuning are defined once, where they live.
_RUN = RunOptions()
_TUNED = Tuning()

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REBILL_", extra="ignore", frozen=True)

    # Public interface.
    broker_url: str | None = Field(None, description="Celery broker; unset = embedded Redis in data_dir")
    database_url: str | None = Field(None, description="SQLAlchemy URL; unset = SQLite in data_dir")
    data_dir: Path = Field(Path(".rebill"), description="Embedded Redis, SQLite ledger, reports")

    # Workers and the broker.
    queue: str = "rebill"
    worker_concurrency: PositiveInt = 8
    visibility_timeout_seconds: PositiveInt = 3600
    lease_seconds: PositiveFloat = _TUNED.lease_seconds
    lost_message_seconds: PositiveFloat = _TUNED.lost_message_seconds
    reconcile_interval_seconds: PositiveFloat = 15.0
    dispatch_window: PositiveInt | None = Field(
        None,
        description="chunks of a run in the broker at once; unset = twice the run's provider's "
        "REBILL_<PROVIDER>_MAX_CONCURRENCY, at least 16",
    )
    claim_batch_size: PositiveInt = Field(
        _TUNED.claim_batch_size,
        description="items a worker claims at once; their outcomes are written together after the batch",
    )
    max_deliveries: PositiveInt = _TUNED.max_deliveries
    rebill_settle_seconds: PositiveFloat = _TUNED.rebill_settle_seconds
    heartbeat_seconds: PositiveFloat = Field(
        2.0, description="how often each worker writes its heartbeat to the ledger and looks for dead workers"
    )
    worker_dead_after_seconds: PositiveFloat = Field(
        _TUNED.worker_dead_after_seconds,
        description="a worker whose heartbeat is older than this is declared dead and what it held is taken "
        "up at once (shorter: faster recovery, but a long GC pause or a busy database may be taken for "
        "death, which costs only a read per claim it held)",
    )
    task_max_retries: PositiveInt = Field(
        20,
        description="retries of a task (planning, a follow-up tick, a firing) on transient errors; "
        "past them the reconciler takes the work up again from the ledger",
    )
    task_retry_backoff_seconds: PositiveFloat = 2.0
    task_retry_backoff_max_seconds: PositiveFloat = 300.0

    # Run defaults (each can be overridden per run on the command line).
    chunk_size: PositiveInt = _RUN.chunk_size
    max_attempts: PositiveInt = _RUN.max_attempts
    retry_backoff_seconds: PositiveFloat = _RUN.retry_backoff_seconds
    retry_backoff_max_seconds: PositiveFloat = _RUN.retry_backoff_max_seconds
    poll_interval_seconds: PositiveFloat = _RUN.poll_interval_seconds
    stall_after_seconds: PositiveFloat = _RUN.stall_after_seconds

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

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    # Every platform's own settings, by provider name (filled by `load_settings`, not by one variable).
    providers: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _death_needs_missed_beats(self) -> Settings:
        """A worker is declared dead only after missing at least two heartbeats."""
        if self.worker_dead_after_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                f"REBILL_WORKER_DEAD_AFTER_SECONDS ({self.worker_dead_after_seconds:g}) must be at least twice "
                f"REBILL_HEARTBEAT_SECONDS ({self.heartbeat_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_a_write(self) -> Settings:
        """A claim renewed just before a write must outlive that call, or two workers could send it."""
        for name, platform in self.providers.items():
            if not platform.configured:
                continue
            longest_call = platform.timeout_seconds + platform.connect_timeout_seconds
            if self.lease_seconds <= 2 * longest_call:
                prefix = platform.env_name("")
                raise ValueError(
                    f"REBILL_LEASE_SECONDS ({self.lease_seconds:g}) must exceed twice {prefix}TIMEOUT_SECONDS + "
                    f"{prefix}CONNECT_TIMEOUT_SECONDS ({2 * longest_call:g}) of provider {name}"
                )
        return self

    def provider(self, name: str) -> ProviderSettings:
        return self.providers[name]  # type: ignore[no-any-return]  # filled with ProviderSettings only

    def configured_providers(self) -> list[str]:
        """Providers whose required settings are all set, in registry order."""
        return [name for name, platform in self.providers.items() if platform.configured]

    def longest_write_seconds(self) -> float:
        """The longest one write call may take on any provider, slot wait included (pool = read timeout)."""
        return max((2 * (p.timeout_seconds + p.connect_timeout_seconds) for p in self.providers.values()), default=70.0)

    def chunks_in_broker(self, provider: str) -> int:
        """The dispatch window of a run on `provider`. A chunk's items are worked one after another, one
        call at a time, so a run uses at most this many of the tenant's slots: it must exceed the cap,
        with room for the moments a thread spends between calls (ledger writes, parsing)."""
        if self.dispatch_window is not None:
            return self.dispatch_window
        return max(16, 2 * self.provider(provider).max_concurrency)

    def secret_values(self) -> tuple[str, ...]:
        """Every secret these settings hold, so logs and errors can redact it (defined once, here)."""
        found = [self.flower_basic_auth, self.web_basic_auth]
        for platform in self.providers.values():
            values = (getattr(platform, field) for field in type(platform).model_fields)
            found.extend(value for value in values if isinstance(value, SecretStr))
        return tuple(secret.get_secret_value() for secret in found if secret is not None)

    def run_options(self, **overrides: object) -> RunOptions:
        """Run options from these defaults, with the non-None `overrides` applied."""
        values: dict[str, object] = {
            "chunk_size": self.chunk_size,
            "max_attempts": self.max_attempts,
            "retry_backoff_seconds": self.retry_backoff_seconds,
            "retry_backoff_max_seconds": self.retry_backoff_max_seconds,
            "poll_interval_seconds": self.poll_interval_seconds,
            "stall_after_seconds": self.stall_after_seconds,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return RunOptions(**values)  # type: ignore[arg-type]  # keys are RunOptions fields


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value becomes a ConfigurationError naming the variable.

    An override named `<provider>_<field>` (e.g. `imis_base_url`) goes to that provider's settings.
    """
    problems: list[str] = []
    providers: dict[str, ProviderSettings] = {}
    core = dict(overrides)
    for name, platform in PLATFORMS.items():
        prefix = f"{name}_"
        mine = {key[len(prefix) :]: core.pop(key) for key in list(core) if key.startswith(prefix)}
        try:
            providers[name] = platform.settings.model_validate(mine)
        except ValidationError as error:
            problems.extend(_problems(error, platform.settings.env_name("")))
    if problems:
        raise ConfigurationError("invalid settings: " + "; ".join(problems))
    try:
        return Settings(**core, providers=providers)  # type: ignore[arg-type]  # pydantic validates the keywords
    except ValidationError as error:
        raise ConfigurationError("invalid settings: " + "; ".join(_problems(error, "REBILL_"))) from None


def _problems(error: ValidationError, prefix: str) -> list[str]:
    problems = []
    for issue in error.errors():
        if issue["loc"]:
            name = prefix + "_".join(str(part) for part in issue["loc"]).upper()
            problems.append(f"{name}: {issue['msg']}")
        else:
            problems.append(str(issue["msg"]).removeprefix("Value error, "))
    return problems


__all__ = ["Settings", "load_settings"]
