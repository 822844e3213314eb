"""Process settings from the environment (prefix ``DEFENSA311_``).

Build them with :func:`load_settings`; nothing reads ``os.environ`` anywhere else.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "defensa311.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # The prefix ``broker setup --account-prefix`` gave the departments' accounts: a message
    # on a department's key must come from ``<prefix>dept-<code>`` (or the services' own).
    broker_account_prefix: str = ""
    database_url: str = "sqlite+aiosqlite:///./defensa311.db"
    config: Path = Field(default=DEFAULT_CONFIG)
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated
    # addresses or networks, uvicorn's forwarded_allow_ips). Empty: none, the peer's address
    # is the client's, so a client cannot pick the address its rate limits are counted by.
    trusted_proxies: str = ""
    metrics_port: int | None = None
    # The port of the HTTP routes of a service that runs without intake (the notifier's log
    # and staff tasks); unset: a process without intake serves none. With intake in the
    # process, they are on ``http_port``.
    service_http_port: int | None = None
    api_tokens: str = ""
    prefetch: int = 32
    # Deliveries of one queue handled in one transaction at most (the ones waiting).
    batch_size: int = 32
    db_pool_size: int = 5
    outbox_poll_seconds: float = 0.5
    # How long a committed event is left to its own process to publish before any relay may.
    outbox_lease_seconds: float = 5.0
    handler_attempts: int = 3
    log_level: str = "INFO"
    log_json: bool = True

    # The public transparency figures are recomputed at most this often (0: every request).
    transparency_cache_seconds: float = Field(default=300.0, ge=0)
    # Figures older than the cache's seconds but younger than these are answered at once
    # while they are recomputed in the background (services/intake/web/transparency.py).
    transparency_stale_seconds: float = Field(default=900.0, ge=0)
    # /metrics reads the gauges from the database at most this often (0: every scrape).
    metrics_cache_seconds: float = Field(default=10.0, ge=0)
    # Published outbox rows and inbox marks older than this are pruned (shared/outbox.py).
    outbox_retention_days: float = Field(default=7.0, gt=0)
    inbox_retention_days: float = Field(default=30.0, gt=0)
    prune_interval_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Accept plain ``postgresql://`` and ``sqlite://`` URLs by picking the async driver."""
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database's file (None: not SQLite, or an in-memory database)."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[-1].split("?", 1)[0]
        return Path(path) if path and path != ":memory:" and "://" not in path else None


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
